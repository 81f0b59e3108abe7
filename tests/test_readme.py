"""The README is the user's contract: its schema and commands must match the code."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from analysis.schema import markdown_schema

ROOT = Path(__file__).resolve().parents[1]


def test_readme_schema_section_matches_analysis_schema():
    assert markdown_schema().strip() in (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make sweep" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "sweeps/configs/quickstart.yaml" in makefile
    assert (ROOT / "sweeps" / "configs" / "quickstart.yaml").exists()


def test_readme_spec_example_is_a_valid_spec():
    import yaml

    from sweeps import spec

    text = (ROOT / "README.md").read_text()
    block = text.split("## The sweep spec (YAML)")[1].split("```yaml")[1].split("```")[0]
    parsed = spec.parse(yaml.safe_load(block), "README.md")
    assert parsed.name == "quickstart" and parsed.training.epochs == 10


def _relative_links(markdown: str) -> list[str]:
    """Targets of ``[text](target)`` links that point into the repository."""
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", markdown)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)
            and not t.startswith(("/", "../shared"))]


def test_every_relative_link_in_the_docs_points_at_a_file_git_tracks():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (e.g. an sdist): nothing to compare with")
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.splitlines())
    docs = [p for p in tracked if p.endswith(".md")]
    assert "README.md" in docs
    broken = []
    for doc in docs:
        for link in _relative_links((ROOT / doc).read_text(encoding="utf-8")):
            target = os.path.normpath(os.path.join(os.path.dirname(doc), link))
            is_dir = any(p.startswith(target.rstrip("/") + "/") for p in tracked)
            if target not in tracked and not is_dir:
                broken.append(f"{doc} -> {link}")
    assert broken == [], "links to files git does not track (ignored or never added)"
    assert _relative_links("[a](docs/x.md) [b](https://x.org) [c](#anchor) [d](y.md#s)") == \
        ["docs/x.md", "y.md"]
