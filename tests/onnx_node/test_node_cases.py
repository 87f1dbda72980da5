"""ONNX's own node test cases, through the reference backend, for every supported op.

A case either matches ONNX's expected outputs (rtol 1e-4, atol 1e-5), or fails to
compile with a clear CompileError and is listed, with the reason, in
`expected_unsupported/<OpType>.txt` ("case_name: reason" per line). An unlisted
compile failure, a listed case that now compiles, or a wrong number fails the test.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import fhec
from fhec.frontend.registry import supported_ops

HERE = Path(__file__).parent

# Cases whose expected outputs ONNX stores rounded, with the (rtol, atol) they can meet.
ROUNDED_REFERENCE_DATA = {
    # expected values written with 4 significant digits (0.1511 for 0.151056)
    "test_averagepool_2d_ceil_last_window_starts_on_pad": (1e-3, 1e-5),
}


def _expected_unsupported(op_type: str) -> dict[str, str]:
    path = HERE / "expected_unsupported" / f"{op_type}.txt"
    if not path.exists():
        return {}
    entries = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition(":")
            entries[name.strip()] = reason.strip()
    return entries


def _cases() -> list[object]:
    """Every node case whose graph uses only supported ops (expanded function bodies
    included), filed under the op type of its first node."""
    from onnx.backend.test.case.node import collect_testcases

    op_types = {e.op_type for e in supported_ops() if e.domain == ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)  # one call: onnx accumulates into a global list
    params, seen = [], set()
    for case in cases:
        ops = [n.op_type for n in case.model.graph.node]
        if case.name in seen or not ops or not set(ops) <= op_types:
            continue
        seen.add(case.name)
        params.append(pytest.param(ops[0], case, id=case.name))
    return params


def _array(value: object) -> np.ndarray:
    """A data-set entry as an array: ONNX stores some (the Cast cases) as TensorProtos."""
    from onnx import TensorProto, numpy_helper

    return numpy_helper.to_array(value) if isinstance(value, TensorProto) else np.asarray(value)


@pytest.mark.parametrize(("op_type", "case"), _cases())
def test_node_case(op_type: str, case: object) -> None:
    model = case.model  # type: ignore[attr-defined]
    unsupported = _expected_unsupported(op_type)
    initializers = {t.name for t in model.graph.initializer}
    input_names = [i.name for i in model.graph.input if i.name not in initializers]
    output_names = [o.name for o in model.graph.output]
    try:
        compiled = fhec.compile(model, backend="reference")
    except fhec.CompileError as exc:
        assert case.name in unsupported, f"unexpected CompileError: {exc}"  # type: ignore[attr-defined]
        return
    except fhec.FhecError as exc:
        assert case.name in unsupported, f"unexpected error: {exc}"  # type: ignore[attr-defined]
        return
    assert case.name not in unsupported, "listed as unsupported but compiles: update the list"  # type: ignore[attr-defined]
    rtol, atol = ROUNDED_REFERENCE_DATA.get(case.name, (1e-4, 1e-5))  # type: ignore[attr-defined]
    for inputs, expected in case.data_sets:  # type: ignore[attr-defined]
        feed = {name: _array(value) for name, value in zip(input_names, inputs, strict=True)}
        got = compiled.run(feed)
        for name, want in zip(output_names, expected, strict=True):
            want = _array(want)
            np.testing.assert_allclose(
                np.asarray(got[name], dtype=np.float64),
                want.astype(np.float64),
                rtol=rtol,
                atol=atol,
                err_msg=f"output {name!r}",
            )
            assert np.asarray(got[name]).shape == want.shape
