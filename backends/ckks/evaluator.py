"""The server's side: run a lowered module on ciphertexts with evaluation keys only.

Values are `CipherTensor`s (secret: one ciphertext per element of a sample, the
samples in the slots), numpy arrays (public values, computed in the clear) or
`_Plain`s (a public tensor to encode at a scale and level, encoded element by
element where a consumer needs it: a 1 MB plaintext per weight is never stored).
A plaintext whose slots would all hold one number is encoded as that scalar
(cheap, no FFT); only a constant that varies along the batch axis is encoded slot
by slot.

Memory: a value is freed as soon as its last user ran, and each expanded polynomial
(an activation: dozens of products and sums) runs one element at a time, so only
one element's intermediate ciphertexts are alive at once. SEAL's memory pool never
returns memory and keeps the peak of every ciphertext size it saw, so this schedule
is what bounds the process's memory (the golden MLP: 1.6 GiB instead of 6).
The nodes after a `ckks.decrypt` are the client's (backends/ckks/epilogue.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import seal

from fhec.backends.ckks.epilogue import client_values, server_outputs
from fhec.backends.ckks.seal_context import RELABEL_DRIFT, EvaluationKeys, SealContext
from fhec.backends.ckks.serialization import CipherTensor
from fhec.backends.ckks.tensors import batch_column
from fhec.backends.progress import progress
from fhec.ir.errors import InputError, InternalCompilerError
from fhec.ir.graph import Graph, Module, ValueId
from fhec.ir.ops import ckks
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.ops.poly import Approximation
from fhec.passes.pack_single_ckks import single_period

# Two ciphertexts that meet in an addition have the scale the compiler planned, but
# the true SEAL scales differ by the primes' distance from powers of two (~1e-7):
# the second is relabeled with the first's scale. A larger gap is our bug.
SCALE_TOLERANCE = 1e-4
Value: TypeAlias = CipherTensor | np.ndarray


@dataclass(frozen=True, slots=True)
class _Plain:
    """A public tensor waiting to be encoded at 2**scale_bits and `level`."""

    array: np.ndarray
    scale_bits: int
    level: int
    by_sample: bool = False  # zeros past the samples (ckks.encode_samples)


class Evaluator:
    def __init__(
        self,
        module: Module,
        context: SealContext,
        keys: EvaluationKeys,
        diagonals: dict[tuple[ValueId, int, float], seal.Plaintext] | None = None,
    ) -> None:
        self.module, self.context, self.keys = module, context, keys
        # The single layout's encoded weight diagonals, by (value, diagonal, scale): a
        # circuit keeps them between runs (server-side precomputation, like the keys).
        self.diagonals = {} if diagonals is None else diagonals
        self.seal = context.evaluator
        self._zero = seal.Encryptor(context.seal, keys.public_key)
        self._layouts: dict[ValueId, np.ndarray] = {}
        self._landings = _landings(module.graph)
        self._landing: tuple[int, int] | None = None  # that of the product being computed
        # The single-sample layout's period (one ciphertext per value), None for batch.
        self.period = single_period(module)
        self._shape: tuple[int, ...] = ()  # the IR shape of the op being computed
        self._value: ValueId | None = None  # and its value (single layout only)

    def run(self, inputs: Mapping[str, Value]) -> dict[str, Value]:
        """Outputs by name, for inputs by name (secret ones as CipherTensors): the
        model's, and those the client finishes (epilogue.server_outputs)."""
        graph = self.module.graph
        client = client_values(graph)  # the client's epilogue: not the server's to run
        order = [v for v in graph.topological_order() if v not in client]
        uses = {v: sum(1 for u, _ in graph.users(v) if u not in client) for v in graph}
        returned = server_outputs(self.module)
        kept = {v for _, v in returned}
        values: dict[ValueId, Value | _Plain] = {}
        regions = _elementwise_regions(graph, kept)
        for value in progress(order, "CKKS evaluation", "op"):
            region = regions.get(value)
            if region is not None and value != region[-1]:
                continue  # computed with the region, element by element, at its end
            if region is None:
                values[value] = self._node(graph, value, values, inputs)
            else:
                values[value] = self._region(graph, region, values, inputs)
            for member in region or (value,):
                for operand in set(graph.operands(member)):  # free what no one needs
                    if operand in values and (region is None or operand not in region):
                        uses[operand] -= graph.operands(member).count(operand)
                        if uses[operand] == 0 and operand not in kept:
                            del values[operand]
        outputs: dict[str, Value] = {}
        for name, value in returned:
            result = values[value]
            assert not isinstance(result, _Plain)
            outputs[name] = result
        return outputs

    def _region(
        self,
        graph: Graph,
        region: tuple[ValueId, ...],
        values: dict[ValueId, Value | _Plain],
        inputs: Mapping[str, Value],
    ) -> Value:
        """An elementwise region (an expanded polynomial: `_elementwise_regions`) run one
        element at a time, so that only one element's intermediate ciphertexts are alive
        at once (SEAL's memory pool keeps the peak of every ciphertext size it saw)."""
        members = set(region)
        outside = {o for v in region for o in graph.operands(v) if o not in members}
        if any(_per_element(values[o]) for o in outside):
            whole_run = dict(values)  # a plaintext varies by element: run it whole
            for value in region:
                whole_run[value] = self._node(graph, value, whole_run, inputs)
            result = whole_run[region[-1]]
            assert not isinstance(result, _Plain)
            return result
        entries = [o for o in outside if isinstance(values[o], CipherTensor)]
        shape = next(values[o].ciphertexts.shape for o in entries)  # type: ignore[union-attr]
        out = np.empty(shape, dtype=object)
        last: CipherTensor | None = None
        for index in np.ndindex(shape):
            local: dict[ValueId, Value | _Plain] = {o: values[o] for o in outside}
            for o in entries:
                whole = values[o]
                assert isinstance(whole, CipherTensor)
                picked = np.broadcast_to(whole.ciphertexts, shape)[index]
                local[o] = CipherTensor(
                    np.full((1,) * len(shape), picked, dtype=object),
                    whole.count,
                    whole.scale_bits,
                    whole.level,
                )
            for value in region:
                local[value] = self._node(graph, value, local, inputs)
            result = local[region[-1]]
            assert isinstance(result, CipherTensor)
            out[index] = result.ciphertexts.flat[0]
            last = result
        assert last is not None
        return CipherTensor(out, last.count, last.scale_bits, last.level)

    def _node(
        self,
        graph: Graph,
        value: ValueId,
        values: dict[ValueId, Value | _Plain],
        inputs: Mapping[str, Value],
    ) -> Value | _Plain:
        node = graph.node(value)
        op = node.op
        args = [values[o] for o in graph.operands(value)]
        if isinstance(op, InputOp):
            if op.input_name not in inputs:
                raise InputError(f"missing input {op.input_name!r}")
            return inputs[op.input_name]
        if isinstance(op, ckks.EncodeOp):
            assert isinstance(args[0], np.ndarray)
            by_sample = isinstance(op, ckks.EncodeSamplesOp)
            return _Plain(args[0], op.scale_bits, op.level, by_sample)
        if not node.type.secret:
            return np.asarray(op.evaluate([a for a in args if isinstance(a, np.ndarray)]))
        if op.name in ckks.LAYOUT_OPS:
            if self.period is not None:  # a reshape or float cast: the same slots
                assert isinstance(args[0], CipherTensor)
                return args[0]
            return self._layout(graph, value, args)
        state = node.annotation(ckks.CkksState)
        if state is None:
            raise InternalCompilerError(
                f"{op.name} at {node.location.describe()} has no #ckks", "ckks"
            )
        method = _METHODS.get(type(op))
        if self.period is not None:
            from fhec.backends.ckks.evaluator_single import SINGLE_METHODS

            method = SINGLE_METHODS.get(type(op), method)
            self._shape, self._value = node.type.shape, value
        if method is None:
            raise InternalCompilerError(f"the CKKS evaluator cannot run {op.name}", "ckks")
        self._landing = self._landings.get(value)
        result = method(self, op, args)
        count = 1 if isinstance(op, ckks.SlotSumOp) else _count(args)
        return CipherTensor(result, count, state.scale_bits, state.level)

    # -- elementwise ops ----------------------------------------------------------
    def _binary(
        self,
        args: list[Value | _Plain],
        combine: Callable[[seal.Ciphertext, seal.Ciphertext], seal.Ciphertext],
        relabel: bool,
    ) -> np.ndarray:
        """Two ciphertext tensors, elementwise; a sum needs equal scales (a product not)."""
        a, b = args
        assert isinstance(a, CipherTensor) and isinstance(b, CipherTensor)
        left, right = np.broadcast_arrays(a.ciphertexts, b.ciphertexts)
        out = np.empty(left.shape, dtype=object)
        for index in np.ndindex(out.shape):
            first, second = left[index], right[index]
            if relabel:
                second = self._rescaled(second, first.scale())
            out[index] = combine(first, second)
        return out

    def _with_plain(
        self,
        args: list[Value | _Plain],
        combine: Callable[[seal.Ciphertext, seal.Plaintext], seal.Ciphertext],
        product: bool,
    ) -> np.ndarray:
        """A ciphertext op with a plaintext: encoded at the ciphertext's true scale for a
        sum (so the scales match exactly), at the planned one for a product."""
        x, plain = args
        assert isinstance(x, CipherTensor) and isinstance(plain, _Plain)
        array = _fit_batch(plain.array, len(x.shape), x.count)
        shape = np.broadcast_shapes(x.shape, array.shape)
        cts = np.broadcast_to(x.ciphertexts, shape[1:])
        slots = np.broadcast_to(array, shape)
        out = np.empty(shape[1:], dtype=object)
        cache: dict[float, seal.Plaintext] = {}
        for index in np.ndindex(out.shape):
            ct = cts[index]
            scale = self._plain_scale(plain, ct) if product else ct.scale()
            column = batch_column(slots, index)
            encoded = (
                self.context.encode(column, scale, plain.level)
                if plain.by_sample
                else self._encode(column, scale, plain.level, cache)
            )
            if encoded is not None:
                out[index] = combine(ct, encoded)
            else:  # x * 0 is a fresh zero; x + 0 is x
                out[index] = self._zero_product(ct, scale) if product else ct
        return out

    def _encode(
        self, column: np.ndarray, scale: float, level: int, cache: dict[float, seal.Plaintext]
    ) -> seal.Plaintext | None:
        """The plaintext for one element's slots; None when it encodes to zero (SEAL
        refuses products with an all-zero plaintext)."""
        first = float(column.flat[0])
        if np.all(column == first):
            if abs(first) * scale < 0.5:
                return None
            if first not in cache:
                cache[first] = self.context.encode(first, scale, level)
            return cache[first]
        return self.context.encode(column, scale, level)

    def _zero_product(self, ct: seal.Ciphertext, plain_scale: float) -> seal.Ciphertext:
        zero = self._zero.encrypt_zero(ct.parms_id())
        zero.scale(ct.scale() * plain_scale)
        return zero

    def _level(self, ct: seal.Ciphertext) -> int:
        return self.context.level_of(ct.parms_id())

    def _plain_scale(self, plain: _Plain, ct: seal.Ciphertext) -> float:
        """The planned scale of a plaintext factor; for a product bound for a modulus
        switch (see `_landings`), the one that makes the product, once rescaled, land on
        the planned scale of the level it is switched to: the switch then only drops
        primes, and no correcting product and rescale are needed."""
        if self._landing is None:
            return self.context.canonical_scale(plain.scale_bits, plain.level)
        level, bits = self._landing
        prime = self.context.rescale_prime(plain.level)
        return self.context.canonical_scale(bits, level) * prime / float(ct.scale())

    def _mod_switch(self, ct: seal.Ciphertext, levels: int, bits: int) -> seal.Ciphertext:
        """Down `levels` levels, landing on the planned scale of the new level: when
        the scale is within RELABEL_DRIFT of that one, by dropping primes and relabeling;
        otherwise the first level goes by a product with 1 encoded at t * q / s (s the
        scale now, t the one planned below, q the prime dropped) and a rescale, the rest
        by dropping primes."""
        start = self._level(ct)
        end = start + levels
        target = self.context.canonical_scale(bits, end)
        planned = self.context.switch_drift(bits, start, end) is not None
        if planned and abs(ct.scale() / target - 1.0) < RELABEL_DRIFT:
            # Scales a few primes' drift apart: drop the primes and relabel (the error
            # model counts the drift); a correcting product would cost a rescale (NTTs).
            ct = self.seal.mod_switch_to(ct, self.context.parms_id(end))
            ct.scale(target)
            return ct
        if abs(ct.scale() / target - 1.0) > 1e-12:
            factor = target * self.context.rescale_prime(start) / ct.scale()
            one = self.context.encode(1.0, factor, start)
            ct = self.seal.rescale_to_next(self.seal.multiply_plain(ct, one))
        if self._level(ct) < end:
            ct = self.seal.mod_switch_to(ct, self.context.parms_id(end))
        ct.scale(target)  # a new ciphertext either way; equal to the last bits of a double
        return ct

    def _rescaled(self, ct: seal.Ciphertext, scale: float) -> seal.Ciphertext:
        """`ct` labeled with `scale` (a copy), where the true scales differ by drift only."""
        if ct.scale() == scale:
            return ct
        if abs(ct.scale() / scale - 1.0) > SCALE_TOLERANCE:
            raise InternalCompilerError(
                f"scales {ct.scale():.6g} and {scale:.6g} meet in an addition", "ckks"
            )
        copy = seal.Ciphertext(ct)
        copy.scale(scale)
        return copy

    def _matmul(self, op: ckks.MatMulPlainOp, args: list[Value | _Plain]) -> np.ndarray:
        x, plain = args
        assert isinstance(x, CipherTensor) and isinstance(plain, _Plain)
        weights = np.asarray(plain.array, dtype=np.float64)
        scale = self._plain_scale(plain, x.ciphertexts.flat[0])
        out = np.empty((*x.ciphertexts.shape[:-1], weights.shape[1]), dtype=object)
        for index in np.ndindex(out.shape):
            row, column = index[:-1], index[-1]
            total = None
            for k, weight in enumerate(weights[:, column]):
                if abs(weight) * scale < 0.5:
                    continue  # a zero weight adds nothing (and SEAL refuses zero plaintexts)
                term = self.seal.multiply_plain(
                    x.ciphertexts[(*row, k)], self.context.encode(float(weight), scale, plain.level)
                )
                if total is None:
                    total = term
                else:
                    self.seal.add_inplace(total, term)
            out[index] = (
                total if total is not None else self._zero_product(x.ciphertexts[(*row, 0)], scale)
            )
        return out

    def _unary(
        self, args: list[Value | _Plain], apply: Callable[[seal.Ciphertext], seal.Ciphertext]
    ) -> np.ndarray:
        x = args[0]
        assert isinstance(x, CipherTensor)
        out = np.empty(x.ciphertexts.shape, dtype=object)
        for index in np.ndindex(out.shape):
            out[index] = apply(x.ciphertexts[index])
        return out

    # -- layout ops ------------------------------------------------------------------
    def _layout(self, graph: Graph, value: ValueId, args: list[Value | _Plain]) -> CipherTensor:
        """Ciphertexts moved as the op moves one sample's elements (found once by running
        the op on element numbers)."""
        secret = [a for a in args if isinstance(a, CipherTensor)]
        if value not in self._layouts:
            self._layouts[value] = _layout_map(graph, value)
        pool = np.concatenate([a.ciphertexts.reshape(-1) for a in secret])
        moved = pool[self._layouts[value]]
        if not isinstance(moved, np.ndarray):  # one element, to a per-sample shape ()
            moved = np.full((), moved, dtype=object)
        count = max(a.count for a in secret)
        return CipherTensor(moved, count, secret[0].scale_bits, secret[0].level)


