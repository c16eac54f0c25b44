"""Single source of the package version (kept import-light for `--version`)."""

__version__ = "0.1.0"
