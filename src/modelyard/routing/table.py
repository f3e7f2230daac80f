"""The routing table: which replicas serve each project/model/version, with what weight.

A :class:`RoutingTable` is an immutable snapshot. The control plane stores it in the database
(``routing/store.py``), or a file holds it (``routing/route_file.py``); every gateway worker polls
the table's ``revision`` and swaps in a fresh snapshot when it changes, so a request in flight keeps
the snapshot it started with.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
from collections.abc import Mapping
from typing import Any, Literal, cast, get_args

from modelyard.errors import InvalidInput

__all__ = [
    "MAX_TIMEOUT_S",
    "MAX_WEIGHT",
    "NAME_PATTERN",
    "PAYLOAD_MODES",
    "KeyGrant",
    "ModelRoute",
    "PayloadMode",
    "RoutingTable",
    "VersionRoute",
    "check_name",
    "check_replica_url",
    "is_metadata_host",
    "route_from_dict",
    "route_to_dict",
]

MAX_WEIGHT = 1_000_000  # weights are relative; this only keeps sums far from integer limits
MAX_TIMEOUT_S = 3600.0

PayloadMode = Literal["full", "hash", "none"]
PAYLOAD_MODES: tuple[str, ...] = get_args(PayloadMode)

# Project, model and version names travel in URL paths: keep them to one safe path segment.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # always fullmatch


def check_name(value: str, field: str) -> str:
    """``value`` if it is a valid project/model/version name, else InvalidInput naming ``field``."""
    # fullmatch, not match: "$" would also accept a trailing newline ("v1\n").
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"{field} {value!r} must be 1-63 characters of letters, digits, '_', '.', '-', "
            "starting with a letter or digit",
            field=field,
        )
    return value


def check_replica_url(url: str, field: str = "url") -> str:
    """A replica base URL: ``http://host:port`` (no path, query or trailing slash kept), and not
    the cloud's metadata service (``is_metadata_host``): the gateway would forward requests, and
    their answers, to whatever a replica URL names. Loopback is allowed (local replicas)."""
    text = url if isinstance(url, str) else ""
    match = re.fullmatch(r"http://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})/?", text)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise InvalidInput(f"replica URL {url!r} must look like http://host:port", field=field)
    if is_metadata_host(match.group(1)):
        raise InvalidInput(
            f"replica URL {url!r} names a link-local or cloud metadata address, never a replica",
            field=field,
        )
    return url.rstrip("/")


# The metadata services' names (GCP, AWS) and the addresses outside link-local that serve one (AWS
# over IPv6, Alibaba Cloud). Link-local addresses (169.254.0.0/16, fe80::/10) are refused whole.
_METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
_METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
)


def is_metadata_host(host: str) -> bool:
    """Whether a URL's ``host`` is a link-local address or a cloud metadata service's name or
    address, in any spelling the resolver accepts (``169.254.169.254``, ``0xa9fea9fe``,
    ``2852039166``, ``[::ffff:169.254.169.254]``, ``METADATA.google.internal.``). A name that only
    resolves to such an address is not caught here: that would need a lookup at every connection."""
    name = host.lower().rstrip(".")
    if name in _METADATA_NAMES:
        return True
    address = _address(name)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_link_local or address in _METADATA_ADDRESSES


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address, also in the forms ``inet_aton`` reads (``2852039166``, ``0251.0xfe.1``)."""
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        pass
    if not re.fullmatch(r"[0-9a-fx.]+", host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class VersionRoute:
    """One version of a routed model.

    ``weight`` is its share of the model's unpinned traffic (any non-negative integers; 0 means
    reachable only when pinned). ``mirror`` makes it receive a copy of ``mirror_fraction`` of the
    model's requests, whose answers are logged and never returned. ``target`` is the model's name on
    the replicas' model servers (default: the routed model's name).
    """

    version: str
    weight: int = 0
    mirror: bool = False
    mirror_fraction: float = 1.0
    target: str = ""
    replicas: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class ModelRoute:
    """A routed model: its versions plus per-route options."""

    project: str
    model: str
    versions: tuple[VersionRoute, ...] = ()
    timeout_s: float = 30.0
    log_payload: PayloadMode = "hash"
    log_sample: float = 1.0

    def version(self, name: str) -> VersionRoute | None:
        for version in self.versions:
            if version.version == name:
                return version
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class KeyGrant:
    """What a gateway knows about one active API key (``routing/keys.py``): the project it opens,
    and its rate limit (``rate_per_s`` None: none; ``burst``: requests it may make at once)."""

    project: str
    rate_per_s: float | None = None
    burst: int = 1


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingTable:
    """Every routed model, keyed by ``(project, model)``; ``revision`` grows with every change.

    ``keys`` maps the SHA-256 (hex) of each active API key to its :class:`KeyGrant`: the keys
    themselves are never stored, so a table (or a gateway's memory) never holds one. ``keyed``
    names the projects that take requests only with one of their keys: every project that has
    keys, revoked ones included, so that revoking a project's last key never opens it to anyone.
    """

    revision: int = 0
    routes: Mapping[tuple[str, str], ModelRoute] = dataclasses.field(default_factory=dict)
    keys: Mapping[str, KeyGrant] = dataclasses.field(default_factory=dict)
    keyed: frozenset[str] = frozenset()

    def projects(self) -> set[str]:
        return {project for project, _ in self.routes}


def route_to_dict(route: ModelRoute) -> dict[str, Any]:
    """``route`` as JSON-ready data: what the REST API returns and ``route show --json`` prints."""
    return {
        "project": route.project,
        "model": route.model,
        "timeout_s": route.timeout_s,
        "log_payload": route.log_payload,
        "log_sample": route.log_sample,
        "versions": [
            {
                "version": version.version,
                "weight": version.weight,
                "mirror": version.mirror,
                "mirror_fraction": version.mirror_fraction,
                "target": version.target,
                "replicas": list(version.replicas),
            }
            for version in route.versions
        ],
    }


def route_from_dict(data: Mapping[str, Any]) -> ModelRoute:
    """The inverse of :func:`route_to_dict`; malformed data raises InvalidInput naming the field."""
    try:
        versions = tuple(
            VersionRoute(
                version=str(item["version"]),
                weight=int(item["weight"]),
                mirror=bool(item["mirror"]),
                mirror_fraction=float(item["mirror_fraction"]),
                target=str(item.get("target", "")),
                replicas=tuple(str(url) for url in item.get("replicas", ())),
            )
            for item in data["versions"]
        )
        payload = str(data["log_payload"])
        if payload not in PAYLOAD_MODES:
            raise ValueError(f"log_payload {payload!r}")
        return ModelRoute(
            project=str(data["project"]),
            model=str(data["model"]),
            versions=versions,
            timeout_s=float(data["timeout_s"]),
            log_payload=cast(PayloadMode, payload),
            log_sample=float(data["log_sample"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"malformed route data: {exc!r}", field="route") from None