def _layout_map(graph: Graph, value: ValueId) -> np.ndarray:
    node = graph.node(value)
    ids: list[np.ndarray] = []
    offset = 0
    for operand in graph.operands(value):
        kind = graph.node(operand)
        if not kind.type.secret:
            assert isinstance(kind.op, ConstantOp)
            ids.append(kind.op.value.array)
            continue
        per_sample = int(np.prod(kind.type.shape[1:], dtype=np.int64))
        row = offset + np.arange(per_sample, dtype=np.int64)
        ids.append(np.broadcast_to(row, (kind.type.shape[0], per_sample)).reshape(kind.type.shape))
        offset += per_sample
    moved = ids[0] if node.op.name == "tensor.cast" else node.op.evaluate(ids)
    return np.asarray(np.asarray(moved).astype(np.int64)[0])


ELEMENTWISE = (
    ckks.AddOp, ckks.SubOp, ckks.MulOp, ckks.AddPlainOp, ckks.SubPlainOp, ckks.MulPlainOp,
    ckks.NegateOp, ckks.RescaleOp, ckks.RelinearizeOp, ckks.ModSwitchOp,
)  # fmt: skip


def _elementwise_regions(graph: Graph, kept: set[ValueId]) -> dict[ValueId, tuple[ValueId, ...]]:
    """Expanded polynomials (the `#approx` node and the secret nodes at its location it
    is computed from, in order) made of elementwise ops only, whose values no one
    outside them reads but the last: member -> the region's members."""
    found: dict[ValueId, tuple[ValueId, ...]] = {}
    order = {v: i for i, v in enumerate(graph.topological_order())}
    for value in graph:
        node = graph.node(value)
        if node.annotation(Approximation) is None:
            continue
        members: set[ValueId] = set()
        stack = [value]
        while stack:
            current = stack.pop()
            if current not in members:
                members.add(current)
                stack.extend(
                    o
                    for o in graph.operands(current)
                    if graph.node(o).type.secret and graph.node(o).location == node.location
                )
        inner = members - {value}
        if any(not isinstance(graph.node(v).op, ELEMENTWISE) for v in members) or any(
            v in kept or any(u not in members for u, _ in graph.users(v)) for v in inner
        ):
            continue
        region = tuple(sorted(members, key=order.__getitem__))
        for member in region:
            found[member] = region
    return found


