"""Teacher synthesis: inputs -> prompts -> replies (through ``tunesmith.remote``) -> samples ->
filters -> canonical conversation rows with provenance, plus a token/cost report.

Every request goes through the on-disk reply cache keyed by the request itself, so a run that
was interrupted resumes where it stopped and a finished run, repeated, sends nothing. Nothing is
dropped silently: inputs without a question, replies that do not parse and filtered samples
are counted by reason in the report.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.synth.config import (
    AnswerJob,
    EndpointConfig,
    FilterConfig,
    QAJob,
    RephraseJob,
    SynthConfig,
)
from tunesmith.errors import DataError
from tunesmith.remote import (
    ChatClient,
    Message,
    ResponseCache,
    api_key_from_env,
    map_concurrent,
    request_key,
)

QUESTION_FIELDS = ("question", "prompt", "instruction", "query", "text")
DOC_SUFFIXES = (".txt", ".md")
_QA_LINE = re.compile(r"^\s*(?:\*\*)?(Q|A|Question|Answer|问|答)(?:\*\*)?\s*[:：]\s*(.*)$", re.I)


def fill(template: str, **values: Any) -> str:
    """``template`` with its ``{name}`` placeholders replaced (other braces left alone)."""
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", "" if value is None else str(value))
    return out


@dataclass
class Request:
    """One prompt to send and what the sample built from its reply keeps."""

    messages: list[Message]
    job: int
    kind: str
    source: str
    """``file:line`` of the input."""
    question: str | None = None
    """The sample's user turn (answer jobs) or the original question (rephrase)."""
    answer: str | None = None
    """The kept answer (rephrase)."""
    k: int = 0
    """Which rephrasing / document chunk."""


@dataclass
class Sample:
    """One synthesised question and answer with its provenance."""

    question: str
    answer: str
    meta: dict[str, Any]
    system: str | None = None

    def row(self) -> dict[str, Any]:
        """The canonical conversation row."""
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages += [
            {"role": "user", "content": self.question},
            {"role": "assistant", "content": self.answer},
        ]
        return {"messages": messages, "meta": self.meta}


@dataclass
class Report:
    """Counts for the cost/token report (``synth_report.json`` beside the output)."""

    inputs: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    samples: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    cost: float = 0.0
    written: int = 0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "inputs": dict(self.inputs),
            "skipped": dict(self.skipped),
            "samples": dict(self.samples),
            "dropped": dict(self.dropped),
            "usage": self.usage,
            "cost": round(self.cost, 6),
            "written": self.written,
        }

    def markdown(self) -> str:
        """A short table per section."""
        lines = ["| what | count |", "|---|---:|"]
        for name, counts in (
            ("inputs", self.inputs),
            ("skipped input", self.skipped),
            ("samples", self.samples),
            ("dropped", self.dropped),
        ):
            lines += [f"| {name}: {k} | {v} |" for k, v in sorted(counts.items())]
        for who, u in self.usage.items():
            lines += [f"| {who} {k} | {v} |" for k, v in u.items()]
        lines += [f"| cost | {self.cost:.6f} |", f"| written | {self.written} |"]
        return "\n".join(lines) + "\n"


# ---- inputs -----------------------------------------------------------------------------------
def _records(path: str, limit: int | None) -> list[tuple[dict[str, Any], str]]:
    from tunesmith.data.sources import iter_records

    rows = []
    for rec in iter_records(path):
        rows.append((rec.data, rec.where))
        if limit is not None and len(rows) >= limit:
            break
    return rows


