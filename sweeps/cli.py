"""The ``lottery`` command (also ``python -m sweeps``): plan, run, resume, status, report."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from sweeps.errors import SpecError
from sweeps.preflight_child import ModelCheck

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode="markdown",
                  help="Lottery-ticket / pruning sweeps on Ray Tune.")

StorageOpt = Annotated[str | None, typer.Option(
    "--storage", help="Results location (path, s3://, gs://); default: the spec's `storage`.")]
NamedStorageOpt = Annotated[str | None, typer.Option(
    "--storage", help="Where sweep NAME is stored: the location holding NAME/ (path, s3://, "
                      "gs://); default: results.")]
# The modules only the `train` extra installs (pip install "lottery-sweeps[train]").
TRAIN_ONLY = ("torch", "torchvision", "ray", "optuna", "sklearn")
AddressOpt = Annotated[str | None, typer.Option(
    "--address", help="Ray cluster address (e.g. auto, 10.0.0.1:6379); default: a local Ray.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", help="Show Ray's own console output.")]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _sweep_store(name: str, storage: str | None):
    """The store of sweep NAME under ``storage`` (default ``results``) and its ``spec.json``;
    exits 2 naming the problem: a bad name or location, an unreadable location, no sweep."""
    from sweeps.spec_groups import NAME_PATTERN
    from sweeps.store import Store
    from sweeps.store import check_location

    if not re.match(NAME_PATTERN, name):
        _fail(f"{name!r} is not a sweep name (a spec's `name`: letters, digits, '_', '.', '-'; "
              "the location goes in --storage)")
    root = storage or "results"
    try:
        check_location(root)
        base = Store(root)
        store = base.child(name)
        raw = store.get_json("spec.json")
        if raw is None and store.exists("spec.json"):
            _fail(f"{store.join('spec.json')} is not valid JSON; run the sweep's YAML spec "
                  "with `lottery run` to write it again")
    except (OSError, ValueError) as err:
        _fail(f"--storage {root}: {err}")
    if raw is None:
        _fail(f"no sweep {name!r} under {base.uri} (no spec.json)"
              + ("" if storage else "; pass --storage with the location it was run with"))
    return store, raw


@contextlib.contextmanager
def _writing(out: Path) -> Iterator[None]:
    """Exit 2 naming ``out`` when writing it fails (a missing or read-only directory, a file
    where a directory should be)."""
    try:
        yield
    except OSError as err:
        _fail(f"cannot write {out}: {err.strerror or err}")


def _load(spec_path: Path):
    from sweeps import spec as spec_module

    try:
        return spec_module.load(spec_path)
    except SpecError as err:
        _fail(str(err))


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
        _fail(str(SpecError(str(spec), err.problems)))
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
    from sweeps.lease import SweepInUse
    from sweeps.run import run_sweep
    from sweeps.store import Store
    from sweeps.store import check_location

    where = storage or sweep.storage
    try:
        check_location(where)
        Store(where)  # opens the filesystem: an unreachable bucket fails here, before Ray
    except (OSError, ValueError) as err:
        _fail(f"{'--storage' if storage else 'storage'} {where}: {err}")
    try:
        outcome = run_sweep(sweep, storage=storage, address=address, verbose=verbose,
                            models=models)
    except SpecError as err:  # the preflight names the spec by its name: show the file
        _fail(str(SpecError(source, err.problems) if err.source == sweep.name else err))
    except SweepInUse as err:
        _fail(str(err))
    for line in outcome.repaired:
        typer.echo(f"repaired: {line}", err=True)
    typer.echo(f"sweep {sweep.name!r}: {outcome.launched} trials launched, "
               f"{outcome.skipped_points} grid points already done, "
               f"{len(outcome.failed)} failed"
               + (f", {outcome.unfinished} unfinished" if outcome.unfinished else "")
               + f"; results in {outcome.sweep_dir.uri}"
               + (f" ({outcome.compacted} parts compacted)" if outcome.compacted else ""),
               err=True)
    _print_report(outcome.sweep_dir)
    if outcome.failed:
        typer.echo("failed trials (see `lottery status`): " + ", ".join(outcome.failed),
                   err=True)
    if outcome.unfinished:  # Ctrl-C: Tune stops its trials and returns as if done
        where = storage or sweep.storage
        storage_opt = f" --storage {where}" if where != "results" else ""
        _fail(f"interrupted: {outcome.unfinished} of {outcome.launched} trials did not finish; "
              f"`lottery resume {sweep.name}{storage_opt}` continues the sweep (finished "
              "points are kept)", code=130)
    if outcome.failed:
        raise typer.Exit(1)


@app.command()
def run(spec: Path, storage: StorageOpt = None, address: AddressOpt = None,
        verbose: VerboseOpt = False) -> None:
    """Run SPEC through Ray Tune (re-running continues an interrupted sweep), then report."""
    with ModelCheck() as models:  # torch and the models in a child while this one goes on
        _run(_load(spec), storage, address, verbose, str(spec), models)


@app.command()
def resume(name: str, storage: NamedStorageOpt = None, address: AddressOpt = None,
           verbose: VerboseOpt = False) -> None:
    """Continue sweep NAME from its stored spec: finished trials are not run again."""
    with ModelCheck() as models:  # as in `run`
        _resume(name, storage, address, verbose, models)


def _resume(name: str, storage: str | None, address: str | None, verbose: bool,
            models: ModelCheck) -> None:
    from sweeps import spec as spec_module

    store, raw = _sweep_store(name, storage)
    try:
        sweep = spec_module.parse(raw, store.join("spec.json"))
    except SpecError as err:
        _fail(str(err))
    _run(sweep, storage or raw.get("storage"), address, verbose, store.join("spec.json"),
         models)


@app.command()
def status(name: str, storage: NamedStorageOpt = None) -> None:
    """Show NAME's driver, trials (done / running / interrupted / pending / error: failed and
    being retried / failed), points done and corrupt files."""
    from sweeps.status import format_status

    store, _ = _sweep_store(name, storage)
    try:
        typer.echo(format_status(store))
    except FileNotFoundError as err:
        _fail(str(err))


def _print_report(sweep_dir) -> None:
    from analysis.load import load_runs
    from analysis.report import format_report

    try:
        typer.echo(format_report(load_runs(sweep_dir.uri), _search_metric(sweep_dir.uri)))
    except ValueError as err:  # a part went bad after the run checked it
        _fail(f"cannot read the results: {err}", code=1)


def _search_metric(target: str) -> str:
    """The metric of the sweep's search (its stored ``spec.json``), else ``val_acc``."""
    from sweeps.store import Store

    try:
        raw = Store(target).get_json("spec.json") or {}
    except (OSError, ValueError):
        raw = {}
    return ((raw.get("search") or {}).get("metric")) or "val_acc"


