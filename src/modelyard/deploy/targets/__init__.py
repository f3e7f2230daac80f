"""Deploy targets: where a deployment's versions run (``DeployTarget`` in ``deploy.backend``)."""
