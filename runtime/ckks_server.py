"""The CKKS server: computes on ciphertexts with evaluation keys only.

It never sees a secret key, and never imports the client module (a test checks it).
Ciphertexts and keys arrive as bytes and are checked before use: made for this
module's parameters, under the same key set as the evaluation keys, with the
shapes the module expects.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import seal

from fhec.backends.ckks.evaluator import Evaluator
from fhec.backends.ckks.seal_context import SealContext
from fhec.backends.ckks.serialization import (
    CipherTensor,
    dump_ciphertexts,
    load_ciphertexts,
    load_evaluation_keys,
)
from fhec.ir.errors import CompileError, InputError
from fhec.ir.graph import Module, ValueId
from fhec.ir.ops.ckks import CkksState, SingleLayout
from fhec.ir.ops.core import InputOp
from fhec.passes.validate_levels_ckks import module_params


class CkksServer:
    def __init__(self, module: Module, evaluation_keys: bytes) -> None:
        params = module_params(module)
        if params is None:
            raise CompileError(
                "the module has no CKKS parameters", hint="compile with backend='ckks'"
            )
        self.module = module
        self.context = SealContext(params)
        self.keys = load_evaluation_keys(evaluation_keys, self.context)
        # The single layout's weight diagonals, encoded on the first request and kept
        # for the next ones (as the keys are): they are the weights, not the data.
        self.diagonals: dict[tuple[ValueId, int, float], seal.Plaintext] = {}

    def run(self, encrypted: bytes, public: Mapping[str, np.ndarray] | None = None) -> bytes:
        """The encrypted outputs for the encrypted inputs in `encrypted` (and the public
        inputs, if the model has any, as arrays)."""
        tensors, _ = load_ciphertexts(encrypted, self.context, self.keys.key_id)
        inputs: dict[str, CipherTensor | np.ndarray] = {**self._checked(tensors), **(public or {})}
        outputs = Evaluator(self.module, self.context, self.keys, self.diagonals).run(inputs)
        secret = {name: v for name, v in outputs.items() if isinstance(v, CipherTensor)}
        if len(secret) != len(outputs):
            raise CompileError("a CKKS model's outputs must all depend on its encrypted inputs")
        return dump_ciphertexts(secret, self.context, self.keys.key_id)

    def _checked(self, tensors: dict[str, CipherTensor]) -> dict[str, CipherTensor]:
        graph = self.module.graph
        counts: set[int] = set()
        for value in self.module.function.inputs:
            node = graph.node(value)
            assert isinstance(node.op, InputOp)
            if not node.type.secret:
                continue
            name, state = node.op.input_name, node.annotation(CkksState)
            tensor = tensors.get(name)
            if tensor is None:
                raise InputError(f"the encrypted inputs lack {name!r}")
            assert state is not None, "pack-slots-ckks annotates secret inputs"
            packed = node.annotation(SingleLayout) is not None  # one ciphertext per sample
            planned = (() if packed else node.type.shape[1:], state.scale_bits, 0)
            found = (tensor.ciphertexts.shape, tensor.scale_bits, tensor.level)
            if found != planned:
                raise InputError(
                    f"encrypted input {name!r} is (shape, scale, level) {found}, expected {planned}"
                )
            counts.add(tensor.count)
        if len(counts) > 1 or not all(1 <= c <= self.context.slot_count for c in counts):
            raise InputError(
                f"encrypted inputs hold {sorted(counts)} samples; "
                f"need one count in 1..{self.context.slot_count}"
            )
        return tensors
