"""fairaudit: fairness audits for medical-imaging AI models."""

from fairaudit._version import __version__

__all__ = ["__version__"]
