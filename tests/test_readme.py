"""The README is the user's contract: its schema and commands must match the code."""

from __future__ import annotations

from pathlib import Path

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
