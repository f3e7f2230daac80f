"""Declarative deployments (issue 5, in progress): the deploy file, its diff, Kubernetes manifests,
and replicas announcing themselves to the gateways. See docs/deploy.md."""

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
