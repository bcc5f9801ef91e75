"""A :class:`~tunesmith.evaluate.compare.Comparison` as Markdown (``tunesmith compare``'s
``report.md``, and the text the command prints)."""

from __future__ import annotations

from collections.abc import Sequence

from tunesmith.evaluate.compare import ABSENT, Comparison


def fmt(value: float | None) -> str:
    """A metric value for the tables (``—`` when absent)."""
    if value is None:
        return ABSENT
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4f}"


def md_cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell (pipes, newlines and HTML escaped)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\r\n", "\n").replace("\n", "<br>")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return lines


def _verdict_mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✓" if ok else " ✗")


def render_markdown(comp: Comparison, *, generated: str, html_name: str | None = None) -> str:
    """The comparison as Markdown (for terminals and pull requests).

    Args:
        comp: What to show.
        generated: The one time-dependent line ("generated ...").
        html_name: The HTML report beside it, named for its plots.
    """
    labels = comp.labels
    out = [f"# Comparison of {len(labels)} runs", "", f"generated {generated}", ""]
    if html_name:
        out += [f"Curves and the full page: {html_name}.", ""]
    out += ["## Runs", ""]
    rows = [
        [
            md_cell(label),
            md_cell(str(r.dir)),
            md_cell(r.base),
            r.config.method.type,
            "yes" if r.finished else "no",
        ]
        for label, r in zip(labels, comp.runs)
    ]
    out += _md_table(["run", "directory", "base", "method", "finished"], rows)
    out += ["", "## Config differences", ""]
    if comp.config_diff:
        diff = [[f"`{md_cell(k)}`", *(md_cell(v) for v in vs)] for k, vs in comp.config_diff]
        out += _md_table(["key", *labels], diff)
    else:
        out.append("The configs are the same (apart from output.dir).")
    out += ["", "## Data mix", ""]
    mix = comp.data_mix
    grid = [[md_cell(s), *(md_cell(c) for c in cells)] for s, cells in zip(mix.sources, mix.cells)]
    grid.append(["**total**", *(md_cell(t) for t in mix.totals)])
    out += _md_table(["source", *labels], grid)
    out += [
        "",
        "## Metrics",
        "",
        "Best value per row in bold (lower is better for losses, "
        "perplexity and error rates; higher otherwise).",
        "",
    ]
    table = []
    for m in comp.metrics:
        cells = [f"**{fmt(v)}**" if i in m.best else fmt(v) for i, v in enumerate(m.values)]
        arrow = "" if m.lower_is_better is None else (" ↓" if m.lower_is_better else " ↑")
        table.append([md_cell(m.name) + arrow, *cells])
    out += _md_table(["metric", *labels], table)
    out += ["", "## Answers side by side", ""]
    if not comp.answers:
        out.append("No prompts: give --prompt, --prompts FILE or eval.prompts in the runs.")
    for t in comp.answers:
        out += [f"### {md_cell(t.title)}", "", f"{md_cell(t.note)}.", ""]
        if t.total > len(t.rows):
            out += [f"First {len(t.rows)} of {t.total} rows.", ""]
        body = [
            [
                md_cell(r.id),
                md_cell(r.prompt),
                md_cell(r.reference or ABSENT),
                *(
                    md_cell(ABSENT if a is None else a) + _verdict_mark(ok)
                    for a, ok in zip(r.answers, r.correct)
                ),
            ]
            for r in t.rows
        ]
        out += _md_table(["id", "prompt", "reference", *labels], body)
        out.append("")
    for note in comp.notes:
        out.append(f"- {md_cell(note)}")
    return "\n".join(out).rstrip("\n") + "\n"
