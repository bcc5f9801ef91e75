"""The ``tunesmith compare`` page: one self-contained HTML file (inline CSS and SVG plots), and
:func:`write_report`, which writes it with its Markdown summary (or the Markdown alone).

Every piece of user text (prompts, answers, config values, paths) goes through
:func:`html.escape`. Plots are matplotlib SVG with a fixed hash salt and no date, so the same runs
give the same bytes.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from tunesmith.errors import ConfigError
from tunesmith.evaluate.compare import ABSENT, Comparison, Curve
from tunesmith.evaluate.compare_md import fmt, render_markdown

#: One colour per run, the same in every plot and in the tables' headers.
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1200px;
color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0;width:100%;table-layout:auto}
th,td{border:1px solid #ddd;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{background:#e6f4ea;font-weight:700}
table.metrics{width:auto;min-width:60%}
table.answers{table-layout:fixed}table.answers td{white-space:pre-wrap;overflow-wrap:anywhere}
table.answers col.id{width:11em}table.answers td:first-child{font-size:12px;color:#555}
td.ok{background:#e6f4ea}td.bad{background:#fdecea}code{font-size:13px}
.plots{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:12px}
.plots figure{margin:0;border:1px solid #eee}.plots svg{width:100%;height:auto;display:block}
.swatch{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:2px}
.muted{color:#777}
"""


def esc(text: str) -> str:
    """User text for HTML (quotes too: it may land in attributes)."""
    return html.escape(text, quote=True)


def _swatch(i: int) -> str:
    return f'<span class="swatch" style="background:{COLOURS[i % len(COLOURS)]}"></span>'


def _head(labels: Sequence[str], first: Sequence[str]) -> str:
    cells = [f"<th>{esc(h)}</th>" for h in first]
    cells += [f"<th>{_swatch(i)}{esc(label)}</th>" for i, label in enumerate(labels)]
    return "<tr>" + "".join(cells) + "</tr>"