OutOpt = Annotated[Path | None, typer.Option(
    help="Also write report.html (self-contained) and report.md with its figures into DIR.")]


@app.command()
def report(name_or_path: str, storage: NamedStorageOpt = None, out: OutOpt = None) -> None:
    """Print the summary table of a sweep given by NAME (under --storage) or by its PATH."""
    from analysis.load import load_runs
    from analysis.report import format_report
    from sweeps.store import check_location
    from sweeps.store import join_uri

    target = name_or_path
    looks_like_path = "/" in target or target.startswith(".")
    if "://" not in target and not looks_like_path:
        target = join_uri(storage or "results", name_or_path)
    try:
        check_location(target)
    except ValueError as err:
        _fail(str(err))
    metric = _search_metric(target)
    try:
        runs = load_runs(target)
        text = format_report(runs, metric)
    except FileNotFoundError as err:
        _fail(f"no sweep results at {target}: {err}")
    except (OSError, ValueError) as err:
        _fail(f"cannot read the results at {target}: {err}", code=1)
    typer.echo(text)
    if out is not None:
        if runs.empty:
            _fail(f"no runs at {target} to write a report of")
        with _writing(out):
            _write_report(runs, target, metric, out)


def _write_report(runs, target: str, metric: str, out: Path) -> None:
    """``report.md`` and ``report.html`` (figures embedded) with every table, verdict and
    figure of ``analysis.report_files``."""
    from analysis.load import load_curves
    from analysis.load import load_layers
    from analysis.report_files import write_report
    from sweeps.store import Store

    store = Store(target)
    failed = [name.removesuffix(".json") for name in store.list("trials")
              if (store.get_json(f"trials/{name}") or {}).get("state") == "failed"]
    md, page = write_report(runs, load_curves(target), out, store.get_json("spec.json"),
                            failed, metric, load_layers(target))
    typer.echo(f"wrote {md} and {page}", err=True)


