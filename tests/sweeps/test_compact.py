"""``lottery compact``: every row exactly once after compaction, beside loose parts, after a
crash at any step, and through a re-run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_in_process

from analysis import commits
from analysis.load import load_curves
from analysis.load import load_layers
from analysis.load import load_runs
from sweeps import integrity
from sweeps.compact import compact
from sweeps.plan import make_plan
from sweeps.run import pending_jobs
from sweeps.spec import parse
from sweeps.store import Store

SPEC = {"name": "cmp", "dataset": "digits", "methods": ["dense", "lth", "random_reinit"],
        "lrs": [0.05], "sparsities": [0.36, 0.5], "seeds": [0, 1], "training": {"epochs": 1}}
LOADERS = {"runs": load_runs, "curves": load_curves, "layers": load_layers}


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cmp")
    run_in_process(SPEC, root)
    return root / "cmp"


def _copy(original: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(original, tmp_path / "cmp"))


def _tables(sweep: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for table, load in LOADERS.items():
        frame = load(sweep).drop(columns=["mask_bits"], errors="ignore")
        out[table] = frame.astype(str).sort_values(list(frame.columns)).reset_index(drop=True)
    return out


def _assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for table in a:
        pd.testing.assert_frame_equal(a[table], b[table], obj=table)


def test_compaction_keeps_every_row_once_and_removes_the_loose_parts(original: Path,
                                                                      tmp_path: Path) -> None:
    sweep = _copy(original, tmp_path)
    before = _tables(sweep)
    done = integrity.inspect(Store(str(sweep))).done
    merged = compact(Store(str(sweep)))
    assert merged["runs"] == len(before["runs"]) and merged["curves"] > 0
    assert not list(sweep.glob("runs/part-*.parquet"))
    assert len(list(sweep.glob("runs/compact-*.parquet"))) == 1
    _assert_same(before, _tables(sweep))
    assert integrity.inspect(Store(str(sweep))).done == done
    plan = make_plan(parse(SPEC))
    chains, branches, skipped = pending_jobs(plan, done)
    assert (chains, branches, skipped) == ([], [], len(plan.points))  # a re-run runs nothing
    compact(Store(str(sweep)))  # a second compaction finds nothing loose
    _assert_same(before, _tables(sweep))


def test_a_loose_part_shadows_its_compacted_rows(original: Path, tmp_path: Path) -> None:
    sweep = _copy(original, tmp_path)
    key = load_runs(sweep).config_hash[0]
    saved = (sweep / "runs" / commits.part_file(key)).read_bytes()
    before = _tables(sweep)
    compact(Store(str(sweep)))
    (sweep / "runs" / commits.part_file(key)).write_bytes(saved)  # a retried trial rewrote it
    _assert_same(before, _tables(sweep))


def test_a_crash_before_the_manifest_or_before_the_deletes_loses_and_doubles_nothing(
        original: Path, tmp_path: Path) -> None:
    sweep = _copy(original, tmp_path)
    before = _tables(sweep)
    loose = {p: p.read_bytes() for t in LOADERS for p in (sweep / t).iterdir()}
    compact(Store(str(sweep)))
    for path, data in loose.items():  # the deletes never happened
        path.write_bytes(data)
    _assert_same(before, _tables(sweep))
    for manifest in (sweep / "compacted").iterdir():  # nor did the manifests
        manifest.unlink()
    _assert_same(before, _tables(sweep))


def test_a_corrupt_compacted_file_is_found_and_its_points_recomputed(original: Path,
                                                                     tmp_path: Path) -> None:
    sweep = _copy(original, tmp_path)
    compact(Store(str(sweep)))
    bad = next((sweep / "runs").glob("compact-*.parquet"))
    bad.write_bytes(bad.read_bytes()[:100])
    check = integrity.inspect(Store(str(sweep)))
    assert str(bad) in check.corrupt
    assert not any(k in check.done for k in check.files.compacted["runs"])


def test_the_cli_compacts_a_sweep_by_name(original: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sweeps.cli import app

    sweep = _copy(original, tmp_path)
    (sweep / "spec.json").write_text('{"name": "cmp"}')
    result = CliRunner().invoke(app, ["compact", "cmp", "--storage", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"runs: {len(load_runs(sweep))} parts merged" in result.stdout
    missing = CliRunner().invoke(app, ["compact", "nope", "--storage", str(tmp_path)])
    assert missing.exit_code != 0 and "no sweep 'nope'" in missing.output


def test_repeated_compactions_fold_into_few_files_and_keep_every_row(original: Path,
                                                                     tmp_path: Path) -> None:
    """Each re-run compacts its own parts; at ``merge_at`` files they are folded into one,
    and a part rewritten after compaction replaces its compacted copy in the next fold."""
    sweep = _copy(original, tmp_path)
    before = _tables(sweep)
    aside = tmp_path / "aside"
    aside.mkdir()
    loose = sorted((sweep / "runs").glob("part-*.parquet"))
    for path in loose:  # the runs parts land in three batches, as from three re-runs
        path.rename(aside / path.name)
    for i in range(3):
        for path in loose[i::3]:
            (aside / path.name).rename(path)
        compact(Store(str(sweep)), merge_at=3)
    _assert_same(before, _tables(sweep))
    assert len(list(sweep.glob("runs/compact-*.parquet"))) == 1  # the third folded all
    manifests = [m for m in (sweep / "compacted").iterdir() if m.name.endswith("-runs.json")]
    assert len(manifests) == 1
    assert sorted(commits.Manifest.decode(manifests[0].read_bytes()).parts) == \
        sorted(commits.part_key(p.name) for p in loose)
    # A rewritten part shadows its folded copy, and the next fold takes the loose one.
    rewritten = _copy(original, tmp_path / "again") / "runs" / loose[0].name
    (sweep / "runs" / loose[0].name).write_bytes(rewritten.read_bytes())
    assert compact(Store(str(sweep)), merge_at=1)["runs"] == 1
    assert not list(sweep.glob("runs/part-*.parquet"))
    assert len(list(sweep.glob("runs/compact-*.parquet"))) == 1
    _assert_same(before, _tables(sweep))


def test_the_end_of_a_run_folds_the_files_made_since_it_started(original: Path,
                                                                  tmp_path: Path) -> None:
    """``lottery run`` compacts in its tail and at its end; the end folds the tail's file
    (made after ``fold_since``) into its own and leaves older files alone."""
    from sweeps.compact import compaction_id

    sweep = _copy(original, tmp_path)
    before = _tables(sweep)
    aside = tmp_path / "aside"
    aside.mkdir()
    loose = sorted((sweep / "runs").glob("part-*.parquet"))
    for path in loose:
        path.rename(aside / path.name)

    def land(batch: list[Path]) -> None:
        for path in batch:
            (aside / path.name).rename(path)

    land(loose[0::3])
    compact(Store(str(sweep)))  # an earlier run's file
    first = {p.name for p in sweep.glob("runs/compact-*.parquet")}
    since = compaction_id()  # this run starts
    land(loose[1::3])
    compact(Store(str(sweep)))  # its tail
    land(loose[2::3])
    assert compact(Store(str(sweep)), fold_since=since)["runs"] == len(loose[2::3])
    files = {p.name for p in sweep.glob("runs/compact-*.parquet")}
    assert len(files) == 2 and first < files  # the earlier file stays, the tail's is folded
    _assert_same(before, _tables(sweep))


def test_the_end_of_a_run_leaves_a_big_tail_file_alone(original: Path, tmp_path: Path,
                                                       monkeypatch) -> None:
    """A tail's file of more than ``FOLD_PARTS`` parts is not rewritten for the last few."""
    from sweeps import compact as compaction

    sweep = _copy(original, tmp_path)
    before = _tables(sweep)
    aside = tmp_path / "aside"
    aside.mkdir()
    loose = sorted((sweep / "runs").glob("part-*.parquet"))
    for path in loose[1:]:
        path.rename(aside / path.name)
    since = compaction.compaction_id()
    compact(Store(str(sweep)))  # the tail: one part
    tail = {p.name for p in sweep.glob("runs/compact-*.parquet")}
    for path in loose[1:]:
        (aside / path.name).rename(path)
    monkeypatch.setattr(compaction, "FOLD_PARTS", 0)
    assert compact(Store(str(sweep)), fold_since=since)["runs"] == len(loose) - 1
    files = {p.name for p in sweep.glob("runs/compact-*.parquet")}
    assert len(files) == 2 and tail < files
    _assert_same(before, _tables(sweep))