def _per_element(value: Value | _Plain) -> bool:
    """A public operand whose numbers differ between elements (not a scalar)."""
    if isinstance(value, CipherTensor):
        return False
    array = value.array if isinstance(value, _Plain) else value
    return bool(np.asarray(array).size != 1)


def _landings(graph: Graph) -> dict[ValueId, tuple[int, int]]:
    """Products (by a plaintext) bound for a modulus switch: product -> (level, scale
    bits) the switch brings it to. The chain is product, rescale, then ops that keep the
    scale (plaintext sums, negation, relinearization), each the only user of the last."""
    found: dict[ValueId, tuple[int, int]] = {}
    for value in graph:
        node = graph.node(value)
        state = node.annotation(ckks.CkksState)
        if not isinstance(node.op, ckks.ModSwitchOp) or state is None:
            continue
        source = graph.operands(value)[0]
        while isinstance(graph.node(source).op, _SCALE_KEEPING) and _only_user(graph, source):
            source = graph.operands(source)[0]
        if not (isinstance(graph.node(source).op, ckks.RescaleOp) and _only_user(graph, source)):
            continue
        product = graph.operands(source)[0]
        products = (ckks.MulPlainOp, ckks.MatMulPlainOp)
        if isinstance(graph.node(product).op, products) and _only_user(graph, product):
            found[product] = (state.level, state.scale_bits)
    return found


