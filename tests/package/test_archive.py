"""Integrity and safe unpacking: altered packages are refused naming the file; unsafe ones never unpack."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import tracemalloc
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


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME], ids=["pax", "gnu-longname"])
def test_an_oversized_extended_header_is_refused_before_it_is_read(tmp_path: Path, kind: bytes) -> None:
    # tarfile reads a whole PAX / GNU long-name header into memory: a 50 MB one must not get that far.
    size = 50 << 20
    header = tarfile.TarInfo("././@LongHeader")
    header.type, header.size = kind, size
    bomb = tmp_path / "bomb.modelyard"
    with gzip.open(bomb, "wb", compresslevel=1) as gz:
        gz.write(header.tobuf(format=tarfile.USTAR_FORMAT))
        for _ in range(size >> 20):
            gz.write(bytes(1 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(PackageInvalid, match="extended tar header"):
            verify_package(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_extended_headers_count_toward_a_cap_on_decompressed_bytes(package: Path, tmp_path: Path) -> None:
    # Each 900 KiB PAX header is under the per-header limit and carries no member bytes; twelve of them
    # still exceed what the limits allow the whole stream to decompress to.
    names = [f"pad{i}" for i in range(12)]
    empty = hashlib.sha256(b"").hexdigest()
    members = edit_manifest(contents(package), lambda m: m["files"].update(dict.fromkeys(names, empty)))  # type: ignore[attr-defined]
    members += [(f"files/{name}", b"") for name in names]

    def pad(info: tarfile.TarInfo) -> None:
        if info.name.startswith("files/pad"):
            info.pax_headers = {"comment": "x" * (900 << 10)}

    padded = write(tmp_path / "padded.modelyard", members, pad)
    verify_package(padded)  # fine under the default limits
    with pytest.raises(PackageInvalid, match="headers included"):
        verify_package(padded, Limits(max_members=20, max_total_bytes=1 << 20))


def test_a_chain_of_extended_headers_is_refused(package: Path, tmp_path: Path) -> None:
    members = contents(package)
    chained = tmp_path / "chained.modelyard"
    with tarfile.open(chained, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if name != "manifest.json":
                for _ in range(5):  # five PAX headers before one member, each nesting a call in tarfile
                    pax = tarfile.TarInfo("././@PaxHeader")
                    pax.type, pax.size = tarfile.XHDTYPE, 0
                    tar.fileobj.write(pax.tobuf(tarfile.USTAR_FORMAT))  # type: ignore[union-attr]
                    tar.offset += tarfile.BLOCKSIZE
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(PackageInvalid, match="in a row"):
        verify_package(chained)


@pytest.mark.parametrize("kind", [tarfile.XGLTYPE, tarfile.GNUTYPE_SPARSE], ids=["pax-global", "gnu-sparse"])
def test_global_and_sparse_headers_are_refused(package: Path, tmp_path: Path, kind: bytes) -> None:
    members = contents(package)

    def make_odd(info: tarfile.TarInfo) -> None:
        if info.name != "manifest.json":
            info.type = kind

    with pytest.raises(PackageInvalid, match="unsupported tar header type"):
        verify_package(write(tmp_path / "odd.modelyard", members, make_odd))


def test_an_edited_cached_manifest_does_not_vouch_for_edited_files(package: Path, home: Path) -> None:
    # Editing a cached file *and* its digest in the cached manifest.json must still be refused:
    # the cached manifest is compared with the one inside the package file.
    cached = unpack_cached(package)
    evil = b"print('tampered')\n"
    (cached.files / "model.py").write_bytes(evil)
    manifest = json.loads((cached.root / "manifest.json").read_text())
    manifest["files"]["model.py"] = hashlib.sha256(evil).hexdigest()
    (cached.root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    with pytest.raises(PackageInvalid, match=r"cached manifest\.json") as caught:
        unpack_cached(package)
    assert caught.value.field == "manifest.json"


def test_a_clash_while_unpacking_is_not_mistaken_for_a_concurrent_unpack(
    package: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelyard.package.archive as archive

    def clash(*args: object) -> None:
        raise FileExistsError("files/a")

    monkeypatch.setattr(archive, "_walk", clash)
    with pytest.raises(PackageInvalid, match="clash when unpacked"):
        unpack_cached(package)
    assert not (home / "packages").exists() or not any((home / "packages").iterdir())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"a": "", "a/b": ""}, "'a' is a file"),
        ({"a/b": "", "a": ""}, "'a' is a file"),
        ({"data.bin": "", "DATA.bin": ""}, "differ only in case"),
        ({"caf\u00e9.txt": "", "cafe\u0301.txt": ""}, "differ only in case or Unicode form"),
    ],
    ids=["file-then-folder", "folder-then-file", "case", "nfc"],
)
def test_paths_that_cannot_all_be_unpacked_are_refused(
    package: Path, tmp_path: Path, extra: dict[str, str], message: str
) -> None:
    digest = hashlib.sha256(b"").hexdigest()
    members = edit_manifest(
        contents(package),
        lambda m: m["files"].update(dict.fromkeys(extra, digest)),  # type: ignore[attr-defined]
    )
    members += [(f"files/{rel}", b"") for rel in extra]
    with pytest.raises(PackageInvalid, match=message) as caught:
        unpack_package(write(tmp_path / "x.modelyard", members), tmp_path / "dest")
    assert caught.value.field == "manifest.json"
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize(
    "requirement",
    [
        "numpy==1.26.4\n--extra-index-url http://evil.example/simple",
        "evilpkg @ https://evil.example/evilpkg-1.tar.gz",
        "--index-url=http://evil.example/simple",
        "-e git+https://evil.example/x.git",
        'numpy==1.26.4; python_version > "3" --global-option=--evil',
        "numpy==1.26.4 #comment",
        "numpy==${VERSION}",
        "numpy>=1.26",
        "numpy",
    ],
    ids=[
        "newline",
        "url",
        "index-url",
        "editable",
        "trailing-option",
        "comment",
        "env-var",
        "unpinned",
        "bare",
    ],
)
def test_requirements_pip_would_misread_are_refused(package: Path, tmp_path: Path, requirement: str) -> None:
    members = edit_manifest(contents(package), lambda m: m.update(requirements=[requirement]))
    with pytest.raises(PackageInvalid, match="requirements") as caught:
        read_manifest(write(tmp_path / "x.modelyard", members))
    assert caught.value.field == "manifest.json"


@pytest.mark.parametrize(
    "framework",
    [{"modelyard": "0.1.0 --index-url http://evil.example/"}, {"python": "3.11\nRUN evil"}, {"a b": "1"}],
    ids=["option", "newline", "bad-name"],
)
def test_framework_versions_must_be_plain_versions(
    package: Path, tmp_path: Path, framework: dict[str, str]
) -> None:
    members = edit_manifest(contents(package), lambda m: m["framework"].update(framework))  # type: ignore[attr-defined]
    with pytest.raises(PackageInvalid, match="framework"):
        read_manifest(write(tmp_path / "x.modelyard", members))


def test_pinned_requirements_with_extras_and_markers_are_accepted(package: Path, tmp_path: Path) -> None:
    good = [
        "scikit-learn[alldeps]==1.4.0",
        "torch==2.2.0+cpu; platform_system == 'Linux' and python_version >= \"3.9\"",
    ]
    members = edit_manifest(contents(package), lambda m: m.update(requirements=good))
    assert read_manifest(write(tmp_path / "x.modelyard", members)).requirements == good


def test_a_built_package_is_readable_by_others(tmp_path: Path) -> None:
    # mkstemp's 0600 would leave the package unreadable to a container's non-root user.
    old = os.umask(0o022)
    try:
        built = build_package(author_dir(tmp_path / "src"), tmp_path / "p.modelyard", created_at=FIXED_TIME)
    finally:
        os.umask(old)
    assert stat.S_IMODE(built.stat().st_mode) == 0o644


def test_a_negative_member_size_is_refused(package: Path, tmp_path: Path) -> None:
    members = contents(package)
    negative = tmp_path / "negative.modelyard"
    with tarfile.open(negative, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(members[0][1])
        tar.addfile(info, io.BytesIO(members[0][1]))
        header = tarfile.TarInfo("files/model.py")
        header.size = -1  # written base-256; would count -1 byte toward the size limit
        tar.fileobj.write(header.tobuf(tarfile.GNU_FORMAT))  # type: ignore[union-attr]
        tar.offset += tarfile.BLOCKSIZE
    with pytest.raises(PackageInvalid, match="negative size"):
        verify_package(negative)


def test_an_overlong_member_name_is_refused(package: Path, tmp_path: Path) -> None:
    members = [*contents(package), ("files/" + "d/" * 3000 + "x", b"")]
    with pytest.raises(PackageInvalid, match="member name over"):
        verify_package(write(tmp_path / "long.modelyard", members))
