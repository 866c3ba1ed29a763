"""A local write-ahead log: one JSON line per accepted or quarantined event, written
and fsynced before the request is answered.

The log is a directory of segments ``wal-<seq>.jsonl``. Requests append to the
open segment; :meth:`WriteAheadLog.rotate` closes it and opens the next. Closed
segments are written to Delta by the service and then deleted; a segment found
at start (the process died before writing it) is written again. The Delta writes
are insert-only MERGEs on each table's key, so a segment written twice lands once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("lakehound.serve")
# One encoder for every record (json.dumps with options builds one per call).
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


class WriteAheadLog:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        existing = self.segments()
        self._seq = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        self._open_segment()

    def _open_segment(self) -> None:
        self.current = self.root / f"wal-{self._seq:012d}.jsonl"
        self._fh = self.current.open("ab")
        self.pending = 0
        # Make the new file's directory entry durable too.
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def segments(self) -> list[Path]:
        return sorted(self.root.glob("wal-*.jsonl"))

    def append(self, records: list[dict[str, Any]]) -> None:
        """Write ``records`` and fsync: when this returns they survive a crash."""
        if not records:
            return
        data = ("\n".join(map(_encode, records)) + "\n").encode()
        with self._lock:
            self._fh.write(data)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self.pending += len(records)

    def rotate(self) -> list[Path]:
        """Close the open segment (if it holds anything); the closed segments, oldest first."""
        with self._lock:
            if self.pending:
                self._fh.close()
                self._seq += 1
                self._open_segment()
            return [p for p in self.segments() if p != self.current]

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def read_segment(path: Path) -> Iterator[dict[str, Any]]:
    """The records of one segment. A torn last line (the process died inside a
    write, before its fsync returned and so before any answer) is skipped."""
    with path.open("rb") as fh:
        lines = fh.read().split(b"\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise ValueError(f"{path}: line {i + 1} is not JSON") from None
            log.warning("%s: skipping a torn last line (never acknowledged)", path)
