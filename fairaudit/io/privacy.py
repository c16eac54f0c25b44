"""Pseudonymized ids for per-case outputs (DESIGN: Privacy)."""

from __future__ import annotations

import hashlib
import secrets


class IdHasher:
    """Salted SHA-256 of an id, unless the user asked to keep ids in clear (--keep-ids).

    Without a salt from the user, a random one is drawn per run and never written: the
    hashes then cannot be linked back to patients, nor across runs. Pass --salt (or set
    FAIRAUDIT_SALT) to get hashes that are stable across runs.
    """

    def __init__(self, salt: str | None = None, keep_ids: bool = False) -> None:
        self.keep_ids = keep_ids
        self._salt = (salt if salt else secrets.token_hex(16)).encode("utf-8")

    def __call__(self, value: str) -> str:
        if self.keep_ids:
            return value
        if value == "":
            return ""
        return hashlib.sha256(self._salt + b"\x00" + value.encode("utf-8")).hexdigest()[:16]
