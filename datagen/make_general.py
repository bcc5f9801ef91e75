"""Deterministic generator of the built-in general instruction set (English and Chinese).

About 60% of the rows are short tasks with checkable answers (arithmetic, word puzzles, unit
conversions, list operations, comparisons, weekdays and months); the rest are open-ended requests
with hand-written answers (facts, explanations, how-to, why-questions, advice, short poems,
translations, lists, word play, naming, stories, code, short messages). The demo mixes this set
with the identity data so that the tiny model learns *when not* to say its name: many prompts say
"you"/"你", start with "hey,"/"请问", ask "who wrote ...?" or "suggest a name", and no answer claims
an identity.

``python -m datagen.make_general`` (or ``python datagen/make_general.py``) rewrites, in
``src/tunesmith/data/builtin/``, ``general.jsonl`` (n=3000, seed=0) and
``general_eval.jsonl`` (the hand-written eval prompts, checked to be unseen). Each record is
``{"messages": [user, assistant], "lang": "en"|"zh", "meta": {"task": ..., "args": [...]}}``;
``args`` (absent for the hand-written Q&A families) lets tests recompute checkable answers.
"""

from __future__ import annotations

import string
import sys
from collections.abc import Callable
from pathlib import Path
from random import Random
from typing import Any

if __package__ in (None, ""):  # `python datagen/<script>.py`: let it `import datagen`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datagen import OUT_DIR, out_dir_arg, render, write_outputs
from datagen import _general_en as en
from datagen import _general_zh as zh
from datagen import _open_en as oen
from datagen import _open_zh as ozh
from datagen._general_facts import EN_EVAL, EN_FACTS, ZH_EVAL, ZH_FACTS
from datagen._variants import normalize, vary

DEFAULT_N = 3000
# (big unit, small unit, factor): both directions are generated.
CONVERSIONS: tuple[tuple[str, str, int], ...] = (
    ("km", "m", 1000),
    ("m", "cm", 100),
    ("kg", "g", 1000),
    ("L", "mL", 1000),
    ("h", "min", 60),
    ("min", "s", 60),
    ("day", "h", 24),
    ("week", "day", 7),
)
# Relative weights of the task families (RAW families are also capped, see MAX_RAW_USES).
# About 60% checkable tasks, 40% open-ended requests (explanations, advice, writing, ...): without
# the open-ended part the tiny model answers every unfamiliar request with its name.
WEIGHTS: dict[str, int] = {
    "add": 6, "sub": 5, "mul": 5, "div": 4, "add_story": 3, "sub_story": 3, "verify": 4, "gt": 3,
    "cmp_big": 3, "cmp_small": 3, "parity": 3, "reverse": 5, "upper": 3, "lower": 2, "wlen": 4,
    "count_letter": 3, "first_letter": 3, "last_letter": 3, "next_letter": 2, "convert": 7,
    "c2f": 3, "f2c": 2, "sort_asc": 4, "sort_desc": 3, "max": 3, "min": 3, "sum": 3, "count": 2,
    "dedupe": 3, "day_after": 3, "day_before": 2, "days_later": 2, "month_after": 2,
    "month_before": 2, "nth_month": 2,
    # open-ended
    "fact": 12, "why": 6, "advice": 6, "concept": 14, "howto": 12, "poem": 4, "line": 4,
    "translate": 6, "list_items": 6, "synonym": 3, "antonym": 3, "rhyme": 2, "naming": 4,
    "story": 3, "code": 4, "message": 5,
}  # fmt: skip
# Hand-written Q&A families without templates; each pair appears at most twice (plain + a variant).
RAW: dict[str, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]] = {
    "fact": (EN_FACTS, ZH_FACTS),
    "why": (oen.WHY, ozh.WHY),
    "advice": (oen.ADVICE, ozh.ADVICE),
}
MAX_RAW_USES = 2
# Openers for some open-ended answers. Greedy decoding takes the single most likely first token,
# and nearly every identity reply starts with "I'm"/"我是"; general answers whose first tokens are
# all different (Chinese definitions start with the term itself) lose that vote on unfamiliar
# prompts, so the model answers them with its name. A few common openers give the general side a
# strong first token of its own.
_EN_SURE = (0.45, ("Sure. ", "Sure! "))
_ZH_OK = (0.5, ("好的，", "好的！"))
OPENERS: dict[tuple[str, str], tuple[float, tuple[str, ...]]] = {
    **{("en", f): _EN_SURE for f in ("howto", "message", "naming", "list_items", "story")},
    **{("en", f): _EN_SURE for f in ("translate", "synonym", "antonym", "rhyme", "line")},
    ("en", "poem"): (0.5, ("Sure! Here's a short poem:\n\n", "Here's one:\n\n")),
    **{("zh", f): _ZH_OK for f in ("howto", "message", "naming", "list_items", "story")},
    **{("zh", f): _ZH_OK for f in ("translate", "synonym", "antonym", "line")},
    ("zh", "poem"): (0.5, ("好的：\n\n", "好的，写一首给你：\n\n")),
    ("zh", "concept"): (0.6, ("简单来说，",)),
}
OPEN_FAMILIES = frozenset(
    {"concept", "howto", "poem", "line", "translate", "list_items", "synonym", "antonym", "rhyme"}
    | {"naming", "story", "code", "message"}
)

