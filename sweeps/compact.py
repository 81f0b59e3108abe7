"""``lottery compact NAME``: merge a sweep's committed loose parts into a few large files.

One loose Parquet part per grid point and table makes loading slow (10,000 parts take ~9 s
locally, far longer from an object store). Compaction reads the loose parts of every complete
commit record, writes them as one ``<table>/compact-<id>.parquet`` per table (each row tagged
with its part key, ``analysis.commits.PART_COLUMN``), then a manifest
``compacted/<id>-<table>.json`` naming those keys, and only then deletes the loose parts.
``lottery run`` compacts in a sweep's tail and at its end (``execution.compact``,
``sweeps.tail``), the end folding the files made since the run started into its own (those
of at most ``FOLD_PARTS`` parts: a bigger one stays, rather than be rewritten for a few new
parts), so a run adds one file per table, two for a large sweep; once a table has
``MERGE_AT`` compacted files, the next compaction folds them all into its new file, so a sweep
resumed many times still has a few files per table. Last, the commit records of the points
compacted (and any older bundle) are folded into one ``commits/compact-<id>.json`` bundle
and their loose records deleted, so reading a compacted sweep takes a few GETs, not one per
grid point.

Safe beside a running sweep and after a crash at any point: parts of points that are not
committed yet are left alone; until the manifest exists the compacted file is ignored (its
parts are still loose, or still in the older compacted files); once it exists, it wins over
older manifests for the keys in both, and a loose part that is still there (not yet deleted,
or rewritten by a retried trial) shadows the compacted rows of its key, so no row is read
twice and the newest copy wins. Older manifests are deleted before their files.
``analysis.commits`` has the reading rule.
"""

from __future__ import annotations

import io
import time
import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from analysis import commits
from analysis.schema import get_schema
from sweeps.store import Store

# A table with this many compacted files has them merged into the next compaction's file.
MERGE_AT = 4
# ``fold_since`` folds a file made since then only when it holds at most this many parts
# (rewriting a bigger one costs more than the extra file; ``MERGE_AT`` bounds the files).
FOLD_PARTS = 5_000


def compaction_id() -> str:
    """A new compaction's id: local time to the second, then nanoseconds and a random tag, so
    ids sort by time (``compact``'s ``fold_since`` compares them)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}-" \
           f"{uuid.uuid4().hex[:6]}"


def compact(store: Store, merge_at: int = MERGE_AT,
            fold_since: str | None = None) -> dict[str, int]:
    """Compact the committed loose parts of every table of the sweep in ``store``.

    Args:
        store: The sweep directory.
        merge_at: Fold a table's compacted files into the new one once it has this many.
        fold_since: Also fold the compacted files whose id (``compaction_id()``) is not older than
            this one and that hold at most ``FOLD_PARTS`` parts (``lottery run``: those of its
            own tail).
    Returns:
        Table -> number of loose parts merged (and deleted).
    Raises:
        OSError: the storage refused a write (nothing is deleted before its manifest exists).
    """
    files = store.scan()
    corrupt = commits.check_parts(store.fs, files)
    committed = files.complete() if files.has_commits else {}
    this = compaction_id()
    merged = {}
    for table in commits.TABLES:
        keys = sorted({p for rec in committed.values() for p in rec.parts.get(table, ())}
                      & set(files.parts[table]))
        keys = [k for k in keys if files.parts[table][k] not in corrupt]
        old = _held(files, table, corrupt)
        if len(old) + bool(keys) < merge_at:  # fold only the files made since ``fold_since``
            old = {path: held for path, held in old.items()
                   if fold_since is not None and _file_id(path) >= fold_since
                   and len(held) <= FOLD_PARTS}
        if not keys and not old:
            merged[table] = 0
            continue
        pieces = commits.parallel_map(
            lambda key, t=table: _loose(store, t, files.parts[t][key], key), keys)
        pieces += [_compacted(store, table, path, held) for path, held in old.items()]
        name = f"{commits.COMPACT_PREFIX}{this}.parquet"
        sink = io.BytesIO()
        pq.write_table(pa.concat_tables(pieces), sink)
        store.put(f"{table}/{name}", sink.getvalue())
        held = [*keys, *(k for ks in old.values() for k in ks)]
        store.put(f"{commits.COMPACTED}/{this}-{table}.json",
                  commits.Manifest(table=table, file=name, parts=tuple(held)).encode())
        if old:  # only files this scan saw: a concurrent compaction's new file stays
            _drop_compacted(store, table, set(old))
        for key in keys:
            store.delete(f"{table}/{commits.part_file(key)}")
        merged[table] = len(keys)
    _bundle_records(store, files, set(committed), this)
    return merged


def _file_id(path: str) -> str:
    """The id in a compacted file's name (``compact-<id>.parquet``)."""
    return path.rsplit("/", 1)[-1].removeprefix(commits.COMPACT_PREFIX).removesuffix(".parquet")


