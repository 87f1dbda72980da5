"""The pass framework: pipeline strings, option parsing and its errors, and the promises
run_pipeline checks (verified IR, annotate/validate passes leave the structure alone,
internal errors name the pass)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from fhec.ir.errors import CompileError, FhecError, InternalCompilerError
from fhec.ir.graph import Module
from fhec.ir.interval import Interval
from fhec.ir.location import Location
from fhec.ir.ops.elementwise import NegOp
from fhec.ir.parser import parse_module
from fhec.passes import (
    COMMON_PIPELINE,
    Pass,
    PassContext,
    PassKind,
    make_pass,
    parse_pipeline,
    run_pipeline,
)
from fhec.passes.annotate_ranges import AnnotateRanges
from fhec.passes.annotate_secrecy import AnnotateSecrecy
from fhec.passes.fold_constants import FoldConstants
from fhec.passes.infer_shapes import InferShapes

TEXT = """
module {
  func @main {
    %0 = func.input() {input_name = "x", type = tensor<3xf32>} : tensor<3xf32> loc("x", "Input")
    %1 = nn.relu(%0) : tensor<3xf32> loc("relu0", "Relu")
    return %1 as "y"
  }
}
"""


def module() -> Module:
    return parse_module(TEXT)


# -- pipeline strings -------------------------------------------------------------


def test_parse_pipeline_with_options() -> None:
    passes = parse_pipeline(
        " infer-shapes , annotate-ranges{margin=0.1, input_min=-2} ,"
        "fold-constants{max_elements=64},annotate-secrecy{public=w}"
    )
    assert passes == [
        InferShapes(),
        AnnotateRanges(margin=0.1, input_min=-2.0),
        FoldConstants(max_elements=64),
        AnnotateSecrecy(public="w"),
    ]
    assert isinstance(passes[1], AnnotateRanges) and isinstance(passes[1].input_min, float)


@pytest.mark.parametrize("name", sorted(set(COMMON_PIPELINE)))
def test_spelled_pass_parses_back(name: str) -> None:
    item = make_pass(name)
    assert parse_pipeline(item.spelled()) == [item]


def test_spelled_options_parse_back() -> None:
    item = AnnotateRanges(margin=0.05, input_min=-3.5, input_max=0.25)
    assert item.spelled() == "annotate-ranges{margin=0.05,input_min=-3.5,input_max=0.25}"
    assert parse_pipeline(item.spelled()) == [item]


def test_option_values_with_commas_are_quoted() -> None:
    item = AnnotateSecrecy(public="a,b")
    assert item.spelled() == 'annotate-secrecy{public="a,b"}'
    assert parse_pipeline(item.spelled() + ",infer-shapes") == [item, InferShapes()]


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ("infer-shapes,fold-constnats", "unknown pass 'fold-constnats'; known passes: "),
        ("fold-constants{max_element=3}", "pass 'fold-constants' has no option 'max_element'"),
        ("fold-constants{max_elements=many}", "option max_elements='many': expected an integer"),
        ("fold-constants{max_elements=1.5}", "option max_elements='1.5': expected an integer"),
        ("annotate-ranges{margin=wide}", "option margin='wide': expected a number"),
        ("Fold_Constants", "cannot read pass 'Fold_Constants'; write name or name{opt=value}"),
        ("annotate-ranges{margin}", "pass option 'margin' needs a value; write opt=value"),
    ],
)
def test_pipeline_errors(pipeline: str, message: str) -> None:
    with pytest.raises(FhecError) as raised:
        parse_pipeline(pipeline)
    assert message in str(raised.value)
    assert not isinstance(raised.value, CompileError)


def test_unknown_pass_lists_the_known_ones() -> None:
    with pytest.raises(FhecError) as raised:
        make_pass("canonicalise")
    assert raised.value.hint is not None
    assert all(name in raised.value.hint for name in COMMON_PIPELINE)


# -- run_pipeline's checks -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RenameNode(Pass):
    """Changes a node's location: a structural change whatever the pass's kind."""

    name = "rename-node"
    kind = PassKind.ANNOTATE

    def run(self, module: Module, context: PassContext) -> None:
        value = module.function.outputs[0][1]
        node = module.graph.node(value)
        module.graph.set_node(value, replace(node, location=Location("renamed", "Relu")))


@dataclass(frozen=True, slots=True)
class NegateOutput(Pass):
    """Adds a node in a validate pass."""

    name = "negate-output"
    kind = PassKind.VALIDATE

    def run(self, module: Module, context: PassContext) -> None:
        name, value = module.function.outputs[0]
        node = module.graph.node(value)
        negated = module.graph.add(NegOp(), (value,), node.type, node.location)
        module.function.outputs = [(name, negated)]


@dataclass(frozen=True, slots=True)
class AnnotateZero(Pass):
    """Only annotates: allowed."""

    name = "annotate-zero"
    kind = PassKind.ANNOTATE

    def run(self, module: Module, context: PassContext) -> None:
        for value in module.graph:
            node = module.graph.node(value)
            module.graph.set_node(value, node.with_annotation(Interval(0.0, 0.0)))


@dataclass(frozen=True, slots=True)
class Crash(Pass):
    """A bug in a pass: a KeyError escapes."""

    name = "crash-pass"
    kind = PassKind.TRANSFORM

    def run(self, module: Module, context: PassContext) -> None:
        module.graph.node(12345)


@dataclass(frozen=True, slots=True)
class Mistype(Pass):
    """Leaves a result type that disagrees with the op's type rule."""

    name = "mistype-pass"
    kind = PassKind.TRANSFORM

    def run(self, module: Module, context: PassContext) -> None:
        value = module.function.outputs[0][1]
        node = module.graph.node(value)
        module.graph.set_node(value, replace(node, type=node.type.with_shape((4,))))


