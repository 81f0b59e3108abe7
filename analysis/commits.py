"""Commit records: which table parts belong to complete grid points. The one rule for the
loaders, ``lottery status`` and ``lottery resume``.

A sweep directory ``<storage>/<name>/`` holds one part file per grid point in ``runs/`` and
``layers/`` (``part-<config_hash>.parquet``), one per training stage in ``curves/``, and one
record per finished grid point::

    commits/<config_hash>.json   {"key": ..., "parts": {"runs": [...], "layers": [...],
                                                         "curves": [...]}}

The writer writes a point's parts first and its record last. So:

- a grid point is **done** when its record decodes and every part it lists exists and is
  valid (``check_part``: Parquet whose footer reads and which holds the table's columns);
- the loaders read exactly the parts listed by records whose parts all exist, so a point's
  rows appear in all three tables together or not at all (a part no record lists yet, such as
  a point cut off between its ``runs`` part and its record, is not shown);
- a sweep without ``commits/`` (tables written by hand, or by lottery-sweeps 0.1) is read as
  it is: every part counts.

``lottery compact`` merges committed parts into ``<table>/compact-<id>.parquet`` files (the
rows of many parts, each row tagged with its part key in ``_part``) and writes a manifest
``compacted/<id>-<table>.json`` listing those keys *before* it deletes the loose parts. A part
key then exists when its loose file or a manifest whose file exists has it; a loose part
shadows the compacted rows of its key (it was written later), so no row is read twice.
It also folds the records of the points it compacted into one bundle
``commits/compact-<id>.json`` (``Bundle``) before deleting their loose records, so a compacted
sweep is read with a few GETs instead of one per grid point; a loose record overrides the
bundled one of its key (records of a point are identical whenever written), and a newer
bundle overrides an older one.

Only pyarrow and the standard library are used (``analysis`` never imports torch or ray).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis.schema import ADDED
from analysis.schema import get_schema

COMMITS = "commits"
COMPACTED = "compacted"
COMPACT_PREFIX = "compact-"
PART_COLUMN = "_part"
TABLES = ("runs", "layers", "curves")
PART_PREFIX, PART_SUFFIX = "part-", ".parquet"
RECORD_SUFFIX = ".json"
# Writers' in-progress temp files (pyarrow.dataset's default ignore_prefixes).
TEMP_PREFIXES = (".", "_")
_THREADS = 16  # footer and record reads are latency-bound on object stores


@dataclass(frozen=True)
class Record:
    """The commit record of one grid point.

    Attributes:
        key: The point's ``config_hash``.
        parts: Table name -> part keys of the point (``runs``, ``layers``, ``curves``).
    """

    key: str
    parts: dict[str, tuple[str, ...]]

    def body(self) -> dict:
        """The record as a JSON-able dict."""
        return {"key": self.key, "parts": {t: list(p) for t, p in sorted(self.parts.items())}}

    def encode(self) -> bytes:
        """Canonical JSON bytes of the record."""
        return json.dumps(self.body(), indent=1, sort_keys=True).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> Record:
        """Parse ``encode``'s bytes.

        Raises:
            ValueError: not JSON, or not a record (missing key, unknown table, bad types).
        """
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"not JSON ({err})") from None
        return cls.from_body(body)

    @classmethod
    def from_body(cls, body: object) -> Record:
        """The record of a decoded JSON value (``body``'s inverse).

        Raises:
            ValueError: not a record (missing key, unknown table, bad types).
        """
        if not isinstance(body, dict) or not isinstance(body.get("key"), str) \
                or not isinstance(body.get("parts"), dict):
            raise ValueError("not a commit record (needs a string 'key' and a 'parts' mapping)")
        parts = body["parts"]
        unknown = sorted(set(parts) - set(TABLES))
        if unknown:
            raise ValueError(f"unknown tables {unknown}; known: {list(TABLES)}")
        if not all(isinstance(v, list) and all(isinstance(p, str) for p in v)
                   for v in parts.values()):
            raise ValueError("parts must map table names to lists of part keys")
        return cls(key=body["key"], parts={t: tuple(v) for t, v in parts.items()})


@dataclass(frozen=True)
class Manifest:
    """A compacted file of one table and the part keys whose rows it holds."""

    table: str
    file: str
    parts: tuple[str, ...]

    def encode(self) -> bytes:
        return json.dumps({"table": self.table, "file": self.file, "parts": list(self.parts)},
                          indent=1).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Raises: ValueError: not a manifest."""
        try:
            body = json.loads(data)
            table, file, parts = body["table"], body["file"], body["parts"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"not a compaction manifest ({err})") from None
        if table not in TABLES or not isinstance(file, str) or not isinstance(parts, list):
            raise ValueError("not a compaction manifest (table, file, parts)")
        return cls(table=table, file=file, parts=tuple(str(p) for p in parts))


@dataclass(frozen=True)
class Bundle:
    """Many commit records in one file, ``commits/compact-<id>.json`` (``lottery compact``)."""

    records: tuple[Record, ...]

    def encode(self) -> bytes:
        """JSON bytes: ``{"records": [record, ...]}``, each record as ``Record.body``."""
        return json.dumps({"records": [r.body() for r in self.records]}).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> Bundle:
        """Raises: ValueError: not a bundle, or a record in it is not a record."""
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"not JSON ({err})") from None
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise ValueError("not a bundle of commit records (needs a 'records' list)")
        return cls(records=tuple(Record.from_body(r) for r in body["records"]))


