"""What the ``lottery`` commands share: the ``--storage`` options, exiting with a message, a
sweep found by its name, and writing an output file."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated
from typing import NoReturn

import typer

StorageOpt = Annotated[str | None, typer.Option(
    "--storage", help="Results location (path, s3://, gs://); default: the spec's `storage`.")]
NamedStorageOpt = Annotated[str | None, typer.Option(
    "--storage", help="Where sweep NAME is stored: the location holding NAME/ (path, s3://, "
                      "gs://); default: results.")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` to stderr and exit with ``code`` (2: bad input, 1: failed work)."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


def sweep_store(name: str, storage: str | None):
    """The store of sweep NAME under ``storage`` (default ``results``) and its ``spec.json``;
    exits 2 naming the problem: a bad name or location, an unreadable location, no sweep."""
    from sweeps.spec_groups import NAME_PATTERN
    from sweeps.store import Store
    from sweeps.store import check_location

    if not re.match(NAME_PATTERN, name):
        fail(f"{name!r} is not a sweep name (a spec's `name`: letters, digits, '_', '.', '-'; "
              "the location goes in --storage)")
    root = storage or "results"
    try:
        check_location(root)
        base = Store(root)
        store = base.child(name)
        raw = store.get_json("spec.json")
        if raw is None and store.exists("spec.json"):
            fail(f"{store.join('spec.json')} is not valid JSON; run the sweep's YAML spec "
                  "with `lottery run` to write it again")
    except (OSError, ValueError) as err:
        fail(f"--storage {root}: {err}")
    if raw is None:
        fail(f"no sweep {name!r} under {base.uri} (no spec.json)"
              + ("" if storage else "; pass --storage with the location it was run with"))
    return store, raw


@contextlib.contextmanager
def writing(out: Path) -> Iterator[None]:
    """Exit 2 naming ``out`` when writing it fails (a missing or read-only directory, a file
    where a directory should be)."""
    try:
        yield
    except OSError as err:
        fail(f"cannot write {out}: {err.strerror or err}")
