"""``lottery report NAME --out DIR``: one self-contained HTML file (figures embedded) and a
Markdown file with the figures beside it.

Both hold the spec, the compute used (rows, seeds, epochs trained, wall time, devices), the
warnings (points without an interval, missing arms, failed trials), and every table of
``analysis.tables`` with 95 % intervals, the five-criteria ticket verdicts
(``analysis.verdicts``), the figures of ``analysis.figures`` and, for Optuna searches, the best
configuration per cell and the search history (``analysis.search``).
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import figures
from analysis import search
from analysis import tables
from analysis.intervals import BOOTSTRAP_MIN_N
from analysis.intervals import format_interval
from analysis.verdicts import ticket_verdicts
from analysis.verdicts import tolerance

CI_NOTE = (f"Intervals are 95 % over seeds: Student t below {BOOTSTRAP_MIN_N} seeds, the "
           "percentile bootstrap (10,000 seeded resamples) from there on; `n` is the number of "
           "seeds (paired seeds for differences). P(improvement) is rliable's P(X > Y) over all "
           "pairs of runs.")


@dataclass
class Section:
    """One part of the report: a title, Markdown/HTML paragraphs, tables and figures."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)


def write_report(runs: pd.DataFrame, curves: pd.DataFrame, out: str | Path,
                 spec: dict[str, Any] | None = None, failed: list[str] | None = None,
                 search_metric: str = "val_acc",
                 layers: pd.DataFrame | None = None) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and the figures (``figures/*.png|svg``) to ``out``.

    Args:
        runs: The sweep's runs table (``analysis.load.load_runs``).
        curves: Its curves table (for the training curves; may be empty).
        out: Output directory (created).
        spec: The sweep's stored spec (``spec.json``), shown as given.
        failed: Ids of failed trials, listed among the warnings.
        search_metric: The searches' metric.
        layers: Its layers table, for the mask overlaps (None: that section is left out).
    Returns:
        (Markdown path, HTML path).
    Raises:
        ValueError: ``runs`` is empty.
    """
    if runs.empty:
        raise ValueError("no runs to report")
    out = Path(out)
    fig_dir = out / "figures"
    sections = _sections(runs, curves, fig_dir, spec, failed or [], search_metric)
    if layers is not None and not search.grid_rows(runs).empty:
        sections.insert(-1 if not search.search_rows(runs).empty else len(sections),
                        _overlaps(layers))
    name = _names(runs["sweep"])
    md, page = out / "report.md", out / "report.html"
    out.mkdir(parents=True, exist_ok=True)
    md.write_text(_markdown(name, sections, out))
    page.write_text(_html(name, sections))
    return md, page


def _sections(runs: pd.DataFrame, curves: pd.DataFrame, fig_dir: Path,
              spec: dict[str, Any] | None, failed: list[str], metric: str) -> list[Section]:
    grid = search.grid_rows(runs)
    out = [_overview(runs, curves, spec), _warnings(grid if not grid.empty else runs, failed)]
    if not grid.empty:
        out += _grid_sections(grid, curves, fig_dir)
    if not search.search_rows(runs).empty:
        s = Section("Optuna searches", [f"Best configuration per cell, chosen on `{metric}` "
                                        "(validation); the test accuracy is only reported."])
        best = search.best(runs, metric)
        s.tables.append(("best configuration per cell", best))
        written = search.plot_history(runs, fig_dir / "search_history", metric)
        s.figures.append(("search history: best so far per cell", written[0]))
        out.append(s)
    return out


def _overview(runs: pd.DataFrame, curves: pd.DataFrame, spec: dict[str, Any] | None) -> Section:
    s = Section("Sweep")
    epochs = len(curves) if not curves.empty else int(runs["epochs"].sum())
    wall = float(runs["wall_time_s"].sum())
    s.text.append(
        f"Sweep `{_names(runs['sweep'])}`: models {_names(runs['model'])}; datasets "
        f"{_names(runs['dataset'])}; {len(runs)} runs rows, "
        f"{runs['seed'].nunique()} seed{'' if runs['seed'].nunique() == 1 else 's'} "
        f"({_names(runs['seed'])}).")
    s.text.append(
        f"Compute: {epochs} training epochs in the curves table (every epoch trained once, "
        f"shared stages counted once); {wall / 60:.1f} min of training wall time summed over "
        f"the rows' own stages; devices {_names(runs['device'])}; code "
        f"{_names(runs['code_version'])}.")
    s.text.append(CI_NOTE)
    if spec is not None:
        s.text.append("The spec (as stored beside the results):")
        lines = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in spec.items())
        s.text.append("```json\n{\n" + lines + "\n}\n```")
    return s


def _warnings(runs: pd.DataFrame, failed: list[str]) -> Section:
    found = tables.warnings(runs, failed)
    return Section("Warnings", [f"- {w}" for w in found] or ["None: every point has at least "
                                                               "2 seeds and every arm its rows."])


def _grid_sections(runs: pd.DataFrame, curves: pd.DataFrame, fig_dir: Path) -> list[Section]:
    acc = tables.accuracy(runs)
    out = []
    s = Section("Test accuracy", ["Final test accuracy, % mean [95 % interval] over seeds; "
                                  "dense in column 0."])
    for (model, dataset), cell in acc.groupby(["model", "dataset"], sort=True):
        s.tables.append((f"{model} / {dataset}", _pivot(cell)))
    for path in figures.accuracy_vs_remaining(acc, fig_dir)[::2]:
        s.figures.append(("test accuracy vs weights remaining (log axis), per lr", path))
    out.append(s)
    diffs = tables.differences(runs)
    if not diffs.empty:
        d = Section("Paired differences", ["a - b in accuracy points, paired by seed (the arms "
                                           "of a seed share its trunk: θ0, the data order and "
                                           "the masks; random reinit draws θ0' under the "
                                           "seed's mask), with P(a > b) over every pair of the "
                                           "two arms' runs (unpaired; 3 seeds give 9 pairs, so "
                                           "P = 1.00 is no certainty)."])
        d.tables.append(("differences", _fmt(diffs, ["mean", "low", "high"], points=True)))
        out.append(d)
    verdicts = ticket_verdicts(runs, curves=curves if not curves.empty else None)
    if not verdicts.empty:
        tolerances = ", ".join(f"{d}: {100 * tolerance(d):g} pt"
                               for d in sorted(set(verdicts["dataset"])))
        v = Section("Ticket verdicts (Ma et al. 2021, §2.2: five criteria)",
                    ["(1) non-trivial sparsity (>= 0.5) and converged dense runs (final within "
                     "the tolerance of the best epoch, no larger rise over the last quarter "
                     "of epochs; a schedule whose last lr drop falls in that quarter flattens "
                     "the curve by itself); (2) sdt below LT by > 0.5 pt at some lr; (3) LT "
                     "beats RR at any lr by > 0.5 pt; (4) LT >= dense at its lr - tolerance; "
                     "(5) LT >= best dense - tolerance. Jackpot: all five; secondary prize: "
                     f"(1)-(4). Tolerance (Ma et al.'s per dataset; 0.5 pt unless named): "
                     f"{tolerances}. Each criterion compares means over seeds; the paired "
                     "differences above give their intervals."])
        v.tables.append(("verdicts", verdicts))
        out.append(v)
    budget = tables.budgets(runs)
    if not budget.empty:
        b = Section("Equal budget", ["Total epochs behind each sparse arm's rows (from the "
                                     "rows) and test accuracy %; `vs_lth` is the arm's epochs "
                                     "minus the ticket's at the point (0: Liu et al.'s equal "
                                     "budget)."
                                     + ("" if "pf" in set(budget["arm"]) else
                                        " The sweep has no `pf` arm, so Liu et al.'s P&F vs "
                                        "ticket question is not asked here.")])
        b.tables.append(("budgets", _fmt(budget, ["mean", "low", "high"], points=True)))
        out.append(b)
    corr = tables.correlation(runs)
    c = Section("Weight correlation R_p(θ0, θT)", ["Dense nets, per lr; the null value is p "
                                                   "(Liu et al. 2021, Eq. 1)."])
    c.tables.append(("R_p per lr", _fmt(corr, ["mean", "low", "high"], points=False)))
    for path in figures.correlation_vs_p(corr, fig_dir)[::2]:
        c.figures.append(("R_p vs p with the null line", path))
    mech = tables.mechanism(runs)
    if not mech.empty and mech["n"].sum() > 0:
        c.text.append("Liu et al.'s mechanism pairs on the P&F rows: R_0.2 with θ0 ⊙ m (init) "
                      "and θ0' ⊙ m (reinit); null 0.2.")
        c.tables.append(("mechanism", _fmt(mech, ["mean", "low", "high"], points=False)))
    out.append(c)
    es = tables.early_stopping(runs, curves)
    if not es.empty:
        note = ""
        if es["censored"].notna().any():
            k, n = int(es["censored"].fillna(0).sum()), int(es["n"].sum())
            note = (f" Validation is read once per epoch; {k} of {n} runs had their minimum at "
                    "their last epoch (`censored`: they may still be improving, so the mean "
                    "of a cell holding one is a lower bound and has no interval).")
        e = Section("Early stopping", ["Iteration of minimum validation loss (Frankle & Carbin "
                                       "2019), mean [95 % interval]." + note])
        e.tables.append(("early-stopping iteration", _fmt(es, ["mean", "low", "high"],
                                                          points=False, digits=0)))
        for path in figures.early_stopping_vs_remaining(es, acc, fig_dir)[::2]:
            e.figures.append(("early-stopping iteration vs weights remaining", path))
        out.append(e)
    if not curves.empty:
        t = Section("Training curves", ["Test accuracy per epoch of each IMP level (one seed)."])
        for path in figures.training_curves(curves, fig_dir)[::2]:
            t.figures.append(("training curves per level", path))
        if t.figures:
            out.append(t)
    return out


# The arm pairs whose masks the report compares: IMP vs one-shot (Ma et al. §3), IMP with
# reset vs rewinding, and the ticket vs a random mask of its per-layer sparsity.
ARM_PAIRS = {("lth", "omp_lth"), ("lth", "lth_rewind"), ("lth", "random_pruning")}


def _overlaps(layers: pd.DataFrame) -> Section:
    """Pooled Jaccard overlaps of the masks between seeds and between lrs."""
    from analysis.masks import POOLED
    from analysis.masks import overlap

    s = Section("Mask overlap (Jaccard)", ["|a ∩ b| / |a ∪ b| of the kept weights, pooled over "
                                           "the layers either mask prunes, beside the value of "
                                           "two independent random masks of the same per-layer "
                                           "densities (`random_jaccard`)."])
    for vary in ("seed", "lr", "arm"):
        o = overlap(layers, vary)
        o = o[o["layer"] == POOLED].drop(columns=["layer", "vary"])
        if vary == "arm":  # the masks found differently (random reinit keeps lth's: 1.0)
            o = o[[(a, b) in ARM_PAIRS for a, b in zip(o["a"], o["b"], strict=True)]]
        if not o.empty:
            s.tables.append((f"between {vary}s", o))
    if not s.tables:
        s.text.append("No masks to compare (one seed and one lr, or no mask_bits).")
    return s


def _pivot(cell: pd.DataFrame) -> pd.DataFrame:
    """Rows (lr, arm), columns target sparsity, cells ``mean [low, high]`` in %."""
    text = cell.assign(value=[format_interval(m, lo, hi) for m, lo, hi in
                              zip(cell["mean"], cell["low"], cell["high"], strict=True)])
    table = text.pivot_table(index=["lr", "arm"], columns="target_sparsity", values="value",
                             aggfunc="first").fillna("-")
    table.columns = [f"{c:g}" for c in table.columns]
    return table.reset_index()


def _fmt(table: pd.DataFrame, columns: list[str], points: bool, digits: int = 3
         ) -> pd.DataFrame:
    """Numbers rounded for reading: accuracy columns in points, others as they are."""
    out = table.copy()
    for column in columns:
        out[column] = [("-" if pd.isna(v) else f"{100 * v:+.2f}" if points else
                        f"{v:.{digits}f}") for v in out[column]]
    if "p_improvement" in out:
        out["p_improvement"] = [f"{v:.2f}" for v in out["p_improvement"]]
    return out


def _names(column: pd.Series) -> str:
    return ", ".join(sorted({str(v) for v in column.dropna().unique()}))


def _md_table(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown(name: str, sections: list[Section], out: Path) -> str:
    parts = [f"# Report: {name}\n"]
    for s in sections:
        parts.append(f"## {s.title}\n")
        parts += [t + "\n" for t in s.text]
        for title, frame in s.tables:
            parts.append(f"**{title}**\n\n{_md_table(frame)}\n")
        for caption, path in s.figures:
            parts.append(f"![{caption}]({path.relative_to(out).as_posix()})\n")
    return "\n".join(parts)


def _html(name: str, sections: list[Section]) -> str:
    body = [f"<h1>Report: {html.escape(name)}</h1>"]
    for s in sections:
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        for t in s.text:
            if t.startswith("```"):
                body.append(f"<pre>{html.escape(t.strip('`').removeprefix('json'))}</pre>")
            else:
                body.append(f"<p>{html.escape(t)}</p>")
        for title, frame in s.tables:
            body.append(f"<h3>{html.escape(title)}</h3>")
            body.append(frame.to_html(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}",
                                      border=0, classes="t"))
        for caption, path in s.figures:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            body.append(f'<figure><img class="fig" alt="{html.escape(caption)}" '
                        f'src="data:image/png;base64,{data}"><figcaption>'
                        f"{html.escape(caption)}</figcaption></figure>")
    return _PAGE.format(title=html.escape(name), body="\n".join(body))


# The script marks the body once every figure decoded, so a headless browser can check it.
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Report: {title}</title>
<style>
body {{ font-family: sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }}
table.t {{ border-collapse: collapse; font-size: 12px; margin: 0.5em 0 1.5em; }}
table.t td, table.t th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
img.fig {{ max-width: 100%; }}
pre {{ background: #f6f6f6; padding: 0.5em; font-size: 11px; white-space: pre-wrap; }}
</style></head>
<body>
{body}
<script>
window.addEventListener("load", function () {{
  var imgs = Array.prototype.slice.call(document.querySelectorAll("img.fig"));
  var ok = imgs.filter(function (i) {{ return i.complete && i.naturalWidth > 0; }}).length;
  document.body.setAttribute("data-figures", ok + "/" + imgs.length);
}});
</script>
</body></html>
"""
