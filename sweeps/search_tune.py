"""The Tune side of a search: ``CellSearcher`` releases every cell's trials from its own
Optuna study, in one ``Tuner.fit()`` (``sweeps.search`` has the studies and the plans)."""

from __future__ import annotations

from typing import Any

from ray.tune.search import Searcher

from sweeps import search
from sweeps.release import TableSearcher
from sweeps.spec import SweepSpec


class CellSearcher(TableSearcher):
    """A Tune ``Searcher`` over many cells, each with its own ``OptunaSearch``.

    ``suggest`` asks the first cell with trials left whose (model, dataset, seed) has no
    earlier cell with trials left or running: a fresh study of that seed picks what the
    earlier cell picked, so its trials stand on the same trunks, which must be trained once,
    not by two trials at a time (``None``, wait, until they finish; cells of other seeds go
    on meanwhile). It numbers the trial after the cell's finished ones and returns the
    trial's whole config; ``on_trial_complete`` tells the cell's study the result.
    ``Searcher.FINISHED`` once every cell's budget is released.

    Args:
        spec: The search spec.
        todo: (cell, trials to run) per cell (``search.todo``).
        done: Finished trials per cell (``search.history``), the studies' warm start.
        base: Config entries every trial gets (storage, sweep, cpus, spec, code version).
    """

    def __init__(self, spec: SweepSpec, todo: list[tuple[search.Cell, int]],
                 done: dict[search.Cell, list[search.Tried]], base: dict[str, Any]) -> None:
        # no metric here: Tune would then demand it in every progress report; each cell's
        # study reads it from the trial's final report
        super().__init__()
        self._spec, self._base, self._done = spec, base, done
        self._left = dict(todo)
        self._order = [c for c, _ in todo]
        self._next = {c: 1 + max((t.number for t in done.get(c, [])), default=-1)
                      for c in self._order}
        self._studies: dict[search.Cell, Any] = {}
        self._owner: dict[str, search.Cell] = {}
        self._running = dict.fromkeys(self._order, 0)

    def _ready(self, cell: search.Cell) -> bool:
        """No earlier cell of ``cell``'s (model, dataset, seed) has trials left or running."""
        group = (cell.model, cell.dataset, cell.seed)
        for c in self._order:
            if c == cell:
                return True
            if (c.model, c.dataset, c.seed) == group and (self._left[c] or self._running[c]):
                return False
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not any(self._left.values()):
            return Searcher.FINISHED
        cell = next((c for c in self._order if self._left[c] > 0 and self._ready(c)), None)
        if cell is None:
            return None  # their trunks are in training: asked again when a trial ends
        if cell not in self._studies:
            self._studies[cell] = search.study(self._spec, cell, self._done.get(cell, []))
        params = self._studies[cell].suggest(trial_id)
        number = self._next[cell]
        self._next[cell] += 1
        self._left[cell] -= 1
        self._running[cell] += 1
        self._owner[trial_id] = cell
        return {**self._base, "cell": vars(cell).copy(), "params": params, "number": number,
                "trial_id": search.trial_name(self._spec.search.name, cell, number)}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass  # progress reports carry no metric; only the final one counts

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        cell = self._owner.pop(trial_id, None)
        if cell is not None:
            self._running[cell] -= 1
            self._studies[cell].on_trial_complete(trial_id, result, error)