Slots = dict[str, Any]
# A maker returns (template key, slots for the templates, args for tests, answer key).
Maker = Callable[[Random, str], tuple[str, Slots, list[Any], str]]


def fmt_num(x: float) -> str:
    """``2500.0`` -> ``"2500"``, ``2.5`` -> ``"2.5"``."""
    return str(int(x)) if float(x).is_integer() else str(x)


def fmt_list(xs: list[int], brackets: bool) -> str:
    body = ", ".join(map(str, xs))
    return f"[{body}]" if brackets else body


def _arith(task: str) -> Maker:
    def make(rng: Random, lang: str) -> tuple[str, Slots, list[Any], str]:
        if task in ("add", "add_story"):
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            c = a + b
        elif task == "div":
            b, c = rng.randint(2, 12), rng.randint(2, 15)
            a = b * c
        elif task in ("sub", "sub_story"):
            a = rng.randint(10, 99)
            b = rng.randint(2, a - 2)
            c = a - b
        else:
            a, b = rng.randint(2, 15), rng.randint(2, 15)
            c = a * b
        slots: Slots = {"a": a, "b": b, "c": c}
        if task.endswith("story"):
            item, item_zh, mw = rng.choice(en.ITEMS)
            slots.update(item=item if lang == "en" else item_zh, mw=mw)
        return task, slots, [a, b], "a"

    return make


def _verify(rng: Random, lang: str) -> tuple[str, Slots, list[Any], str]:
    op = rng.choice("+×")
    hi = 60 if op == "+" else 12
    a, b = rng.randint(2, hi), rng.randint(2, hi)
    t = a + b if op == "+" else a * b
    claimed = t if rng.random() < 0.5 else t + rng.choice((-3, -2, -1, 1, 2, 10))
    words = {"+": ("plus", "加"), "×": ("times", "乘")}[op]
    slots = {"a": a, "b": b, "c": claimed, "t": t, "op": op, "opw": words[lang == "zh"]}
    return "verify", slots, [op, a, b, claimed], "yes" if claimed == t else "no"


def _compare(task: str) -> Maker:
    def make(rng: Random, lang: str) -> tuple[str, Slots, list[Any], str]:
        hi = 200 if task == "gt" else 999
        a, b = rng.sample(range(1, hi), 2)
        x = max(a, b) if task == "cmp_big" else min(a, b)
        answer = ("yes" if a > b else "no") if task == "gt" else "a"
        return task, {"a": a, "b": b, "x": x}, [a, b], answer

    return make


def _parity(rng: Random, lang: str) -> tuple[str, Slots, list[Any], str]:
    n = rng.randint(1, 999)
    k = ("even", "偶数") if n % 2 == 0 else ("odd", "奇数")
    kk = k[lang == "zh"]
    return "parity", {"n": n, "k": kk, "K": kk.capitalize()}, [n], "a"


