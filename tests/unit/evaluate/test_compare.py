"""``tunesmith compare`` on hand-built run directories, answers from a lookup (no model)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunesmith.errors import ConfigError
from tunesmith.evaluate.compare import best_of, collect, flatten, run_labels
from tunesmith.evaluate.compare_answers import read_prompt_file
from tunesmith.evaluate.compare_html import render_html, write_report
from tunesmith.evaluate.compare_md import md_cell, render_markdown
from tunesmith.runs import RunRecord

REPORT = """# Data report

| source | rows read | kept | skipped | truncated | in mix | resampled | val | share (samples) | share (trained tokens) | cache |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
| builtin:identity | 800 | 800 | 0 | 2 | {n} | 0 | 4 | {share} | 80.0% | hit |

- Samples: {n}; trained tokens: 12,591.
"""  # noqa: E501


def make_run(
    path: Path,
    *,
    lr: float,
    losses: list[float],
    val: dict[int, float],
    evals: dict[str, dict[str, float]],
    predictions: list[dict[str, Any]] | None = None,
    prompts: list[str] | None = None,
) -> Path:
    """A finished run directory: config, metrics.jsonl, data report, eval results."""
    path.mkdir(parents=True)
    cfg = {
        "model": {"name": "builtin:tiny-qwen2"},
        "data": {"datasets": [{"path": "builtin:identity", "samples": 8}]},
        "train": {"lr": lr},
        "eval": {"prompts": prompts or [], "max_new_tokens": 12},
        "output": {"dir": str(path)},
    }
    (path / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    (path / "model").mkdir()
    lines = [{"step": i + 1, "loss": v, "lr": lr} for i, v in enumerate(losses)]
    for step, v in val.items():
        lines[step - 1]["val_loss"] = v
    text = "".join(json.dumps(x) + "\n" for x in lines)
    (path / "metrics.jsonl").write_text(text, encoding="utf-8")
    (path / "data_report.md").write_text(REPORT.format(n=8, share="100.0%"), encoding="utf-8")
    (path / "eval").mkdir()
    for name, metrics in evals.items():
        result = {"task": "generation", "name": name, "metrics": metrics, "n": 2}
        (path / "eval" / f"{name}.json").write_text(json.dumps(result), encoding="utf-8")
    if predictions is not None:
        rows = "".join(json.dumps(r) + "\n" for r in predictions)
        (path / "eval" / "qa.predictions.jsonl").write_text(rows, encoding="utf-8")
    return path


def pred(i: str, answer: str, ok: bool) -> dict[str, Any]:
    ref = {"q1": "Alice", "q2": "<Bob>"}[i]
    return {
        "id": i,
        "prompt": f"Who is {i}?",
        "reference": ref,
        "prediction": answer,
        "exact_match": ok,
    }


@pytest.fixture
def two_runs(tmp_path: Path) -> list[Path]:
    a = make_run(
        tmp_path / "x" / "run",
        lr=1e-4,
        losses=[3.0, 2.5, 2.0],
        val={2: 2.8, 3: 2.6},
        evals={"qa": {"exact_match": 0.5, "contradiction_rate": 0.25}},
        predictions=[pred("q1", "Alice", True), pred("q2", "Carol", False)],
        prompts=["Hi <there> & you", "Who?"],
    )
    b = make_run(
        tmp_path / "y" / "run",
        lr=1e-3,
        losses=[3.0, 2.0, 1.5],
        val={2: 2.4, 3: 2.7},
        evals={"qa": {"exact_match": 0.5, "contradiction_rate": 0.0}},
        predictions=[pred("q2", "<Bob>", True), pred("q1", "Dan", False)],
        prompts=["Who?"],
    )
    return [a, b]


def test_config_diff_shows_what_an_extra_dataset_sets_not_its_unset_fields(
    two_runs: list[Path],
) -> None:
    cfg_path = two_runs[1] / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    cfg["data"]["datasets"].append({"path": "builtin:general", "samples": 5})
    cfg_path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    diff = dict(collect(two_runs, answer=lookup).config_diff)
    extra = {k: v for k, v in diff.items() if k.startswith("data.datasets.1.")}
    assert extra["data.datasets.1.path"] == ("—", "builtin:general")
    assert extra["data.datasets.1.samples"] == ("—", "5")
    # set fields and defaults that are values remain; unset (null) fields are not listed
    assert all(v[1] != "null" for v in extra.values())
    assert "data.datasets.1.name" not in extra


def lookup(run: RunRecord, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Answers naming the run's learning rate and the token budget."""
    return [f"{p} [lr {run.config.train.lr:g}, {max_new_tokens}]" for p in prompts]


