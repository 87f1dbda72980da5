"""The model owner's side of CKKS training: the compiled step and the encrypted weights,
with evaluation keys only. It never imports the client module (a test checks it).

Batches and weights arrive as bytes, checked before use: made under the evaluation keys'
key set, with exactly the names, shapes, scales, levels and sample counts the step
expects.
"""

from __future__ import annotations

import time

from fhec.backends.ckks.evaluator import Evaluator
from fhec.backends.ckks.seal_context import SealContext
from fhec.backends.ckks.serialization import (
    CipherTensor,
    dump_ciphertexts,
    load_ciphertexts,
    load_evaluation_keys,
)
from fhec.ir.errors import InputError
from fhec.ir.graph import Module
from fhec.ir.ops.ckks import CkksState, Replicated
from fhec.ir.ops.core import InputOp
from fhec.passes.validate_levels_ckks import module_params


class TrainingServer:
    """The model owner: the step and the encrypted weights, evaluation keys only."""

    def __init__(self, module: Module, evaluation_keys: bytes, weights: bytes) -> None:
        params = module_params(module)
        assert params is not None
        self.module = module
        self.context = SealContext(params)
        self.keys = load_evaluation_keys(evaluation_keys, self.context)
        self.weight_names = _replicated_inputs(module)
        self.output_names = [name for name, _ in module.function.outputs]
        self.weights = self._checked(weights, self.weight_names)
        self.evaluation_seconds = 0.0  # the step's ciphertext arithmetic, bytes apart

    def step(self, batch: bytes) -> tuple[bytes, bytes | None]:
        """Run one step: (the new weights, the encrypted loss or None) as bytes."""
        inputs = self._checked(batch, set(_input_names(self.module)) - self.weight_names)
        started = time.perf_counter()
        outputs = Evaluator(self.module, self.context, self.keys).run({**inputs, **self.weights})
        self.evaluation_seconds += time.perf_counter() - started
        assert all(isinstance(v, CipherTensor) for v in outputs.values())
        new = {n: v for n, v in outputs.items() if n in self.weight_names}
        losses = {n: v for n, v in outputs.items() if n not in self.weight_names}
        weights = dump_ciphertexts(new, self.context, self.keys.key_id)  # type: ignore[arg-type]
        loss = None
        if losses:
            loss = dump_ciphertexts(losses, self.context, self.keys.key_id)  # type: ignore[arg-type]
        return weights, loss

    def receive_weights(self, weights: bytes) -> None:
        self.weights = self._checked(weights, self.weight_names)

    def current_weights(self) -> bytes:
        return dump_ciphertexts(self.weights, self.context, self.keys.key_id)

    def _checked(self, data: bytes, names: set[str]) -> dict[str, CipherTensor]:
        """The tensors in `data`: exactly `names`, each with the shape, scale, level and
        sample count the step expects (weights: one replicated sample)."""
        tensors, _ = load_ciphertexts(data, self.context, self.keys.key_id)
        if set(tensors) != names:
            raise InputError(f"expected encrypted {sorted(names)}, got {sorted(tensors)}")
        graph = self.module.graph
        for value in self.module.function.inputs:
            node = graph.node(value)
            assert isinstance(node.op, InputOp)
            name = node.op.input_name
            if name not in names:
                continue
            tensor, state = tensors[name], node.annotation(CkksState)
            assert state is not None
            found = (tensor.ciphertexts.shape, tensor.scale_bits, tensor.level, tensor.count)
            planned = (node.type.shape[1:], state.scale_bits, 0, node.type.shape[0])
            if found != planned:
                raise InputError(f"encrypted {name!r} is (shape, scale, level, samples) "
                                 f"{found}, the step expects {planned}")
        return tensors


def _input_names(module: Module) -> list[str]:
    names = []
    for value in module.function.inputs:
        op = module.graph.node(value).op
        assert isinstance(op, InputOp)
        names.append(op.input_name)
    return names



def _replicated_inputs(module: Module) -> set[str]:
    graph = module.graph
    return {
        graph.node(v).op.input_name  # type: ignore[attr-defined]
        for v in module.function.inputs
        if graph.node(v).annotation(Replicated) is not None
    }
