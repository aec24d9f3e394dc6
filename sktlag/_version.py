"""The package version: the only place it is written (``pyproject.toml`` reads it)."""

__version__ = "0.3.0.dev0"
