"""The version, in one place (read by pyproject.toml's dynamic version and by ``edgekit --version``)."""

__version__ = "0.2.0"