def plot_svg(name: str, curves: Sequence[Curve | None], labels: Sequence[str], xmax: int) -> str:
    """One metric's curves overlaid, as an inline ``<svg>`` (steps 0..``xmax`` on x)."""
    import io

    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.hashsalt": "tunesmith-compare", "svg.fonttype": "none"}):
        fig = Figure(figsize=(6.0, 3.2), dpi=100)
        ax = fig.add_subplot()
        for i, (curve, label) in enumerate(zip(curves, labels)):
            if curve is None:
                continue
            colour = COLOURS[i % len(COLOURS)]
            marker = "o" if len(curve.steps) <= 12 else None
            ax.plot(curve.steps, curve.values, color=colour, marker=marker, ms=4, label=label)
        span = max(xmax, 1)
        ax.set_xlim(-0.03 * span, span * 1.03)  # points at the last step stay whole
        ax.set_xlabel("step")
        ax.set_title(name, fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog and doctype: inline in HTML


def render_html(comp: Comparison, *, generated: str) -> str:
    """The comparison as one HTML page needing nothing else (no scripts, no external files)."""
    labels = comp.labels
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>tunesmith compare: {esc(', '.join(labels))}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Comparison of {len(labels)} runs</h1>",
        f'<p class="muted">generated {esc(generated)}</p>',
        "<h2>Runs</h2><table>",
        _head([], ["run", "directory", "base", "method", "finished"]),
    ]
    for i, (label, r) in enumerate(zip(labels, comp.runs)):
        cells = [str(r.dir), r.base, r.config.method.type, "yes" if r.finished else "no"]
        out.append(
            f"<tr><td>{_swatch(i)}{esc(label)}</td>"
            + "".join(f"<td>{esc(c)}</td>" for c in cells)
            + "</tr>"
        )
    out += ["</table>", '<h2 id="config">Config differences</h2>']
    if comp.config_diff:
        out += ['<table class="config">', _head(labels, ["key"])]
        for key, values in comp.config_diff:
            tds = "".join(f"<td>{esc(v)}</td>" for v in values)
            out.append(f"<tr><td><code>{esc(key)}</code></td>{tds}</tr>")
        out.append("</table>")
    else:
        out.append("<p>The configs are the same (apart from output.dir).</p>")
    mix = comp.data_mix
    out += ['<h2 id="data">Data mix</h2>', '<table class="data">', _head(labels, ["source"])]
    for source, cells in zip(mix.sources, mix.cells):
        tds = "".join(f"<td>{esc(c)}</td>" for c in cells)
        out.append(f"<tr><td>{esc(source)}</td>{tds}</tr>")
    out.append(
        "<tr><th>total</th>" + "".join(f"<td>{esc(t)}</td>" for t in mix.totals) + "</tr></table>"
    )
    out += [
        '<h2 id="metrics">Metrics</h2>',
        '<p class="muted">Best value per row highlighted; ↓ lower is better, ↑ higher.</p>',
        '<table class="metrics">',
        _head(labels, ["metric"]),
    ]
    for m in comp.metrics:
        arrow = "" if m.lower_is_better is None else (" ↓" if m.lower_is_better else " ↑")
        tds = "".join(
            f'<td class="num best">{fmt(v)}</td>'
            if i in m.best
            else f'<td class="num">{fmt(v)}</td>'
            for i, v in enumerate(m.values)
        )
        out.append(f"<tr><td>{esc(m.name)}{arrow}</td>{tds}</tr>")
    out += ["</table>", '<h2 id="curves">Curves</h2>']
    xmax = max(
        (max(c.steps) for cs in comp.curves.values() for c in cs if c is not None and c.steps),
        default=1,
    )
    if comp.curves:
        out.append('<div class="plots">')
        for name, cs in comp.curves.items():
            svg = plot_svg(name, cs, labels, xmax)
            out.append(f'<figure data-metric="{esc(name)}">{svg}</figure>')
        out.append("</div>")
    else:
        out.append("<p>No metrics.jsonl in these runs.</p>")
    out.append('<h2 id="answers">Answers side by side</h2>')
    if not comp.answers:
        out.append("<p>No prompts: give --prompt, --prompts FILE or eval.prompts in the runs.</p>")
    for t in comp.answers:
        out += [f"<h3>{esc(t.title)}</h3>", f'<p class="muted">{esc(t.note)}']
        if t.total > len(t.rows):
            out.append(f"; first {len(t.rows)} of {t.total} rows")
        out.append("</p>")
        cols = '<col class="id"><col><col>' + "<col>" * len(labels)
        out += [
            f'<table class="answers"><colgroup>{cols}</colgroup>',
            _head(labels, ["id", "prompt", "reference"]),
        ]
        for r in t.rows:
            tds = []
            for a, ok in zip(r.answers, r.correct):
                cls = "" if ok is None else (' class="ok"' if ok else ' class="bad"')
                tds.append(f"<td{cls}>{esc(ABSENT if a is None else a)}</td>")
            out.append(
                f"<tr><td>{esc(r.id)}</td><td>{esc(r.prompt)}</td>"
                f"<td>{esc(r.reference if r.reference is not None else ABSENT)}</td>"
                + "".join(tds)
                + "</tr>"
            )
        out.append("</table>")
    if comp.notes:
        out.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in comp.notes) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(
    comp: Comparison, out: str | Path | None, *, fmt_name: str, generated: str
) -> tuple[list[Path], str | None]:
    """Write the report; ``(files written, Markdown to print)``.

    ``html``: ``out`` (required) and the Markdown summary beside it (``<stem>.md``); ``md``:
    ``out`` when given, else the Markdown is returned for stdout.

    Raises:
        ConfigError: ``html`` without ``out``; an unknown format.
    """
    if fmt_name not in ("html", "md"):
        raise ConfigError(f"compare --format {fmt_name}: use html or md")
    if fmt_name == "md":
        text = render_markdown(comp, generated=generated)
        if out is None:
            return [], text
        path = Path(out)
        path.write_text(text, encoding="utf-8")
        return [path], None
    if out is None:
        raise ConfigError("compare: give --out report.html (or --format md to print Markdown)")
    page = Path(out)
    md = page.with_suffix(".md") if page.suffix != ".md" else page.with_name(page.name + ".md")
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render_html(comp, generated=generated), encoding="utf-8")
    md.write_text(render_markdown(comp, generated=generated, html_name=page.name), encoding="utf-8")
    return [page, md], None
