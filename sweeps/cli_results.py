"""The ``lottery`` commands that read a finished or running sweep's results: ``report``,
``compact`` and ``export`` (registered on the app by ``sweeps.cli``); no torch or ray unless
``export`` needs torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sweeps.cli_common import NamedStorageOpt
from sweeps.cli_common import fail
from sweeps.cli_common import sweep_store
from sweeps.cli_common import writing
from sweeps.errors import SpecError


def print_report(sweep_dir) -> None:
    from analysis.load import load_runs
    from analysis.report import format_report

    try:
        typer.echo(format_report(load_runs(sweep_dir.uri), _search_metric(sweep_dir.uri)))
    except ValueError as err:  # a part went bad after the run checked it
        fail(f"cannot read the results: {err}", code=1)


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
        fail(str(err))
    metric = _search_metric(target)
    try:
        runs = load_runs(target)
        text = format_report(runs, metric)
    except FileNotFoundError as err:
        fail(f"no sweep results at {target}: {err}")
    except (OSError, ValueError) as err:
        fail(f"cannot read the results at {target}: {err}", code=1)
    typer.echo(text)
    if out is not None:
        if runs.empty:
            fail(f"no runs at {target} to write a report of")
        with writing(out):
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


def compact(name: str, storage: NamedStorageOpt = None) -> None:
    """Merge sweep NAME's committed loose table parts into a few large Parquet files (safe
    beside a running sweep; loaders read compacted and loose parts together)."""
    from sweeps.compact import compact as merge

    store, _ = sweep_store(name, storage)
    merged = merge(store)
    typer.echo(", ".join(f"{table}: {n} parts merged" for table, n in merged.items()))


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

    store, raw = sweep_store(name, storage)
    try:
        sweep = spec_module.parse(raw, store.join("spec.json"))
    except SpecError as err:
        fail(str(err))
    if method not in sweep.methods:
        fail(f"sweep {name!r} has no method {method!r}; its methods: {', '.join(sweep.methods)}")
    plan = make_plan(sweep)
    variant = {k: v for k, v in {"target": target, "init": init, "regime": regime}.items()
               if v is not None}
    trunks = {k: v for k, v in {"model": model, "dataset": dataset}.items() if v is not None}
    found = plan.tickets(method, sparsity, seed, lr, trunks, **variant)
    if not found:
        fail(f"sweep {name!r} has no grid point method={method} sparsity={sparsity:g} "
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
        fail(f"{len(found)} grid points match; narrow it down: {', '.join(options)}")
    job = found[0]
    try:
        ticket = tickets.make_ticket(job, store.child("artifacts"))
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))
    with writing(out):
        tickets.save_ticket(ticket, out)
    trunk = job.trunk
    typer.echo(f"wrote the {method} ticket at sparsity {job.point.target_sparsity:g} (seed "
               f"{seed}, lr {trunk.train.lr:g}, {trunk.model} / {trunk.data.label}) to {out}")
