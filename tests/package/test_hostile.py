"""Hostile packages on every path that reads one: a gzip bomb is refused at its member's header,
before a byte of it is inflated or written; escapes, links, devices, duplicate and unlisted members
are refused by verification, by unpacking, and by the cache ``modelyard serve`` stages into."""

from __future__ import annotations

import hashlib
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import PackageInvalid
from modelyard.package import Limits, unpack_cached, unpack_package, verify_package
from modelyard.package.loading import spec_from_path
from tests.cli.test_serve_cli import CLI, ENV, EXIT_TIMEOUT_S
from tests.package.hostile import ABSOLUTE_TARGET, BOMB_MEMBER, HOSTILE, bomb, hostile, real_package
from tests.package.test_archive import contents, edit_manifest, write

# Each path a package is read by, as a call on (package, scratch folder).
READERS: dict[str, Callable[[Path, Path], Any]] = {
    "verify": lambda package, scratch: verify_package(package),
    "unpack": lambda package, scratch: unpack_package(package, scratch / "dest"),
    "cache": lambda package, scratch: unpack_cached(package),
    "serve": lambda package, scratch: spec_from_path(str(package)),
}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return real_package(tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="module")
def gzip_bomb(real: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bomb(real, tmp_path_factory.mktemp("bomb") / "bomb.modelyard")


def left_behind(scratch: Path, home: Path) -> list[Path]:
    """Files an unpacking left in the scratch folder (the package itself aside) or the cache."""
    found = [p for p in scratch.rglob("*") if p.is_file() and p.suffix != ".modelyard"]
    return found + [p for p in (home / "packages").rglob("*") if p.is_file()]


@pytest.mark.parametrize("reader", READERS)
def test_a_gzip_bomb_is_refused_at_its_header_naming_the_member(
    gzip_bomb: Path, tmp_path: Path, home: Path, reader: str
) -> None:
    assert gzip_bomb.stat().st_size < 1 << 20  # 128 MiB of zeros behind one honest header
    started = time.monotonic()
    with pytest.raises(PackageInvalid, match="refused before inflating") as caught:
        READERS[reader](gzip_bomb, tmp_path)
    assert time.monotonic() - started < 1.0
    assert caught.value.field == BOMB_MEMBER
    assert left_behind(tmp_path, home) == []


@pytest.mark.slow
def test_serve_refuses_a_bomb_without_writing_it_to_staging(gzip_bomb: Path, tmp_path: Path) -> None:
    # The real `modelyard serve`, allowed to write no file past 16 MiB: unpacking the bomb's
    # 128 MiB member would fail with EFBIG (Python ignores SIGXFSZ) instead of the one-line refusal.
    def small_files_only() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))

    home = tmp_path / "serve-home"
    done = subprocess.run(
        [*CLI, "serve", str(gzip_bomb), "--port", "0"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**ENV, "MODELYARD_HOME": str(home)},
        timeout=EXIT_TIMEOUT_S,
        preexec_fn=small_files_only,
        check=False,
    )
    assert "File too large" not in done.stderr, "serve wrote the bomb to disk"
    assert done.returncode == 2, done.stderr
    assert "refused before inflating" in done.stderr, done.stderr
    assert BOMB_MEMBER in done.stderr, done.stderr
    assert [p for p in home.rglob("*") if p.is_file()] == []


def test_an_ordinary_package_is_far_within_the_expansion_limit(real: Path) -> None:
    # No grace at all: a real package unpacks to a few times its size, not a hundred.
    verify_package(real, Limits(expansion_grace_bytes=0))
    with pytest.raises(PackageInvalid, match="refused before inflating"):
        verify_package(real, Limits(expansion_grace_bytes=0, max_expansion=1))


def test_the_expansion_limit_counts_headers_too(real: Path, tmp_path: Path) -> None:
    # A hundred listed, empty files, each behind a 900 KiB PAX header (under the per-header limit):
    # 90 MB of headers in a file of about 100 KB. Not one member byte, yet a bomb all the same.
    names = [f"pad{i}" for i in range(100)]
    empty = hashlib.sha256(b"").hexdigest()

    def listed(manifest: dict[str, Any]) -> None:
        manifest["files"].update(dict.fromkeys(names, empty))

    members = [*edit_manifest(contents(real), listed), *((f"files/{name}", b"") for name in names)]

    def pad(info: Any) -> None:
        if info.name.startswith("files/pad"):
            info.pax_headers = {"comment": "x" * (900 << 10)}

    padded = write(tmp_path / "padded.modelyard", members, pad)
    assert padded.stat().st_size < 1 << 20
    with pytest.raises(PackageInvalid, match="headers included"):
        verify_package(padded)


@pytest.mark.parametrize("reader", ["verify", "unpack", "cache", "serve"])
@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_members_are_refused_on_every_path(
    real: Path, tmp_path: Path, home: Path, kind: str, reader: str
) -> None:
    crafted = hostile(real, tmp_path / "hostile.modelyard", kind)
    with pytest.raises(PackageInvalid, match=HOSTILE[kind][3]):
        READERS[reader](crafted, tmp_path)
    assert not (tmp_path / "dest").exists()
    assert left_behind(tmp_path, home) == []
    assert not Path(ABSOLUTE_TARGET).exists()
