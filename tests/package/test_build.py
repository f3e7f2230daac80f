"""build_package: file selection, the manifest's fields, pinning, determinism and clear errors."""

from __future__ import annotations

import importlib.metadata
import io
import json
import platform
import tarfile
from pathlib import Path

import pytest

from modelyard.errors import PackageInvalid
from modelyard.package import PACKAGE_SUFFIX, build_package, read_manifest, verify_package
from modelyard.package.archive import sha256_file
from tests.package.conftest import FIXED_TIME, author_dir, onnx_dir, sklearn_dir


def members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path, "r:gz") as tar:
        return tar.getmembers()


def test_an_author_directory_becomes_one_package_with_every_file_hashed(tmp_path: Path) -> None:
    source = author_dir(tmp_path / "scaler-src")
    (source / "requirements.txt").write_text("# pinned\nsix==1.16.0\n")
    path = build_package(source, tmp_path / "dist", author="ada", created_at=FIXED_TIME)

    assert path == tmp_path / "dist" / f"scaler-4{PACKAGE_SUFFIX}"  # name and version from @model
    names = [m.name for m in members(path)]
    assert names == ["manifest.json", "files/model.py", "files/requirements.txt", "files/weights.npy"]
    manifest = read_manifest(path)
    assert manifest.format_version == 1
    assert (manifest.name, manifest.version, manifest.entry, manifest.runtime) == (
        "scaler",
        "4",
        "model.py:Scaler",
        None,
    )
    assert manifest.files == {
        rel: sha256_file(source / rel) for rel in ("model.py", "requirements.txt", "weights.npy")
    }
    assert [(t.name, t.datatype, list(t.shape)) for t in manifest.signature.inputs] == [
        ("x", "FP64", [-1, 3])
    ]
    assert manifest.requirements == ["six==1.16.0"]
    assert manifest.framework["python"] == platform.python_version()
    assert (manifest.author, manifest.created_at) == ("ada", FIXED_TIME)
    for info in members(path):  # normalised metadata: nothing of the build machine leaks in
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (0, 0, 0, "", "", 0o644)


def test_the_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    source = author_dir(tmp_path / "src")
    first = build_package(source, tmp_path / "a.modelyard", created_at=FIXED_TIME, author="x")
    (source / "model.py").touch()  # a new mtime must not matter
    second = build_package(source, tmp_path / "b.modelyard", created_at=FIXED_TIME, author="x")
    assert first.read_bytes() == second.read_bytes()
    third = build_package(source, tmp_path / "c.modelyard", created_at="2026-01-02T03:04:06Z", author="x")
    assert third.read_bytes() != first.read_bytes()


def test_source_date_epoch_fixes_created_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    path = build_package(onnx_dir(tmp_path / "m"), tmp_path)
    assert read_manifest(path).created_at == "1970-01-01T00:00:00Z"


def test_an_onnx_directory_records_the_graph_signature_and_onnxruntime(tmp_path: Path) -> None:
    path = build_package(onnx_dir(tmp_path / "ranker"), tmp_path, version="2")
    manifest = verify_package(path)
    assert path.name == "ranker-2.modelyard"
    assert (manifest.runtime, manifest.model_file, manifest.entry) == ("onnx", "scorer.onnx", None)
    assert [(t.name, t.datatype, list(t.shape)) for t in manifest.signature.inputs] == [
        ("x", "FP32", [-1, 3])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in manifest.signature.outputs] == [
        ("y", "FP32", [-1, 2])
    ]
    assert manifest.framework["onnxruntime"] == importlib.metadata.version("onnxruntime")


def test_a_bare_model_file_is_packaged_alone(tmp_path: Path) -> None:
    source = sklearn_dir(tmp_path / "models")
    (source / "notes.txt").write_text("not part of a bare-file package")
    path = build_package(source / "regressor.joblib", tmp_path / "out")
    manifest = read_manifest(path)
    assert (manifest.name, manifest.runtime, list(manifest.files)) == (
        "regressor",
        "sklearn",
        ["regressor.joblib"],
    )
    assert manifest.framework["scikit-learn"] == importlib.metadata.version("scikit-learn")


