"""Hostile packages, crafted byte by byte, for every path that reads one (verify, unpack, the cache
``modelyard serve`` stages into, the registry): a gzip bomb, path escapes, links, devices, duplicate
and unlisted members. Each is built from a real package so that everything but the attack is valid."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

from tests.package.conftest import FIXED_TIME, author_dir
from tests.package.test_archive import contents, write

BOMB_MEMBER = "files/weights.npy"  # a file the manifest lists: only its size gives it away
ABSOLUTE_TARGET = "/tmp/modelyard-test-hostile-member.py"  # must never come to exist
BOMB_BYTES = 128 << 20  # inflated; the file is about 130 KB, twice past the default 64 MiB grace


def real_package(folder: Path) -> Path:
    from modelyard.package import build_package

    return build_package(author_dir(folder / "src"), folder / "real.modelyard", created_at=FIXED_TIME)


def bomb(real: Path, out: Path, inflated: int = BOMB_BYTES) -> Path:
    """``real``'s manifest and model.py, then ``weights.npy`` as ``inflated`` zero bytes: a valid tar
    whose header says so, gzip'd to about a thousandth of that."""
    members = dict(contents(real))
    with out.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        for name in ("manifest.json", "files/model.py"):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            gz.write(info.tobuf(tarfile.PAX_FORMAT) + members[name] + _padding(info.size))
        header = tarfile.TarInfo(BOMB_MEMBER)
        header.size = inflated
        gz.write(header.tobuf(tarfile.PAX_FORMAT))
        zeros = bytes(1 << 20)
        for start in range(0, inflated, len(zeros)):
            gz.write(zeros[: inflated - start])
        gz.write(_padding(inflated) + bytes(2 * tarfile.BLOCKSIZE))  # the end-of-archive marker
    return out


def _padding(size: int) -> bytes:
    return bytes(-size % tarfile.BLOCKSIZE)


def _special(kind: bytes, target: str) -> object:
    def tweak(info: tarfile.TarInfo) -> None:
        if info.name == "files/evil":
            info.type, info.linkname, info.size = kind, target, 0

    return tweak


# name -> (extra member, its bytes, tar header tweak or None, what the refusal says)
HOSTILE: dict[str, tuple[str, bytes, object, str]] = {
    "dot-dot": ("files/../../evil.py", b"boom", None, "'..'"),
    "absolute": (ABSOLUTE_TARGET, b"boom", None, "absolute"),
    "outside-files": ("evil.py", b"boom", None, "outside files/"),
    "symlink": ("files/evil", b"", _special(tarfile.SYMTYPE, "/etc/passwd"), "not a regular file"),
    "hardlink": ("files/evil", b"", _special(tarfile.LNKTYPE, "files/model.py"), "not a regular file"),
    "device": ("files/evil", b"", _special(tarfile.CHRTYPE, ""), "not a regular file"),
    "fifo": ("files/evil", b"", _special(tarfile.FIFOTYPE, ""), "not a regular file"),
    "duplicate": ("files/model.py", b"import os; os.system('id')\n", None, "appears twice"),
    "unlisted": ("files/backdoor.py", b"import os\n", None, "not in its manifest"),
}


def hostile(real: Path, out: Path, kind: str) -> Path:
    """``real`` with one hostile member of ``kind`` (a key of :data:`HOSTILE`) appended."""
    name, data, tweak, _ = HOSTILE[kind]
    return write(out, [*contents(real), (name, data)], tweak)  # type: ignore[arg-type]
