"""The gRPC codec and its generated messages, without a server: deadlines into requests, the raw or
typed answer, the checks shared with REST, the error table's gRPC column, and the generated modules
living beside tritonclient.grpc's own copy of the same messages.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import ErrorKind, InvalidInput
from modelyard.server.types import InferenceResponse
from modelyard.web.errors import GRPC_CODE_BY_KIND

grpc = pytest.importorskip("grpc")
pb = pytest.importorskip("modelyard.server.protocols.grpc_v2.grpc_predict_v2_pb2")
codec = pytest.importorskip("modelyard.server.protocols.oip_grpc_codec")

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "src" / "modelyard" / "server" / "protocols" / "grpc_v2"


def request(*, raw: bool = True, **parameters: object) -> object:
    message = pb.ModelInferRequest(model_name="m", id="r")
    tensor = message.inputs.add(name="x", datatype="FP32", shape=[2, 3])
    values = np.arange(6, dtype=np.float32)
    if raw:
        message.raw_input_contents.append(values.tobytes())
    else:
        tensor.contents.fp32_contents.extend(values.tolist())
    for key, value in parameters.items():
        if isinstance(value, bool):
            message.parameters[key].bool_param = value
        elif isinstance(value, int):
            message.parameters[key].int64_param = value
    return message


def test_the_grpc_deadline_becomes_the_requests_timeout_and_the_parameter_can_only_shorten_it() -> None:
    assert codec.decode_infer_request(request(), None)[0].timeout_s is None
    assert codec.decode_infer_request(request(), 0.25)[0].timeout_s == 0.25
    assert codec.decode_infer_request(request(timeout=100_000), 0.25)[0].timeout_s == 0.1
    assert codec.decode_infer_request(request(timeout=900_000), 0.25)[0].timeout_s == 0.25
    assert codec.decode_infer_request(request(timeout=900_000), None)[0].timeout_s == 0.9


def test_raw_in_raw_out_typed_in_typed_out_unless_asked() -> None:
    decoded, raw = codec.decode_infer_request(request(raw=True))
    assert raw is True
    np.testing.assert_array_equal(decoded.inputs["x"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert (decoded.id, decoded.datatypes) == ("r", {"x": "FP32"})
    typed, raw = codec.decode_infer_request(request(raw=False))
    assert raw is False
    np.testing.assert_array_equal(typed.inputs["x"], decoded.inputs["x"])
    assert codec.decode_infer_request(request(raw=False, binary_data_output=True))[1] is True
    assert codec.decode_infer_request(request(raw=True, binary_data_output=False))[1] is False
    asked = request(raw=False)
    asked.outputs.add(name="y").parameters["binary_data"].bool_param = True
    assert codec.decode_infer_request(asked)[1] is True


def test_answers_raw_or_typed_and_fp16_always_raw() -> None:
    y = np.arange(6, dtype=np.float32).reshape(2, 3)
    typed = codec.encode_infer_response(InferenceResponse("m", "1", {"y": y}, "r"), raw=False)
    assert list(typed.raw_output_contents) == []
    assert list(typed.outputs[0].contents.fp32_contents) == y.ravel().tolist()
    assert (typed.id, list(typed.outputs[0].shape), typed.outputs[0].datatype) == ("r", [2, 3], "FP32")
    raw = codec.encode_infer_response(InferenceResponse("m", "1", {"y": y}), raw=True)
    assert raw.raw_output_contents[0] == y.tobytes()
    assert not raw.outputs[0].HasField("contents")
    half = codec.encode_infer_response(InferenceResponse("m", "1", {"h": y.astype(np.float16)}), raw=False)
    assert half.raw_output_contents[0] == y.astype(np.float16).tobytes()
    words = np.array([b"a", b"bc"], dtype=object)
    text = codec.encode_infer_response(InferenceResponse("m", "1", {"s": words}), raw=False)
    assert list(text.outputs[0].contents.bytes_contents) == [b"a", b"bc"]


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda m: m.inputs.add(name="h", datatype="FP16", shape=[1]), "inputs[0].contents"),
        (
            lambda m: m.inputs.add(name="i", datatype="INT8", shape=[1]).contents.int_contents.append(300),
            "inputs[0].contents.int_contents",
        ),
        (
            lambda m: m.inputs.add(name="f", datatype="FP32", shape=[2]).contents.fp32_contents.append(1.0),
            "inputs[0].contents.fp32_contents",
        ),
        (lambda m: m.inputs.add(name="f", datatype="FP99", shape=[1]), "inputs[0].datatype"),
        (lambda m: m.inputs.add(name="", datatype="FP32", shape=[0]), "inputs[0].name"),
        (lambda m: m.inputs.add(name="f", datatype="FP32", shape=[-1]), "inputs[0].shape"),
    ],
)
def test_typed_contents_are_checked_naming_the_field(build: object, field: str) -> None:
    message = pb.ModelInferRequest(model_name="m")
    build(message)  # type: ignore[operator]
    with pytest.raises(InvalidInput) as info:
        codec.decode_infer_request(message)
    assert info.value.field == field


def test_the_checks_shared_with_rest() -> None:
    message = request()
    message.outputs.add(name="y").parameters["classification"].int64_param = 3
    with pytest.raises(InvalidInput, match="classification"):
        codec.decode_infer_request(message)
    twice = request()
    twice.inputs.add(name="x", datatype="FP32", shape=[1])
    twice.raw_input_contents.append(b"\0" * 4)
    with pytest.raises(InvalidInput, match="appears twice"):
        codec.decode_infer_request(twice)
    bf16 = pb.ModelInferRequest(model_name="m", raw_input_contents=[b"\x80\x3f\x00\xc0"])
    bf16.inputs.add(name="b", datatype="BF16", shape=[2])
    np.testing.assert_array_equal(codec.decode_infer_request(bf16)[0].inputs["b"], [1.0, -2.0])


def test_every_error_kind_has_a_grpc_code() -> None:
    assert set(GRPC_CODE_BY_KIND) == set(ErrorKind)
    assert all(code in grpc.StatusCode.__members__ for code in GRPC_CODE_BY_KIND.values())
    assert GRPC_CODE_BY_KIND[ErrorKind.NOT_FOUND] == "NOT_FOUND"
    assert GRPC_CODE_BY_KIND[ErrorKind.FORBIDDEN] == "PERMISSION_DENIED"


def test_the_generated_messages_live_beside_tritonclients_copy() -> None:
    # Both define inference.ModelInferRequest; in protobuf's default pool the second would fail
    # to import ("duplicate symbol"). scripts/gen_grpc puts ours in a pool of its own.
    program = (
        "import tritonclient.grpc.service_pb2 as theirs\n"
        "from modelyard.server.protocols.grpc_v2 import grpc_predict_v2_pb2 as ours\n"
        "m = ours.ModelInferRequest(model_name='m', raw_input_contents=[b'xy'])\n"
        "m.inputs.add(name='x').parameters['k'].int64_param = 3\n"
        "t = theirs.ModelInferRequest.FromString(m.SerializeToString())\n"
        "assert (t.model_name, t.raw_input_contents[0], t.inputs[0].parameters['k'].int64_param)"
        " == ('m', b'xy', 3)\n"
    )
    for first, second in ((0, 1), (1, 0)):  # in either order
        lines = program.splitlines()
        lines[first], lines[second] = lines[second], lines[first]
        result = subprocess.run(
            [sys.executable, "-W", "error", "-c", "\n".join(lines)],
            capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr


def test_the_grpc_extra_floors_are_the_generated_versions() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["grpc"]
    floors = dict(re.fullmatch(r"([a-z]+)>=([0-9.]+)", spec).groups() for spec in extra)  # type: ignore[union-attr]
    stubs = (GENERATED / "grpc_predict_v2_pb2_grpc.py").read_text()
    messages = (GENERATED / "grpc_predict_v2_pb2.py").read_text()
    assert f"GRPC_GENERATED_VERSION = '{floors['grpcio']}'" in stubs
    assert f"# Protobuf Python Version: {floors['protobuf']}\n" in messages
