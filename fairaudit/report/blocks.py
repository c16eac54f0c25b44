"""The parts of a results.json that each carry their own attributes: why one place.

A multi-label audit has one block per finding (`findings[]`), a segmentation audit with
`--structures` one per structure (`structures[]`; the top level repeats the first), any other
audit one: the whole results.json. Key findings and the model card speak of every block
(docs/reports.md, "Key findings"), so both take them from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class Block(NamedTuple):
    """`kind`: "finding", "structure" or "" (the whole audit); `name`: the finding or
    structure ("" for the whole audit); `data`: the mapping that holds its `attributes`."""

    kind: str
    name: str
    data: Mapping[str, Any]


def result_blocks(results: Mapping[str, Any]) -> list[Block]:
    """The blocks of `results`, in results.json's order (module doc)."""
    findings = results.get("findings")
    if isinstance(findings, list) and findings:
        return [Block("finding", str(b.get("finding", "")), b) for b in findings if isinstance(b, Mapping)]
    structures = results.get("structures")
    if isinstance(structures, list) and structures:
        return [Block("structure", str(s.get("name", "")), s) for s in structures if isinstance(s, Mapping)]
    return [Block("", "", results)]


def check_block(check: Mapping[str, Any]) -> str | None:
    """The block a gate check belongs to: its finding (multi-label) or its structure
    (`--structures`, whose checks are otherwise alike); None for a one-block audit."""
    value = check.get("finding")
    return check.get("structure") if value is None else value
