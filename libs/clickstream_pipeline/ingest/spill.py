"""Arrow batches a task must hold until it returns them, bounded in memory by bytes.

A sink task hands back some records whole (dead letters with their raw bytes, records left to
Spark's rules) only after its input is consumed. `SpilledBatches` keeps them in memory up to a
byte budget and moves them to a temporary Arrow IPC stream file beyond it, in Spark's local
directories (where PySpark's own shuffle spills), so a backlog of large messages never needs
a worker's memory; `drain` reads them back in order, one batch at a time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

import pyarrow as pa

# After a batch this large, freed memory goes back to the system: Arrow's allocator (mimalloc)
# keeps what it frees, so a worker's memory would follow every large batch it has seen rather
# than what it holds (measured: 1.8 GB against about 0.3 GB over 1 MB messages).
RELEASE_AFTER_BYTES = 8 << 20


def release_freed_memory(batch: pa.RecordBatch) -> None:
    """Return the allocator's freed memory to the system after a large batch (about 1 us)."""
    if batch.nbytes >= RELEASE_AFTER_BYTES:
        pa.default_memory_pool().release_unused()


def local_dir() -> str | None:
    """The first of Spark's local directories for this worker (None: the system's temp)."""
    dirs = [d for d in os.environ.get("SPARK_LOCAL_DIRS", "").split(",") if d]
    return dirs[0] if dirs else None


class SpilledBatches:
    """Batches of one schema kept in order: in memory up to `memory_bytes`, then on disk."""

    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self.num_rows = 0
        self.spilled_bytes = 0
        self._held: list[pa.RecordBatch] = []
        self._held_bytes = 0
        self._file: IO[bytes] | None = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None

    def append(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self.num_rows += batch.num_rows
        self._held.append(batch)
        self._held_bytes += batch.nbytes
        if self._held_bytes > self.memory_bytes:
            self._spill()

    def extend(self, batches: Iterable[pa.RecordBatch]) -> None:
        for batch in batches:
            self.append(batch)

    def _spill(self) -> None:
        if self._writer is None:
            # open until drained (unlinked already: the system frees it if the task dies)
            self._file = tempfile.TemporaryFile(  # noqa: SIM115
                prefix="clickstream-spill-", dir=local_dir()
            )
            self._writer = pa.ipc.new_stream(self._file, self._held[0].schema)
        for batch in self._held:
            self._writer.write_batch(batch)
        self.spilled_bytes += self._held_bytes
        self._held, self._held_bytes = [], 0

    def drain(self) -> Iterator[pa.RecordBatch]:
        """Every batch in the order appended, each released once read; then empty."""
        if self._writer is not None and self._file is not None:
            self._writer.close()
            self._file.seek(0)
            try:
                for batch in pa.ipc.open_stream(self._file):
                    yield batch
                    release_freed_memory(batch)
            finally:
                self._file.close()
                self._file, self._writer = None, None
        held, self._held, self._held_bytes = self._held, [], 0
        while held:
            batch = held.pop(0)
            yield batch
            release_freed_memory(batch)
        self.num_rows = 0
