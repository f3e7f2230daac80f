"""Declarative deployments: the deploy file, its diff against the live state, apply and its
history, and where versions run (``targets/``). See docs/deploy.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.deploy.diff import Action, Plan, diff, render_plan
    from modelyard.deploy.file import DeployFileError, load_deploy_file, read_deploy_file
    from modelyard.deploy.spec import DeployFile, Deployment, VersionDeployment, VersionSpec

__all__ = [
    "Action",
    "DeployFile",
    "DeployFileError",
    "Deployment",
    "Plan",
    "VersionDeployment",
    "VersionSpec",
    "diff",
    "load_deploy_file",
    "read_deploy_file",
    "render_plan",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Action": "diff",
        "DeployFile": "spec",
        "DeployFileError": "file",
        "Deployment": "spec",
        "Plan": "diff",
        "VersionDeployment": "spec",
        "VersionSpec": "spec",
        "diff": "diff",
        "load_deploy_file": "file",
        "read_deploy_file": "file",
        "render_plan": "diff",
    },
)