def _bundle_records(store: Store, files: commits.SweepFiles, committed: set[str],
                    this: str) -> None:
    """Fold the loose records of committed points and every older bundle into one bundle
    (``analysis.commits.Bundle``), then delete the loose records and bundles it holds.

    A record deleted after a retried trial rewrote it loses nothing: a point's record is the
    same whenever it is written. Records of points still being written stay loose.
    """
    loose = {k for k in committed if k in files.loose_records}
    if not loose and len(files.bundles) <= 1:
        return
    keys = loose | {k for held in files.bundles.values() for k in held}
    bundle = commits.Bundle(records=tuple(files.records[k] for k in sorted(keys)))
    store.put(f"{commits.COMMITS}/{commits.COMPACT_PREFIX}{this}{commits.RECORD_SUFFIX}",
              bundle.encode())
    for path in files.bundles:
        store.delete(f"{commits.COMMITS}/{path.rsplit('/', 1)[-1]}")
    for key in sorted(loose):
        store.delete(f"{commits.COMMITS}/{files.loose_records[key].rsplit('/', 1)[-1]}")


def _held(files: commits.SweepFiles, table: str, corrupt: dict) -> dict[str, list[str]]:
    """Valid compacted file -> its keys that no loose part shadows (kept whether or not their
    record is complete: folding must never drop a row)."""
    out: dict[str, list[str]] = {}
    for key, path in sorted(files.compacted[table].items()):
        if key not in files.parts[table] and path not in corrupt:
            out.setdefault(path, []).append(key)
    return out


def _loose(store: Store, table: str, path: str, key: str) -> pa.Table:
    """The rows of one loose part, each tagged with its part key."""
    rows = ds.dataset([path], schema=get_schema(table), format="parquet",
                      filesystem=store.fs).to_table()
    return rows.append_column(commits.PART_COLUMN,
                              pa.array([key] * rows.num_rows, pa.string()))


def _compacted(store: Store, table: str, path: str, keys: list[str]) -> pa.Table:
    """The rows of ``keys`` in the compacted file at ``path``."""
    schema = get_schema(table).append(pa.field(commits.PART_COLUMN, pa.string()))
    rows = ds.dataset([path], schema=schema, format="parquet", filesystem=store.fs)
    return rows.to_table(filter=pc.field(commits.PART_COLUMN).isin(list(keys)))


def _drop_compacted(store: Store, table: str, paths: set[str]) -> None:
    """Delete the manifests of ``table`` naming the files at ``paths``, then those files."""
    for info in store.list(commits.COMPACTED):
        try:
            manifest = commits.Manifest.decode(store.get(f"{commits.COMPACTED}/{info}"))
        except (OSError, ValueError):
            continue
        if manifest.table == table and f"{store.path}/{table}/{manifest.file}" in paths:
            store.delete(f"{commits.COMPACTED}/{info}")
    for path in paths:
        store.delete(f"{table}/{path.rsplit('/', 1)[-1]}")