def _question_of(row: dict[str, Any], wanted: str | None) -> tuple[str | None, str | None]:
    """(question, answer) of an input row: a field, or a conversation's last user turn and the
    assistant turn after it."""
    messages = row.get("messages") or row.get("conversations")
    if wanted is None and isinstance(messages, list):
        user = answer = None
        for m in messages:
            if not isinstance(m, dict):
                continue
            role = m.get("role") or m.get("from")
            text = m.get("content") if "content" in m else m.get("value")
            if role in ("user", "human"):
                user, answer = text, None
            elif role in ("assistant", "gpt") and user is not None:
                answer = text
        return (user if isinstance(user, str) else None), (
            answer if isinstance(answer, str) else None
        )
    for name in (wanted,) if wanted else QUESTION_FIELDS:
        value = row.get(name)
        if isinstance(value, str) and value.strip():
            ans = row.get("answer", row.get("response", row.get("output")))
            return value, ans if isinstance(ans, str) else None
    return None, None


def _documents(path: str, limit: int | None) -> list[tuple[str, str, str]]:
    """(title, text, where) of each document: a .txt/.md file or a folder of them (one document
    a file), else records with a ``text`` (and optional ``title``) field."""
    p = Path(path)
    files = (
        sorted(f for f in p.rglob("*") if f.suffix in DOC_SUFFIXES and f.is_file())
        if p.is_dir()
        else [p]
        if p.suffix in DOC_SUFFIXES and p.is_file()
        else []
    )
    if files:
        docs = [(f.stem, f.read_text(encoding="utf-8"), str(f)) for f in files]
    else:
        docs = []
        for row, where in _records(path, None):
            text = row.get("text") or row.get("document") or row.get("content")
            if isinstance(text, str) and text.strip():
                docs.append((str(row.get("title") or ""), text, where))
            else:
                raise DataError(
                    f"{where}: no text, document or content field; give each document's text"
                )
    return docs[:limit] if limit else docs


def chunks(text: str, size: int) -> list[str]:
    """``text`` cut at blank lines into pieces of at most ``size`` characters (a longer
    paragraph is a piece of its own)."""
    out: list[str] = []
    current = ""
    for para in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not para:
            continue
        if current and len(current) + 2 + len(para) > size:
            out.append(current)
            current = para
        else:
            current = f"{current}\n\n{para}" if current else para
    if current:
        out.append(current)
    return out


def _with_system(system: str | None, prompt: str) -> list[Message]:
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": prompt}]


def requests_for(index: int, job: Any, report: Report) -> list[Request]:
    """The requests of one job, counting its inputs and the ones without a question."""
    out: list[Request] = []
    if isinstance(job, QAJob):
        for title, text, where in _documents(job.data, job.max_samples):
            report.inputs[f"{index}:qa documents"] += 1
            for k, piece in enumerate(chunks(text, job.chunk_chars)):
                prompt = fill(job.prompt, document=piece, n=job.n, title=title)
                out.append(Request(_with_system(job.system, prompt), index, "qa", where, k=k))
        return out
    for row, where in _records(job.data, job.max_samples):
        report.inputs[f"{index}:{job.type}"] += 1
        question, answer = _question_of(row, getattr(job, "field", None))
        if not question:
            report.skipped[f"{index}:{job.type}: no question"] += 1
            continue
        if isinstance(job, AnswerJob):
            prompt = fill(job.prompt, question=question, system=job.system)
            out.append(Request(_with_system(job.system, prompt), index, "answer", where, question))
        elif isinstance(job, RephraseJob):
            if answer is None:
                report.skipped[f"{index}:rephrase: no answer"] += 1
                continue
            for k in range(job.n):
                prompt = fill(job.prompt, question=question, answer=answer, k=k + 1)
                out.append(
                    Request(
                        _with_system(job.system, prompt),
                        index,
                        "rephrase",
                        where,
                        question,
                        answer,
                        k,
                    )
                )
    return out


