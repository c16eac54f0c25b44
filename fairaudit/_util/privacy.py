"""Pseudonymized ids and file paths for per-case outputs and logs (docs/threat-model.md,
"Identifiers in file names, error messages and attributes").

Paths inside an input folder are identifiers too (folders are often named after the
patient): outputs and log lines show a path as the salted hash of its text plus its
extension (`IdHasher.path`), unless --keep-ids. Error reasons never quote a header
value (`scrub_reason`): they name the attribute and the problem. docs/acquisition.md,
"Identifiers in outputs", says how a user with the salt maps a pseudonym back.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from typing import Any

# A suffix short and plain enough to be a format, not a name (".dcm", ".png", ".npy").
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,5}$")


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

    def path(self, rel: str) -> str:
        """A file's path (relative to its input folder, with `/`) as outputs show it: the
        hash of the whole path plus a plain extension, so that a user can tell a .dcm from
        a .png but no folder or file name is written. The hash is that of the path as an
        id (`self(rel)`): where the join key is `path`, the two match."""
        if self.keep_ids or rel == "":
            return rel
        ext = _EXTENSION.search(rel.rsplit("/", 1)[-1])
        return self(rel) + (ext.group(0).lower() if ext else "")


# The hasher of the running command, for log lines that name a file; set by each command
# as soon as its hasher exists (worker processes are forked later and inherit it).
_for_logs: IdHasher | None = None


def use_for_logs(hasher: IdHasher) -> None:
    """Make log lines name files as `hasher` names them in the outputs."""
    global _for_logs
    _for_logs = hasher


def shown_path(rel: str) -> str:
    """A path as a log line may show it: the run's pseudonym (in clear with --keep-ids);
    before any command set its hasher, a pseudonym under a random salt of this process."""
    global _for_logs
    if _for_logs is None:
        _for_logs = IdHasher()
    return _for_logs.path(str(rel))


# --------------------------------------------------------------------------- reasons

HIDDEN = "(value not shown)"
# A quoted text, not an apostrophe ("can't", "file's"): no letter before the opening quote.
_QUOTED = re.compile(r"(?<!\w)(?:'[^'\n]*'|\"[^\"\n]*\"|‘[^’\n]*’|“[^”\n]*”)")
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)


def _is_attribute_name(text: str) -> bool:
    """A DICOM keyword or attribute name ("PhotometricInterpretation", "Photometric
    Interpretation"): what a reason may name."""
    try:
        from pydicom.datadict import keyword_dict, tag_for_keyword
    except ImportError:  # pragma: no cover - pydicom is a dependency of every DICOM path
        return False
    if tag_for_keyword(text) is not None:
        return True
    return text.replace(" ", "").replace("'", "") in keyword_dict


def scrub_reason(text: str, values: Iterable[str] = ()) -> str:
    """`text` (an exception's message) without the values it may quote: every quoted
    string that is not a DICOM attribute name, and every one of `values` (the file's own
    header text, its path), becomes "(value not shown)". pydicom quotes element values in
    its messages ("Unknown (0028,0004) 'Photometric Interpretation' value 'DOE^JANE'")."""
    for v in sorted({str(v) for v in values if v and len(str(v)) >= 3}, key=len, reverse=True):
        text = text.replace(v, HIDDEN)

    def one(m: re.Match[str]) -> str:
        inner = m.group(0)[1:-1]
        return m.group(0) if inner == HIDDEN or _is_attribute_name(inner) else HIDDEN

    text = _QUOTED.sub(one, text)
    return text.replace(f"'{HIDDEN}'", HIDDEN).replace(f'"{HIDDEN}"', HIDDEN)


def dataset_text(ds: Any) -> list[str]:
    """The text values of a pydicom dataset's top-level elements (names, ids, codes): what
    `scrub_reason` removes from a decoder's message about that dataset."""
    out: list[str] = []
    try:
        elements = list(ds.iterall()) if hasattr(ds, "iterall") else []
    except Exception:  # noqa: BLE001 - a dataset that cannot be walked: the quoted-text rule still applies
        return out
    for elem in elements:
        if getattr(elem, "VR", None) not in _TEXT_VRS:
            continue
        try:
            value = elem.value
        except Exception:  # noqa: BLE001 - an unparsable value is not in any message
            continue
        items = value if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue" else [value]
        for item in items:
            text = str(item).strip().strip("\x00").strip()
            if text:
                out.append(text)
                if elem.VR == "PN":  # a name's parts can be quoted apart ("DOE", "JANE")
                    out.extend(p for p in re.split(r"[\^=]", text) if len(p.strip()) >= 3)
    return out