_SCALE_KEEPING = (ckks.AddPlainOp, ckks.SubPlainOp, ckks.NegateOp, ckks.RelinearizeOp)


def _only_user(graph: Graph, value: ValueId) -> bool:
    return len(graph.users(value)) == 1


def _fit_batch(array: np.ndarray, rank: int, count: int) -> np.ndarray:
    """A plaintext operand for `count` samples: one compiled for a batch of B > count
    samples (varying along the batch axis) keeps its first `count` rows."""
    if array.ndim == rank and array.shape[0] not in (1, count):
        if array.shape[0] < count:
            raise InputError(
                f"a constant varies over a batch of {array.shape[0]}: "
                f"{count} samples cannot use it",
                hint=f"run at most {array.shape[0]} samples at once",
            )
        return array[:count]
    return array


def _count(args: list[Value | _Plain]) -> int:
    """Samples in a result: those of its batched operands (replicated ones hold 1)."""
    return max(a.count for a in args if isinstance(a, CipherTensor))


Method = Callable[[Evaluator, Any, list[Value | _Plain]], np.ndarray]


def _add(ev: Evaluator, op: ckks.AddOp, args: list[Value | _Plain]) -> np.ndarray:
    return ev._binary(args, ev.seal.add, relabel=True)


def _sub(ev: Evaluator, op: ckks.SubOp, args: list[Value | _Plain]) -> np.ndarray:
    return ev._binary(args, ev.seal.sub, relabel=True)


