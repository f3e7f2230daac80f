"""Test helpers: a real uvicorn server on port 0 in a thread; a server subprocess and the URL it announced."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from starlette.types import ASGIApp

from modelyard._process import announced_url
from modelyard.web.listen import bind_socket

# Model control (load/unload) is off unless a server enables it with a token of 16+ characters.
CONTROL_TOKEN = "test-model-control-token"
CONTROL_HEADERS = {"authorization": f"Bearer {CONTROL_TOKEN}"}


@contextlib.contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", http: Any = "httptools") -> Iterator[str]:
    """Serve ``app`` on a free port (``http``: uvicorn's protocol name or class); yields
    ``host:port`` once it accepts requests."""
    sock = bind_socket(host, 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, loop="asyncio", http=http, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


class AnnouncedProcess:
    """A modelyard server subprocess; :meth:`wait_until_serving` returns the URL it announced.

    Its stdout is read on a thread to the end (the pipe never fills up); its stderr goes to
    ``stderr_path``, which failure messages quote.
    """

    def __init__(
        self, argv: list[str], stderr_path: Path, *, component: str | None = None, **popen: Any
    ) -> None:
        self.component = component
        self.stderr_path = stderr_path
        with stderr_path.open("w") as stderr:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True, **popen
            )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_until_serving(self, timeout: float = 60.0) -> str:
        """The announced URL; fails the test if the process exits or stays silent for ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                message = f"no serving line within {timeout} s"
                raise AssertionError(f"{message}; stderr:\n{self.stderr()}") from None
            if line is None:
                code = self.proc.wait(timeout=30)
                message = f"the server exited with {code} before serving"
                raise AssertionError(f"{message}; stderr:\n{self.stderr()}")
            url = announced_url(line, self.component)
            if url is not None:
                self.url = url
                return url

    def stderr(self) -> str:
        return self.stderr_path.read_text()


def tensor(name: str, array: np.ndarray, datatype: str = "FP32") -> dict[str, Any]:
    """One OIP JSON input (or output) entry for ``array``."""
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.ravel().tolist()}


def linear_onnx(path: Path, seed: int = 3) -> Path:
    """A tiny real ONNX model, y = x @ W + b: FP32 [batch, 3] -> FP32 [batch, 2], W and b from ``seed``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array(rng.normal(size=(3, 2)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.normal(size=(2,)).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime this project supports
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def processes_with_env(name: str, value: str) -> list[int]:
    """PIDs of this user's processes whose environment has ``name=value`` (Linux /proc).

    Replicas carry ``MODELYARD_HOME`` in their environment, not on their command line, so this is
    how a test finds every process a test's private home started."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours
            continue
        if wanted in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def make_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key
