"""Model packages in the registry, through the one adapter (``registry/packages.py``).

``modelyard.package.archive.verify_package`` is replaced by a stand-in with the agreed interface
(``verify_package(path) -> Manifest``), so these tests pin the registry's side of the contract on
their own (the package plane's own tests cover verification).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from pydantic import BaseModel

from modelyard.errors import PackageInvalid
from modelyard.package import archive
from modelyard.registry import NewVersion, Registry
from modelyard.registry.packages import inspect_package
from tests.registry.conftest import artifact_files

REAL_VERIFY = archive.verify_package


class Manifest(BaseModel):
    name: str
    version: str
    framework: str
    author: str = ""
    description: str = ""
    labels: dict[str, str] = {}
    requirements: list[str] = []
    files: dict[str, str] = {}


def _verify(path: Path) -> Manifest:
    data = path.read_bytes()
    if not data.startswith(b"PKG:"):
        raise PackageInvalid(f"{path.name} is not a valid package", field="manifest.json")
    return Manifest(
        name=data[4:].decode(), version="1.2.0", framework="onnx", author="ana",
        description="packaged", labels={"team": "ml", "tier": "gold"},
    )  # fmt: skip


@pytest.fixture(autouse=True)
def fake_verify_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "verify_package", _verify)


def test_inspect_only_reads_package_files(tmp_path: Path) -> None:
    plain = tmp_path / "model.onnx"
    plain.write_bytes(b"PKG:iris")
    assert inspect_package(plain) is None
    package = tmp_path / "iris-1.2.0.modelyard"
    package.write_bytes(b"PKG:iris")
    manifest = inspect_package(package)
    assert manifest is not None
    assert manifest["name"] == "iris"
    assert manifest["framework"] == "onnx"


def test_pushing_a_package_stores_its_manifest_and_uses_it_for_defaults(
    registry: Registry, tmp_path: Path
) -> None:
    package = tmp_path / "iris-1.2.0.modelyard"
    package.write_bytes(b"PKG:iris")
    version = registry.push(package, spec=NewVersion(labels={"tier": "silver"}))
    assert (version.name, version.user, version.description) == ("iris", "ana", "packaged")
    assert version.labels == {"team": "ml", "tier": "silver"}  # the caller's labels win
    assert version.manifest is not None
    assert version.manifest["version"] == "1.2.0"
    assert registry.get_version("iris", 1).manifest == version.manifest
    assert registry.get_model("iris").description == "packaged"  # the first push created the model


def test_registering_uploaded_package_bytes_reads_the_manifest_from_the_store(registry: Registry) -> None:
    stored = registry.upload([b"PKG:churn"])
    version = registry.register("churn", stored.sha256, NewVersion(filename="churn-1.2.0.modelyard"))
    assert (version.user, version.description, version.labels) == (
        "ana",
        "packaged",
        {"team": "ml", "tier": "gold"},
    )
    assert version.manifest is not None
    assert version.manifest["name"] == "churn"


def test_an_invalid_package_is_refused_and_leaves_nothing(registry: Registry, tmp_path: Path) -> None:
    package = tmp_path / "broken.modelyard"
    package.write_bytes(b"garbage")
    with pytest.raises(PackageInvalid):
        registry.push(package)
    stored = registry.upload([b"garbage"])
    with pytest.raises(PackageInvalid):
        registry.register("broken", stored.sha256, NewVersion(filename="broken.modelyard"))
    registry.store.delete(stored.sha256)
    assert artifact_files(Path(registry.settings.resolved_artifact_url())) == []
    assert registry.list_models().items == []


def test_a_real_package_round_trips_through_the_registry(
    monkeypatch: pytest.MonkeyPatch, registry: Registry, tmp_path: Path
) -> None:
    monkeypatch.setattr(archive, "verify_package", REAL_VERIFY)  # this test wants the real one
    package_module = pytest.importorskip("modelyard.package")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
    )
    model = tmp_path / "ident.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    package = package_module.build_package(
        model, tmp_path, name="ident", version="0.3.0", author="ana", labels={"team": "ml"}
    )
    version = registry.push(package)
    assert (version.name, version.user, version.labels, version.filename) == (
        "ident", "ana", {"team": "ml"}, package.name,
    )  # fmt: skip
    assert version.manifest is not None
    assert version.manifest["version"] == "0.3.0"
    fetched = registry.fetch("ident", tmp_path / "fetched")
    assert package_module.verify_package(fetched).name == "ident"


def test_a_bad_uploaded_package_is_named_by_its_digest_not_a_server_path(
    monkeypatch: pytest.MonkeyPatch, registry: Registry
) -> None:
    monkeypatch.setattr(archive, "verify_package", REAL_VERIFY)  # the real verification
    stored = registry.upload([b"not a tar at all"])
    with pytest.raises(PackageInvalid) as caught:
        registry.register("broken", stored.sha256, NewVersion(filename="broken.modelyard"))
    assert tempfile.gettempdir() not in caught.value.message, caught.value.message
    assert stored.sha256[:12] in caught.value.message
    assert caught.value.field == "sha256"
    assert registry.list_models().items == []
