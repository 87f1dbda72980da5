"""One SGD step of logistic regression on 512 encrypted samples x 30 features: fhec's
compiled CKKS step against the same step written by hand in seal-python, in one run.

    .venv/bin/python benchmarks/ckks_training_step.py [--steps 3] [--json out.json]

Data: the 569 breast-cancer samples, standardized, the first 512 as the batch (labels
0/1); the weights start at zero, lr 1.0, binary cross-entropy. Both sides compute the
same math on the same layout (one sample per slot, each weight replicated in every
slot): z = sum_k x_k w_k + b, a degree-3 polynomial for the sigmoid fitted on the same
interval (fhec's `approximate-activations{max_degree=3}` picks it from the calibration
rehearsal -- here the same batch for as many steps, so the ranges are the run's own --
and the hand-written one is a least-squares fit there), the error times lr/B on
the samples' slots, the gradients by products and rotate-and-sum, w - g. Each step's
weights come back to level 0 by a client refresh (decrypt and encrypt) on both sides.

fhec rows: its compiled step (`compile_training(backend="ckks")`); "fhec default" is the
same with the sigmoid fitted to fhec's default error target (degree up to 15). The
hand-written row: the EVA/SEAL-examples style -- 60-bit outer primes, 40-bit scales,
the fewest levels that fit, products summed before one relinearization and rescale,
scales reset to 2^40 after rescales. Time per step: the server's arithmetic only
(fhec's `evaluation_seconds`, bytes in and out apart); one core, one thread.
Precision: max |w - w_exact| after the steps, against the same steps in float64 with
the exact sigmoid.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import SINGLE_THREAD, single_core

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
BATCH, FEATURES, LR = 512, 30, 1.0
SCALE_BITS, OUTER_BITS = 40, 60



def dataset() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x).astype(np.float32)
    return x, y.astype(np.float32)


def exact_steps(x: np.ndarray, y: np.ndarray, steps: int) -> tuple[np.ndarray, float]:
    """The steps in float64 with the exact sigmoid: (weights, bias) after them."""
    w, b = np.zeros(FEATURES), 0.0
    for _ in range(steps):
        z = x[:BATCH].astype(np.float64) @ w + b
        err = (1.0 / (1.0 + np.exp(-z)) - y[:BATCH]) * LR / BATCH
        w, b = w - x[:BATCH].T @ err, b - err.sum()
    return w, b


# -- fhec ----------------------------------------------------------------------------


def run_fhec(x: np.ndarray, y: np.ndarray, steps: int, options: dict[str, Any]) -> dict[str, Any]:
    from train_logreg_breast_cancer import logistic_regression

    import fhec
    from fhec.ir.ops.poly import Approximation

    started = time.perf_counter()
    trainer = fhec.compile_training(
        logistic_regression(FEATURES), loss="bce", lr=LR, batch_size=BATCH, backend="ckks",
        calibration={"x": x[:BATCH], "label": y[:BATCH]}, calibration_epochs=steps,
        options=options)
    compile_seconds = time.perf_counter() - started
    for _ in range(steps):
        trainer.step({"x": x[:BATCH]}, y[:BATCH])
    report = trainer.report()
    weights = trainer.weights()
    graph = trainer.module.graph
    fit = next(graph.node(v).annotation(Approximation) for v in graph
               if graph.node(v).annotation(Approximation) is not None)
    seconds = report["seconds"]
    assert isinstance(seconds, dict)
    return {
        "seconds_per_step": float(report["evaluation_seconds"]) / steps,  # type: ignore[arg-type]
        "refresh_seconds_per_step": seconds["refresh"] / steps,
        "compile_and_keygen_seconds": compile_seconds,
        "levels_per_step": report["levels_per_step"],
        "poly_degree": report["poly_degree"],
        "coeff_bits": report["coeff_modulus_bits"],
        "galois_keys": report["galois_keys"],
        "refresh_bytes_per_step": report["refresh_bytes_per_refresh"],
        "sigmoid": (fit.degree, fit.lo, fit.hi, fit.max_error),
        "weights": weights["fc.weight"].reshape(-1), "bias": float(weights["fc.bias"][0]),
    }


# -- by hand -------------------------------------------------------------------------


class HandWritten:
    """The step in seal-python, as one writes it following SEAL's examples."""

    def __init__(self, coefficients: np.ndarray, depth: int = 5, degree: int = 16384) -> None:
        import seal

        self.seal = seal
        parms = seal.EncryptionParameters(seal.scheme_type.ckks)
        parms.set_poly_modulus_degree(degree)
        bits = [OUTER_BITS] + [SCALE_BITS] * depth + [OUTER_BITS]
        parms.set_coeff_modulus(seal.CoeffModulus.Create(degree, bits))
        self.context = seal.SEALContext(parms, True, seal.sec_level_type.tc128)
        keygen = seal.KeyGenerator(self.context)
        self.relin = keygen.create_relin_keys()
        self.steps = [1 << i for i in range((degree // 2 - 1).bit_length())]
        self.galois = seal.GaloisKeys()
        keygen.create_galois_keys(self.steps, self.galois)
        self.encoder = seal.CKKSEncoder(self.context)
        self.encryptor = seal.Encryptor(self.context, keygen.secret_key())
        self.decryptor = seal.Decryptor(self.context, keygen.secret_key())
        self.ev = seal.Evaluator(self.context)
        self.scale = 2.0**SCALE_BITS
        self.c0, self.c1, self.c2, self.c3 = (float(c) for c in coefficients)
        self.bits = bits

    def encrypt(self, values: np.ndarray | float) -> Any:
        if np.ndim(values):
            plain = self.encoder.encode(np.ascontiguousarray(values, dtype=np.float64), self.scale)
        else:
            plain = self.encoder.encode(float(values), self.scale)
        return self.encryptor.encrypt_symmetric(plain)

    def decrypt(self, ct: Any) -> float:
        return float(self.encoder.decode(self.decryptor.decrypt(ct))[0])

    def _down(self, ct: Any, like: Any) -> Any:
        ct = self.ev.mod_switch_to(ct, like.parms_id())
        ct.scale(like.scale())
        return ct

    def _plain(self, value: float | np.ndarray, like: Any) -> Any:
        if np.ndim(value):
            plain = self.encoder.encode(np.ascontiguousarray(value, dtype=np.float64), self.scale)
        else:
            plain = self.encoder.encode(float(value), self.scale)
        self.ev.mod_switch_to_inplace(plain, like.parms_id())
        return plain

    def _rescaled(self, ct: Any) -> Any:
        ct = self.ev.rescale_to_next(ct)
        ct.scale(self.scale)
        return ct

    def _product(self, a: Any, b: Any) -> Any:
        return self._rescaled(self.ev.relinearize(self.ev.multiply(a, b), self.relin))

    def _sum_slots(self, ct: Any) -> Any:
        for step in self.steps:
            ct = self.ev.add(ct, self.ev.rotate_vector(ct, step, self.galois))
        return ct

    def step(self, xs: list[Any], y: Any, ws: list[Any], b: Any, mask: np.ndarray
             ) -> tuple[list[Any], Any]:
        ev = self.ev
        terms = [ev.multiply(x, w) for x, w in zip(xs, ws, strict=True)]
        z = ev.add_many(terms)
        z = self._rescaled(ev.relinearize(z, self.relin))  # one relinearization, one rescale
        z = ev.add(z, self._down(b, z))
        z2 = self._product(z, z)
        c3z = self._rescaled(ev.multiply_plain(z, self._plain(self.c3, z)))
        z3 = self._product(z2, c3z)
        c2z2 = self._rescaled(ev.multiply_plain(z2, self._plain(self.c2, z2)))
        c1z = self._down(self._rescaled(ev.multiply_plain(z, self._plain(self.c1, z))), z3)
        p = ev.add_many([z3, self._down(c2z2, z3), c1z])
        p = ev.add_plain(p, self._plain(self.c0, p))
        err = ev.sub(p, self._down(y, p))
        scaled = self._rescaled(ev.multiply_plain(err, self._plain(mask, err)))
        new_ws = []
        for x, w in zip(xs, ws, strict=True):
            gradient = self._sum_slots(self._product(self._down(x, scaled), scaled))
            new_ws.append(ev.sub(self._down(w, gradient), gradient))
        bias_gradient = self._sum_slots(scaled)
        return new_ws, ev.sub(self._down(b, bias_gradient), bias_gradient)


def run_by_hand(x: np.ndarray, y: np.ndarray, steps: int, interval: tuple[float, float]
                ) -> dict[str, Any]:
    grid = np.linspace(*interval, 2001)
    coefficients = np.polynomial.polynomial.polyfit(grid, 1.0 / (1.0 + np.exp(-grid)), 3)
    fit_error = float(np.max(np.abs(np.polynomial.polynomial.polyval(grid, coefficients)
                                    - 1.0 / (1.0 + np.exp(-grid)))))
    started = time.perf_counter()
    hand = HandWritten(coefficients)
    keygen = time.perf_counter() - started
    xs = [hand.encrypt(x[:BATCH, k]) for k in range(FEATURES)]
    label = hand.encrypt(y[:BATCH])
    mask = np.zeros(hand.encoder.slot_count())
    mask[:BATCH] = LR / BATCH
    w, b = np.zeros(FEATURES), 0.0
    seconds = refresh = 0.0
    for _ in range(steps):
        ws, bias = [hand.encrypt(v) for v in w], hand.encrypt(b)
        started = time.perf_counter()
        new_ws, new_b = hand.step(xs, label, ws, bias, mask)
        seconds += time.perf_counter() - started
        started = time.perf_counter()
        w, b = np.array([hand.decrypt(c) for c in new_ws]), hand.decrypt(new_b)
        refresh += time.perf_counter() - started
    return {
        "seconds_per_step": seconds / steps, "refresh_seconds_per_step": refresh / steps,
        "compile_and_keygen_seconds": keygen, "levels_per_step": len(hand.bits) - 2,
        "poly_degree": 16384, "coeff_bits": hand.bits, "galois_keys": len(hand.steps),
        "refresh_bytes_per_step": None,
        "sigmoid": (3, interval[0], interval[1], fit_error), "weights": w, "bias": b,
    }


def table(rows: dict[str, dict[str, Any]], exact: tuple[np.ndarray, float]) -> str:
    base = rows["seal-python by hand"]["seconds_per_step"]
    lines = ["| implementation | s / step | vs by hand | levels / step | N | coeff bits | "
             "Galois keys | sigmoid fit (degree, interval, max error) | refresh bytes / step |"
             " max weight error |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        error = max(float(np.max(np.abs(row["weights"] - exact[0]))), abs(row["bias"] - exact[1]))
        degree, lo, hi, fit = row["sigmoid"]
        traffic = row["refresh_bytes_per_step"]
        lines.append(
            f"| {name} | {row['seconds_per_step']:.2f} | {row['seconds_per_step'] / base:.2f}x | "
            f"{row['levels_per_step']} | {row['poly_degree']} | {row['coeff_bits']} | "
            f"{row['galois_keys']} | {degree}, [{lo:.3g}, {hi:.3g}], {fit:.3g} | "
            f"{'-' if traffic is None else f'{traffic / 2**20:.1f} MiB'} | {error:.2e} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.update(SINGLE_THREAD)
    single_core()
    x, y = dataset()
    rows = {"fhec (degree 3)": run_fhec(x, y, args.steps,
                                        {"approximate-activations": {"max_degree": 3}})}
    _, lo, hi, _ = rows["fhec (degree 3)"]["sigmoid"]
    rows["seal-python by hand"] = run_by_hand(x, y, args.steps, (lo, hi))
    rows["fhec (default fit)"] = run_fhec(x, y, args.steps, {})
    exact = exact_steps(x, y, args.steps)
    print(table(rows, exact))
    if args.json:
        serial = {name: {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                         for k, v in row.items()} for name, row in rows.items()}
        args.json.write_text(json.dumps(serial, indent=2))


if __name__ == "__main__":
    main()
