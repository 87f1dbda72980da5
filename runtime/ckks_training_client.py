"""The data owner's side of CKKS training: the one party with the secret key.

It encrypts batches (one sample per slot) and weights (each number in every slot),
decrypts what the server returns, and refreshes the weights after each run of steps
(decrypt and encrypt again: the levels a run used come back), warning when they leave
the range the step was calibrated on. Everything it exchanges with the server
(runtime/ckks_training_server.py) is bytes; backends/ckks/training.py holds both sides
of one process together.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from fhec.backends.ckks.circuit import CalibrationRangeWarning
from fhec.backends.ckks.seal_context import Encryptor, SealContext, SecretKeys
from fhec.backends.ckks.serialization import (
    CipherTensor,
    dump_ciphertexts,
    dump_evaluation_keys,
    load_ciphertexts,
)
from fhec.backends.ckks.tensors import decrypt_tensor, encrypt_tensor
from fhec.ir.errors import FhecError
from fhec.ir.graph import Module
from fhec.ir.interval import Interval
from fhec.ir.ops.ckks import CkksState
from fhec.ir.ops.core import InputOp
from fhec.passes.select_rotation_keys_ckks import module_rotations
from fhec.passes.validate_levels_ckks import module_params

Arrays = dict[str, np.ndarray]
# Weights past their calibrated range by more than this fraction of its width get a
# warning at refresh (approximate-activations fits with a margin of 0.2 widths).
OUTSIDE_SLACK = 0.1


class TrainingClient:
    """The data owner: keys, encrypted batches and weights, decrypted results."""

    def __init__(self, module: Module) -> None:
        params = module_params(module)
        assert params is not None, "the CKKS training pipeline chose parameters"
        self.module = module
        self.context = SealContext(params)
        self._keys = SecretKeys.generate(self.context, module_rotations(module))
        self._encryptor = Encryptor(self.context, self._keys)
        self._scales = _input_scales(module)
        self._ranges = _input_ranges(module)

    def evaluation_keys(self) -> bytes:
        return dump_evaluation_keys(self._keys.evaluation, self.context)

    def encrypt_batch(self, arrays: Mapping[str, np.ndarray]) -> bytes:
        """Features and labels: one sample per slot."""
        tensors = {name: encrypt_tensor(self._encryptor, array, self._scales[name], name)
                   for name, array in arrays.items()}
        return dump_ciphertexts(tensors, self.context, self._keys.key_id)

    def encrypt_weights(self, weights: Mapping[str, np.ndarray]) -> bytes:
        """Weights replicated: each number in every slot, with the step's leading axis."""
        tensors = {name: self._replicated(name, np.asarray(array, dtype=np.float64))
                   for name, array in weights.items()}
        return dump_ciphertexts(tensors, self.context, self._keys.key_id)

    def decrypt(self, data: bytes) -> Arrays:
        """The tensors in `data`, decrypted (replicated ones from their first slot),
        without the step's leading axis for weights."""
        tensors, _ = load_ciphertexts(data, self.context, self._keys.key_id)
        return {name: decrypt_tensor(self._encryptor, tensor)[0] if tensor.count == 1
                else decrypt_tensor(self._encryptor, tensor)
                for name, tensor in tensors.items()}

    def refresh(self, data: bytes, step: int) -> bytes:
        """New weights (deep in the modulus chain) back at level 0: decrypt, encrypt. A
        weight outside the range the step was calibrated on gets a warning: the step's
        polynomials are fitted on the ranges its values reach with calibrated weights."""
        weights = self.decrypt(data)
        for name, array in weights.items():
            _warn_outside_calibration(name, array, self._ranges.get(name), step)
        return self.encrypt_weights(weights)

    def _replicated(self, name: str, array: np.ndarray) -> CipherTensor:
        if not np.all(np.isfinite(array)):
            raise FhecError(f"training diverged: the weights {name!r} became non-finite",
                            hint="use a smaller learning rate (--lr)")
        scale = self.context.canonical_scale(self._scales[name], 0)
        cts = np.empty(array.shape, dtype=object)
        for index in np.ndindex(array.shape):
            cts[index] = self._encryptor.encrypt(np.asarray(array[index]), scale)
        return CipherTensor(cts, 1, self._scales[name], 0)


def _input_ranges(module: Module) -> dict[str, Interval]:
    ranges = {}
    for value in module.function.inputs:
        node = module.graph.node(value)
        known = node.annotation(Interval)
        if isinstance(node.op, InputOp) and known is not None:
            ranges[node.op.input_name] = known
    return ranges



def _warn_outside_calibration(name: str, array: np.ndarray, calibrated: Interval | None,
                              step: int) -> None:
    """Warn when `array` leaves `calibrated` by more than OUTSIDE_SLACK of its width."""
    if calibrated is None or array.size == 0:
        return
    slack = OUTSIDE_SLACK * max(calibrated.width, 1e-12)
    low, high = float(np.min(array)), float(np.max(array))
    if low < calibrated.lo - slack or high > calibrated.hi + slack:
        warnings.warn(
            f"after step {step} the weights {name!r} reach [{low:.4g}, {high:.4g}], outside "
            f"the calibrated [{calibrated.lo:.4g}, {calibrated.hi:.4g}]: the step's polynomial "
            "approximations may not hold from here (compile with more calibration_epochs, "
            "or calibration data closer to the training data)",
            CalibrationRangeWarning, stacklevel=4)



def _input_scales(module: Module) -> dict[str, int]:
    scales = {}
    for value in module.function.inputs:
        node = module.graph.node(value)
        state = node.annotation(CkksState)
        assert isinstance(node.op, InputOp) and state is not None
        scales[node.op.input_name] = state.scale_bits
    return scales
