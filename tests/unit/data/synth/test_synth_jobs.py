"""``tunesmith data synth`` against a scripted local endpoint: the three jobs with exact output
rows and provenance, prompt templates from the config, the filters (dedupe, length, regex, judge
score) with their counts, the cache (a second run sends no request), retries, the token/cost
report, and one-line errors for bad configs and inputs."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunesmith.cli import main
from tunesmith.data.synth.config import load_synth_config
from tunesmith.data.synth.run import chunks, parse_pairs, synthesise
from tunesmith.errors import ConfigError, DataError


class Teacher:
    """Replies by what the prompt asks: QA pairs for documents, a score for judge prompts, a
    rephrasing ``(k)`` for rephrase prompts, else an answer; scripted 503s first."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail_first = 0
        self.lock = threading.Lock()

    def reply(self, body: dict[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        if prompt.startswith("Rate"):
            question = re.search(r"Question: (.*)", prompt).group(1)  # type: ignore[union-attr]
            return "Score: 9" if "capital" in question else "Score: 2"
        if prompt.startswith("Read the text"):
            doc = prompt.split("Text:\n", 1)[1]
            first = doc.split(".")[0]
            return f"Q: What does the text say first?\nA: {first}.\nQ: broken pair without answer"
        if prompt.startswith("Rewrite"):
            q = prompt.split("Question: ", 1)[1]
            return f"Rewritten question: {q.rstrip('?')} (seed {body.get('seed')})?"
        return {"What is the capital of France?": "Paris.", "Say nothing.": "   "}.get(
            prompt, "I am not sure." * (1 + len(prompt) // 20)
        )


@pytest.fixture
def teacher() -> Iterator[tuple[str, Teacher]]:
    t = Teacher()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with t.lock:
                t.bodies.append(body)
                fail = t.fail_first > 0
                t.fail_first -= fail
            if fail:
                self.send_response(503)
                self.end_headers()
                return
            text = t.reply(body)
            out = {
                "choices": [{"message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 4},
            }
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(out).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", t
    server.shutdown()
    server.server_close()


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def write_config(tmp: Path, url: str, **tree: Any) -> Path:
    base: dict[str, Any] = {
        "endpoint": {
            "url": url,
            "model": "teacher",
            "backoff": 0,
            "concurrency": 2,
            "price_prompt": 1.0,
            "price_completion": 2.0,
        },
        "out": "out/synth.jsonl",
        "cache_dir": "cache",
    }
    base.update(tree)
    path = tmp / "synth.yaml"
    path.write_text(yaml.safe_dump(base, allow_unicode=True), "utf-8")
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    questions = jsonl(
        tmp_path / "questions.jsonl",
        [
            {"question": "What is the capital of France?"},
            {"id": 2},  # no question: counted, not sent
            {"prompt": "What is the capital of France?"},  # the same: a duplicate sample
            {"question": "Say nothing."},
        ],
    )
    samples = jsonl(
        tmp_path / "samples.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": "Who wrote Hamlet?"},
                    {"role": "assistant", "content": "Shakespeare."},
                ]
            }
        ],
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "otters.md").write_text("Otters hold hands. They sleep in rafts.\n", "utf-8")
    return {"questions": questions, "samples": samples, "docs": docs}


def test_three_jobs_write_canonical_rows_with_provenance(
    tmp_path: Path, teacher: tuple[str, Teacher], inputs: dict[str, Path]
) -> None:
    url, t = teacher
    jobs = [
        {"type": "answer", "data": "questions.jsonl", "system": "Be brief."},
        {"type": "rephrase", "data": "samples.jsonl", "n": 2},
        {"type": "qa", "data": "docs", "n": 2},
    ]
    cfg = load_synth_config(write_config(tmp_path, url, jobs=jobs))
    rows, report = synthesise(cfg)
    # 2 distinct questions (the repeated one is sent once), 2 rephrasings, 1 document chunk
    assert len(t.bodies) == 2 + 2 + 1
    assert [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
    ] in [b["messages"] for b in t.bodies]
    rephrase = [b for b in t.bodies if b["messages"][-1]["content"].startswith("Rewrite")]
    assert sorted(b["seed"] for b in rephrase) == [0, 1]  # N distinct requests
    got = [(r["messages"][-2]["content"], r["messages"][-1]["content"]) for r in rows]
    assert got == [
        ("What is the capital of France?", "Paris."),
        ("Who wrote Hamlet (seed 0)?", "Shakespeare."),
        ("Who wrote Hamlet (seed 1)?", "Shakespeare."),
        ("What does the text say first?", "Otters hold hands."),
    ]
    assert rows[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    meta = rows[0]["meta"]
    assert meta["source"] == "synth" and meta["kind"] == "answer" and meta["job"] == 0
    assert meta["input"] == f"{inputs['questions']}:1" and meta["model"] == "teacher"
    assert len(meta["request"]) == 16
    assert rows[2]["meta"]["original"] == "Who wrote Hamlet?" and rows[2]["meta"]["k"] == 1
    assert rows[3]["meta"]["input"] == str(inputs["docs"] / "otters.md")
    # Nothing dropped silently: every input, skip and drop is counted.
    assert report.inputs == {"0:answer": 4, "1:rephrase": 1, "2:qa documents": 1}
    assert report.skipped == {"0:answer: no question": 1}
    assert report.dropped == {"empty reply": 1, "duplicate": 1}
    assert report.usage["teacher"]["requests"] == 5
    assert report.usage["teacher"]["prompt_tokens"] == 50
    assert report.cost == pytest.approx((50 * 1.0 + 20 * 2.0) / 1e6)
    written = Path(cfg.out)
    assert [json.loads(x) for x in written.read_text().splitlines()] == rows
    assert json.loads(written.with_suffix(".report.json").read_text())["written"] == 4


def test_second_run_makes_no_requests(
    tmp_path: Path, teacher: tuple[str, Teacher], inputs: dict[str, Path]
) -> None:
    url, t = teacher
    config = write_config(tmp_path, url, jobs=[{"type": "answer", "data": "questions.jsonl"}])
    first, _ = synthesise(load_synth_config(config))
    sent = len(t.bodies)
    assert sent == 2
    second, report = synthesise(load_synth_config(config))
    assert len(t.bodies) == sent  # the rerun cost nothing
    assert second == first
    assert report.usage["teacher"] == {
        "requests": 0,
        "retried": 0,
        "cached": 2,
        "prompt_tokens": 0,
        "completion_tokens": 0,
    }
    assert report.cost == 0
    # A new question resumes: only it is sent.
    with inputs["questions"].open("a") as f:
        f.write(json.dumps({"question": "Name a colour."}) + "\n")
    synthesise(load_synth_config(config))
    assert len(t.bodies) == sent + 1


def test_retries_with_backoff_are_counted(
    tmp_path: Path, teacher: tuple[str, Teacher], inputs: dict[str, Path]
) -> None:
    url, t = teacher
    t.fail_first = 2
    config = write_config(
        tmp_path, url, jobs=[{"type": "answer", "data": "questions.jsonl", "max_samples": 1}]
    )
    cfg = load_synth_config(config, ["endpoint.concurrency=1", "cache=false"])
    rows, report = synthesise(cfg)
    assert [r["messages"][-1]["content"] for r in rows] == ["Paris."]
    assert report.usage["teacher"]["requests"] == 3 and report.usage["teacher"]["retried"] == 2


def test_filters_length_regex_and_judge(
    tmp_path: Path, teacher: tuple[str, Teacher], inputs: dict[str, Path]
) -> None:
    url, t = teacher
    jsonl(
        tmp_path / "more.jsonl",
        [
            {"question": "What is the capital of France?"},
            {"question": "Tell me about the weather in a very long way please, go on."},
            {"question": "Hmm?"},
        ],
    )
    jobs = [{"type": "answer", "data": "more.jsonl"}]
    config = write_config(tmp_path, url, jobs=jobs, filters={"max_chars": 40})
    _, report = synthesise(load_synth_config(config))
    assert report.dropped == {"too long": 1} and report.written == 2
    _, report = synthesise(load_synth_config(config, ["filters.regex=^Paris"]))
    assert report.dropped == {"too long": 1, "regex did not match": 1}
    _, report = synthesise(load_synth_config(config, ["filters.reject_regex=sure"]))
    assert report.dropped == {"too long": 1, "reject_regex matched": 1}
    sent = len(t.bodies)
    rows, report = synthesise(load_synth_config(config, ["filters.judge.min_score=5"]))
    assert len(t.bodies) == sent + 2  # the teacher's replies were cached; two judge calls
    assert [r["meta"]["judge_score"] for r in rows] == [9.0]
    assert report.dropped == {"too long": 1, "judge score below min_score": 1}
    assert report.usage["judge"]["requests"] == 2
    assert t.bodies[-1]["temperature"] == 0.0  # the judge defaults to the teacher at T=0


def test_prompt_templates_come_from_the_config(
    tmp_path: Path, teacher: tuple[str, Teacher], inputs: dict[str, Path]
) -> None:
    url, t = teacher
    jobs = [
        {"type": "answer", "data": "questions.jsonl", "prompt": 'Answer {"json": 1}: {question}'}
    ]
    synthesise(load_synth_config(write_config(tmp_path, url, jobs=jobs)))
    assert 'Answer {"json": 1}: What is the capital of France?' in [
        b["messages"][-1]["content"] for b in t.bodies
    ]


def test_bad_configs_fail_in_one_line(tmp_path: Path, teacher: tuple[str, Teacher]) -> None:
    url, _ = teacher
    cases = [
        ({"jobs": [{"type": "qa", "data": "d", "prompt": "{doc}"}]}, r"jobs\.0\.prompt|jobs\.0: "),
        ({"jobs": [{"type": "answer", "data": "d", "n": 2}]}, r"jobs\.0\.n: Extra inputs"),
        ({"jobs": [{"type": "nope", "data": "d"}]}, r"jobs\.0"),
        ({"jobs": []}, r"jobs: List should have at least 1 item"),
        ({"jobs": [{"type": "answer", "data": "d"}], "filters": {"regex": "("}}, "regex: "),
        (
            {"jobs": [{"type": "answer", "data": "d"}], "endpoint": {"url": "h:1", "model": "m"}},
            r"endpoint\.url: 'h:1' is not an http\(s\) URL",
        ),
    ]
    for tree, pattern in cases:
        with pytest.raises(ConfigError) as info:
            load_synth_config(write_config(tmp_path, url, **tree))
        text = str(info.value)
        assert len(text.splitlines()) == 1 and text.startswith(str(tmp_path / "synth.yaml"))
        assert re.search(pattern, text), text
    with pytest.raises(ConfigError, match=re.escape("uses {doc}; a qa prompt knows {document}")):
        load_synth_config(
            write_config(tmp_path, url, jobs=[{"type": "qa", "data": "d", "prompt": "{doc}"}])
        )


def test_bad_input_and_missing_key_are_named(
    tmp_path: Path, teacher: tuple[str, Teacher], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = teacher
    (tmp_path / "bad.jsonl").write_text('{"question": "ok?"}\n{not json\n', "utf-8")
    cfg = load_synth_config(
        write_config(tmp_path, url, jobs=[{"type": "answer", "data": "bad.jsonl"}])
    )
    with pytest.raises(DataError, match=r"bad\.jsonl:2"):
        synthesise(cfg)
    jsonl(tmp_path / "docs.jsonl", [{"title": "x"}])
    cfg = load_synth_config(
        write_config(tmp_path, url, jobs=[{"type": "qa", "data": "docs.jsonl"}])
    )
    with pytest.raises(DataError, match=r"docs\.jsonl:1: no text, document or content field"):
        synthesise(cfg)
    monkeypatch.delenv("TS_SYNTH_KEY", raising=False)
    cfg = load_synth_config(
        write_config(tmp_path, url, jobs=[{"type": "answer", "data": "bad.jsonl"}]),
        ["endpoint.api_key_env=TS_SYNTH_KEY"],
    )
    with pytest.raises(
        ConfigError, match=r"endpoint\.api_key_env: environment variable TS_SYNTH_KEY"
    ):
        synthesise(cfg)


def test_cli_prints_the_report(
    tmp_path: Path,
    teacher: tuple[str, Teacher],
    inputs: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = teacher
    config = write_config(tmp_path, url, jobs=[{"type": "answer", "data": "questions.jsonl"}])
    assert main(["data", "synth", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] == 1 and report["usage"]["teacher"]["requests"] == 2


def test_parse_pairs_and_chunks() -> None:
    reply = "Here you go:\nQ: One?\nA: First line\nsecond line\n\n问：二？\n答：二。\nQ: no answer"
    assert parse_pairs(reply) == [("One?", "First line\nsecond line"), ("二？", "二。")]
    assert parse_pairs("nothing here") == []
    text = "a" * 60 + "\n\n" + "b" * 30 + "\n\n" + "c" * 150
    assert chunks(text, 100) == ["a" * 60 + "\n\n" + "b" * 30, "c" * 150]
