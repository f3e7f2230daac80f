from starlette.testclient import TestClient


def test_infer_doubles_json_tensor(client: TestClient) -> None:
    body = {
        "id": "r1",
        "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6]]}],
    }
    response = client.post("/v2/models/doubler/infer", json=body)
    assert response.status_code == 200
    doc = response.json()
    assert doc["id"] == "r1"
    assert doc["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [2, 3], "data": [2, 4, 6, 8, 10, 12]}
    ]