@dataclass(frozen=True, slots=True)
class UserMistake(Pass):
    """Raises a user-facing error: it passes through unchanged."""

    name = "user-mistake"
    kind = PassKind.TRANSFORM

    def run(self, module: Module, context: PassContext) -> None:
        raise CompileError("this model is wrong", Location("n0", "Relu"))


@pytest.mark.parametrize("bad", [RenameNode(), NegateOutput()])
def test_annotate_and_validate_passes_must_not_change_the_graph(bad: Pass) -> None:
    with pytest.raises(InternalCompilerError) as raised:
        run_pipeline(module(), [bad])
    assert raised.value.pass_name == bad.name
    assert f"[{bad.name}] a {bad.kind} pass changed the graph" in str(raised.value)


def test_annotate_pass_may_annotate() -> None:
    result = run_pipeline(module(), [AnnotateZero()])
    zero = Interval(0.0, 0.0)
    assert all(result.graph.node(v).annotation(Interval) == zero for v in result.graph)


def test_internal_error_names_the_pass() -> None:
    with pytest.raises(InternalCompilerError) as raised:
        run_pipeline(module(), [InferShapes(), Crash()])
    assert raised.value.pass_name == "crash-pass"
    assert str(raised.value).startswith("internal compiler error: [crash-pass] KeyError")


def test_verifier_after_each_pass_names_the_pass() -> None:
    with pytest.raises(InternalCompilerError) as raised:
        run_pipeline(module(), [Mistype(), InferShapes()])
    assert raised.value.pass_name == "mistype-pass"
    assert "the type rule gives" in str(raised.value)
    # Without verification the next pass repairs the type and nothing is raised.
    repaired = run_pipeline(module(), [Mistype(), InferShapes()], verify_each=False)
    assert repaired == module()


def test_user_errors_pass_through_unwrapped() -> None:
    with pytest.raises(CompileError, match="node 'n0' \\(Relu\\): this model is wrong"):
        run_pipeline(module(), [UserMistake()])


def test_run_pipeline_works_on_a_copy_and_reports_each_pass() -> None:
    original = module()
    seen: list[str] = []
    result = run_pipeline(
        original, [AnnotateZero(), InferShapes()], after_each=lambda p, m: seen.append(p.name)
    )
    assert seen == ["annotate-zero", "infer-shapes"]
    assert original == module()
    assert result != original  # the annotations went on the copy only
