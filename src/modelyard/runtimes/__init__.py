"""Zero-code runtimes: standard model formats served as ordinary model classes."""

from modelyard.runtimes.loader import SUFFIXES, spec_from_config, spec_from_path

__all__ = ["SUFFIXES", "spec_from_config", "spec_from_path"]
