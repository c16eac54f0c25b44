"""Bound what one file's header parse may read, so that no file stalls a scan.

pydicom parses a dataset element by element until the file ends. A file that starts with
a valid preamble and header and then holds gigabytes of zeros (a sparse file costs no
disk) parses as hundreds of millions of empty 8-byte elements: about an hour per 5 GB
(issue 19, point 4). Two bounds, both documented in docs/dicom.md ("Limits"):

- `max_file_size` (--max-file-size): a larger file is refused from its size alone;
- the parse itself goes through `BoundedReader`, which stops it at `ZERO_RUN` reads in a
  row that return only zero bytes (no element header is all zeros: a zero-filled region
  ends the parse at once), after `MAX_HEADER_READS` reads, or past `MAX_HEADER_BYTES`
  bytes read (values that pydicom defers, the pixel data of a large file, are not read
  during the parse). Each element costs pydicom at least one read, so the reads bound
  the parse's time: 1,000,000 reads take about 7 s, and cover enhanced multi-frame
  headers of over 15,000 frames (1,000 frames with undefined-length functional groups
  made 61,000 reads).
"""

from __future__ import annotations

import io
from typing import BinaryIO

DEFAULT_MAX_FILE_SIZE = 2**31  # 2 GiB: twice --max-pixels' default as 32-bit values
MAX_HEADER_READS = 1_000_000
ZERO_RUN = 1024
MAX_HEADER_BYTES = 64 * 2**20


class HeaderTooLong(Exception):
    """The header parse went past its bound (the reason, with numbers only)."""


class BoundedReader(io.RawIOBase):
    """A read-only view of a binary file that raises HeaderTooLong once the parse made
    more than `max_reads` reads or read more than `max_bytes` bytes; `release()` lifts
    both bounds (for the deferred pixel data, read after the header checks passed)."""

    def __init__(
        self,
        raw: BinaryIO,
        max_reads: int | None = None,
        max_bytes: int | None = None,
        *,
        owns: bool = False,
    ) -> None:
        super().__init__()
        self._raw = raw
        self._owns = owns  # close `raw` with this reader (else the caller closes it)
        self._reads = 0
        self._bytes = 0
        self._zeros = 0  # reads in a row that returned only zero bytes
        self._max_reads: int | None = MAX_HEADER_READS if max_reads is None else max_reads
        self._max_bytes: int | None = MAX_HEADER_BYTES if max_bytes is None else max_bytes
        self.exceeded: str = ""

    def release(self) -> None:
        self._max_reads = self._max_bytes = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def read(self, size: int | None = -1) -> bytes:
        self._reads += 1
        if self._max_reads is not None and self._reads > self._max_reads:
            self.exceeded = (
                f"the header does not end within {self._max_reads} reads "
                "(far more elements than any image header has)"
            )
            raise HeaderTooLong(self.exceeded)
        if self._max_bytes is None:  # released
            return self._raw.read(size)
        # Asked-for sizes can be bogus length fields: bound what is read, not what is asked.
        room = self._max_bytes - self._bytes
        data = self._raw.read(room + 1 if size is None or size < 0 or size > room else size)
        self._bytes += len(data)
        if self._bytes > self._max_bytes:
            self.exceeded = f"the header is larger than {self._max_bytes} bytes"
            raise HeaderTooLong(self.exceeded)
        if 0 < len(data) <= 16 and data.count(0) == len(data):
            self._zeros += 1
            if self._zeros >= ZERO_RUN:
                self.exceeded = (
                    f"the header runs into zeros ({ZERO_RUN} empty elements in a row): "
                    "a file padded or cut with zeros"
                )
                raise HeaderTooLong(self.exceeded)
        else:
            self._zeros = 0
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            if self._owns:
                self._raw.close()
        finally:
            super().close()