def test_compaction_bundles_the_records_of_the_points_it_merged(original: Path,
                                                                tmp_path: Path) -> None:
    sweep = _copy(original, tmp_path)
    store = Store(str(sweep))
    before, done = _tables(sweep), integrity.inspect(store).done
    loose = {p.name: p.read_bytes() for p in (sweep / "commits").iterdir()}
    compact(store)
    [bundle] = list((sweep / "commits").iterdir())  # one file instead of one per point
    assert commits.is_bundle(bundle.name)
    assert {r.key: r for r in commits.Bundle.decode(bundle.read_bytes()).records} == \
        {r.key: r for r in map(commits.Record.decode, loose.values())}
    _assert_same(before, _tables(sweep))
    assert integrity.inspect(store).done == done
    for name, data in loose.items():  # a crash between the bundle and the records' deletes
        (sweep / "commits" / name).write_bytes(data)
    _assert_same(before, _tables(sweep))
    assert integrity.inspect(store).done == done
    compact(store)  # the next compaction folds the old bundle and the records into one
    assert [commits.is_bundle(p.name) for p in (sweep / "commits").iterdir()] == [True]
    _assert_same(before, _tables(sweep))
    assert integrity.inspect(store).done == done


def test_a_corrupt_bundle_is_found_and_its_points_recomputed(original: Path,
                                                             tmp_path: Path) -> None:
    sweep = _copy(original, tmp_path)
    store = Store(str(sweep))
    compact(store)
    [bundle] = list((sweep / "commits").iterdir())
    bundle.write_bytes(bundle.read_bytes()[:50])
    check = integrity.inspect(store)
    assert str(bundle) in check.corrupt and check.done == set()
    assert load_runs(sweep).empty  # no record, no row: the points are pending again
    [line] = integrity.repair(store, check)
    assert str(bundle) in line and not bundle.exists()
    plan = make_plan(parse(SPEC))
    chains, branches, _ = pending_jobs(plan, integrity.inspect(store).done)
    assert len(chains) + len(branches) == len(plan.chains) + len(plan.branches)


