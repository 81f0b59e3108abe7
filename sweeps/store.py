"""Content keys, sweep paths and atomic writes through pyarrow filesystems.

Everything a sweep writes lives under ``<storage>/<name>/`` on any filesystem pyarrow knows
(a local or shared path, ``s3://``, ``gs://``)::

    spec.json                    the validated spec, defaults included
    lease.json                   the driver that holds the sweep (``sweeps.lease``)
    runs/part-<config_hash>.parquet      one row per grid point
    curves/part-<trial_id>[-L<level>].parquet
    layers/part-<config_hash>.parquet
    commits/<config_hash>.json   a grid point's commit record, written last (analysis.commits)
    quarantine/                  corrupt files moved aside by ``lottery resume``
    artifacts/<model>-<dataset>-<chain_key>/replicate_<seed>/...   weights, masks, checkpoints
    trials/<trial_id>.json       trial state for ``lottery status``
    tune/                        Ray Tune's experiment state (no per-trial loggers)

Writes are atomic and durable on every pyarrow filesystem:

- local disks and shared mounts (``LocalFileSystem``, or a ``SubTreeFileSystem`` over one): the
  bytes go to a temp name starting with ``.`` (which pyarrow's dataset discovery and
  ``pandas.read_parquet`` skip), are fsync'ed, renamed into place, and the directory is fsync'ed,
  so a power cut leaves the old file or the new one;
- object stores (S3, GCS, Azure; also under a ``SubTreeFileSystem``): one upload, which the
  store makes visible all at once (a rename there would be a copy);
- any other filesystem: temp name, then ``move``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis import commits
from analysis import schema

KEY_CHARS = 16
QUARANTINE = "quarantine"
_OBJECT_STORES = tuple(getattr(pafs, n) for n in ("S3FileSystem", "GcsFileSystem",
                                                  "AzureFileSystem") if hasattr(pafs, n))


def content_key(kind: str, obj: Any) -> str:
    """The one content hash of the project (STYLE.md 2.4).

    Args:
        kind: Registry key of what is hashed (e.g. ``imp_chain``, a method name).
        obj: A frozen hparams dataclass, or a dict of JSON scalars / nested groups. Dataclass
            fields equal to their default are omitted, so adding a field with a no-op default
            keeps every existing key.
    Returns:
        The first 16 hex characters of the SHA-256 of the canonical JSON payload.
    Raises:
        TypeError: ``obj`` holds something JSON cannot encode.
    """
    payload = {"kind": kind, **_canonical(obj)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_CHARS]


def _canonical(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for field in dataclasses.fields(obj):
            value = getattr(obj, field.name)
            default = field.default
            if default is not dataclasses.MISSING and value == default:
                continue
            out[field.name] = _canonical(value)
        return out
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float) and obj.is_integer():
        return obj  # json writes 1.0 as 1.0, distinct from int 1; hparams normalize lr to float
    return obj


class Store:
    """A directory on a pyarrow filesystem with atomic blob writes.

    Implements the ``trainer.checkpoint.Blobs`` protocol (``get``/``put``/``child``), so the
    trainer reads and writes weights through it without knowing where they live.

    Args:
        uri: A local path (relative paths are made absolute) or a URI such as ``s3://b/p``.
        filesystem: An explicit pyarrow filesystem; then ``uri`` is a path inside it.
    Raises:
        pyarrow.ArrowInvalid: the URI cannot be resolved.
    """

    def __init__(self, uri: str, filesystem: pafs.FileSystem | None = None) -> None:
        if filesystem is None:
            filesystem, path = resolve(uri)
            uri = uri if "://" in uri else path
        else:
            path = uri
        self.fs = filesystem
        self.path = path.rstrip("/") or "/"
        self.uri = uri

    @property
    def is_local(self) -> bool:
        """Whether the files are on a local or mounted disk (see ``local_path``)."""
        return _local_prefix(self.fs) is not None

    def local_path(self, name: str = "") -> str | None:
        """The OS path of ``name`` when the filesystem is local disk, else None."""
        prefix = _local_prefix(self.fs)
        if prefix is None:
            return None
        inner = self.join(name) if name else self.path
        return inner if not prefix else f"{prefix}/{inner.lstrip('/')}"

    def child(self, *parts: str) -> Store:
        """The sub-directory ``parts`` (joined by ``/``) on the same filesystem."""
        sub = Store("/".join([self.path, *parts]), filesystem=self.fs)
        sub.uri = join_uri(self.uri, *parts)
        return sub

    def join(self, name: str) -> str:
        return f"{self.path}/{name}"

    def exists(self, name: str) -> bool:
        return self.fs.get_file_info(self.join(name)).type != pafs.FileType.NotFound

    def get(self, name: str) -> bytes | None:
        """Return the bytes stored under ``name``, or None if there is no such file."""
        try:
            with self.fs.open_input_stream(self.join(name)) as stream:
                return stream.read()
        except FileNotFoundError:
            return None

    def put(self, name: str, data: bytes) -> None:
        """Write ``data`` under ``name`` atomically and durably (see the module docstring)."""
        target = self.join(name)
        parent, _, base = target.rpartition("/")
        local = self.local_path(name)
        if local is not None:
            _durable_local_write(local, data)
            return
        self.fs.create_dir(parent, recursive=True)
        if isinstance(_innermost(self.fs), _OBJECT_STORES):
            with self.fs.open_output_stream(target) as stream:
                stream.write(data)
            return
        tmp = f"{parent}/.{base}.{uuid.uuid4().hex[:8]}.tmp"
        with self.fs.open_output_stream(tmp) as stream:
            stream.write(data)
        self.fs.move(tmp, target)

    def delete(self, name: str) -> None:
        """Remove the file ``name`` (nothing happens when it does not exist)."""
        try:
            self.fs.delete_file(self.join(name))
        except FileNotFoundError:
            pass

    def put_json(self, name: str, obj: Any) -> None:
        self.put(name, json.dumps(obj, indent=1, sort_keys=True).encode("utf-8"))

    def get_json(self, name: str) -> Any | None:
        """The JSON stored under ``name``; None if absent or not valid JSON (never raises)."""
        data = self.get(name)
        try:
            return None if data is None else json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None

    def list(self, subdir: str = "") -> list[str]:
        """Base names of the visible files directly under ``subdir`` (temp files skipped)."""
        selector = pafs.FileSelector(self.join(subdir) if subdir else self.path,
                                     allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(i.base_name for i in infos
                      if i.type == pafs.FileType.File and not i.base_name.startswith((".", "_")))

    def write_part(self, table_name: str, part: str, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` as ``<table_name>/part-<part>.parquet``, replacing any earlier part."""
        table = schema.to_table(rows, table_name)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.put(f"{table_name}/{commits.part_file(part)}", sink.getvalue().to_pybytes())

    def commit(self, key: str, parts: Mapping[str, Sequence[str]]) -> None:
        """Write grid point ``key``'s commit record (after all its ``parts`` are written)."""
        record = commits.Record(key=key, parts={t: tuple(p) for t, p in parts.items()})
        self.put(f"{commits.COMMITS}/{key}{commits.RECORD_SUFFIX}", record.encode())

    def scan(self) -> commits.SweepFiles:
        """Table parts and commit records of this sweep directory (``analysis.commits.scan``)."""
        return commits.scan(self.fs, self.path)

    def quarantine(self, path: str) -> str:
        """Move the file at ``path`` (inside this directory) to ``quarantine/``; return where."""
        relative = path[len(self.path) + 1:] if path.startswith(self.path + "/") else \
            path.rsplit("/", 1)[-1]
        target = self.join(f"{QUARANTINE}/{relative}.{time.strftime('%Y%m%d-%H%M%S')}")
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        self.fs.move(path, target)
        return target


