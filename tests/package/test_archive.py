"""Integrity and safe unpacking: altered packages are refused naming the file; unsafe ones never unpack."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from modelyard.errors import PackageInvalid
from modelyard.package import (
    Limits,
    build_package,
    read_manifest,
    unpack_cached,
    unpack_package,
    verify_package,
)
from modelyard.package.archive import sha256_file
from tests.package.conftest import FIXED_TIME, author_dir

Member = tuple[str, bytes]


@pytest.fixture
def package(tmp_path: Path) -> Path:
    return build_package(author_dir(tmp_path / "src"), tmp_path / "p.modelyard", created_at=FIXED_TIME)


def contents(path: Path) -> list[Member]:
    with tarfile.open(path, "r:gz") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]


def write(path: Path, members: list[Member], tweak: Callable[[tarfile.TarInfo], None] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if tweak is not None:
                tweak(info)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def edit_manifest(members: list[Member], change: Callable[[dict[str, object]], None]) -> list[Member]:
    manifest = json.loads(members[0][1])
    change(manifest)
    return [("manifest.json", json.dumps(manifest).encode()), *members[1:]]


def test_an_intact_package_verifies_and_unpacks(package: Path, tmp_path: Path) -> None:
    manifest = verify_package(package)
    dest = tmp_path / "unpacked"
    assert unpack_package(package, dest) == manifest
    for rel, digest in manifest.files.items():
        assert sha256_file(dest / "files" / rel) == digest
    assert json.loads((dest / "manifest.json").read_text())["name"] == "scaler"


def test_changed_bytes_are_refused_naming_the_file(package: Path, tmp_path: Path) -> None:
    members = [(n, d + b"# extra\n" if n == "files/model.py" else d) for n, d in contents(package)]
    altered = write(tmp_path / "altered.modelyard", members)
    with pytest.raises(PackageInvalid, match="altered") as caught:
        verify_package(altered)
    assert caught.value.field == "model.py"
    dest = tmp_path / "never"
    with pytest.raises(PackageInvalid):
        unpack_package(altered, dest)
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".never")] == []  # staging removed


def test_a_missing_file_is_refused(package: Path, tmp_path: Path) -> None:
    members = [m for m in contents(package) if m[0] != "files/weights.npy"]
    with pytest.raises(PackageInvalid, match="missing") as caught:
        verify_package(write(tmp_path / "x.modelyard", members))
    assert caught.value.field == "weights.npy"


def test_an_extra_file_is_refused(package: Path, tmp_path: Path) -> None:
    members = [*contents(package), ("files/backdoor.py", b"import os\n")]
    with pytest.raises(PackageInvalid, match="not in its manifest") as caught:
        verify_package(write(tmp_path / "x.modelyard", members))
    assert caught.value.field == "backdoor.py"


def test_a_changed_manifest_entry_is_refused(package: Path, tmp_path: Path) -> None:
    def change(manifest: dict[str, object]) -> None:
        files = manifest["files"]
        assert isinstance(files, dict)
        files["weights.npy"] = "0" * 64

    with pytest.raises(PackageInvalid, match="altered") as caught:
        verify_package(write(tmp_path / "x.modelyard", edit_manifest(contents(package), change)))
    assert caught.value.field == "weights.npy"


def test_an_invalid_manifest_is_refused_naming_the_field(package: Path, tmp_path: Path) -> None:
    members = edit_manifest(contents(package), lambda manifest: manifest.pop("name"))
    with pytest.raises(PackageInvalid, match="name") as caught:
        read_manifest(write(tmp_path / "x.modelyard", members))
    assert caught.value.field == "manifest.json"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("files/../../evil.py", "'..'"),
        ("/etc/evil", "absolute"),
        ("other/evil.py", "outside files/"),
        ("files/model.py", "appears twice"),
    ],
    ids=["dot-dot", "absolute", "outside-files", "duplicate"],
)
def test_members_that_escape_or_repeat_are_refused(
    package: Path, tmp_path: Path, name: str, message: str
) -> None:
    crafted = write(tmp_path / "x.modelyard", [*contents(package), (name, b"boom")])
    with pytest.raises(PackageInvalid, match=message):
        unpack_package(crafted, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert not (tmp_path / "evil.py").exists()


@pytest.mark.parametrize(
    "kind",
    [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE],
    ids=["symlink", "hardlink", "device", "fifo"],
)
def test_links_and_devices_are_refused(package: Path, tmp_path: Path, kind: bytes) -> None:
    def make_special(info: tarfile.TarInfo) -> None:
        if info.name == "files/link":
            info.type, info.linkname, info.size = kind, "/etc/passwd", 0

    crafted = write(tmp_path / "x.modelyard", [*contents(package), ("files/link", b"")], make_special)
    with pytest.raises(PackageInvalid, match="not a regular file") as caught:
        verify_package(crafted)
    assert caught.value.field == "files/link"


def test_the_manifest_must_come_first(package: Path, tmp_path: Path) -> None:
    members = contents(package)
    with pytest.raises(PackageInvalid, match="first member"):
        read_manifest(write(tmp_path / "x.modelyard", [*members[1:], members[0]]))


def test_limits_stop_reading_before_the_whole_archive_is_seen(package: Path, tmp_path: Path) -> None:
    with pytest.raises(PackageInvalid, match="more than 2 members"):
        verify_package(package, Limits(max_members=2))
    with pytest.raises(PackageInvalid, match="more than 100 bytes"):
        unpack_package(package, tmp_path / "dest", Limits(max_total_bytes=100))
    assert not (tmp_path / "dest").exists()
    # A declared size counts before any data is read: a 1 TiB member fails at its header.
    bomb = tmp_path / "bomb.modelyard"
    with tarfile.open(bomb, "w:gz") as tar:
        manifest = contents(package)[0][1]
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        header = tarfile.TarInfo("files/model.py")
        header.size = 1 << 40
        tar.fileobj.write(header.tobuf(tarfile.PAX_FORMAT))  # type: ignore[union-attr]
    with pytest.raises(PackageInvalid, match="unpacks to more than"):
        verify_package(bomb, Limits(max_total_bytes=1 << 30))


@pytest.mark.parametrize(
    "data", [b"", b"not gzip at all", b"\x1f\x8b\x08\x00garbage"], ids=["empty", "text", "bad-gzip"]
)
def test_corrupt_files_are_package_invalid(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.modelyard"
    path.write_bytes(data)
    with pytest.raises(PackageInvalid):
        verify_package(path)


def test_a_truncated_package_is_refused(package: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "t.modelyard"
    truncated.write_bytes(package.read_bytes()[: package.stat().st_size // 2])
    with pytest.raises(PackageInvalid):
        verify_package(truncated)


def test_the_cache_unpacks_once_and_rechecks_the_files(package: Path, home: Path) -> None:
    first = unpack_cached(package)
    assert first.root == home / "packages" / first.digest
    assert (first.files / "weights.npy").is_file()
    marker = first.root / "manifest.json"
    stamp = marker.stat().st_mtime_ns
    second = unpack_cached(package)
    assert second == first
    assert marker.stat().st_mtime_ns == stamp  # not unpacked again
    (first.files / "weights.npy").write_bytes(b"edited in the cache")
    with pytest.raises(PackageInvalid, match="altered") as caught:
        unpack_cached(package)
    assert caught.value.field == "weights.npy"