def _mul(ev: Evaluator, op: ckks.MulOp, args: list[Value | _Plain]) -> np.ndarray:
    return ev._binary(args, ev.seal.multiply, relabel=False)


def _add_plain(ev: Evaluator, op: ckks.AddPlainOp, args: list[Value | _Plain]) -> np.ndarray:
    return ev._with_plain(args, ev.seal.add_plain, product=False)


def _sub_plain(ev: Evaluator, op: ckks.SubPlainOp, args: list[Value | _Plain]) -> np.ndarray:
    return ev._with_plain(args, ev.seal.sub_plain, product=False)


def _mul_plain(ev: Evaluator, op: ckks.MulPlainOp, args: list[Value | _Plain]) -> np.ndarray:
    return ev._with_plain(args, ev.seal.multiply_plain, product=True)


def _matmul_plain(ev: Evaluator, op: ckks.MatMulPlainOp, args: list[Value | _Plain]) -> np.ndarray:
    return ev._matmul(op, args)


def _negate(ev: Evaluator, op: ckks.NegateOp, args: list[Value | _Plain]) -> np.ndarray:
    return ev._unary(args, ev.seal.negate)


def _rescale(ev: Evaluator, op: ckks.RescaleOp, args: list[Value | _Plain]) -> np.ndarray:
    return ev._unary(args, ev.seal.rescale_to_next)


