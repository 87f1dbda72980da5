"""The CKKS circuit: parameters from the module, keys on first run, encrypted runs.

`run(inputs)` is the whole round trip in one process: key generation (once per
circuit), encryption with the secret key, evaluation with the evaluation keys
only, decryption. `runtime/ckks_client.py` and `runtime/ckks_server.py` split the
same steps between two parties, with bytes in between.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping

import numpy as np
import seal

from fhec.backends.ckks.epilogue import client_outputs, finish, server_outputs
from fhec.backends.ckks.error_model import error_bounds
from fhec.backends.ckks.evaluator import Evaluator
from fhec.backends.ckks.seal_context import Encryptor, SealContext, SecretKeys
from fhec.backends.ckks.serialization import CipherTensor
from fhec.backends.ckks.tensors import (
    decrypt_packed,
    decrypt_tensor,
    encrypt_packed,
    encrypt_tensor,
)
from fhec.ir.errors import ArtifactError, CompileError, InputError
from fhec.ir.graph import Module, Node, ValueId
from fhec.ir.interval import Interval
from fhec.ir.ops.ckks import CkksParams, CkksState, SingleLayout
from fhec.ir.ops.core import InputOp
from fhec.ir.signature import Signature
from fhec.passes.annotate_states_ckks import ckks_states
from fhec.passes.pack_single_ckks import single_period
from fhec.passes.select_rotation_keys_ckks import module_rotations
from fhec.passes.validate_levels_ckks import module_params

Arrays = dict[str, np.ndarray]
FILE = "ckks.json"


class CalibrationRangeWarning(UserWarning):
    """Inputs outside the calibrated range: the approximations (and the bound) may not hold."""


class CkksCircuit:
    def __init__(self, module: Module, signature: Signature) -> None:
        params = module_params(module)
        if params is None:
            raise CompileError(
                "the module has no CKKS parameters: it encrypts nothing, or did not go "
                "through select-params-ckks",
                hint="compile with backend='ckks' and at least one encrypted input",
            )
        self.module, self.signature, self.params = module, signature, params
        # Batch layout: one sample per slot, so one run takes up to `slots` samples; the
        # single-sample layout (a period P of slots per sample) takes one.
        self.period = single_period(module)
        self.samples_per_run: int | None = params.slots if self.period is None else 1
        self.context = SealContext(params)
        self.error_bound = error_bounds(module, self.context)
        self.rotations = module_rotations(module)
        self._keys: SecretKeys | None = None
        self._diagonals: dict[tuple[ValueId, int, float], seal.Plaintext] = {}

    # -- the round trip ------------------------------------------------------------
    def keys(self) -> SecretKeys:
        """This circuit's key set, generated on first use."""
        if self._keys is None:
            self._keys = SecretKeys.generate(self.context, self.rotations)
        return self._keys

    def run(self, inputs: Mapping[str, np.ndarray], mode: str = "execute") -> Arrays:
        if mode == "simulate":  # the compiled module in plaintext: approximations, no noise
            from fhec.backends.reference import evaluate

            return evaluate(self.module, inputs)
        if mode != "execute":
            raise InputError(f"unknown run mode {mode!r}", hint="use 'execute' or 'simulate'")
        keys = self.keys()
        encryptor = Encryptor(self.context, keys)
        encrypted = self.encrypt(encryptor, inputs)
        evaluator = Evaluator(self.module, self.context, keys.evaluation, self._diagonals)
        outputs = evaluator.run(encrypted)
        return self.decrypt(encryptor, outputs)

    def encrypt(
        self, encryptor: Encryptor, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, CipherTensor | np.ndarray]:
        """Secret inputs encrypted, public ones as they are (checked against ranges)."""
        graph = self.module.graph
        prepared: dict[str, CipherTensor | np.ndarray] = {}
        for value in self.module.function.inputs:
            node = graph.node(value)
            assert isinstance(node.op, InputOp)
            name = node.op.input_name
            if name not in inputs:
                raise InputError(
                    f"missing input {name!r}", hint=f"expected shape {node.type.shape}"
                )
            array = np.asarray(inputs[name], dtype=node.type.dtype.numpy)
            if array.shape[1:] != node.type.shape[1:]:
                raise InputError(
                    f"input {name!r} has shape {array.shape}, expected (N, *{node.type.shape[1:]})"
                )
            _warn_outside(name, array, node.annotation(Interval))
            if node.type.secret:
                state = node.annotation(CkksState)
                assert state is not None
                prepared[name] = (
                    encrypt_tensor(encryptor, array, state.scale_bits, name)
                    if self.period is None
                    else _encrypt_packed(encryptor, array, state.scale_bits, node, name)
                )
            else:
                prepared[name] = array
        return prepared

    def decrypt(
        self, encryptor: Encryptor, outputs: Mapping[str, CipherTensor | np.ndarray]
    ) -> Arrays:
        """The model's outputs from the server's: decrypted, then the epilogue run."""
        dtypes = {spec.name: spec.dtype.numpy for spec in self.signature.outputs}
        graph = self.module.graph
        shapes = {name: graph.node(v).type.shape for name, v in server_outputs(self.module)}
        result = {}
        for name, value in outputs.items():
            if not isinstance(value, CipherTensor):
                array = value
            elif self.period is None:
                array = decrypt_tensor(encryptor, value)
            else:
                array = decrypt_packed(encryptor, value, shapes[name])
            result[name] = np.asarray(array).astype(dtypes.get(name, np.float32))
        return finish(self.module, result)

    @property
    def server_output_names(self) -> set[str]:
        return {name for name, _ in server_outputs(self.module)}

    # -- facts and files ---------------------------------------------------------
    def report(self) -> dict[str, object]:
        params = self.params
        states = ckks_states(self.module.graph, "ckks")
        return {
            "scheme": "CKKS (SEAL)",
            "layout": "batch" if self.period is None else "single",
            **({} if self.period is None else {"period": self.period}),
            "poly_degree": params.poly_degree,
            "slots": params.slots,
            "coeff_modulus_bits": list(params.coeff_bits),
            "log_q": params.log_q,
            "security_bits": params.security,
            "scale_bits": params.scale_bits,
            "depth": params.depth,
            "levels_used": max((s.level for s in states.values()), default=0),
            "key_bytes": key_sizes(params, len(self.rotations)),
            "galois_keys": len(self.rotations),
            "error_bound": dict(self.error_bound),
            # Finished by the client after decryption, in the clear (split-epilogue-ckks);
            # integer ones (labels) have no bound: compare them by agreement.
            "client_outputs": client_outputs(self.module),
        }

    def to_files(self) -> dict[str, bytes]:
        facts = {
            "format_version": 1,
            "params": params_json(self.params),
            "error_bound": self.error_bound,
        }
        return {FILE: json.dumps(facts, indent=2, sort_keys=True).encode()}


