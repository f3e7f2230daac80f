"""Declarative deployments (issue 5, in progress): the deploy file, its diff against what runs,
and the backends that carry it out. See docs/deploy.md."""

from modelyard.deploy.spec import DeployFile, Deployment, VersionDeployment, VersionSpec

__all__ = ["DeployFile", "Deployment", "VersionDeployment", "VersionSpec"]
