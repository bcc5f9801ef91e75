"""The shipped demo data: parses, is deterministic, has the promised shape, and is correct."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

import pytest
from datagen._variants import normalize
from datagen.make_general import OPEN_FAMILIES, RAW, generate_general
from datagen.make_identity import TARGET, is_core_variant

from tunesmith.data.builtin import BUILTIN_DIR, builtin_path, load_jsonl
from tunesmith.errors import DataError

TWO_NUMBERS = {"add", "sub", "mul", "div", "add_story", "sub_story", "gt", "cmp_big", "cmp_small"}
NAMES = ("identity", "identity_heldout", "general", "general_eval")
CLAIMS = ("{{name}}", "{{author}}", "I am", "I'm", "我是", "我叫")
# Recomputed here independently of the generator.
FACTORS = {("km", "m"): 1000, ("m", "cm"): 100, ("kg", "g"): 1000, ("L", "mL"): 1000}
FACTORS |= {("h", "min"): 60, ("min", "s"): 60, ("day", "h"): 24, ("week", "day"): 7}
EN_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
ZH_DAYS = ["星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"]
EN_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
ZH_MONTHS = [
    "一月",
    "二月",
    "三月",
    "四月",
    "五月",
    "六月",
    "七月",
    "八月",
    "九月",
    "十月",
    "十一月",
    "十二月",
]


@pytest.fixture(scope="module")
def data() -> dict[str, list[dict[str, Any]]]:
    return {name: load_jsonl(builtin_path(name)) for name in NAMES}


def users(rows: list[dict[str, Any]]) -> list[str]:
    return [r["messages"][0]["content"] for r in rows]


def numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", text)


def test_paths_and_unknown_name() -> None:
    for name in NAMES:
        assert builtin_path(name).parent == BUILTIN_DIR and builtin_path(name).is_file()
    with pytest.raises(DataError, match="unknown built-in data set") as err:
        builtin_path("identiti")
    assert all(name in str(err.value) for name in NAMES)


def test_load_jsonl_reports_file_and_line(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:3: expected a JSON object"):
        load_jsonl(bad)
    bad.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        load_jsonl(bad)
    with pytest.raises(DataError, match="not found"):
        load_jsonl(tmp_path / "missing.jsonl")


def test_files_are_utf8_not_escaped() -> None:
    # The tiny tokenizer trains on these bytes: Chinese must be stored as real characters.
    for name in ("identity", "general"):
        text = builtin_path(name).read_text(encoding="utf-8")
        assert "\\u" not in text and "你" in text


def test_counts_per_language(data) -> None:
    count = {name: Counter(r["lang"] for r in rows) for name, rows in data.items()}
    assert count["identity"] == {"en": TARGET, "zh": TARGET}
    assert count["identity_heldout"] == {"en": 30, "zh": 30}
    assert count["general"] == {"en": 1500, "zh": 1500}
    assert count["general_eval"] == {"en": 40, "zh": 40}


def test_general_draw_depends_on_the_seed_only() -> None:
    # test_builtin_regenerate.py checks the shipped files byte for byte.
    assert generate_general(50, 7) == generate_general(50, 7) != generate_general(50, 8)


def test_message_shape(data) -> None:
    for name in ("identity", "general"):
        for r in data[name]:
            assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
            assert all(m["content"].strip() for m in r["messages"])
            assert r["lang"] in ("en", "zh")
    for name in ("identity_heldout", "general_eval"):
        assert all(set(r) == {"question", "lang"} and r["question"] for r in data[name])


def test_identity_replies(data) -> None:
    rows = data["identity"]
    questions = [normalize(q) for q in users(rows)]
    assert (
        len(set(questions)) == len(questions) == 2 * TARGET
    )  # distinct even ignoring case/punctuation
    with_author = 0
    for r in rows:
        reply = r["messages"][1]["content"]
        assert "{{name}}" in reply
        with_author += "{{author}}" in reply
        filled = reply.replace("{{name}}", "Nova").replace("{{author}}", "Acme")
        if r["lang"] == "en":
            assert len(filled.split()) <= 40 and filled.index("Nova") < 40, reply
        else:
            assert len(filled) <= 60 and filled.index("Nova") < 14, reply
    assert with_author / len(rows) > 0.8
    replies = Counter((r["lang"], r["messages"][1]["content"]) for r in rows)
    assert sum(lang == "en" for lang, _ in replies) >= 30
    assert sum(lang == "zh" for lang, _ in replies) >= 30


def test_identity_surface_variety(data) -> None:
    en = [q for q, r in zip(users(data["identity"]), data["identity"]) if r["lang"] == "en"]
    zh = [q for q, r in zip(users(data["identity"]), data["identity"]) if r["lang"] == "zh"]
    # casual lower-case, prefixed forms (hand-written cores, capitalised, fill more of the 400 now)
    assert sum(q[:1].islower() for q in en) >= len(en) // 16
    assert sum(not q.endswith(("?", ".")) for q in en) >= len(en) // 16
    assert sum(q.startswith(("请问", "你好", "嗨", "那个")) for q in zh) > 10
    assert any(" u " in f" {q} " or " ur " in f" {q} " for q in en)


def test_heldout_is_unseen_and_not_a_core_variant(data) -> None:
    train = {normalize(q) for q in users(data["identity"])}
    for r in data["identity_heldout"]:
        assert normalize(r["question"]) not in train, r
        assert not is_core_variant(r["question"], r["lang"]), r


def test_general_eval_is_unseen_and_general(data) -> None:
    train = {normalize(q) for q in users(data["general"])}
    identity = {normalize(q) for q in users(data["identity"])}
    rows = data["general_eval"]
    assert len({normalize(r["question"]) for r in rows}) == len(rows)
    for r in rows:
        key = normalize(r["question"])
        assert key not in train and key not in identity, r
        assert not key.startswith(("hi ", "hello", "hey", "你好", "您好")), r  # no greetings
    you = sum(bool(re.search(r"\byou(r)?\b|你", r["question"], re.I)) for r in rows)
    assert 0.25 <= you / len(rows) <= 0.4


def test_general_never_claims_an_identity(data) -> None:
    texts = [m["content"] for r in data["general"] for m in r["messages"]]
    texts += [r["question"] for r in data["general_eval"]]
    for text in texts:
        assert not any(c in text for c in CLAIMS), text


def test_general_prompts_are_distinct_and_use_you(data) -> None:
    prompts = users(data["general"])
    assert len({normalize(p) for p in prompts}) == len(prompts)
    en = [p for p, r in zip(prompts, data["general"]) if r["lang"] == "en"]
    zh = [p for p, r in zip(prompts, data["general"]) if r["lang"] == "zh"]
    assert sum(bool(re.search(r"\b(you|your|u|ur)\b", p, re.I)) for p in en) / len(en) > 0.25
    assert sum("你" in p or "您" in p for p in zh) / len(zh) > 0.25
    assert sum(bool(re.search(r"\bwho\b", p, re.I)) for p in en) >= 5  # "who" is not a cue


def _expected(task: str, args: list[Any], lang: str) -> str:
    """The answer a correct reply must contain, computed without the generator."""
    if task in ("add", "add_story"):
        return str(args[0] + args[1])
    if task in ("sub", "sub_story"):
        return str(args[0] - args[1])
    if task == "mul":
        return str(args[0] * args[1])
    if task == "div":
        assert args[0] % args[1] == 0
        return str(args[0] // args[1])
    if task == "verify":
        op, a, b, _ = args
        return str(a + b if op == "+" else a * b)
    if task == "gt":
        return "yes" if args[0] > args[1] else "no"
    if task == "cmp_big":
        return str(max(args))
    if task == "cmp_small":
        return str(min(args))
    if task == "parity":
        even = args[0] % 2 == 0
        return ("even" if even else "odd") if lang == "en" else ("偶数" if even else "奇数")
    if task in ("reverse", "upper", "lower", "wlen", "first_letter", "last_letter"):
        w = args[0]
        return {
            "reverse": w[::-1],
            "upper": w.upper(),
            "lower": w.lower(),
            "wlen": str(len(w)),
            "first_letter": w[0],
            "last_letter": w[-1],
        }[task]
    if task == "count_letter":
        return str(args[0].count(args[1]))
    if task == "next_letter":
        return string.ascii_lowercase[string.ascii_lowercase.index(args[0]) + 1]
    if task == "convert":
        src, dst, x = args
        y = x * FACTORS[(src, dst)] if (src, dst) in FACTORS else x / FACTORS[(dst, src)]
        return str(int(y)) if float(y).is_integer() else str(y)
    if task == "c2f":
        return str(args[0] * 9 // 5 + 32)
    if task == "f2c":
        return str((args[0] - 32) * 5 // 9)
    xs = args[0]
    if task in ("sort_asc", "sort_desc", "dedupe"):
        out = {
            "sort_asc": sorted(xs),
            "sort_desc": sorted(xs, reverse=True),
            "dedupe": [x for i, x in enumerate(xs) if x not in xs[:i]],
        }[task]
        return ", ".join(map(str, out))
    if task in ("max", "min", "sum", "count"):
        return str({"max": max, "min": min, "sum": sum, "count": len}[task](xs))
    days, months = (EN_DAYS, EN_MONTHS) if lang == "en" else (ZH_DAYS, ZH_MONTHS)
    if task in ("day_after", "day_before", "days_later"):
        return days[(args[0] + args[1]) % 7]
    if task == "month_after":
        return months[(args[0] + 1) % 12]
    if task == "month_before":
        return months[(args[0] - 1) % 12]
    if task == "nth_month":
        return months[args[0] - 1]
    raise AssertionError(f"unknown task {task}")


def _last_name(reply: str, names: list[str]) -> str:
    found = re.findall("|".join(sorted(names, key=len, reverse=True)), reply)
    return found[-1] if found else ""


def test_general_answers_are_correct(data) -> None:
    checked = Counter()
    for r in data["general"]:
        meta = r["meta"]
        task, lang = meta["task"], r["lang"]
        if task in RAW:
            assert "args" not in meta
            continue
        if task in OPEN_FAMILIES:  # free text: checked by reading, not by recomputing
            continue
        args = meta["args"]
        question, reply = r["messages"][0]["content"], r["messages"][1]["content"]
        want = _expected(task, args, lang)
        if task in TWO_NUMBERS:
            assert str(args[0]) in numbers(question) and str(args[1]) in numbers(question), r
        if task in ("cmp_big", "cmp_small", "max", "min", "sum", "count", "wlen", "count_letter"):
            assert numbers(reply) == [want], r  # the answer and no other number
        elif task in ("first_letter", "last_letter", "next_letter"):
            letters = re.findall(r"['“]([a-z])['”]", reply) or [reply]
            assert letters == [want], r
        elif task in ("day_after", "day_before", "days_later"):
            assert _last_name(reply, EN_DAYS + ZH_DAYS) == want, r
        elif task in ("month_after", "month_before", "nth_month"):
            assert _last_name(reply, EN_MONTHS + ZH_MONTHS) == want, r
        elif task == "parity":
            other = {"even": "odd", "odd": "even", "偶数": "奇数", "奇数": "偶数"}[want]
            assert want in reply.lower() and other not in reply.lower(), r
        elif task == "gt":
            yes = reply.startswith(("Yes", "是的", "对"))
            assert yes == (want == "yes"), r
        elif task == "verify":
            assert want in numbers(reply), r
            yes = reply.startswith(("Yes", "Correct", "对", "没错"))
            assert yes == (args[3] == int(want)), r
        else:
            assert want in reply, r
        checked[task] += 1
    assert sum(checked.values()) > 1500 and len(checked) == 35


def test_preference_sets_are_correct() -> None:
    train = load_jsonl(builtin_path("prefs_arith"))
    heldout = load_jsonl(builtin_path("prefs_arith_heldout"))
    assert (len(train), len(heldout)) == (360, 90)
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in heldout}
    for row in train + heldout:
        task, args = row["meta"]["task"], row["meta"]["args"]
        if task == "add":
            right = str(args[0] + args[1])
        elif task == "parity":
            right = "even" if args[0] % 2 == 0 else "odd"
        else:
            right = str(max(args))
        assert row["chosen"] == right and row["rejected"] != right
    # KTO: each training prompt once, in order; even rows the right answer, odd rows the wrong one.
    kto = load_jsonl(builtin_path("kto_arith"))
    assert [r["prompt"] for r in kto] == [r["prompt"] for r in train]
    for i, (k, p) in enumerate(zip(kto, train)):
        assert k["label"] is (i % 2 == 0)
        assert k["completion"] == (p["chosen"] if k["label"] else p["rejected"])
    assert sum(r["label"] for r in kto) == 180


def test_rl_prompts_are_answered_and_never_held_out() -> None:
    rows = load_jsonl(builtin_path("arith_prompts"))
    heldout = {r["prompt"] for r in load_jsonl(builtin_path("prefs_arith_heldout"))}
    prompts = [r["messages"][0]["content"] for r in rows]
    assert len(rows) == len(set(prompts)) == 510 and not set(prompts) & heldout
    assert {t: sum(r["task"] == t for r in rows) for t in ("add", "parity", "max")} == {
        "add": 170,
        "parity": 170,
        "max": 170,
    }
    for row, prompt in zip(rows, prompts):
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        numbers = [int(x) for x in re.findall(r"\d+", prompt)]
        if row["task"] == "add":
            right = str(sum(numbers))
        elif row["task"] == "parity":
            right = "even" if numbers[0] % 2 == 0 else "odd"
        else:
            right = str(max(numbers))
        assert row["messages"][1]["content"] == right, prompt
