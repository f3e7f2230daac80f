"""One ``/metrics`` for several worker processes: each publishes snapshots, any of them merges.

prometheus_client's own multiprocess mode keeps every value in an mmap'd file and pays a lock and
a file write on each increment — on the gateway's request path that measured as a sizeable share
of the whole hop. Instead each worker counts in memory and, at every routing-table poll, writes its
exposition text to ``<dir>/<pid>.prom``; a scrape on any worker adds its own fresh values to the
others' latest snapshots. Counters and histograms of workers that died keep counting (they are
cumulative, and dropping them would look like a counter reset); gauges count only live workers.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["merge", "publish"]

_MAX_GAUGES = frozenset({"modelyard_gateway_routing_revision"})  # combined with max, not a sum
Key = tuple[str, tuple[tuple[str, str], ...]]


def publish(registry: CollectorRegistry, directory: Path, pid: int) -> None:
    """Write this worker's snapshot atomically (a reader never sees half a file)."""
    temporary = directory / f".{pid}.tmp"
    temporary.write_bytes(generate_latest(registry))
    os.replace(temporary, directory / f"{pid}.prom")


def merge(own: bytes, directory: Path, pid: int) -> bytes:
    """``own`` exposition text plus every other worker's snapshot in ``directory``, summed."""
    texts = [(pid, own)]
    for path in directory.glob("*.prom"):
        if path.stem.isdigit() and int(path.stem) != pid:
            with contextlib.suppress(OSError):
                texts.append((int(path.stem), path.read_bytes()))
    families: dict[str, tuple[str, str, dict[Key, float]]] = {}
    for worker, text in texts:
        alive = worker == pid or _alive(worker)
        for family in text_string_to_metric_families(text.decode()):
            if family.name.endswith("_created") or (family.type == "gauge" and not alive):
                continue
            _, _, samples = families.setdefault(family.name, (family.type, family.documentation, {}))
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = samples.get(key)
                if old is None:
                    samples[key] = sample.value
                elif family.name in _MAX_GAUGES:
                    samples[key] = max(old, sample.value)
                else:
                    samples[key] = old + sample.value
    return _render(families)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _render(families: dict[str, tuple[str, str, dict[Key, float]]]) -> bytes:
    lines: list[str] = []
    for name, (kind, documentation, samples) in families.items():
        shown = f"{name}_total" if kind == "counter" else name
        lines.append(f"# HELP {shown} {_escape_help(documentation)}")
        lines.append(f"# TYPE {shown} {kind}")
        for (sample, labels), value in samples.items():
            rendered = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
            lines.append(f"{sample}{{{rendered}}} {value!r}" if labels else f"{sample} {value!r}")
    return ("\n".join(lines) + "\n").encode()


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