def _relinearize(ev: Evaluator, op: ckks.RelinearizeOp, args: list[Value | _Plain]) -> np.ndarray:
    return ev._unary(args, lambda ct: ev.seal.relinearize(ct, ev.keys.relin_keys))


def _mod_switch(ev: Evaluator, op: ckks.ModSwitchOp, args: list[Value | _Plain]) -> np.ndarray:
    x = args[0]
    assert isinstance(x, CipherTensor)
    return ev._unary(args, lambda ct: ev._mod_switch(ct, op.levels, x.scale_bits))


def _reduce_add(ev: Evaluator, op: ckks.ReduceAddOp, args: list[Value | _Plain]) -> np.ndarray:
    x = args[0]
    assert isinstance(x, CipherTensor)
    axes = tuple(a - 1 for a in op.axes)  # the ciphertext array has no batch axis
    cts = x.ciphertexts
    shape = tuple(1 if i in axes else d for i, d in enumerate(cts.shape)
                  if op.keepdims or i not in axes)
    out = np.empty(shape, dtype=object)
    kept = [i for i in range(cts.ndim) if i not in axes]
    for index in np.ndindex(tuple(cts.shape[i] for i in kept)):
        key: list[slice | int] = [slice(None)] * cts.ndim
        for axis, position in zip(kept, index, strict=True):
            key[axis] = position
        terms = list(np.asarray(cts[tuple(key)], dtype=object).reshape(-1))
        total = terms[0]
        for term in terms[1:]:
            total = ev.seal.add(total, ev._rescaled(term, total.scale()))
        target = index if not op.keepdims else tuple(
            0 if i in axes else index[kept.index(i)] for i in range(cts.ndim))
        out[target] = total
    return out


def _slot_sum(ev: Evaluator, op: ckks.SlotSumOp, args: list[Value | _Plain]) -> np.ndarray:
    """Rotate-and-sum: after the rotations by 1, 2, ..., slots/2 every slot holds the
    sum of all of them."""
    galois = ev.keys.galois_keys
    if galois is None:
        raise InputError("the evaluation keys hold no Galois keys, and this circuit rotates",
                         hint="generate the keys for this compiled circuit")
    steps = ckks.SlotSumOp.rotation_steps(ev.context.slot_count)

    def total(ct: seal.Ciphertext) -> seal.Ciphertext:
        for step in steps:
            ct = ev.seal.add(ct, ev.seal.rotate_vector(ct, step, galois))
        return ct

    return ev._unary(args, total)


_METHODS: dict[type, Method] = {
    ckks.ReduceAddOp: _reduce_add,
    ckks.SlotSumOp: _slot_sum,
    ckks.AddOp: _add,
    ckks.SubOp: _sub,
    ckks.MulOp: _mul,
    ckks.AddPlainOp: _add_plain,
    ckks.SubPlainOp: _sub_plain,
    ckks.MulPlainOp: _mul_plain,
    ckks.MatMulPlainOp: _matmul_plain,
    ckks.NegateOp: _negate,
    ckks.RescaleOp: _rescale,
    ckks.RelinearizeOp: _relinearize,
    ckks.ModSwitchOp: _mod_switch,
}