@app.command()
def compact(name: str, storage: NamedStorageOpt = None) -> None:
    """Merge sweep NAME's committed loose table parts into a few large Parquet files (safe
    beside a running sweep; loaders read compacted and loose parts together)."""
    from sweeps.compact import compact as merge

    store, _ = _sweep_store(name, storage)
    merged = merge(store)
    typer.echo(", ".join(f"{table}: {n} parts merged" for table, n in merged.items()))


@app.command()
def export(name: str,
           method: Annotated[str, typer.Option(help="Method key, e.g. lth, omp_lth, pf.")],
           sparsity: Annotated[float, typer.Option(help="Target sparsity, a fraction.")],
           out: Annotated[Path, typer.Option(help="Ticket file to write (.pt).")],
           seed: Annotated[int, typer.Option(help="Replicate.")] = 0,
           lr: Annotated[float | None, typer.Option(help="Learning rate, if several.")] = None,
           model: Annotated[str | None, typer.Option(help="Model, if several.")] = None,
           dataset: Annotated[str | None, typer.Option(
               help="Dataset (as the spec writes it), if several.")] = None,
           target: Annotated[str | None, typer.Option(
               help="transfer: the target dataset, e.g. fashion-mnist[5-9].")] = None,
           init: Annotated[str | None, typer.Option(
               help="transfer: late_reset, init or reinit.")] = None,
           regime: Annotated[str | None, typer.Option(
               help="transfer: finetune or freeze.")] = None,
           storage: NamedStorageOpt = None) -> None:
    """Write the ticket of METHOD at SPARSITY of sweep NAME: its mask and start weights.

    The file holds θ_start ⊙ m (θ0, θk, θ0', θT or θS as the method says, never trained
    branch weights), the mask, the model key and the hyperparameters; read it back with
    `trainer.tickets.load_ticket`.
    """
    from sweeps import spec as spec_module
    from sweeps.plan import make_plan
    from trainer import tickets

    store, raw = _sweep_store(name, storage)
    try:
        sweep = spec_module.parse(raw, store.join("spec.json"))
    except SpecError as err:
        _fail(str(err))
    if method not in sweep.methods:
        _fail(f"sweep {name!r} has no method {method!r}; its methods: {', '.join(sweep.methods)}")
    plan = make_plan(sweep)
    variant = {k: v for k, v in {"target": target, "init": init, "regime": regime}.items()
               if v is not None}
    trunks = {k: v for k, v in {"model": model, "dataset": dataset}.items() if v is not None}
    found = plan.tickets(method, sparsity, seed, lr, trunks, **variant)
    if not found:
        _fail(f"sweep {name!r} has no grid point method={method} sparsity={sparsity:g} "
              f"seed={seed}" + (f" lr={lr:g}" if lr is not None else "") +
              "".join(f" {k}={v}" for k, v in {**trunks, **variant}.items()) +
              f"; its grid: sparsities {sweep.sparsities}, lrs {sweep.lrs}, "
              f"seeds {sweep.seeds}")
    if len(found) > 1:
        options = sorted({f"--lr {j.trunk.train.lr:g} (--model {j.trunk.model}, --dataset "
                          f"{j.trunk.data.label}"
                          + "".join(f", --{k} {v}" for k, v in j.method_hparams.items()
                                    if k in ("target", "init", "regime")) + ")"
                          for j in found})
        _fail(f"{len(found)} grid points match; narrow it down: {', '.join(options)}")
    job = found[0]
    try:
        ticket = tickets.make_ticket(job, store.child("artifacts"))
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    with _writing(out):
        tickets.save_ticket(ticket, out)
    trunk = job.trunk
    typer.echo(f"wrote the {method} ticket at sparsity {job.point.target_sparsity:g} (seed "
               f"{seed}, lr {trunk.train.lr:g}, {trunk.model} / {trunk.data.label}) to {out}")


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
