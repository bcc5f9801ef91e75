"""``tunesmith compare`` on real tiny runs: the page's plots, metrics table and answers."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tunesmith import api
from tunesmith.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> list[Path]:
    """Two full fine-tunes (4 and 6 steps, lr 1e-4 and 1e-3) and one LoRA run, each evaluated."""
    tmp = tmp_path_factory.mktemp("compare")
    qa = tmp / "qa.jsonl"
    rows = [
        {"id": "q1", "prompt": "Who are you?", "reference": "I am Nova."},
        {"id": "q2", "prompt": "What is <2+2>?", "reference": "4"},
    ]
    qa.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = []
    for name, method, lr, steps in (
        ("a", "full", 1e-4, 4),
        ("b", "full", 1e-3, 6),
        ("c", "lora", 1e-3, 4),
    ):
        tree = {
            "model": {"name": str(tiny_qwen2)},
            "data": {
                "datasets": [
                    {"path": "builtin:identity", "samples": 24},
                    {"path": "builtin:general", "samples": 8},
                ],
                "identity": {"name": "Nova", "author": "the Tunesmith team"},
                "max_length": 64,
                "val_size": 4,
            },
            "method": {"type": method},
            "train": {
                "max_steps": steps,
                "batch_size": 4,
                "log_every": 1,
                "threads": 1,
                "precision": "fp32",
                "lr": lr,
            },
            "eval": {
                "every": 2,
                "prompts": ["Who are you?"],
                "max_new_tokens": 6,
                "tasks": [
                    {"type": "generation", "name": "qa", "data": str(qa), "max_new_tokens": 6},
                    {"type": "perplexity"},
                ],
            },
            "output": {"dir": str(tmp / name)},
        }
        api.train(api.load_config(tree), progress=False)
        out.append(tmp / name)
    return out


class Page(HTMLParser):
    """Tables (rows of cell texts, with the cells marked best) and the figures' metrics."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.best: list[tuple[str, int]] = []
        self.figures: dict[str, int] = {}  # metric -> number of drawn paths in its svg
        self._figure: str | None = None
        self._cell: list[str] | None = None
        self._best = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._best = [], "best" in (a.get("class") or "").split()
        elif tag == "figure":
            self._figure = a.get("data-metric") or ""
            self.figures[self._figure] = 0
        elif tag == "path" and self._figure is not None:
            self.figures[self._figure] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            row = self.tables[-1][-1]
            row.append("".join(self._cell).strip())
            if self._best:
                self.best.append((row[0], len(row) - 1))
            self._cell = None
        elif tag == "figure":
            self._figure = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_compare_html_has_plots_table_and_answers(runs: list[Path], tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    args = ["compare", *map(str, runs), "--out", str(report), "--prompt", "Say <hi> & bye"]
    assert main(args) == 0
    page = Page()
    page.feed(report.read_text(encoding="utf-8"))
    assert list(page.figures) == ["loss", "val_loss"]
    assert all(n > 3 for n in page.figures.values())  # axes, ticks and three runs' lines
    runs_t, config_t, data_t, metrics_t, *answers = page.tables
    assert [r[0] for r in runs_t[1:]] == ["a", "b", "c"]
    diff = {r[0]: r[1:] for r in config_t[1:]}
    assert diff["train.lr"] == ["0.0001", "0.001", "0.001"]
    assert diff["method.type"] == ["full", "full", "lora"]
    assert diff["train.max_steps"] == ["4", "6", "4"]
    assert "model.name" not in diff and "output.dir" not in diff
    assert [r[0] for r in data_t[1:]] == ["builtin:identity", "builtin:general", "total"]
    metrics = {r[0]: r[1:] for r in metrics_t[1:]}
    summaries = [json.loads((r / "train_summary.json").read_text()) for r in runs]
    assert metrics["train loss (final) ↓"] == [f"{s['last_loss']:.4f}" for s in summaries]
    assert metrics["steps"] == ["4", "6", "4"]
    ppl = [json.loads((r / "eval" / "perplexity.json").read_text()) for r in runs]
    losses = [p["metrics"]["loss"] for p in ppl]
    best = min(range(3), key=lambda i: losses[i])
    assert ("perplexity/loss ↓", best + 1) in page.best
    assert "qa/exact_match ↑" in metrics
    prompts, qa = answers
    assert prompts[0] == ["id", "prompt", "reference", "a", "b", "c"]
    assert [r[1] for r in prompts[1:]] == ["Say <hi> & bye"]  # --prompt replaces eval.prompts
    assert all(cell for cell in prompts[1][3:])  # every run answered
    preds = [
        {
            r["id"]: r["prediction"]
            for r in map(json.loads, (d / "eval" / "qa.predictions.jsonl").open())
        }
        for d in runs
    ]
    assert qa[2] == ["q2", "What is <2+2>?", "4", *(p["q2"] for p in preds)]
    assert (tmp_path / "report.md").read_text(encoding="utf-8").startswith("# Comparison of 3 runs")


def test_compare_md_to_stdout(runs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs[0]), str(runs[1]), "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("# Comparison of 2 runs\n")
    assert "| `train.lr` | 0.0001 | 0.001 |" in md
    assert "| 1 | Who are you? | — |" in md  # the runs' eval.prompts
    assert "### eval: qa" in md


def test_compare_errors_are_one_line(runs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs[0])]) == 2
    assert capsys.readouterr().err == (
        "error: compare: give at least two run directories (RUN_A RUN_B ...)\n"
    )
    assert main(["compare", str(runs[0]), str(runs[1])]) == 2
    assert "give --out report.html" in capsys.readouterr().err