def _innermost(fs: pafs.FileSystem) -> pafs.FileSystem:
    while isinstance(fs, pafs.SubTreeFileSystem):
        fs = fs.base_fs
    return fs


def _local_prefix(fs: pafs.FileSystem) -> str | None:
    """The OS path prefix of a local-disk filesystem ("" for LocalFileSystem), else None."""
    if isinstance(fs, pafs.LocalFileSystem):
        return ""
    if isinstance(fs, pafs.SubTreeFileSystem):
        inner = _local_prefix(fs.base_fs)
        return None if inner is None else inner + fs.base_path.rstrip("/")
    return None


def _durable_local_write(path: str, data: bytes) -> None:
    """Temp file, fsync, rename over ``path``, fsync the directory (POSIX durability)."""
    parent, base = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{base}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    directory = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# The URI schemes pyarrow's ``FileSystem.from_uri`` opens (pyarrow 15+; a plain path is local).
SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def check_location(uri: str) -> None:
    """Refuse a storage location no pyarrow filesystem opens, without touching the network.

    Raises:
        ValueError: a ``scheme://`` other than ``SCHEMES``, or an empty location.
    """
    if not uri.strip():
        raise ValueError("must be a path or a URI (got an empty string)")
    scheme = uri.partition("://")[0] if "://" in uri else None
    if scheme is not None and scheme.lower() not in SCHEMES:
        raise ValueError(f"unknown filesystem {scheme + '://'!r} in {uri!r}; a local path or "
                         f"one of {', '.join(s + '://' for s in SCHEMES)}")


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """Map a storage location to (pyarrow filesystem, path inside it).

    Relative local paths are made absolute against the current directory, because Ray Tune
    rejects relative storage paths (RAY_FACTS.md §3).
    """
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    return pafs.FileSystem.from_uri(uri)


def join_uri(uri: str, *parts: str) -> str:
    """Append path parts to a path or URI, keeping a URI's query (``?endpoint_override=``)."""
    base, sep, query = uri.partition("?")
    return "/".join([base.rstrip("/"), *parts]) + sep + query
