"""Sinks on this machine: a JSON-lines file, and one that discards everything."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import BinaryIO

from modelyard.gateway.logs.record import ENCODE_SLICE, InferenceLog, encode_lines


class JsonLinesSink:
    """Appends one JSON object per line to a file (parent folders are created).

    Each batch is a single unbuffered ``write()`` to a file opened for appending, so several
    processes sharing one file on a local filesystem never interleave half lines. The disk work
    runs in a thread: the event loop never waits on the file system.
    """

    name = "jsonl"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: BinaryIO | None = None
        # A write the shipper timed out may still be running in its thread: never overlap two.
        self._lock = threading.Lock()

    async def open(self) -> None:
        """Create the parent folders and open the file for appending."""
        await asyncio.to_thread(self._open)

    async def write(self, records: list[InferenceLog]) -> None:
        """Append ``records``, one JSON line each."""
        file = self._file
        if file is None:
            raise RuntimeError(f"{self.path} is not open")
        # Encoded here, written there: encoding in the thread made it and the event loop take turns
        # at the GIL (a measurable cost per record); the write itself releases it. Encoded a slice
        # at a time, with requests served in between: a whole batch is several milliseconds.
        chunks = []
        for start in range(0, len(records), ENCODE_SLICE):
            if start:
                await asyncio.sleep(0)
            chunks.append(encode_lines(records[start : start + ENCODE_SLICE]))
        await asyncio.to_thread(self._write, file, b"".join(chunks))

    async def close(self) -> None:
        """Close the file."""
        file, self._file = self._file, None
        if file is not None:
            await asyncio.to_thread(self._close, file)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed by close()

    def _write(self, file: BinaryIO, lines: bytes) -> None:
        data = memoryview(lines)
        with self._lock:
            while data:  # a raw write may be partial (e.g. interrupted by a signal)
                written = file.write(data)
                data = data[written or 0 :]

    def _close(self, file: BinaryIO) -> None:
        with self._lock:
            file.close()


class DiscardSink:
    """A sink that takes everything and keeps nothing (``log_sink = "none"``)."""

    name = "none"

    async def open(self) -> None:
        """Nothing to open."""

    async def write(self, records: list[InferenceLog]) -> None:
        """Discard ``records``."""

    async def close(self) -> None:
        """Nothing to close."""
