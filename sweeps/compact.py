"""``lottery compact NAME``: merge a sweep's committed loose parts into a few large files.

One loose Parquet part per grid point and table makes loading slow (10,000 parts take ~9 s
locally, far longer from an object store). Compaction reads the loose parts of every complete
commit record, writes them as one ``<table>/compact-<id>.parquet`` per table (each row tagged
with its part key, ``analysis.commits.PART_COLUMN``), then a manifest
``compacted/<id>-<table>.json`` naming those keys, and only then deletes the loose parts.

Safe beside a running sweep and after a crash at any point: parts of points that are not
committed yet are left alone; until the manifest exists the compacted file is ignored (its
parts are still loose); once it exists, a loose part that is still there (not yet deleted, or
rewritten by a retried trial) shadows the compacted rows of its key, so no row is read twice
and the newest copy wins. ``analysis.commits`` has the reading rule.
"""

from __future__ import annotations

import io
import time
import uuid

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from analysis import commits
from analysis.schema import get_schema
from sweeps.store import Store


def compact(store: Store) -> dict[str, int]:
    """Compact the committed loose parts of every table of the sweep in ``store``.

    Returns:
        Table -> number of loose parts merged (and deleted).
    Raises:
        OSError: the storage refused a write (nothing is deleted before its manifest exists).
    """
    files = store.scan()
    corrupt = commits.check_parts(store.fs, files)
    committed = files.complete() if files.has_commits else {}
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    merged = {}
    for table in commits.TABLES:
        keys = sorted({p for rec in committed.values() for p in rec.parts.get(table, ())}
                      & set(files.parts[table]))
        keys = [k for k in keys if files.parts[table][k] not in corrupt]
        if not keys:
            merged[table] = 0
            continue
        schema = get_schema(table)
        pieces = []
        for key in keys:  # one read per part: each row must carry its part key
            rows = ds.dataset([files.parts[table][key]], schema=schema, format="parquet",
                              filesystem=store.fs).to_table()
            pieces.append(rows.append_column(commits.PART_COLUMN,
                                             pa.array([key] * rows.num_rows, pa.string())))
        name = f"{commits.COMPACT_PREFIX}{stamp}.parquet"
        sink = io.BytesIO()
        pq.write_table(pa.concat_tables(pieces), sink)
        store.put(f"{table}/{name}", sink.getvalue())
        store.put(f"{commits.COMPACTED}/{stamp}-{table}.json",
                  commits.Manifest(table=table, file=name, parts=tuple(keys)).encode())
        for key in keys:
            store.delete(f"{table}/{commits.part_file(key)}")
        merged[table] = len(keys)
    return merged