def _word(task: str) -> Maker:
    def make(rng: Random, lang: str) -> tuple[str, Slots, list[Any], str]:
        key = task
        if lang == "zh" and task in ("reverse", "wlen") and rng.random() < 0.5:
            key, w = f"{task}_phrase", rng.choice(zh.PHRASES)
        else:
            w = rng.choice(en.WORDS)
        slots: Slots = {"w": w}
        if task == "reverse":
            slots["r"] = w[::-1]
        elif task == "upper":
            slots["r"] = w.upper()
        elif task == "lower":
            w = slots["w"] = w.upper() if rng.random() < 0.6 else w.capitalize()
            slots["r"] = w.lower()
        elif task == "wlen":
            slots["n"] = len(w)
        elif task == "count_letter":
            repeated = sorted({c for c in w if w.count(c) >= 2})
            if not repeated:
                return make(rng, lang)  # need a letter that appears at least twice
            slots["ch"] = rng.choice(repeated)
            slots["n"] = w.count(slots["ch"])
            return task, slots, [w, slots["ch"]], "a"
        elif task == "first_letter":
            slots["ch"] = w[0]
        elif task == "last_letter":
            slots["ch"] = w[-1]
        return key, slots, [w], "a"

    return make


def _next_letter(rng: Random, lang: str) -> tuple[str, Slots, list[Any], str]:
    i = rng.randrange(25)
    ch, nx = string.ascii_lowercase[i], string.ascii_lowercase[i + 1]
    return "next_letter", {"ch": ch, "nx": nx}, [ch], "a"


def _value(rng: Random, factor: int) -> float:
    """A value of the big unit: 2..30, sometimes a half when the result stays whole."""
    v: float = rng.randint(2, 30)
    if factor % 2 == 0 and rng.random() < 0.25:
        v += 0.5
    return v


def _convert(rng: Random, lang: str) -> tuple[str, Slots, list[Any], str]:
    big, small, factor = rng.choice(CONVERSIONS)
    v = _value(rng, factor)
    src, dst, x, y = (
        (big, small, v, v * factor) if rng.random() < 0.5 else (small, big, v * factor, v)
    )
    slots: Slots = {"x": fmt_num(x), "y": fmt_num(y)}
    slots.update(sf=en.UNITS[src][0], ss=en.UNITS[src][1], df=en.UNITS[dst][0], ds=en.UNITS[dst][1])
    slots.update(sz=rng.choice(zh.UNITS[src]), dz=rng.choice(zh.UNITS[dst]))
    x_arg = int(x) if float(x).is_integer() else x
    return "convert", slots, [src, dst, x_arg], "a"


def _temperature(task: str) -> Maker:
    def make(rng: Random, lang: str) -> tuple[str, Slots, list[Any], str]:
        if task == "c2f":
            c = 5 * rng.randint(-8, 20)  # multiples of 5 give whole Fahrenheit values
            x, y = c, c * 9 // 5 + 32
        else:
            k = rng.randint(-8, 23)
            x, y = 32 + 9 * k, 5 * k
        return task, {"x": x, "y": y}, [x], "a"

    return make


def _list(task: str) -> Maker:
    def make(rng: Random, lang: str) -> tuple[str, Slots, list[Any], str]:
        n = rng.randint(3, 7)
        if task == "dedupe":
            base = rng.sample(range(1, 60), rng.randint(2, 5))
            xs = base + [rng.choice(base) for _ in range(rng.randint(1, 3))]
            rng.shuffle(xs)
        else:
            xs = rng.sample(range(1, 100), n)
        brackets = rng.random() < 0.5
        if task == "sort_asc":
            r = fmt_list(sorted(xs), brackets)
        elif task == "sort_desc":
            r = fmt_list(sorted(xs, reverse=True), brackets)
        elif task == "dedupe":
            r = fmt_list(list(dict.fromkeys(xs)), brackets)
        else:
            value = {"max": max, "min": min, "sum": sum, "count": len}[task](xs)
            r = str(value)
        return task, {"l": fmt_list(xs, brackets), "r": r}, [xs], "a"

    return make


def _calendar(task: str) -> Maker:
    def make(rng: Random, lang: str) -> tuple[str, Slots, list[Any], str]:
        days, months = (en.DAYS, en.MONTHS) if lang == "en" else (zh.DAYS, zh.MONTHS)
        if task == "nth_month":
            k = rng.randint(1, 12)
            slots = {"k": k, "ord": en.ORDINALS[k - 1], "r": months[k - 1]}
            return task, slots, [k], "a"
        if task.startswith("month"):
            i = rng.randrange(12)
            step = 1 if task == "month_after" else -1
            return task, {"m": months[i], "r": months[(i + step) % 12]}, [i], "a"
        i = rng.randrange(7)
        k = {"day_after": 1, "day_before": -1}.get(task) or rng.randint(2, 10)
        return task, {"d": days[i], "k": k, "r": days[(i + k) % 7]}, [i, k], "a"

    return make


