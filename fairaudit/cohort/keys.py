"""Ids as fixed-size digests and integer codes, text columns as codes: what lets the join
hold a few bytes per row instead of a Python string per cell (memory flat on large cohorts).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Keys of pandas' SipHash (16 bytes each): two independent 64-bit hashes per id.
_HASH_KEYS = ("fairaudit-join-1", "fairaudit-join-2")


def digest(ids: pd.Series) -> np.ndarray:
    """(n, 2) uint64: two keyed 64-bit hashes of each id's text. Equal ids give equal rows;
    two different ids the same row with probability about 2**-128 (per pair), so the join
    holds 16 bytes per row instead of a string."""
    values = ids.to_numpy(dtype=object)
    return np.stack([pd.util.hash_array(values, hash_key=k, categorize=False) for k in _HASH_KEYS], axis=1)


def join_codes(digests: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Integer codes of every input's ids (equal ids, equal codes) and how many distinct ids
    there are: every lookup, count and membership test after it is an array operation."""
    both = np.concatenate(digests) if digests else np.empty((0, 2), dtype=np.uint64)
    order = np.lexsort((both[:, 1], both[:, 0]))
    ranked = both[order]
    new = np.ones(len(ranked), dtype=bool)
    new[1:] = (ranked[1:, 0] != ranked[:-1, 0]) | (ranked[1:, 1] != ranked[:-1, 1])
    group = np.cumsum(new) - 1
    del ranked, new
    codes = np.empty(len(both), dtype=np.int64)
    codes[order] = group
    n = int(group[-1]) + 1 if len(group) else 0
    return np.split(codes, np.cumsum([len(d) for d in digests])[:-1]), n


def first_rows(codes: np.ndarray, n_ids: int) -> tuple[np.ndarray, np.ndarray]:
    """Per id code: the first row of `codes` that has it (-1: none) and how many rows have it.
    Indexed by another input's codes, they are that input's lookup into this one."""
    first = np.full(n_ids, -1, dtype=np.int64)
    distinct, at = np.unique(codes, return_index=True)
    first[distinct] = at
    return first, np.bincount(codes, minlength=n_ids)


class TextCodes:
    """A text column as integer codes into its distinct values (memory: a per-row string
    only while its chunk is read)."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._code: dict[str, int] = {}
        self._parts: list[np.ndarray] = []

    def add(self, cells: pd.Series) -> None:
        local, uniques = pd.factorize(cells.astype(str), use_na_sentinel=False)
        to_global = np.empty(len(uniques), dtype=np.int64)
        for j, value in enumerate(uniques):
            code = self._code.get(value)
            if code is None:
                code = self._code[value] = len(self.values)
                self.values.append(value)
            to_global[j] = code
        self._parts.append(to_global[local])

    def codes(self) -> np.ndarray:
        return np.concatenate(self._parts) if self._parts else np.empty(0, dtype=np.int64)