class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.config = {"trial_id": trial_id}


def _finish(progress, tail, trial_id: str) -> None:
    """What Tune does when a trial completes: every callback in order, progress first."""
    for callback in (progress, tail):
        callback.on_trial_complete(0, [], _Trial(trial_id))


def test_the_tail_compacts_once_when_a_slot_idles_and_every_row_stays_once(
        original: Path, tmp_path: Path) -> None:
    import pickle

    from sweeps.progress import Counts
    from sweeps.progress import ProgressCallback
    from sweeps.tail import TailCompaction

    sweep = _copy(original, tmp_path)
    before = _tables(sweep)
    counts = Counts(total_trials=4, total_epochs=4)
    progress = ProgressCallback(counts, "sweep", None, None)
    tail = TailCompaction(Store(str(sweep)), counts)
    counts.tick({"a", "b"})  # two slots busy, two trials still to start
    _finish(progress, tail, "a")
    counts.tick({"b", "c"})
    _finish(progress, tail, "b")  # a slot frees, but "d" is still to start
    assert not tail.in_tail() and tail.join() == 0
    counts.tick({"c", "d"})
    assert not tail.in_tail()  # every trial started, every slot busy
    _finish(progress, tail, "c")
    assert tail.in_tail()  # "d" runs alone: the tail
    merged = tail.join()
    assert merged > 0 and not list(sweep.glob("runs/part-*.parquet"))
    _assert_same(before, _tables(sweep))
    _finish(progress, tail, "d")  # the last one: nothing running, and it started once only
    assert tail.join() == merged
    assert pickle.loads(pickle.dumps(tail)).join() == merged  # Tune pickles its callbacks


def test_a_failing_tail_compaction_is_logged_and_left_to_the_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from sweeps import tail as tail_module
    from sweeps.progress import Counts
    from sweeps.progress import ProgressCallback

    def broken(store: Store) -> dict[str, int]:
        raise ValueError("a part pyarrow cannot read")

    monkeypatch.setattr(tail_module, "compact", broken)
    counts = Counts(total_trials=2, total_epochs=2)
    progress = ProgressCallback(counts, "sweep", None, None)
    tail = tail_module.TailCompaction(Store(str(tmp_path)), counts)
    counts.tick({"a", "b"})
    _finish(progress, tail, "a")
    assert tail.join() == 0
    assert "compaction in the sweep's tail failed (ValueError: a part pyarrow" in caplog.text
