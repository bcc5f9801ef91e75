"""``tunesmith data preview``: rendered samples with the trained tokens marked, plus the mix report.

Two views of the same labels: colour (rich; trained tokens green, weighted spans yellow, the rest
dim) for terminals, and a plain marker mode for logs and tests, where every run of trained tokens
is wrapped as ``[[...]]`` and a run with a loss weight other than 1 as ``[[x2:...]]``.

Every stage's samples are shown: SFT/pre-training rows whole; a preference pair as its shared
prompt then ``[chosen]`` and ``[rejected]`` replies; a KTO example as its prompt then
``[completion: desirable]`` (or ``undesirable``), each reply with its trained tokens marked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunesmith.data.report import DataReport

IGNORE_INDEX = -100
OPEN, CLOSE = "[[", "]]"


def segments(sample: Mapping[str, Any]) -> list[tuple[list[int], float | None]]:
    """Runs of consecutive tokens with the same state: ``None`` untrained, else the weight."""
    ids, labels = sample["input_ids"], sample["labels"]
    weights = sample.get("weights")
    runs: list[tuple[list[int], float | None]] = []
    for t, (tok, lab) in enumerate(zip(ids, labels)):
        state = None if lab == IGNORE_INDEX else (1.0 if weights is None else float(weights[t]))
        if runs and runs[-1][1] == state:
            runs[-1][0].append(tok)
        else:
            runs.append(([tok], state))
    return runs


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _weight_tag(w: float) -> str:
    return f"x{w:g}:"


def _parts(sample: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(heading, labelled tokens)`` to show: the row itself, or a pair's / KTO example's prompt
    and replies (each reply labelled as it trains)."""
    if "input_ids" in sample:
        return [("", dict(sample))]
    prompt = list(sample["prompt"])
    parts = [("[prompt]", {"input_ids": prompt, "labels": [IGNORE_INDEX] * len(prompt)})]
    if "chosen" in sample:
        sides = [("[chosen]", "chosen"), ("[rejected]", "rejected")]
    else:
        label = "desirable" if sample["desirable"] else "undesirable"
        sides = [(f"[completion: {label}]", "completion")]
    for heading, side in sides:
        parts.append((heading, {"input_ids": sample[side], "labels": sample[f"{side}_labels"]}))
    return parts


def title(sample: Mapping[str, Any], index: int) -> str:
    """``sample 3: 120 tokens, 40 trained`` (or the pair / KTO example's counts)."""
    if "input_ids" in sample:
        trained = sum(1 for lab in sample["labels"][1:] if lab != IGNORE_INDEX)
        return f"sample {index}: {len(sample['input_ids'])} tokens, {trained} trained"
    prompt = len(sample["prompt"])
    if "chosen" in sample:
        c, r = sample["chosen_labels"], sample["rejected_labels"]
        return (
            f"pair {index}: prompt {prompt} tokens; chosen {len(c)} ({_n_trained(c)} trained), "
            f"rejected {len(r)} ({_n_trained(r)} trained)"
        )
    label = "desirable" if sample["desirable"] else "undesirable"
    done = sample["completion_labels"]
    return (
        f"example {index} ({label}): prompt {prompt} tokens; completion {len(done)} "
        f"({_n_trained(done)} trained)"
    )


def _n_trained(labels: Sequence[int]) -> int:
    return sum(1 for lab in labels if lab != IGNORE_INDEX)


def plain(sample: Mapping[str, Any], tokenizer: Any) -> str:
    """The sample's text with trained runs wrapped in ``[[...]]`` (``[[x2:...]]`` if weighted)."""
    out = []
    for ids, state in segments(sample):
        text = _decode(tokenizer, ids)
        if state is None:
            out.append(text)
        else:
            out.append(OPEN + ("" if state == 1.0 else _weight_tag(state)) + text + CLOSE)
    return "".join(out)


def coloured(sample: Mapping[str, Any], tokenizer: Any) -> Any:
    """The sample as a ``rich.text.Text`` with trained tokens highlighted."""
    from rich.text import Text

    text = Text()
    for ids, state in segments(sample):
        chunk = _decode(tokenizer, ids)
        if state is None:
            text.append(chunk, style="dim")
        elif state == 1.0:
            text.append(chunk, style="bold green")
        else:
            text.append(f"⟨{_weight_tag(state)}⟩", style="magenta")
            text.append(chunk, style="bold yellow")
    return text


