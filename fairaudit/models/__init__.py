"""Models: architectures, losses, bundles, preprocessing (torch imported lazily by submodules).

Importing ``fairaudit.models`` itself is light; ``fairaudit.models.architectures`` and
``fairaudit.models.losses`` import torch, ``fairaudit.models.preprocessing`` does not.
"""

from fairaudit.models.bundle import Bundle, list_bundled, load_bundle, resolve_bundled, save_bundle

__all__ = ["Bundle", "list_bundled", "load_bundle", "resolve_bundled", "save_bundle"]
