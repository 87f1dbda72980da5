"""quantize-tfhe's weight scales fitted to the accumulators (`weight_fit=accumulator`).

A layer's integer accumulator acc_j = sum_k q_k W_int[k, j] feeds a lookup that reads
only its top bits (round-accumulators): one rounding step for the whole tensor,
2^(width - bits), set by its widest channel. Quantizing each output channel's weights
on their own range (max |W[:, j]| onto 2^(n-1) - 1) leaves the channels whose
accumulators stay small with a handful of those steps: on the golden digits MLP the
widest channels of the first layer are ones a ReLU always zeroes, and the live
channels read 5 to 10 of a 6-bit lookup's 64 levels.

Fitting instead gives every output channel the same calibrated accumulator magnitude:
about the widest channel's under the range fit, lowered (by less than half) so that
the accumulators keep HEADROOM for inputs beyond the calibrated ones in a power-of-two
width. No channel gets coarser weights than the range fit: the widest keeps the room
the range fit left it. A channel whose accumulator is k times narrower gets weights k
times finer (up to `MAX_FITTED_WEIGHT_BITS`), so the accumulator's width, and the
rounding step, stay as they were while every channel spans the lookup's levels (about
10 of 16 on each side of a 5-bit lookup). The finer weights cost nothing in the
lookups (their inputs are as wide as before) but widen the dot products' noise a
little: concrete's cost grows with the weights' norm.

quantize-tfhe fits only the layers whose accumulators a lookup reads (a layer
follows), and not convolutions. Measured at 5-bit lookups: fitting the decrypted last
layer too raised concrete's complexity by 23% on the golden MLP (for about a sample
of 360), and fitting the golden CNN's convolution and last layer by 47%, with no
accuracy gain.
"""

from __future__ import annotations

import numpy as np

# The finest weights a fitted channel may get: 2^(bits-1) - 1 at most.
MAX_FITTED_WEIGHT_BITS = 10
# Inputs beyond the calibrated ones must not overflow an accumulator's width: the common
# magnitude leaves this much room above it (held-out digits reach 1.37 times the
# calibrated magnitude with 64 calibration samples), and a sixteenth of the window
# more, so that rounding the top values up keeps the width.
HEADROOM = 0.5
ROUNDING_SLACK = 15 / 16


def accumulator_scales(
    extent: np.ndarray,
    magnitudes: np.ndarray,
    bits: int,
    max_bits: int = MAX_FITTED_WEIGHT_BITS,
) -> np.ndarray:
    """One symmetric weight scale per output channel. `extent`: max |W| of each
    channel's float weights; `magnitudes`: max |accumulator| of each channel over the
    calibration samples, in the units those weights give. `bits`: the range fit's
    weight bits; the widest channel under the range fit sets the common magnitude
    (with headroom); every channel gets weights at least as fine as under the range
    fit (the widest keeps them, so its own headroom is what the range fit left), of at
    most `max_bits` bits."""
    range_scales = _nonzero(extent / ((1 << (bits - 1)) - 1))
    widest = float((magnitudes / range_scales).max(initial=0.0))
    if widest <= 0.0:
        return range_scales
    widest = _with_headroom(widest)
    finest = extent / ((1 << (max_bits - 1)) - 1)
    fitted = np.clip(magnitudes / widest, finest, range_scales)  # never coarser
    return _nonzero(fitted, range_scales)


def _with_headroom(widest: float) -> float:
    """The common magnitude: the widest channel's, lowered (by less than half) so that,
    grown by HEADROOM, it fills a power-of-two window less the rounding slack."""
    window = 2.0 ** np.floor(np.log2(widest * (1 + HEADROOM) / ROUNDING_SLACK))
    return float(window * ROUNDING_SLACK / (1 + HEADROOM))


def _nonzero(scales: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    # an all-zero channel (or one calibration never moved) keeps a usable scale
    return np.where(scales > 0, scales, 1.0 if fallback is None else fallback)