def is_bundle(file_name: str) -> bool:
    """Whether ``file_name`` in ``commits/`` is a bundle (else it is one point's record)."""
    return file_name.startswith(COMPACT_PREFIX) and file_name.endswith(RECORD_SUFFIX)


def part_file(part: str) -> str:
    """File name of part ``part`` of a table: ``part-<part>.parquet``."""
    return f"{PART_PREFIX}{part}{PART_SUFFIX}"


def part_key(file_name: str) -> str | None:
    """Inverse of ``part_file``; None for names that are not visible part files."""
    if file_name.startswith(TEMP_PREFIXES) or not (
            file_name.startswith(PART_PREFIX) and file_name.endswith(PART_SUFFIX)):
        return None
    return file_name[len(PART_PREFIX):-len(PART_SUFFIX)]


def check_part(fs: pafs.FileSystem, path: str, table: str) -> str | None:
    """Why the part file at ``path`` is not a valid part of ``table``, or None if it is.

    Reads only the Parquet footer: a truncated or foreign file fails there, and a file
    written without some of the table's columns is named with the columns it lacks (columns
    in ``analysis.schema.ADDED`` may be absent from older parts; readers fill nulls).
    """
    try:
        with fs.open_input_file(path) as handle:
            physical = pq.read_schema(handle)
    except FileNotFoundError:
        return "missing"
    except (pa.ArrowException, OSError) as err:
        return f"not a valid Parquet file ({str(err).splitlines()[0][:200]})"
    missing = [n for n in get_schema(table).names
               if n not in physical.names and n not in ADDED[table]]
    if missing:
        return f"missing columns {missing}; was it written by analysis.schema.to_table?"
    return None


@dataclass
class SweepFiles:
    """What a sweep directory holds, from one listing of each table and of ``commits/``.

    Attributes:
        root: The sweep directory (path inside ``fs``).
        has_commits: Whether ``commits/`` exists (else every part counts, see module doc).
        parts: Table -> part key -> file path, for every visible part file.
        records: Point key -> its decoded record (loose, else from the newest bundle).
        bad_records: Path of every record or bundle that does not decode -> the reason.
        compacted: Table -> part key -> the compacted file holding it.
        bundles: Path of every valid bundle -> the point keys it holds.
        loose_records: Point key -> the path of its loose record (``commits/<key>.json``).
    """

    root: str
    has_commits: bool
    parts: dict[str, dict[str, str]]
    records: dict[str, Record] = field(default_factory=dict)
    bad_records: dict[str, str] = field(default_factory=dict)
    compacted: dict[str, dict[str, str]] = field(default_factory=dict)
    bundles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    loose_records: dict[str, str] = field(default_factory=dict)
    _complete: dict[str, Record] | None = field(default=None, repr=False, compare=False)

    def has_part(self, table: str, key: str) -> bool:
        """Whether part ``key`` of ``table`` exists, loose or compacted."""
        return key in self.parts.get(table, {}) or key in self.compacted.get(table, {})

    def part_path(self, table: str, key: str) -> str:
        """The file holding part ``key``: its loose file, else its compacted file."""
        return self.parts.get(table, {}).get(key) or self.compacted[table][key]

    def complete(self) -> dict[str, Record]:
        """Records whose listed parts all exist (validity is ``check_part``'s business);
        computed once per listing (a listing is not changed after ``scan``)."""
        if self._complete is None:
            self._complete = {
                key: rec for key, rec in self.records.items()
                if all(self.has_part(t, p) for t, ps in rec.parts.items() for p in ps)}
        return self._complete

    def visible_compacted(self, table: str) -> dict[str, tuple[str, ...]]:
        """Compacted file -> the part keys readers should take from it: keys of complete
        records (every key without ``commits/``) that no loose part shadows."""
        wanted = None if not self.has_commits else \
            {p for rec in self.complete().values() for p in rec.parts.get(table, ())}
        out: dict[str, list[str]] = {}
        for key, path in self.compacted.get(table, {}).items():
            if key not in self.parts.get(table, {}) and (wanted is None or key in wanted):
                out.setdefault(path, []).append(key)
        return {path: tuple(sorted(keys)) for path, keys in sorted(out.items())}

    def visible(self, table: str) -> list[str]:
        """Sorted paths of ``table``'s parts that readers should see (see module doc)."""
        if not self.has_commits:
            return sorted(self.parts[table].values())
        keys = {p for rec in self.complete().values() for p in rec.parts.get(table, ())}
        return sorted(path for key, path in self.parts[table].items() if key in keys)


