"""The ``lottery`` command (also ``python -m sweeps``): plan, run, resume, status, report."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from sweeps import cli_results
from sweeps import loopback
from sweeps.cli_common import NamedStorageOpt
from sweeps.cli_common import StorageOpt
from sweeps.cli_common import fail
from sweeps.cli_common import sweep_store
from sweeps.errors import ClusterUnreachable
from sweeps.errors import SpecError
from sweeps.preflight_child import ModelCheck

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode="markdown",
                  help="Lottery-ticket / pruning sweeps on Ray Tune.")

AddressOpt = Annotated[str | None, typer.Option(
    "--address", help="Ray cluster address (e.g. auto, 10.0.0.1:6379); default: a local Ray.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", help="Show Ray's own console output.")]
DataRootOpt = Annotated[str | None, typer.Option(
    "--data-root", help="Dataset directory instead of the spec's `data.root`, as the nodes "
                        "that run the trials see it (a relative one: from here).")]
DownloadOpt = Annotated[bool | None, typer.Option(
    "--download/--no-download", help="Let the trials download missing dataset files "
                                     "(instead of the spec's `data.download`).")]
# The modules only the `train` extra installs (pip install "lottery-sweeps[train]").
TRAIN_ONLY = ("torch", "torchvision", "ray", "optuna", "sklearn")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")



def _load(spec_path: Path):
    from sweeps import spec as spec_module

    try:
        return spec_module.load(spec_path)
    except SpecError as err:
        fail(str(err))


CheckOpt = Annotated[bool, typer.Option(
    "--check", help="Also build every model (a forward pass, keep_dense, rates) and look for "
                    "the dataset files, as `run` does (imports torch).")]


@app.command()
def plan(spec: Path, check: CheckOpt = False) -> None:
    """Validate SPEC and print the trials it will run and their budget in epochs (runs nothing).

    Checks every field, the data subsets and the budget without importing torch; `--check`
    adds `run`'s model preflight, and reports dataset files missing on this machine as
    warnings (the spec may be meant for a cluster).
    """
    from sweeps import preflight

    sweep = _load(spec)
    try:
        missing = preflight.check(sweep, files=False if check else None, models=check)
    except SpecError as err:
        fail(str(SpecError(str(spec), err.problems)))
    for field, reason in missing:
        typer.echo(f"warning: {field}: {reason}; `lottery run` will refuse this spec here",
                   err=True)
    if sweep.search is not None:
        _plan_search(sweep)
    else:
        _plan_grid(sweep)
    if not check:
        typer.echo("models and dataset files not checked: `lottery plan --check` checks them, "
                   "as `lottery run` does", err=True)


def _plan_grid(sweep) -> None:
    """``lottery plan`` of a grid spec: its trials and their budget."""
    import pandas as pd

    from sweeps.plan import describe
    from sweeps.plan import make_plan

    p = make_plan(sweep)
    table = describe(p)
    with pd.option_context("display.max_rows", None, "display.width", 200,
                           "display.max_colwidth", 80):
        typer.echo(table.to_string(index=False))
    typer.echo(f"\nsweep {sweep.name!r}: {_plural(len(p.points), 'grid point')}, "
               f"{_plural(len(p.chains), 'chain trial')} + "
               f"{_plural(len(p.branches), 'branch trial')}, budget {p.total_epochs} epochs "
               f"({_run_length(sweep.training)} per training run)")


def _plan_search(sweep) -> None:
    """``lottery plan`` of a search spec: its cells and the most they can train."""
    import pandas as pd

    from sweeps import search

    table, budget = search.describe(sweep)
    with pd.option_context("display.max_rows", None, "display.width", 200):
        typer.echo(table.to_string(index=False))
    s = sweep.search
    goal = "maximized" if s.mode == "max" else "minimized"
    typer.echo(f"\nsweep {sweep.name!r}: search {s.name!r} ({s.kind} TPE, {s.metric} {goal}) "
               f"over {search.space_text(sweep)}; "
               f"{len(table)} cells x {s.trials} trials, budget at most {budget} epochs "
               f"({_run_length(sweep.training)} per training run; equal picks share trunks)")


def _run_length(training) -> str:
    """``8 epochs`` or ``50000 iterations``: one training run of the spec."""
    if training.iterations:
        return f"{training.iterations} iterations"
    return f"{training.epochs} epochs"


def _run(sweep, storage: str | None, address: str | None, verbose: bool,
         source: str, models: ModelCheck) -> None:
    if loopback.own_ray(address):
        loopback.use()  # before Ray is first imported (by sweeps.run)
    from sweeps.lease import SweepInUse
    from sweeps.run import run_sweep
    from sweeps.store import Store
    from sweeps.store import check_location

    where = storage or sweep.storage
    try:
        check_location(where)
        Store(where)  # opens the filesystem: an unreachable bucket fails here, before Ray
    except (OSError, ValueError) as err:
        fail(f"{'--storage' if storage else 'storage'} {where}: {err}")
    try:
        outcome = run_sweep(sweep, storage=storage, address=address, verbose=verbose,
                            models=models)
    except SpecError as err:  # the preflight names the spec by its name: show the file
        fail(str(SpecError(source, err.problems) if err.source == sweep.name else err))
    except (SweepInUse, ClusterUnreachable) as err:
        fail(str(err))
    for line in outcome.repaired:
        typer.echo(f"repaired: {line}", err=True)
    typer.echo(f"sweep {sweep.name!r}: {outcome.launched} trials launched, "
               f"{outcome.skipped_points} grid points already done, "
               f"{len(outcome.failed)} failed"
               + (f", {outcome.unfinished} unfinished" if outcome.unfinished else "")
               + f"; results in {outcome.sweep_dir.uri}"
               + (f" ({outcome.compacted} parts compacted)" if outcome.compacted else ""),
               err=True)
    cli_results.print_report(outcome.sweep_dir)
    if outcome.failed:
        typer.echo("failed trials (see `lottery status`): " + ", ".join(outcome.failed),
                   err=True)
    if outcome.unfinished:  # Ctrl-C: Tune stops its trials and returns as if done
        fail(f"interrupted: {outcome.unfinished} of {outcome.launched} trials did not finish; "
             f"{_resume_hint(sweep.name, where, address)} (finished points are kept)",
             code=130)
    if outcome.failed:
        raise typer.Exit(1)


def _resume_hint(name: str, where: str, address: str | None) -> str:
    """How to continue an interrupted run: on the Ray it ran on (a cluster's, named by
    ``--address`` or by ``RAY_ADDRESS`` as under ``ray job submit``), not a new local one."""
    cmd = f"lottery resume {name}" + (f" --storage {where}" if where != "results" else "")
    if address:
        return f"`{cmd} --address {address}` continues the sweep"
    if not loopback.own_ray(None):
        return (f"`{cmd}` on the same cluster (e.g. `ray job submit ... -- {cmd}`) "
                "continues the sweep")
    return f"`{cmd}` continues the sweep"


@app.command()
def run(spec: Path, storage: StorageOpt = None, address: AddressOpt = None,
        verbose: VerboseOpt = False, data_root: DataRootOpt = None,
        download: DownloadOpt = None) -> None:
    """Run SPEC through Ray Tune (re-running continues an interrupted sweep), then report."""
    with ModelCheck() as models:  # torch and the models in a child while this one goes on
        _run(_with_data(_load(spec), data_root, download), storage, address, verbose,
             str(spec), models)


def _with_data(sweep, data_root: str | None, download: bool | None):
    """``sweep`` with ``--data-root`` / ``--download`` in place of its ``data.root`` /
    ``data.download`` (where the files are, not what they are: a sweep may change them)."""
    from sweeps.spec_groups import DataSpec

    over = {k: v for k, v in (("root", data_root), ("download", download)) if v is not None}
    if not over:
        return sweep
    return sweep.model_copy(update={"data": DataSpec(**{**sweep.data.model_dump(), **over})})


@app.command()
def resume(name: str, storage: NamedStorageOpt = None, address: AddressOpt = None,
           verbose: VerboseOpt = False, data_root: DataRootOpt = None,
           download: DownloadOpt = None) -> None:
    """Continue sweep NAME from its stored spec: finished trials are not run again."""
    with ModelCheck() as models:  # as in `run`
        _resume(name, storage, address, verbose, models, data_root, download)


def _resume(name: str, storage: str | None, address: str | None, verbose: bool,
            models: ModelCheck, data_root: str | None = None,
            download: bool | None = None) -> None:
    from sweeps import spec as spec_module

    store, raw = sweep_store(name, storage)
    try:
        sweep = spec_module.parse(raw, store.join("spec.json"))
    except SpecError as err:
        fail(str(err))
    _run(_with_data(sweep, data_root, download), storage or raw.get("storage"), address,
         verbose, store.join("spec.json"), models)


@app.command()
def status(name: str, storage: NamedStorageOpt = None) -> None:
    """Show NAME's driver, trials (done / running / interrupted / pending / error: failed and
    being retried / failed), points done and corrupt files."""
    from sweeps.status import format_status

    store, _ = sweep_store(name, storage)
    try:
        typer.echo(format_status(store))
    except FileNotFoundError as err:
        fail(str(err))


app.command()(cli_results.report)
app.command()(cli_results.compact)
app.command()(cli_results.export)



def main() -> None:
    """Console-script entry point (``lottery``, ``python -m sweeps``)."""
    try:
        app(prog_name="lottery")
    except SystemExit as done:
        _exit(done.code)
    except ModuleNotFoundError as err:  # the base install has no training stack
        if (err.name or "").partition(".")[0] not in TRAIN_ONLY:
            raise
        typer.echo(f"this command needs the training stack ({err}): "
                   "pip install \"lottery-sweeps[train]\"", err=True)
        _exit(2)
    _exit(0)


def _exit(code: int | str | None) -> None:
    """End the process as ``sys.exit(code)`` would, minus tearing down heavy modules.

    Once torch or Ray is imported, the interpreter's own shutdown takes 0.5-2 s here (freeing
    their module graphs; `lottery run`'s driver holds Ray, Tune, pandas and pyarrow). What
    matters of it runs, in its order: the other threads are waited for
    (``threading._shutdown``, which also wakes idle thread pools), then the atexit hooks
    (logging, Ray); then the process ends at once.
    """
    if not any(heavy in sys.modules for heavy in ("torch", "ray")):
        raise SystemExit(code)
    if isinstance(code, str):
        print(code, file=sys.stderr)
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


if __name__ == "__main__":
    sys.exit(main())
