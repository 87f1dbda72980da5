"""The client/server split: bytes between the parties, keys and ciphertexts checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from ckks_helpers import FAST, Compiled, compile_ckks, reference

from fhec.backends.ckks import CKKS_BACKEND
from fhec.backends.ckks.circuit import CalibrationRangeWarning
from fhec.ir.errors import ArtifactError, CompileError, InputError
from fhec.runtime.ckks_client import CkksClient
from fhec.runtime.ckks_server import CkksServer

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
CALIBRATION = np.random.default_rng(0).uniform(-2, 2, size=(256, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(gemm_sigmoid: onnx.ModelProto) -> Compiled:
    return compile_ckks(gemm_sigmoid, {"x": CALIBRATION}, batch_size=32, options=FAST)


def test_split_run_matches_onnxruntime(tiny: Compiled, gemm_sigmoid: onnx.ModelProto) -> None:
    client = CkksClient(tiny.module, tiny.signature)
    server = CkksServer(tiny.module, client.evaluation_keys())
    x = CALIBRATION[:20]  # fewer samples than compiled: slots left empty
    outputs = client.decrypt(server.run(client.encrypt({"x": x})))
    error = np.max(np.abs(outputs["y"] - reference(gemm_sigmoid, {"x": x})["y"]))
    assert outputs["y"].shape == (20, 3)
    assert error <= client.error_bound["y"] <= 100 * error


def test_saved_secret_keys_decrypt_later(tiny: Compiled) -> None:
    client = CkksClient(tiny.module, tiny.signature)
    server = CkksServer(tiny.module, client.evaluation_keys())
    reply = server.run(client.encrypt({"x": CALIBRATION[:4]}))
    again = CkksClient(tiny.module, tiny.signature, keys=client.secret_keys())
    assert again.key_id == client.key_id
    np.testing.assert_allclose(again.decrypt(reply)["y"], client.decrypt(reply)["y"])


def test_server_never_imports_the_client() -> None:
    source = (RUNTIME / "ckks_server.py").read_text()
    assert "ckks_client" not in source
    check = (
        "import sys, fhec.runtime.ckks_server; "
        "assert 'fhec.runtime.ckks_client' not in sys.modules, 'client imported'"
    )
    subprocess.run([sys.executable, "-c", check], check=True)


def test_evaluation_keys_hold_no_secret_key(tiny: Compiled) -> None:
    client = CkksClient(tiny.module, tiny.signature)
    with pytest.raises(ArtifactError, match="expected secret keys"):
        CkksClient(tiny.module, tiny.signature, keys=client.evaluation_keys())


def test_keys_of_another_context_refused(tiny: Compiled, gemm_sigmoid: onnx.ModelProto) -> None:
    other = compile_ckks(
        gemm_sigmoid, {"x": CALIBRATION}, 32, {**FAST, "pack-slots-ckks": "scale_bits=30"}
    )
    stranger = CkksClient(other.module, other.signature)
    with pytest.raises(ArtifactError, match="made for other encryption parameters"):
        CkksServer(tiny.module, stranger.evaluation_keys())
    server = CkksServer(tiny.module, CkksClient(tiny.module, tiny.signature).evaluation_keys())
    with pytest.raises(ArtifactError, match="made for other encryption parameters"):
        server.run(stranger.encrypt({"x": CALIBRATION[:2]}))


def test_ciphertexts_and_replies_of_another_key_set_refused(tiny: Compiled) -> None:
    alice, mallory = (CkksClient(tiny.module, tiny.signature) for _ in range(2))
    server = CkksServer(tiny.module, alice.evaluation_keys())
    with pytest.raises(ArtifactError, match="belong to another key set"):
        server.run(mallory.encrypt({"x": CALIBRATION[:2]}))
    reply = server.run(alice.encrypt({"x": CALIBRATION[:2]}))
    with pytest.raises(ArtifactError, match="belong to another key set"):
        mallory.decrypt(reply)


def test_corrupted_ciphertext_bytes_refused(tiny: Compiled) -> None:
    client = CkksClient(tiny.module, tiny.signature)
    server = CkksServer(tiny.module, client.evaluation_keys())
    data = bytearray(client.encrypt({"x": CALIBRATION[:2]}))
    data[len(data) // 2] ^= 0x10
    with pytest.raises(ArtifactError, match="corrupted"):
        server.run(bytes(data))
    keys = bytearray(client.evaluation_keys())
    keys[-1] ^= 0x01
    with pytest.raises(ArtifactError, match="corrupted"):
        CkksServer(tiny.module, bytes(keys))


def test_inputs_outside_the_calibrated_range_warn(tiny: Compiled) -> None:
    circuit = CKKS_BACKEND.build(tiny.module, tiny.signature, {})
    with pytest.warns(CalibrationRangeWarning, match="outside its calibrated range"):
        circuit.run({"x": np.full((2, 4), 5.0, dtype=np.float32)})


def test_bad_inputs_refused(tiny: Compiled) -> None:
    client = CkksClient(tiny.module, tiny.signature)
    with pytest.raises(InputError, match="missing input 'x'"):
        client.encrypt({})
    with pytest.raises(InputError, match="has shape"):
        client.encrypt({"x": np.zeros((2, 5), dtype=np.float32)})
    with pytest.raises(InputError, match="does not fit"):
        client.encrypt({"x": np.zeros((4096, 4), dtype=np.float32)})  # 2048 slots at N=4096
    with pytest.raises(InputError, match="NaN"):
        client.encrypt({"x": np.full((1, 4), np.nan, dtype=np.float32)})
    circuit = CKKS_BACKEND.build(tiny.module, tiny.signature, {})
    with pytest.raises(InputError, match="unknown run mode"):
        circuit.run({"x": CALIBRATION[:1]}, mode="fast")


def test_module_without_parameters_refused(gemm_sigmoid: onnx.ModelProto, tiny: Compiled) -> None:
    from fhec.frontend import import_onnx

    plain = import_onnx(gemm_sigmoid, batch_size=2)
    with pytest.raises(CompileError, match="no CKKS parameters"):
        CKKS_BACKEND.build(plain.module, plain.signature, {})
    with pytest.raises(CompileError, match="no CKKS parameters"):
        CkksServer(plain.module, b"")


def test_saved_circuit_loads_and_checks_its_file(tiny: Compiled) -> None:
    circuit = CKKS_BACKEND.build(tiny.module, tiny.signature, {})
    files = circuit.to_files()
    loaded = CKKS_BACKEND.load(tiny.module, tiny.signature, files)
    assert loaded.error_bound == circuit.error_bound
    with pytest.raises(ArtifactError, match=r"has no ckks\.json"):
        CKKS_BACKEND.load(tiny.module, tiny.signature, {})
    with pytest.raises(ArtifactError, match="corrupted"):
        CKKS_BACKEND.load(tiny.module, tiny.signature, {"ckks.json": b"{"})
    altered = files["ckks.json"].replace(b'"scale_bits": 40', b'"scale_bits": 30')
    with pytest.raises(ArtifactError, match="does not match"):
        CKKS_BACKEND.load(tiny.module, tiny.signature, {"ckks.json": altered})


def test_server_checks_what_it_is_sent(tiny: Compiled) -> None:
    from fhec.backends.ckks.serialization import CipherTensor, dump_ciphertexts, load_ciphertexts

    client = CkksClient(tiny.module, tiny.signature)
    server = CkksServer(tiny.module, client.evaluation_keys())
    context, key_id = server.context, client.key_id
    with pytest.raises(InputError, match="the encrypted inputs lack 'x'"):
        server.run(dump_ciphertexts({}, context, key_id))
    x = load_ciphertexts(client.encrypt({"x": CALIBRATION[:2]}), context)[0]["x"]
    narrow = CipherTensor(x.ciphertexts[:2], x.count, x.scale_bits, x.level)
    with pytest.raises(InputError, match=r"is \(shape, scale, level\) \(\(2,\), 40, 0\)"):
        server.run(dump_ciphertexts({"x": narrow}, context, key_id))
    crowded = CipherTensor(x.ciphertexts, 5000, x.scale_bits, x.level)
    with pytest.raises(InputError, match=r"hold \[5000\] samples; need one count in 1..2048"):
        server.run(dump_ciphertexts({"x": crowded}, context, key_id))
    with pytest.raises(InputError, match=r"the reply holds \['x'\], not outputs"):
        client.decrypt(client.encrypt({"x": CALIBRATION[:2]}))


def test_server_refuses_outputs_computed_in_the_clear() -> None:
    from ckks_helpers import tiny_model
    from onnx import TensorProto, helper

    model = tiny_model([helper.make_node("Mul", ["x", "x"], ["y"], name="square")], {}, 4, 4)
    model.graph.input.append(helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 4]))
    model.graph.node.append(helper.make_node("Neg", ["p"], ["z"], name="flip"))
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4]))
    data = {"x": CALIBRATION[:8], "p": CALIBRATION[8:16]}
    options = {**FAST, "annotate-secrecy": "public=p"}
    compiled = compile_ckks(model, data, 8, options)
    client = CkksClient(compiled.module, compiled.signature)
    server = CkksServer(compiled.module, client.evaluation_keys())
    with pytest.raises(CompileError, match="outputs must all depend on its encrypted inputs"):
        server.run(client.encrypt(data), {"p": data["p"]})
    circuit = CKKS_BACKEND.build(compiled.module, compiled.signature, {})
    np.testing.assert_allclose(circuit.run(data)["z"], -data["p"])  # in one process: fine


def test_batch_shaped_constants_limit_the_samples_per_run() -> None:
    from ckks_helpers import tiny_model
    from onnx import helper

    offsets = np.arange(12, dtype=np.float32).reshape(3, 4)  # one row per sample of a batch of 3
    model = tiny_model(
        [helper.make_node("Add", ["x", "c"], ["y"], name="shift")], {"c": offsets}, 4, 4
    )
    compiled = compile_ckks(model, {"x": CALIBRATION[:3]}, 3, FAST)
    circuit = CKKS_BACKEND.build(compiled.module, compiled.signature, {})
    np.testing.assert_allclose(
        circuit.run({"x": CALIBRATION[:2]})["y"], CALIBRATION[:2] + offsets[:2], atol=1e-4
    )
    with pytest.raises(InputError, match="a constant varies over a batch of 3"):
        circuit.run({"x": CALIBRATION[:4]})


def test_client_finishes_labels_and_probabilities() -> None:
    """A classifier's label (ArgMax) and probabilities (Sigmoid) come last: the server
    returns the scores only, and the client computes both after decryption, exactly."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    weights = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "W")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "W"], ["scores"], name="dense"),
            helper.make_node("ArgMax", ["scores"], ["label"], name="pick", axis=1, keepdims=0),
            helper.make_node("Sigmoid", ["scores"], ["probability"], name="squash"),
        ],
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 3]),
        ],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    compiled = compile_ckks(model, {"x": CALIBRATION}, batch_size=32, options=FAST)
    client = CkksClient(compiled.module, compiled.signature)
    server = CkksServer(compiled.module, client.evaluation_keys())
    x = CALIBRATION[:16]
    reply = server.run(client.encrypt({"x": x}))
    outputs = client.decrypt(reply)
    want = reference(model, {"x": x})
    np.testing.assert_array_equal(outputs["label"], want["label"])
    error = float(np.max(np.abs(outputs["probability"] - want["probability"])))
    assert error <= client.error_bound["probability"]
    assert "label" not in client.error_bound  # a label: agreement, not a bound
    assert b"epilogue.0" in reply and b'"probability"' not in reply
