"""A deploy file as a viewer may see it: every ``env`` value replaced, the names kept.

Environment variables are where deploy files carry credentials (``AWS_SECRET_ACCESS_KEY``, a
database URL), so the history shows their values only to deployers and admins.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["REDACTED", "redact_env"]

REDACTED = "<redacted>"


def redact_env(text: str) -> str:
    """``text`` (a deploy file that was applied, so it parsed then) with each ``env`` mapping's
    values replaced by :data:`REDACTED`; comments and layout are not kept."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return f"# {REDACTED}: the file could not be parsed again\n"
    return yaml.safe_dump(_redacted(data), sort_keys=False, allow_unicode=True)


def _redacted(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: dict.fromkeys(value, REDACTED)
            if key == "env" and isinstance(value, dict)
            else _redacted(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_redacted(item) for item in node]
    return node