def list_parts(fs: pafs.FileSystem, directory: str) -> dict[str, str]:
    """Part key -> path of every visible part file directly in ``directory`` ({} if absent)."""
    infos = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
    out = {}
    for info in infos:
        key = part_key(info.base_name) if info.type == pafs.FileType.File else None
        if key is not None:
            out[key] = info.path
    return out


def scan(fs: pafs.FileSystem, root: str) -> SweepFiles:
    """List a sweep directory's table parts and read its commit records.

    Args:
        fs: The filesystem holding the sweep.
        root: The sweep directory ``<storage>/<name>`` inside ``fs``.
    Returns:
        The listing; records are decoded, parts are not opened (see ``check_parts``).
    """
    root = root.rstrip("/")
    parts = {t: list_parts(fs, f"{root}/{t}") for t in TABLES}
    info = fs.get_file_info(f"{root}/{COMMITS}")
    files = SweepFiles(root=root, has_commits=info.type == pafs.FileType.Directory, parts=parts,
                       compacted=_compacted(fs, root))
    if not files.has_commits:
        return files
    infos = [i for i in fs.get_file_info(pafs.FileSelector(f"{root}/{COMMITS}"))
             if i.type == pafs.FileType.File and i.base_name.endswith(RECORD_SUFFIX)
             and not i.base_name.startswith(TEMP_PREFIXES)]
    for info in sorted((i for i in infos if is_bundle(i.base_name)), key=lambda i: i.base_name):
        outcome = _read_bundle(fs, info.path)  # oldest first: a newer bundle wins
        if isinstance(outcome, Bundle):
            files.records.update((r.key, r) for r in outcome.records)
            files.bundles[info.path] = tuple(r.key for r in outcome.records)
        else:
            files.bad_records[info.path] = outcome
    names = [i.path for i in infos if not is_bundle(i.base_name)]
    for path, outcome in zip(names, parallel_map(lambda p: _read_record(fs, p), names),
                             strict=True):
        if isinstance(outcome, Record):
            files.records[outcome.key] = outcome
            files.loose_records[outcome.key] = path
        else:
            files.bad_records[path] = outcome
    return files


def _read_bundle(fs: pafs.FileSystem, path: str) -> Bundle | str:
    """The bundle at ``path``, or the reason it cannot be read."""
    try:
        with fs.open_input_stream(path) as stream:
            return Bundle.decode(stream.read())
    except (OSError, pa.ArrowException) as err:
        return f"unreadable ({err})"
    except ValueError as err:
        return str(err)


def _compacted(fs: pafs.FileSystem, root: str) -> dict[str, dict[str, str]]:
    """Table -> part key -> compacted file, from the manifests whose file exists (a later
    manifest wins for a key in two)."""
    out: dict[str, dict[str, str]] = {t: {} for t in TABLES}
    infos = fs.get_file_info(pafs.FileSelector(f"{root}/{COMPACTED}", allow_not_found=True))
    for info in sorted(infos, key=lambda i: i.base_name):
        if info.type != pafs.FileType.File or not info.base_name.endswith(RECORD_SUFFIX) \
                or info.base_name.startswith(TEMP_PREFIXES):
            continue
        try:
            with fs.open_input_stream(info.path) as stream:
                manifest = Manifest.decode(stream.read())
        except (OSError, pa.ArrowException, ValueError):
            continue  # unreadable: its points count as missing, so they are recomputed
        path = f"{root}/{manifest.table}/{manifest.file}"
        if fs.get_file_info(path).type == pafs.FileType.File:
            out[manifest.table].update(dict.fromkeys(manifest.parts, path))
    return out


def check_parts(fs: pafs.FileSystem, files: SweepFiles,
                tables: Iterable[str] = TABLES) -> dict[str, str]:
    """Path -> reason for every invalid part file (loose or compacted) of ``tables``."""
    jobs = [(t, path) for t in tables
            for path in sorted({*files.parts[t].values(), *files.compacted.get(t, {}).values()})]
    reasons = parallel_map(lambda job: check_part(fs, job[1], job[0]), jobs)
    return {path: why for (_, path), why in zip(jobs, reasons, strict=True) if why is not None}


def _read_record(fs: pafs.FileSystem, path: str) -> Record | str:
    """The record at ``path``, or the reason it cannot be read."""
    try:
        with fs.open_input_stream(path) as stream:
            record = Record.decode(stream.read())
    except (OSError, pa.ArrowException) as err:
        return f"unreadable ({err})"
    except ValueError as err:
        return str(err)
    expected = path.rsplit("/", 1)[-1][:-len(RECORD_SUFFIX)]
    return record if record.key == expected else f"key {record.key!r} does not match its name"


def parallel_map(fn, items: list) -> list:
    """``[fn(i) for i in items]``, on up to 16 threads once there are 8 items or more (reads
    of small files are latency-bound, on object stores above all)."""
    if len(items) < 8:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(min(_THREADS, len(items))) as pool:
        return list(pool.map(fn, items))
