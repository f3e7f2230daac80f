"""The 60-second tour: build example models, serve them with `modelyard serve`, send requests.

Run it with `make demo`. It starts one server process holding three models (an ONNX network,
a scikit-learn classifier and an author-written class), talks to it over the Open Inference
Protocol (plain JSON and Triton's own client) and the TF-Serving API, prints the answers, then
shuts the server down gracefully.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import tritonclient.http as triton

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import build_models  # noqa: E402


def start_server(paths: list[str]) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable,
        "-m",
        "modelyard.cli.main",
        "serve",
        *paths,
        "--port",
        "0",
        "--log-level",
        "warning",
    ]
    print("$ modelyard serve", " ".join(Path(p).name if "/" in p else p for p in paths))
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        print("  " + line.rstrip())
        if line.startswith("modelyard: serving on "):
            return proc, line.split()[-1]
    sys.exit(f"the server exited with code {proc.wait()} before serving")


def show(title: str, payload: object) -> None:
    print(f"\n== {title}")
    print(json.dumps(payload, indent=2)[:1200])


def tour(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        show("GET /health/ready", http.get("/health/ready").json())
        show(
            "GET /v2/models/tiny_mlp (signature read from the ONNX file)",
            http.get("/v2/models/tiny_mlp").json(),
        )
        body = {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 4],
                    "datatype": "FP32",
                    "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
                }
            ]
        }
        show(
            "POST /v2/models/tiny_mlp/infer (JSON)", http.post("/v2/models/tiny_mlp/infer", json=body).json()
        )
        iris = {
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, 4],
                    "datatype": "FP64",
                    "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3],
                }
            ]
        }
        show(
            "POST /v2/models/iris/infer (scikit-learn)", http.post("/v2/models/iris/infer", json=iris).json()
        )
        texts = {
            "inputs": [
                {
                    "name": "text",
                    "shape": [2],
                    "datatype": "BYTES",
                    "data": ["I love it, great", "awful and slow"],
                }
            ]
        }
        show(
            "POST /v2/models/sentiment/infer (author's class)",
            http.post("/v2/models/sentiment/infer", json=texts).json(),
        )
        tfs = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
        show(
            "POST /v1/models/tiny_mlp:predict (TF-Serving API)",
            http.post("/v1/models/tiny_mlp:predict", json=tfs).json(),
        )
        bad = {"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]}
        response = http.post("/v2/models/tiny_mlp/infer", json=bad)
        show(f"a bad request gets a clear error ({response.status_code})", response.json())
        metrics = [
            line
            for line in http.get("/metrics").text.splitlines()
            if line.startswith("modelyard_requests_total")
        ]
        show("GET /metrics (excerpt)", metrics[:6])

    client = triton.InferenceServerClient(url.removeprefix("http://"))
    try:
        x = triton.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.array([[5.9, 3.0, 5.1, 1.8]], dtype=np.float32))  # binary on the wire
        result = client.infer("tiny_mlp", [x], outputs=[triton.InferRequestedOutput("probs")])
        show("tritonclient.http, unmodified, binary tensors", {"probs": result.as_numpy("probs").tolist()})
    finally:
        client.close()


def main() -> None:
    paths = [str(p) for p in build_models.main()] + [f"{HERE / 'sentiment.py'}:Sentiment"]
    proc, url = start_server(paths)
    try:
        tour(url)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        print(f"\n== server stopped gracefully (exit code {code})")


if __name__ == "__main__":
    main()