MAKERS: dict[str, Maker] = {
    **{t: _arith(t) for t in ("add", "sub", "mul", "div", "add_story", "sub_story")},
    "verify": _verify,
    **{t: _compare(t) for t in ("gt", "cmp_big", "cmp_small")},
    "parity": _parity,
    **{t: _word(t) for t in ("reverse", "upper", "lower", "wlen", "count_letter")},
    **{t: _word(t) for t in ("first_letter", "last_letter")},
    "next_letter": _next_letter,
    "convert": _convert,
    **{t: _temperature(t) for t in ("c2f", "f2c")},
    **{t: _list(t) for t in ("sort_asc", "sort_desc", "max", "min", "sum", "count", "dedupe")},
    **{t: _calendar(t) for t in ("day_after", "day_before", "days_later")},
    **{t: _calendar(t) for t in ("month_after", "month_before", "nth_month")},
}


def _join(items: list[str], lang: str) -> str:
    """``a, b and c`` / ``a、b和c``."""
    if lang == "en":
        return ", ".join(items[:-1]) + " and " + items[-1]
    return "、".join(items[:-1]) + "和" + items[-1]


def _open(family: str, rng: Random, lang: str) -> tuple[str, Slots, str, list[Any]]:
    """An open-ended request: (question template, slots, answer, args)."""
    o: Any = oen if lang == "en" else ozh
    if family in ("concept", "howto", "story", "message"):
        key = family.upper()
        table = {"concept": o.CONCEPTS, "howto": o.HOWTO, "story": o.STORIES}.get(
            family, o.MESSAGES
        )
        t, answer = rng.choice(table)
        return rng.choice(getattr(o, f"{key}_Q")), {"t": t}, answer, [t]
    if family in ("poem", "line"):
        t, poem, line = rng.choice(o.CREATIVE)
        q = rng.choice(o.POEM_Q if family == "poem" else o.LINE_Q)
        return q, {"t": t}, poem if family == "poem" else line, [t]
    if family == "code":
        i = rng.randrange(len(oen.CODE))
        slots: Slots = {"t": o.CODE_TASKS[i], "code": oen.CODE[i]}
        return rng.choice(o.CODE_Q), slots, rng.choice(o.CODE_A).format(**slots), [i]
    if family == "naming":
        t = rng.choice(sorted(o.NAMES))
        answer = rng.choice(o.NAMING_A).format(n=rng.choice(o.NAMES[t]))
        return rng.choice(o.NAMING_Q), {"t": t}, answer, [t]
    if family == "list_items":
        c = rng.choice(sorted(o.CATEGORIES))
        k = rng.randint(2, 4)
        if lang == "en":
            picked = rng.sample(o.CATEGORIES[c], k)
            text = _join(picked, lang)
            answer = rng.choice(("{X}.", "For example, {x}.", "{X}, to name a few."))
            answer = answer.format(x=text, X=text[0].upper() + text[1:])
            return rng.choice(o.LIST_Q), {"k": ("two", "three", "four")[k - 2], "c": c}, answer, [c]
        m, items = o.CATEGORIES[c]
        text = _join(rng.sample(items, k), lang)
        answer = rng.choice(("{x}。", "比如{x}。", "有{x}等。")).format(x=text)
        return rng.choice(o.LIST_Q), {"k": "两三四"[k - 2], "m": m, "c": c}, answer, [c]
    if family in ("synonym", "antonym", "rhyme"):
        kind = "ANTONYM" if lang == "zh" and family == "rhyme" else family.upper()
        table = getattr(o, f"{kind}S")
        w = rng.choice(sorted(table))
        slots = {"w": w, "s": table[w], "S": table[w].capitalize()}
        answer = rng.choice(getattr(o, f"{kind}_A")).format(**slots)
        return rng.choice(getattr(o, f"{kind}_Q")), slots, answer, [w]
    # translate
    if lang == "en":
        w = rng.choice(sorted(oen.DICTIONARY))
        i = rng.randrange(len(oen.LANGS))
        slots = {"w": w, "lang": oen.LANGS[i], "t": oen.DICTIONARY[w][i]}
        answer = rng.choice(oen.TRANSLATE_A).format(**slots)
        return rng.choice(oen.TRANSLATE_Q), slots, answer, [w, oen.LANGS[i]]
    z = rng.choice(sorted(ozh.DICTIONARY))
    slots = {"z": z, "e": ozh.DICTIONARY[z]}
    qs, answers = (ozh.TO_EN_Q, ozh.TO_EN_A) if rng.random() < 0.5 else (ozh.TO_ZH_Q, ozh.TO_ZH_A)
    return rng.choice(qs), slots, rng.choice(answers).format(**slots), [z]


