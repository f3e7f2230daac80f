"""Kubernetes: manifests rendered from a deploy file (``manifests``) and a target that applies them
server-side and registers each version's Service as its replica (``target``)."""
