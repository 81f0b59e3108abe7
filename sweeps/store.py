"""Content keys, sweep paths and atomic writes through pyarrow filesystems.

Everything a sweep writes lives under ``<storage>/<name>/`` on any filesystem pyarrow knows
(a local or shared path, ``s3://``, ``gs://``)::

    spec.json                    the validated spec, defaults included
    runs/part-<config_hash>.parquet      one row per grid point
    curves/part-<trial_id>[-L<level>].parquet
    layers/part-<config_hash>.parquet
    artifacts/<model>-<dataset>-<chain_key>/replicate_<seed>/...   weights, masks, checkpoints
    trials/<trial_id>.json       trial state for ``lottery status``
    tune/                        Ray Tune's own experiment directories

Writes are atomic: a file is written under a name starting with ``.`` (which pyarrow's dataset
discovery and ``pandas.read_parquet`` skip) and then moved into place; on object stores a single
upload is already all-or-nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analysis import schema

KEY_CHARS = 16
PART_PREFIX, PART_SUFFIX = "part-", ".parquet"


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
        return isinstance(self.fs, pafs.LocalFileSystem)

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
        """Write ``data`` under ``name`` atomically (temp name, then move)."""
        target = self.join(name)
        parent, _, base = target.rpartition("/")
        self.fs.create_dir(parent, recursive=True)
        if not self.is_local:
            with self.fs.open_output_stream(target) as stream:
                stream.write(data)
            return
        tmp = f"{parent}/.{base}.{uuid.uuid4().hex[:8]}.tmp"
        with self.fs.open_output_stream(tmp) as stream:
            stream.write(data)
        self.fs.move(tmp, target)

    def put_json(self, name: str, obj: Any) -> None:
        self.put(name, json.dumps(obj, indent=1, sort_keys=True).encode("utf-8"))

    def get_json(self, name: str) -> Any | None:
        data = self.get(name)
        return None if data is None else json.loads(data)

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
        self.put(f"{table_name}/{PART_PREFIX}{part}{PART_SUFFIX}", sink.getvalue().to_pybytes())

    def parts(self, table_name: str) -> set[str]:
        """The part keys written to ``table_name`` (for ``runs``: the done config hashes)."""
        return {n[len(PART_PREFIX):-len(PART_SUFFIX)] for n in self.list(table_name)
                if n.startswith(PART_PREFIX) and n.endswith(PART_SUFFIX)}


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