def test_collect_diffs_configs_marks_best_and_matches_predictions(two_runs: list[Path]) -> None:
    comp = collect(two_runs, answer=lookup)
    assert comp.labels == ("x/run", "y/run")  # both folders are "run": the parent tells them apart
    assert comp.config_diff == (
        ("train.lr", ("0.0001", "0.001")),
        ("eval.prompts", ('["Hi <there> & you", "Who?"]', '["Who?"]')),
    )
    rows = {m.name: m for m in comp.metrics}
    assert rows["train loss (final)"].values == (2.0, 1.5)
    assert rows["train loss (final)"].best == {1}
    assert rows["val loss (final)"].values == (2.6, 2.7)
    assert rows["val loss (final)"].best == {0}  # the last val loss, not the best one
    assert rows["steps"].best == frozenset()  # no score
    assert rows["qa/exact_match"].best == frozenset()  # equal: nothing is best
    assert rows["qa/contradiction_rate"].best == {1}  # lower is better
    assert list(comp.curves) == ["loss", "val_loss"]
    assert comp.curves["val_loss"][1].steps == (2, 3)
    assert comp.curves["val_loss"][1].values == (2.4, 2.7)
    prompts, qa = comp.answers
    # The union of the runs' eval.prompts, in order, at the largest eval.max_new_tokens.
    assert [r.prompt for r in prompts.rows] == ["Hi <there> & you", "Who?"]
    assert prompts.rows[1].answers == ("Who? [lr 0.0001, 12]", "Who? [lr 0.001, 12]")
    assert [(r.id, r.reference, r.answers, r.correct) for r in qa.rows] == [
        ("q1", "Alice", ("Alice", "Dan"), (True, False)),
        ("q2", "<Bob>", ("Carol", "<Bob>"), (False, True)),
    ]
    assert comp.data_mix.cells == (("8 (100.0% of samples, 80.0% of tokens)",) * 2,)
    assert comp.data_mix.totals == ("8 samples, 12,591 trained tokens",) * 2