def test_modelyard_yaml_is_read_and_options_override_it(tmp_path: Path) -> None:
    source = onnx_dir(tmp_path / "m")
    (source / "modelyard.yaml").write_text(
        "name: from-yaml\nversion: 7\ndescription: a ranker\nauthor: grace\n"
        "labels: {team: search}\nrequirements: [numpy]\n"
    )
    path = build_package(source, tmp_path, version="8", labels={"stage": "dev"})
    manifest = read_manifest(path)
    assert (manifest.name, manifest.version, manifest.author) == ("from-yaml", "8", "grace")
    assert manifest.description == "a ranker"
    assert manifest.labels == {"team": "search", "stage": "dev"}
    # An unpinned requirement is pinned to the version installed here.
    assert manifest.requirements == [f"numpy=={importlib.metadata.version('numpy')}"]


def test_the_output_file_and_old_packages_in_the_directory_are_skipped(tmp_path: Path) -> None:
    source = onnx_dir(tmp_path / "m")
    (source / "old-1.modelyard").write_bytes(b"previous build")
    path = build_package(source, source / "m-1.modelyard")
    rebuilt = build_package(source, source / "m-1.modelyard")  # the first output is in DIR now
    assert list(read_manifest(path).files) == ["scorer.onnx"]
    assert list(read_manifest(rebuilt).files) == ["scorer.onnx"]


def test_an_unpinned_requirement_that_is_not_installed_is_named(tmp_path: Path) -> None:
    source = onnx_dir(tmp_path / "m")
    (source / "requirements.txt").write_text("numpy\nnot-a-real-package-xyz>=1\n")
    with pytest.raises(PackageInvalid, match="not-a-real-package-xyz") as caught:
        build_package(source, tmp_path)
    assert caught.value.field == "requirements.txt"


def test_the_declared_signature_is_read_without_calling_load(tmp_path: Path) -> None:
    source = author_dir(tmp_path / "m")
    (source / "weights.npy").unlink()  # load() would fail: the build must not call it
    manifest = read_manifest(build_package(source, tmp_path))
    assert manifest.entry == "model.py:Scaler"
    assert [t.name for t in manifest.signature.outputs] == ["y"]


@pytest.mark.parametrize(
    ("files", "field", "message"),
    [
        ({"a.onnx": b"x", "b.onnx": b"y"}, "modelyard.yaml", "several model files"),
        ({"notes.txt": b"x"}, "modelyard.yaml", "no model file"),
        ({"model.py": b"import not_installed_module_xyz\n"}, "model.py", "not_installed_module_xyz"),
        ({"broken.onnx": b"not a graph"}, "broken.onnx", "broken.onnx"),
        ({"m.onnx": b"x", "modelyard.yaml": b"nmae: typo\n"}, "modelyard.yaml", "nmae"),
    ],
    ids=["two-model-files", "nothing-to-serve", "import-error", "corrupt-onnx", "bad-yaml-key"],
)
def test_mistakes_raise_package_invalid_naming_the_file(
    tmp_path: Path, files: dict[str, bytes], field: str, message: str
) -> None:
    source = tmp_path / "m"
    source.mkdir()
    for name, data in files.items():
        (source / name).write_bytes(data)
    with pytest.raises(PackageInvalid, match=message) as caught:
        build_package(source, tmp_path)
    assert caught.value.field == field
    assert not list(tmp_path.glob("*.modelyard"))


def test_the_manifest_is_canonical_json(tmp_path: Path) -> None:
    path = build_package(onnx_dir(tmp_path / "m"), tmp_path, created_at=FIXED_TIME)
    with tarfile.open(path, "r:gz") as tar:
        handle = tar.extractfile("manifest.json")
        assert handle is not None
        text = handle.read().decode()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert io.BytesIO(path.read_bytes()[:10]).read(2) == b"\x1f\x8b"  # gzip
    assert path.read_bytes()[4:8] == b"\x00\x00\x00\x00"  # gzip header mtime 0


@pytest.mark.parametrize(
    "line",
    ["numpy==1.26.4; python_version > '3' --global-option=--evil", "numpy==1.26.4; python_version > '3' #x"],
    ids=["option-after-marker", "comment-after-marker"],
)
def test_pinning_refuses_what_a_manifest_would_refuse(line: str) -> None:
    from modelyard.package.requirements import pin_requirements

    with pytest.raises(PackageInvalid, match="not a pinned requirement"):
        pin_requirements([line])
