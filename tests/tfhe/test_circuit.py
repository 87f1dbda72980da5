"""The TFHE circuit with real concrete: three-way agreement, the report, artifacts,
the client/server split, and the errors a user can meet."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tfhe_helpers import build, one_by_one, samples

from fhec.backends.tfhe import TFHE_BACKEND
from fhec.ir.errors import ArtifactError, CompileError, FhecError, InputError

HELD_OUT = {"x": samples(20, seed=11)}
# Exact rounding: the circuit computes the integer module bit for bit.
EXACT = {"quantize_tfhe": "bits=4", "round_accumulators": "bits=5,approximate=false,max_bits=0"}


@pytest.fixture(scope="module")
def exact(toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]) -> tuple[object, object]:
    return build(toy, toy_calibration, **EXACT)


@pytest.fixture(scope="module")
def approximate(
    toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> tuple[object, object]:
    return build(
        toy, toy_calibration, quantize_tfhe="bits=4", round_accumulators="bits=5,max_bits=0"
    )


def test_reference_simulate_and_execute_agree_exactly(exact: tuple[object, object]) -> None:
    lowered, circuit = exact
    reference = lowered.run(HELD_OUT)["y"]  # type: ignore[attr-defined]
    simulated = one_by_one(circuit, HELD_OUT, "simulate", 20)["y"]
    np.testing.assert_array_equal(simulated, reference)
    executed = one_by_one(circuit, HELD_OUT, "execute", 2)["y"]  # real keys and encryption
    np.testing.assert_array_equal(executed, reference[:2])


def test_approximate_rounding_costs_one_bootstrap_per_lookup(
    approximate: tuple[object, object], exact: tuple[object, object]
) -> None:
    report = approximate[1].report()  # type: ignore[attr-defined]
    assert report["lookups"] == 6  # one per channel of the hidden layer
    assert report["programmable_bootstraps"] == 6
    exact_report = exact[1].report()  # type: ignore[attr-defined]
    assert exact_report["programmable_bootstraps"] > 6  # and one per rounded bit
    # Concrete's noise can land an approximate rounding one step off near a cell's
    # middle (about 1 lookup in 10 at 5 bits): close to the reference, not equal.
    lowered, circuit = approximate
    reference = lowered.run(HELD_OUT)["y"]  # type: ignore[attr-defined]
    difference = np.abs(one_by_one(circuit, HELD_OUT, "simulate", 20)["y"] - reference)
    assert difference.mean() < 0.2 and difference.max() < 1.5  # outputs are about 0.5


def test_the_report_holds_concretes_statistics_and_the_ir_widths(
    approximate: tuple[object, object],
) -> None:
    report = approximate[1].report()  # type: ignore[attr-defined]
    json.dumps(report)  # JSON-able, for fhec compile --json
    assert report["scheme"].startswith("TFHE (concrete-python 2.11")
    assert report["max_lookup_bits"] <= 5 and report["max_bit_width"] >= 8
    assert re.fullmatch(
        r"node 'act0' \(Relu\): 6 x [45]-bit, \d low bits rounded off", report["lookup_layers"][0]
    )
    assert report["encrypted_inputs"] == ["node 'gemm0' (Gemm): 4 bits"]
    assert all(size > 0 for size in report["key_bytes"].values())
    assert report["complexity"] > 0 and 0 < report["p_error"] <= report["global_p_error"] <= 1e-5
    assert report["concrete"]["max_integer_bit_width"] == report["max_bit_width"]
    assert report["config"] == {
        "p_error": None,
        "global_p_error": 1e-5,
        "compress_evaluation_keys": True,
        "security_level": 128,
    }


def test_the_artifact_files_load_and_compute_the_same(exact: tuple[object, object]) -> None:
    lowered, circuit = exact
    files = circuit.to_files()  # type: ignore[attr-defined]
    assert sorted(files) == ["circuit.mlir", "client_specs.json", "tfhe.json"]
    loaded = TFHE_BACKEND.load(lowered.module, lowered.signature, files)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(
        one_by_one(loaded, HELD_OUT, "simulate", 5)["y"],
        one_by_one(circuit, HELD_OUT, "simulate", 5)["y"],
    )
    assert loaded.report() == circuit.report()  # type: ignore[attr-defined]


def _corrupt(files: dict[str, bytes], name: str, data: bytes | None) -> dict[str, bytes]:
    edited = dict(files)
    if data is None:
        del edited[name]
    else:
        edited[name] = data
    return edited


def test_corrupted_artifacts_are_refused(
    exact: tuple[object, object], approximate: tuple[object, object]
) -> None:
    lowered, circuit = exact
    files = circuit.to_files()  # type: ignore[attr-defined]
    other = approximate[1].to_files()  # type: ignore[attr-defined]
    header = json.loads(files["tfhe.json"])
    cases = {
        "lacks circuit.mlir": _corrupt(files, "circuit.mlir", None),
        "not JSON": _corrupt(files, "tfhe.json", b"{oops"),
        "format version 9": _corrupt(
            files, "tfhe.json", json.dumps({**header, "format_version": 9}).encode()
        ),
        "does not compile": _corrupt(files, "circuit.mlir", b"module { garbage }"),
        "does not give its client_specs.json": _corrupt(
            files, "circuit.mlir", other["circuit.mlir"]
        ),
        "corrupted": _corrupt(files, "client_specs.json", b"[]"),
    }
    for expected, edited in cases.items():
        with pytest.raises(ArtifactError, match=expected):
            TFHE_BACKEND.load(lowered.module, lowered.signature, edited)  # type: ignore[attr-defined]


def test_inputs_the_calibration_did_not_cover_are_refused(exact: tuple[object, object]) -> None:
    _, circuit = exact
    far = {"x": HELD_OUT["x"][:1] * 10}
    with pytest.raises(InputError, match=r"input 'x' holds .* far outside the range .* calibrated"):
        circuit.run(far, "simulate")  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="unknown run mode"):
        circuit.run(HELD_OUT, "fast")  # type: ignore[attr-defined]


def test_unknown_or_invalid_backend_options_are_refused(
    toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> None:
    with pytest.raises(FhecError, match="no option 'p_eror'"):
        build(toy, toy_calibration, {"p_eror": 0.1}, **EXACT)
    with pytest.raises(FhecError, match=r"p_error=2\.0 must lie strictly between 0 and 1"):
        build(toy, toy_calibration, {"p_error": 2.0}, **EXACT)


def test_accumulators_too_wide_for_any_parameters_name_the_layer() -> None:
    features = 2048  # 16-bit inputs times 16-bit weights over 2048 terms: 43 bits
    weights = numpy_helper.from_array(np.ones((features, 2), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="wide")],
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    calibration = {"x": np.random.default_rng(0).uniform(0, 1, (8, features)).astype(np.float32)}
    with pytest.raises(CompileError) as caught:
        build(model, calibration, quantize_tfhe="bits=16")
    message = str(caught.value)
    assert message.startswith("node 'wide' (Gemm): concrete cannot compile this circuit")
    assert "43-bit" in message and "fewer bits" in message


# -- client and server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice(exact: tuple[object, object]) -> object:
    from fhec.runtime.tfhe_client import TfheClient

    lowered, circuit = exact
    files = circuit.to_files()  # type: ignore[attr-defined]
    return TfheClient(lowered.module, lowered.signature, files)  # type: ignore[attr-defined]


def test_client_and_server_split_computes_the_same(
    exact: tuple[object, object], alice: object
) -> None:
    from fhec.runtime.tfhe_client import TfheClient
    from fhec.runtime.tfhe_server import TfheServer

    lowered, circuit = exact
    files = circuit.to_files()  # type: ignore[attr-defined]
    client = alice
    server = TfheServer(files, client.evaluation_keys())  # type: ignore[attr-defined]
    first = {"x": HELD_OUT["x"][:1]}
    reply = server.run(client.encrypt(first))  # type: ignore[attr-defined]
    expected = lowered.run(first)["y"]  # type: ignore[attr-defined]
    np.testing.assert_array_equal(client.decrypt(reply)["y"], expected)  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="no pending request"):
        client.decrypt(reply)  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="one batch of 1 sample"):
        client.encrypt({"x": HELD_OUT["x"][:2]})  # type: ignore[attr-defined]

    # keys travel as concrete's bytes: a second client on the same keys decrypts alike
    keys = client.secret_keys()  # type: ignore[attr-defined]
    again = TfheClient(lowered.module, lowered.signature, files, keys=keys)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(again.decrypt(server.run(again.encrypt(first)))["y"], expected)


def test_client_and_server_refuse_what_is_not_theirs(
    exact: tuple[object, object], approximate: tuple[object, object], alice: object
) -> None:
    from fhec.runtime.tfhe_client import TfheClient
    from fhec.runtime.tfhe_server import TfheServer

    lowered, circuit = exact
    files = circuit.to_files()  # type: ignore[attr-defined]
    request = alice.encrypt({"x": HELD_OUT["x"][:1]})  # type: ignore[attr-defined]
    keys = alice.evaluation_keys()  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="not an fhec message"):
        TfheServer(files, keys).run(b"not a message")
    with pytest.raises(InputError, match="belong to another circuit"):
        TfheServer(approximate[1].to_files(), keys).run(request)  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="not concrete evaluation keys"):
        TfheServer(files, b"garbage")
    with pytest.raises(InputError, match="not a concrete key set"):
        TfheClient(lowered.module, lowered.signature, files, keys=b"garbage")  # type: ignore[attr-defined]
    with pytest.raises(ArtifactError, match=r"client_specs\.json is corrupted"):
        TfheClient(lowered.module, lowered.signature, {**files, "client_specs.json": b"{"})  # type: ignore[attr-defined]


def test_a_server_refuses_inputs_under_other_keys(
    exact: tuple[object, object], alice: object
) -> None:
    from fhec.runtime.tfhe_client import TfheClient
    from fhec.runtime.tfhe_server import TfheServer

    lowered, circuit = exact
    files = circuit.to_files()  # type: ignore[attr-defined]
    mallory = TfheClient(lowered.module, lowered.signature, files)  # type: ignore[attr-defined]
    server = TfheServer(files, alice.evaluation_keys())  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="under other keys than the evaluation keys"):
        server.run(mallory.encrypt({"x": HELD_OUT["x"][:1]}))
    reply = TfheServer(files, mallory.evaluation_keys()).run(
        mallory.encrypt({"x": HELD_OUT["x"][:1]})
    )
    with pytest.raises(InputError, match="under other keys"):
        alice.decrypt(reply)  # type: ignore[attr-defined]


def test_the_server_module_never_imports_the_client_side() -> None:
    code = (
        "import sys, fhec.runtime.tfhe_server\n"
        "print(sorted(m for m in sys.modules if m.startswith('fhec')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = result.stdout
    assert "fhec.runtime.tfhe_server" in loaded
    for module in (
        "fhec.runtime.tfhe_client",
        "fhec.backends.tfhe.keys",
        "fhec.backends.tfhe.codec",
        "fhec.backends.tfhe.circuit",
    ):
        assert module not in loaded, module


def test_building_needs_the_tfhe_pipeline_and_calibration(
    toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> None:
    import fhec

    plain = fhec.compile(toy, calibration=toy_calibration)  # the reference pipeline
    with pytest.raises(CompileError, match="no encrypted integer input"):
        TFHE_BACKEND.build(plain.module, plain.signature, {"calibration": []})
    lowered, _ = build(toy, toy_calibration, **EXACT)
    with pytest.raises(CompileError, match="needs calibration data to compile"):
        TFHE_BACKEND.build(lowered.module, lowered.signature, {})  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"compress_evaluation_keys": "yes"}, "keys='yes': expected true or false"),
        ({"compress_evaluation_keys": 1}, "must be true or false"),
        ({"security_level": 80}, "128 or 132"),
        ({"global_p_error": 0.0}, "strictly between 0 and 1"),
    ],
)
def test_backend_option_values_are_checked(
    option: dict[str, object], message: str, exact: tuple[object, object]
) -> None:
    lowered, _ = exact
    with pytest.raises(FhecError, match=message):
        TFHE_BACKEND.build(lowered.module, lowered.signature, option)  # type: ignore[attr-defined]


def test_an_artifact_for_another_module_or_without_its_facts_is_refused(
    exact: tuple[object, object],
) -> None:
    from tfhe_helpers import golden

    _, circuit = exact
    files = circuit.to_files()  # type: ignore[attr-defined]
    model, _, _, calibration = golden("logreg_breast_cancer")
    other, _ = build(model, calibration)
    with pytest.raises(ArtifactError, match=r"circuit inputs do not match its module\.ir"):
        TFHE_BACKEND.load(other.module, other.signature, files)  # type: ignore[attr-defined]
    header = json.loads(files["tfhe.json"])
    del header["statistics"]
    with pytest.raises(ArtifactError, match="lacks its config or statistics"):
        TFHE_BACKEND.load(
            other.module,
            other.signature,  # type: ignore[attr-defined]
            {**files, "tfhe.json": json.dumps(header).encode()},
        )


def test_messages_of_the_wrong_kind_or_with_garbage_values_are_refused(
    exact: tuple[object, object], alice: object
) -> None:
    from fhec.backends.tfhe.files import Message
    from fhec.runtime.tfhe_client import TfheClient
    from fhec.runtime.tfhe_server import TfheServer

    lowered, circuit = exact
    files = circuit.to_files()  # type: ignore[attr-defined]
    server = TfheServer(files, alice.evaluation_keys())  # type: ignore[attr-defined]
    reply = server.run(alice.encrypt({"x": HELD_OUT["x"][:1]}))  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="expected encrypted inputs, got 'outputs'"):
        server.run(reply)
    parsed = Message.from_bytes(reply, "outputs")
    garbage = Message("inputs", parsed.program, parsed.keys, "r", (b"garbage",)).to_bytes()
    with pytest.raises(InputError, match="encrypted inputs are not concrete values"):
        server.run(garbage)
    pending = alice.encrypt({"x": HELD_OUT["x"][:1]})  # type: ignore[attr-defined]
    request = Message.from_bytes(pending, "inputs").request
    bad_reply = Message("outputs", parsed.program, parsed.keys, request, (b"garbage",))
    with pytest.raises(InputError, match="encrypted outputs are not concrete values"):
        alice.decrypt(bad_reply.to_bytes())  # type: ignore[attr-defined]
    without_specs = {k: v for k, v in files.items() if k != "client_specs.json"}
    with pytest.raises(ArtifactError, match=r"lacks client_specs\.json"):
        TfheClient(lowered.module, lowered.signature, without_specs)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def convolutional() -> tuple[object, object, dict[str, np.ndarray]]:
    from tfhe_helpers import conv_model

    calibration = {"x": samples(64, features=36).reshape(64, 1, 6, 6)}
    held_out = {"x": samples(10, features=36, seed=5).reshape(10, 1, 6, 6)}
    lowered, circuit = build(conv_model(pads=1), calibration, **EXACT)
    return lowered, circuit, held_out


def test_a_convolutional_model_simulates_exactly(
    convolutional: tuple[object, object, dict[str, np.ndarray]],
) -> None:
    lowered, circuit, held_out = convolutional
    reference = lowered.run(held_out)["y"]  # type: ignore[attr-defined]
    np.testing.assert_array_equal(one_by_one(circuit, held_out, "simulate", 10)["y"], reference)
    assert circuit.report()["lookups"] == 2 * 6 * 6  # type: ignore[attr-defined]


@pytest.mark.slow
def test_a_convolutional_model_runs_encrypted_exactly(
    convolutional: tuple[object, object, dict[str, np.ndarray]],
) -> None:
    lowered, circuit, held_out = convolutional
    reference = lowered.run(held_out)["y"]  # type: ignore[attr-defined]
    np.testing.assert_array_equal(one_by_one(circuit, held_out, "execute", 1)["y"], reference[:1])
