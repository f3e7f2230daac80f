"""The ``modelyard`` command line."""

from modelyard.cli.main import app, main

__all__ = ["app", "main"]
