"""Every Python snippet of docs/analysis.md runs, in order, in one namespace, on a small sweep
named like the quick start (``results/quickstart`` in a temporary working directory)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import run_in_process

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysis.md"
SNIPPET = re.compile(r"```python\n(.*?)```", re.S)
SPEC = {"name": "quickstart", "dataset": "digits", "model": "lenet_300_100",
        "methods": ["dense", "lth", "random_reinit", "random_pruning", "pf"],
        "lrs": [0.01, 0.1], "sparsities": [0.5, 0.8, 0.9], "seeds": [0, 1],
        "training": {"epochs": 2, "batch_size": 64}, "data": {"validation": 200}}


def test_the_doc_has_snippets() -> None:
    assert len(SNIPPET.findall(DOC.read_text())) >= 8


def test_every_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_in_process(SPEC, tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for i, code in enumerate(SNIPPET.findall(DOC.read_text())):
        try:
            exec(compile(code, f"docs/analysis.md snippet {i}", "exec"), namespace)
        except Exception as err:  # noqa: BLE001 - name the snippet that failed
            pytest.fail(f"snippet {i} failed: {type(err).__name__}: {err}\n{code}")
    assert (tmp_path / "figures").is_dir() and os.listdir(tmp_path / "figures")
