"""Real public demo data loads through dataset_info.json and through auto-detection alike."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tunesmith.data.dataset_info import read_dataset_info
from tunesmith.data.selfcog import has_placeholders, substitute
from tunesmith.data.sources import load_examples
from tunesmith.data.types import Conversation, KTOExample, PreferencePair, TextDoc

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
LF = SHARED / "llamafactory"

EXPECTED = {  # name -> (file, rows stated by the data's README, example type)
    "alpaca_en_demo": ("alpaca_en_demo.json", 999, Conversation),
    "alpaca_zh_demo": ("alpaca_zh_demo.json", 1000, Conversation),
    "identity": ("identity.json", 91, Conversation),
    "glaive_toolcall_en_demo": ("glaive_toolcall_en_demo.json", 300, Conversation),
    "dpo_en_demo": ("dpo_en_demo.json", 300, PreferencePair),
    "kto_en_demo": ("kto_en_demo.json", 300, KTOExample),
    "mllm_demo": ("mllm_demo.json", 6, Conversation),
    "c4_demo": ("c4_demo.jsonl", 300, TextDoc),
}


def count_rows(path: Path) -> int:
    """Count samples independently of the code under test."""
    if path.suffix == ".jsonl":
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return len(json.loads(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("name", list(EXPECTED))
def test_llamafactory_file_via_dataset_info_and_auto(name: str) -> None:
    file, stated, kind = EXPECTED[name]
    path = LF / file
    rows = count_rows(path)
    assert rows == stated

    entry = read_dataset_info(LF / "dataset_info.json", name)
    assert entry.file.resolve() == path.resolve()
    via_info = load_examples(
        entry.file,
        fmt=entry.fmt,
        columns=entry.columns,
        tags=entry.tags,
        ranking=entry.ranking,
        media_dir=entry.media_dir,
        split=entry.split,
        source=name,
    )
    via_auto = load_examples(path, source=name)
    for result in (via_info, via_auto):
        assert result.rows_read == rows
        assert result.skipped == Counter()
        assert len(result.examples) == rows
        assert all(type(e) is kind for e in result.examples)
        assert all(e.source == name for e in result.examples)
    assert via_info.examples == via_auto.examples


def test_tool_calls_preference_kto_and_images_are_read() -> None:
    glaive = load_examples(LF / "glaive_toolcall_en_demo.json").examples
    calls = [m for c in glaive for m in c.messages if m.tool_calls]
    results = [m for c in glaive for m in c.messages if m.role == "tool"]
    assert calls and len(results) == sum(len(m.tool_calls or []) for m in calls)
    assert all(m.name for m in results)
    assert all(t["type"] == "function" for c in glaive for t in c.tools or [])

    dpo = load_examples(LF / "dpo_en_demo.json").examples
    assert all(p.prompt.messages[-1].role == "user" for p in dpo)
    assert sum(p.prompt.messages[0].role == "system" for p in dpo) == 80

    kto = load_examples(LF / "kto_en_demo.json").examples
    assert Counter(k.desirable for k in kto) == Counter({True: 150, False: 150})

    mllm = load_examples(LF / "mllm_demo.json").examples
    assert [len(c.images) for c in mllm] == [2, 1, 1, 2, 1, 1]
    assert all(Path(img).is_file() for c in mllm for img in c.images)


def test_identity_substitution_leaves_no_placeholders() -> None:
    examples = load_examples(LF / "identity.json").examples
    assert sum(has_placeholders(e) for e in examples) > 80
    filled = [substitute(e, "Nova", "Acme") for e in examples]
    assert not any(has_placeholders(e) for e in filled)
    assert all("{{" not in m.content for e in filled for m in e.messages)


def test_swift_self_cognition_with_per_language_names() -> None:
    path = SHARED / "swift" / "self_cognition.jsonl"
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    assert len(raw) == 134
    result = load_examples(path, source="self_cognition")
    assert (result.rows_read, len(result.examples), result.skipped) == (134, 134, Counter())

    name, author = {"en": "Nova", "zh": "诺瓦"}, {"en": "Acme Labs", "zh": "艾克米实验室"}
    checked: Counter[str] = Counter()
    for row, example in zip(raw, result.examples, strict=True):
        assert isinstance(example, Conversation)
        assert example.meta["lang"] == row["tag"]
        reply = substitute(example, name, author).messages[-1].content
        assert "{{" not in reply
        lang, other = row["tag"], "en" if row["tag"] == "zh" else "zh"
        for key, values in (("{{NAME}}", name), ("{{AUTHOR}}", author)):
            if key in row["response"]:
                assert values[lang] in reply and values[other] not in reply
                checked[f"{lang} {key}"] += 1
    # both languages and both placeholders are exercised
    assert set(checked) == {"zh {{NAME}}", "zh {{AUTHOR}}", "en {{NAME}}", "en {{AUTHOR}}"}