# ---- replies -> samples -----------------------------------------------------------------------
def parse_pairs(reply: str) -> list[tuple[str, str]]:
    """``Q: ... / A: ...`` pairs in a reply (also ``Question:``/``Answer:``, ``问：``/``答：``);
    an answer may run over several lines."""
    pairs: list[tuple[str, str]] = []
    question: str | None = None
    answer: list[str] | None = None

    def close() -> None:
        if question and answer is not None and "\n".join(answer).strip():
            pairs.append((question, "\n".join(answer).strip()))

    for line in reply.splitlines():
        m = _QA_LINE.match(line)
        tag = m.group(1).lower() if m else None
        if tag in ("q", "question", "问"):
            close()
            question, answer = m.group(2).strip(), None  # type: ignore[union-attr]
        elif tag in ("a", "answer", "答") and question:
            answer = [m.group(2).strip()]  # type: ignore[union-attr]
        elif answer is not None:
            answer.append(line.rstrip())
    close()
    return pairs


def _clean_line(reply: str) -> str:
    """A rephrasing: the first non-empty line, without a leading label or quotes."""
    for line in reply.strip().splitlines():
        line = re.sub(r"^\s*(?:rewritten question|question|q)\s*[:：]\s*", "", line, flags=re.I)
        line = line.strip().strip('"“”')
        if line:
            return line
    return ""


def samples_from(req: Request, text: str, cfg: SynthConfig, report: Report) -> list[Sample]:
    """The samples one reply gives (counting replies that give none)."""
    base = {
        "source": "synth",
        "job": req.job,
        "kind": req.kind,
        "input": req.source,
        "model": cfg.endpoint.model,
    }
    system = cfg.jobs[req.job].system
    if req.kind == "answer":
        if not text.strip():
            report.dropped["empty reply"] += 1
            return []
        return [Sample(req.question or "", text.strip(), base, system)]
    if req.kind == "rephrase":
        line = _clean_line(text)
        if not line:
            report.dropped["empty reply"] += 1
            return []
        meta = {**base, "k": req.k, "original": req.question}
        return [Sample(line, req.answer or "", meta, system)]
    pairs = parse_pairs(text)
    if not pairs:
        report.dropped["qa reply without Q:/A: pairs"] += 1
    return [Sample(q, a, {**base, "chunk": req.k, "pair": i}) for i, (q, a) in enumerate(pairs)]


# ---- filters ----------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def apply_filters(samples: list[Sample], f: FilterConfig, report: Report) -> list[Sample]:
    """Dedupe, length and regex filters (the judge runs after, on what is left)."""
    keep, seen = [], set()
    accept = re.compile(f.regex) if f.regex else None
    reject = re.compile(f.reject_regex) if f.reject_regex else None
    for s in samples:
        n = len(s.answer)
        if n < f.min_chars or not s.question.strip():
            report.dropped["too short"] += 1
        elif f.max_chars is not None and n > f.max_chars:
            report.dropped["too long"] += 1
        elif accept is not None and not accept.search(s.answer):
            report.dropped["regex did not match"] += 1
        elif reject is not None and reject.search(s.answer):
            report.dropped["reject_regex matched"] += 1
        elif f.dedupe and (key := (_norm(s.question), _norm(s.answer))) in seen:
            report.dropped["duplicate"] += 1
        else:
            if f.dedupe:
                seen.add(key)
            keep.append(s)
    return keep


def _client(ep: EndpointConfig, where: str, cache: ResponseCache | None, label: str) -> ChatClient:
    return ChatClient(
        ep.url,
        ep.model,
        api_key=api_key_from_env(ep.api_key_env, f"{where}.api_key_env"),
        retries=ep.retries,
        backoff=ep.backoff,
        timeout=ep.timeout,
        cache=cache,
        label=label,
        url_field=f"{where}.url",
        key_hint=f"{where}.api_key_env",
    )