def load_circuit(module: Module, signature: Signature, files: Mapping[str, bytes]) -> CkksCircuit:
    """The circuit saved by `to_files`, checked against its module."""
    circuit = CkksCircuit(module, signature)
    if FILE not in files:
        raise ArtifactError(f"the CKKS artifact has no {FILE}", hint="compile the model again")
    try:
        facts = json.loads(files[FILE])
        saved = facts["params"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"the CKKS artifact's {FILE} is corrupted ({exc})") from None
    if saved != params_json(circuit.params):
        raise ArtifactError(f"the CKKS artifact's {FILE} does not match its module's parameters")
    return circuit


def _encrypt_packed(
    encryptor: Encryptor, array: np.ndarray, scale_bits: int, node: Node, name: str
) -> CipherTensor:
    layout = node.annotation(SingleLayout)
    assert layout is not None
    return encrypt_packed(encryptor, array, scale_bits, layout.period, name, layout.stacked)


def params_json(params: CkksParams) -> dict[str, object]:
    return {
        "poly_degree": params.poly_degree,
        "coeff_bits": list(params.coeff_bits),
        "scale_bits": params.scale_bits,
        "security": params.security,
    }


def key_sizes(params: CkksParams, galois_keys: int = 0) -> dict[str, int]:
    """Bytes of each key as SEAL serializes it uncompressed (headers left out): a key
    is ciphertexts of 2 polynomials of N coefficients over every prime; a key-switching
    key (relinearization, and each Galois key) one per data prime."""
    primes = len(params.coeff_bits)
    polynomial_pair = 2 * params.poly_degree * primes * 8
    return {
        "public": polynomial_pair,
        "relinearization": (primes - 1) * polynomial_pair,
        "galois": galois_keys * (primes - 1) * polynomial_pair,
        "secret": params.poly_degree * primes * 8,
    }


def _warn_outside(name: str, array: np.ndarray, calibrated: Interval | None) -> None:
    if calibrated is None or array.size == 0:
        return
    low, high = float(np.min(array)), float(np.max(array))
    if low < calibrated.lo or high > calibrated.hi:
        warnings.warn(
            f"input {name!r} holds values in [{low:.4g}, {high:.4g}], outside its calibrated "
            f"range [{calibrated.lo:.4g}, {calibrated.hi:.4g}]: the polynomial approximations "
            "hold only on the calibrated ranges, so error_bound may not hold",
            CalibrationRangeWarning,
            stacklevel=3,
        )