def histogram(lengths: Sequence[int], max_length: int | None, bins: int = 8) -> list[str]:
    """A text histogram of token lengths: one ``lo-hi | ##### count`` line per bin."""
    if not lengths:
        return ["(no samples)"]
    top = max(max(lengths), max_length or 0)
    step = max(1, -(-top // bins))
    counts = [0] * bins
    for n in lengths:
        counts[min((n - 1) // step, bins - 1) if n > 0 else 0] += 1
    biggest = max(counts) or 1
    width = len(str(top))
    lines = []
    for b, c in enumerate(counts):
        lo, hi = b * step + 1, (b + 1) * step
        bar = "#" * round(30 * c / biggest)
        lines.append(f"{lo:>{width}}-{hi:<{width}} | {bar:<30} {c}")
    return lines


def plain_sample(sample: Mapping[str, Any], tokenizer: Any) -> str:
    """Any stage's sample in the plain marker mode (a pair: prompt, then each reply)."""
    parts = _parts(sample)
    if len(parts) == 1:
        return plain(parts[0][1], tokenizer)
    return "\n".join(f"{heading}\n{plain(part, tokenizer)}" for heading, part in parts)


def coloured_sample(sample: Mapping[str, Any], tokenizer: Any) -> Any:
    """Any stage's sample as a ``rich.text.Text`` (a pair: prompt, then each reply)."""
    from rich.text import Text

    parts = _parts(sample)
    if len(parts) == 1:
        return coloured(parts[0][1], tokenizer)
    text = Text()
    for i, (heading, part) in enumerate(parts):
        text.append(("\n" if i else "") + heading + "\n", style="bold cyan")
        text.append_text(coloured(part, tokenizer))
    return text


def preview_text(
    samples: Sequence[Mapping[str, Any]],
    report: DataReport,
    tokenizer: Any,
    n: int = 3,
    *,
    template_name: str = "tokenizer",
) -> str:
    """The whole plain preview: ``n`` marked samples, the report and the length histogram."""
    parts = [f"Template: {template_name}. Trained tokens are wrapped as {OPEN}...{CLOSE}.", ""]
    for i, s in enumerate(samples[:n]):
        parts += [f"--- {title(s, i + 1)} ---", plain_sample(s, tokenizer), ""]
    parts += [report.markdown(), "Token lengths:", *histogram(report.lengths, report.max_length)]
    parts.append(_counts_line(report))
    return "\n".join(parts) + "\n"


def print_preview(
    samples: Sequence[Mapping[str, Any]],
    report: DataReport,
    tokenizer: Any,
    n: int = 3,
    *,
    template_name: str = "tokenizer",
    console: Any = None,
) -> None:
    """Print the colour preview with rich."""
    from rich.console import Console
    from rich.panel import Panel

    console = console or Console()
    console.print(
        f"Template: [bold]{template_name}[/]. Trained tokens in [bold green]green[/], "
        "weighted spans in [bold yellow]yellow[/], context [dim]dim[/]."
    )
    for i, s in enumerate(samples[:n]):
        panel = Panel(coloured_sample(s, tokenizer), title=title(s, i + 1), title_align="left")
        console.print(panel)
    console.print(report_table(report))
    for line in report.summary_lines():
        console.print(line, markup=False, highlight=False)
    for s in report.sources:
        for reason, count in s.skipped.items():
            console.print(f"skipped in {s.name}: {reason} — {count}", markup=False)
    for line in report.warnings():
        console.print(line, style="bold yellow", markup=False, highlight=False)
    refusal = report.refusal()
    if refusal:
        console.print(
            f"`tunesmith train` refuses to start: {refusal}", style="bold red", markup=False
        )
    console.print("Token lengths:")
    for line in histogram(report.lengths, report.max_length):
        console.print(line, markup=False, highlight=False)
    console.print(_counts_line(report), markup=False, highlight=False)


def report_table(report: DataReport) -> Any:
    """The mix report as a ``rich`` table."""
    from rich import box
    from rich.table import Table

    table = Table(title="Data mix", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("source", min_width=12, overflow="fold")
    for name in ("read", "kept", "skip", "trunc", "mix", "resamp", "%smp", "%tok"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("cache", no_wrap=True)
    total_s, total_t = max(report.samples, 1), max(report.trained_tokens, 1)
    for s in report.sources:
        table.add_row(
            s.name,
            str(s.rows_read),
            str(s.rows_kept),
            str(s.rows_skipped),
            str(s.truncated),
            str(s.samples_in_mix),
            str(s.resampled),
            f"{100 * s.samples_in_mix / total_s:.1f}",
            f"{100 * s.trained_tokens / total_t:.1f}",
            s.cache,
        )
    return table


def _counts_line(report: DataReport) -> str:
    dropped = sum(
        n for s in report.sources for r, n in s.skipped.items() if "max_length" in r.lower()
    )
    truncated = sum(s.truncated for s in report.sources)
    return f"Truncated: {truncated}; dropped for length: {dropped}."