def judge_filter(
    samples: list[Sample], cfg: SynthConfig, cache: ResponseCache | None, report: Report
) -> list[Sample]:
    """Score each sample with the judge; keep those at or above ``min_score``."""
    from tunesmith.evaluate.judge import parse_score

    j = cfg.filters.judge
    assert j is not None
    ep = j.endpoint or cfg.endpoint.model_copy(update={"temperature": 0.0})
    client = _client(ep, "filters.judge.endpoint", cache, "synth judge")
    convs = [
        [{"role": "user", "content": fill(j.prompt, question=s.question, answer=s.answer)}]
        for s in samples
    ]
    replies = client.complete_many(
        convs, ep.concurrency, temperature=ep.temperature, max_tokens=j.max_tokens, seed=ep.seed
    )
    report.usage["judge"] = client.usage.to_json()
    report.cost += _cost(client, ep)
    keep = []
    for s, r in zip(samples, replies, strict=True):
        score = parse_score(r.text, j.low, j.high)
        if score is None:
            report.dropped["judge reply without a score"] += 1
        elif score < j.min_score:
            report.dropped["judge score below min_score"] += 1
        else:
            s.meta["judge_score"] = score
            keep.append(s)
    return keep


def _cost(client: ChatClient, ep: EndpointConfig) -> float:
    u = client.usage
    return (u.prompt_tokens * ep.price_prompt + u.completion_tokens * ep.price_completion) / 1e6


def default_cache_dir() -> Path:
    """``TUNESMITH_CACHE`` (or the user cache) ``/synth``."""
    from tunesmith.model.paths import cache_root

    return cache_root() / "synth"


# ---- the run ----------------------------------------------------------------------------------
def synthesise(cfg: SynthConfig) -> tuple[list[dict[str, Any]], Report]:
    """Run every job, filter, write ``cfg.out`` and its report; return the rows and counts.

    Raises:
        DataError / ConfigError: a bad input (named with file:line) or config field.
        RemoteError: the endpoint failed after its retries.
    """
    report = Report()
    cache = ResponseCache(cfg.cache_dir or default_cache_dir()) if cfg.cache else None
    client = _client(cfg.endpoint, "endpoint", cache, "synth")
    requests = [r for i, job in enumerate(cfg.jobs) for r in requests_for(i, job, report)]
    ep = cfg.endpoint
    params = [_params(ep, r.k) for r in requests]
    keys = [
        request_key(client.body(r.messages, **p)) for r, p in zip(requests, params, strict=True)
    ]
    # An identical request (the same question twice) is sent once, whatever the timing.
    first = {key: i for i, key in reversed(list(enumerate(keys)))}
    unique = sorted(first.values())
    got = map_concurrent(
        lambda i: client.complete(requests[i].messages, **params[i]), unique, ep.concurrency
    )
    by_key = {keys[i]: reply for i, reply in zip(unique, got, strict=True)}
    replies = [by_key[key] for key in keys]
    report.usage["teacher"] = client.usage.to_json()
    report.cost += _cost(client, ep)
    samples: list[Sample] = []
    for req, key, reply in zip(requests, keys, replies, strict=True):
        got = samples_from(req, reply.text, cfg, report)
        for s in got:  # provenance: the very request (its cache entry) it came from
            s.meta["request"] = key[:16]
        report.samples[req.kind] += len(got)
        samples += got
    samples = apply_filters(samples, cfg.filters, report)
    if cfg.filters.judge is not None and samples:
        samples = judge_filter(samples, cfg, cache, report)
    rows = [s.row() for s in samples]
    report.written = len(rows)
    write_output(Path(cfg.out), rows, report)
    return rows, report


def _params(ep: EndpointConfig, k: int) -> dict[str, Any]:
    """Sampling parameters of a request; rephrasing ``k`` gets seed + k, so the N rephrasings
    are N distinct requests (and cache entries), not one."""
    seed = None if ep.seed is None else ep.seed + k
    return {"temperature": ep.temperature, "max_tokens": ep.max_tokens, "seed": seed}


def write_output(out: Path, rows: list[dict[str, Any]], report: Report) -> None:
    """``out`` (JSONL) and ``<out stem>.report.json`` beside it, each written whole."""
    import os

    out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in (
        (out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)),
        (out.with_suffix(".report.json"), json.dumps(report.to_json(), indent=1) + "\n"),
    ):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8", newline="\n")
        os.replace(tmp, path)