def _record(user: str, answer: str, lang: str, meta: dict[str, Any]) -> dict[str, Any]:
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "lang": lang, "meta": meta}


def generate_general(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Generate ``n`` general instruction records, half English and half Chinese.

    Deterministic in ``(n, seed)``; user prompts are distinct after normalisation (case,
    punctuation and spacing ignored).
    """
    rng = Random(seed)
    families = list(WEIGHTS)
    weights = [WEIGHTS[f] for f in families]
    raw_uses: dict[tuple[str, str, int], int] = {}
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(f"could not generate {n} distinct general prompts")
        lang = "en" if len(out) % 2 == 0 else "zh"
        family = rng.choices(families, weights)[0]
        meta: dict[str, Any] = {"task": family}
        if family in RAW:
            pairs = RAW[family][lang == "zh"]
            raw_key = (family, lang, rng.randrange(len(pairs)))
            uses = raw_uses.get(raw_key, 0)
            if uses >= MAX_RAW_USES:
                continue
            q, answer = pairs[raw_key[2]]
            user = q if uses == 0 else vary(q, lang, rng, force=True)
        elif family in OPEN_FAMILIES:
            template, slots, answer, meta["args"] = _open(family, rng, lang)
            user = vary(template, lang, rng).format(**slots)
            p, openers = OPENERS.get((lang, family), (0.0, ("",)))
            if rng.random() < p:
                answer = rng.choice(openers) + answer
        else:
            key, slots, meta["args"], answer_key = MAKERS[family](rng, lang)
            text = (en.TEMPLATES if lang == "en" else zh.TEMPLATES)[key]
            user = vary(rng.choice(text["q"]), lang, rng).format(**slots)
            answer = rng.choice(text[answer_key]).format(**slots)
        norm = normalize(user)
        if norm in seen:
            continue
        seen.add(norm)
        if family in RAW:
            raw_uses[raw_key] = uses + 1
        out.append(_record(user, answer, lang, meta))
    rng.shuffle(out)
    return out


def eval_records(train: list[dict[str, Any]] | None = None) -> list[dict[str, str]]:
    """The hand-written general eval prompts, checked to be absent from ``train``."""
    train = generate_general(DEFAULT_N, 0) if train is None else train
    seen = {normalize(r["messages"][0]["content"]) for r in train}
    seen |= {normalize(q) for en_pairs, zh_pairs in RAW.values() for q, _ in en_pairs + zh_pairs}
    out: list[dict[str, str]] = []
    for lang, questions in (("en", EN_EVAL), ("zh", ZH_EVAL)):
        for q in questions:
            if normalize(q) in seen:
                raise AssertionError(f"eval prompt also appears in the training set: {q!r}")
            out.append({"question": q, "lang": lang})
    return out


def outputs() -> dict[str, str]:
    """File name -> exact contents of ``general.jsonl`` (3000 rows, seed 0) and
    ``general_eval.jsonl``."""
    rows = generate_general(DEFAULT_N, 0)
    return {"general.jsonl": render(rows), "general_eval.jsonl": render(eval_records(rows))}


def main(out_dir: Path = OUT_DIR) -> None:
    """Rewrite ``general.jsonl`` and ``general_eval.jsonl`` (into ``out_dir``)."""
    write_outputs(outputs(), out_dir)


if __name__ == "__main__":
    main(out_dir_arg())
