"""Singer tap for the DeepConverse Export API."""

from importlib.metadata import version

# The one place the version is written is pyproject.toml; the installed metadata carries it.
__version__ = version("tap-deepconverse")