class Page(HTMLParser):
    """Cells of every table row, classes of td cells, and what external resources appear."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.best: list[str] = []
        self.tags: list[str] = []
        self.external: list[str] = []
        self._cell: list[str] | None = None
        self._classes = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(a[key] or "")
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell, self._classes = [], a.get("class") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            self.rows[-1].append(text)
            if "best" in self._classes.split():
                self.best.append(f"{self.rows[-1][0]}={text}")
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_html_escapes_user_text_marks_best_and_embeds_everything(two_runs: list[Path]) -> None:
    comp = collect(two_runs, answer=lookup)
    page = render_html(comp, generated="2026-01-01 00:00 UTC")
    assert "Hi <there>" not in page and "Hi &lt;there&gt; &amp; you" in page
    parsed = Page()
    parsed.feed(page)
    assert parsed.external == []  # no external files, scripts or styles
    assert "script" not in parsed.tags
    assert parsed.tags.count("svg") == 2  # loss and val_loss
    assert parsed.best == [
        "train loss (final) ↓=1.5000",
        "val loss (final) ↓=2.6000",
        "qa/contradiction_rate ↓=0",
    ]
    assert ["q2", "Who is q2?", "<Bob>", "Carol", "<Bob>"] in parsed.rows
    assert ["2", "Who?", "—", "Who? [lr 0.0001, 12]", "Who? [lr 0.001, 12]"] in parsed.rows
    # Deterministic: the same runs give the same page (the SVG ids included).
    again = render_html(collect(two_runs, answer=lookup), generated="2026-01-01 00:00 UTC")
    assert again == page


def test_markdown_bolds_best_and_escapes_cells(two_runs: list[Path]) -> None:
    md = render_markdown(collect(two_runs, answer=lookup, prompts=["a|b"]), generated="now")
    assert "| train loss (final) ↓ | 2 | **1.5000** |" in md
    assert "| qa/contradiction_rate ↓ | 0.2500 | **0** |" in md
    assert "| 1 | a\\|b | — | a\\|b [lr 0.0001, 12] | a\\|b [lr 0.001, 12] |" in md
    assert "| q2 | Who is q2? | &lt;Bob&gt; | Carol ✗ | &lt;Bob&gt; ✓ |" in md
    assert md_cell("x\ny|<z>") == "x<br>y\\|&lt;z&gt;"


def test_write_report_html_puts_markdown_beside_it(two_runs: list[Path], tmp_path: Path) -> None:
    comp = collect(two_runs, answer=lookup, max_new_tokens=3)
    files, text = write_report(comp, tmp_path / "out" / "r.html", fmt_name="html", generated="g")
    assert files == [tmp_path / "out" / "r.html", tmp_path / "out" / "r.md"]
    assert text is None
    assert "Curves and the full page: r.html." in files[1].read_text(encoding="utf-8")
    assert write_report(comp, None, fmt_name="md", generated="g") == (
        [],
        render_markdown(comp, generated="g"),
    )
    with pytest.raises(ConfigError, match=r"give --out report\.html"):
        write_report(comp, None, fmt_name="html", generated="g")


def test_prompt_sources_and_errors(two_runs: list[Path], tmp_path: Path) -> None:
    txt = tmp_path / "p.txt"
    txt.write_text("one\n\n two \n", encoding="utf-8")
    assert read_prompt_file(str(txt)) == [
        {"prompt": "one", "reference": None},
        {"prompt": "two", "reference": None},
    ]
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"question": "q", "answer": 4}\n{"nope": 1}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"p\.jsonl:2: no prompt column"):
        read_prompt_file(str(jl))
    jl.write_text('{"question": "q", "answer": 4}\n', encoding="utf-8")
    comp = collect(two_runs, prompts=["given"], prompts_file=str(jl), answer=lookup)
    assert [(r.prompt, r.reference) for r in comp.answers[0].rows] == [("given", None), ("q", "4")]
    with pytest.raises(ConfigError, match="at least two run directories"):
        collect(two_runs[:1], answer=lookup)
    with pytest.raises(ConfigError, match="not a run directory"):
        collect([two_runs[0], tmp_path], answer=lookup)


def test_unfinished_run_answers_nothing(two_runs: list[Path]) -> None:
    (two_runs[1] / "model").rmdir()
    comp = collect(two_runs, answer=lookup)
    assert comp.answers[0].rows[1].answers == ("Who? [lr 0.0001, 12]", None)
    assert comp.notes == ("y/run: training has not finished (no model/ or adapter/), no answers",)


def test_helpers() -> None:
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": [{"e": None}]}) == {
        "a.b": 1,
        "a.c": [1, 2],
        "d.0.e": None,
    }
    assert best_of([1.0, None, 0.5], lower=True) == {2}
    assert best_of([1.0, 1.0, 0.5], lower=False) == {0, 1}
    assert best_of([1.0, None], lower=False) == frozenset()
    assert run_labels([Path("/r/a"), Path("/s/b")]) == ("a", "b")
    assert run_labels([Path("/r/a"), Path("/r/a")]) == ("a (1)", "a (2)")
