"""Question perturbations for the consistency task: same meaning, different surface.

Each perturbation is a function ``(text, rng, zh) -> str | None`` (``None``: it does not apply
to this text). Choices are drawn from a ``random.Random`` seeded per question, so the same seed
gives the same variants on every machine. Chinese text (``zh``) gets full-width punctuation and
its own clause and synonym rules.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from tunesmith.evaluate.metrics import is_cjk

Perturbation = Callable[[str, random.Random, bool], "str | None"]

# ASCII mark -> full-width form (Chinese text uses the latter).
_FULL = {",": "，", "?": "？", "!": "！", ":": "：", ";": "；", "(": "（", ")": "）"}
_HALF = {v: k for k, v in _FULL.items()}
_END = "?？!！.。"

# Synonym groups: any member may replace any other. Small on purpose: only swaps that keep a
# question's meaning in ordinary use. English entries match whole words; Chinese ones substrings.
SYNONYMS_EN: tuple[tuple[str, ...], ...] = (
    ("big", "large"),
    ("small", "little"),
    ("begin", "start"),
    ("quick", "fast"),
    ("answer", "reply"),
    ("buy", "purchase"),
    ("help", "assist"),
    ("choose", "pick", "select"),
    ("happy", "glad"),
    ("talk", "presentation"),
    ("meeting", "session"),
    ("tell me", "let me know"),
    ("could you", "can you"),
    ("gave", "delivered"),
    ("presented", "gave a talk"),
    ("lab meeting", "group meeting"),
    ("topic", "subject"),
    ("wrote", "authored"),
    ("made", "created"),
    ("company", "firm"),
    # Contractions and their long forms.
    ("what's", "what is"),
    ("who's", "who is"),
    ("i'm", "i am"),
    ("you're", "you are"),
    ("isn't", "is not"),
    ("aren't", "are not"),
    ("didn't", "did not"),
    ("don't", "do not"),
)
SYNONYMS_ZH: tuple[tuple[str, ...], ...] = (
    ("为什么", "为何"),
    ("怎么", "如何"),
    ("什么时候", "何时"),
    ("谁", "哪位"),
    ("报告", "汇报"),
    ("帮助", "协助"),
    ("选择", "挑选"),
    ("非常", "十分"),
    ("现在", "目前"),
    ("立刻", "马上"),
    ("喜欢", "喜爱"),
    ("主题", "题目"),
    ("你", "您"),
    ("什么", "啥"),
    ("名字", "名称"),
    ("公司", "企业"),
    ("开发", "研发"),
    ("聊天", "对话"),
    ("可以", "能否"),
)

# A leading clause that may move behind the main one: "If it rains, what ...?" ->
# "What ... if it rains?". Only these openers, so the swap keeps the meaning.
_OPENERS_EN = (
    "if", "when", "after", "before", "because", "while", "although", "since", "unless", "once",
    "on", "at", "in", "during", "for",
)  # fmt: skip
_OPENERS_ZH = ("如果", "假如", "要是", "因为", "虽然", "尽管", "当", "既然", "只要", "除非", "在")


def _split_end(text: str) -> tuple[str, str]:
    """``(body, final punctuation)``."""
    body = text.rstrip()
    end = ""
    while body and body[-1] in _END:
        end = body[-1] + end
        body = body[:-1]
    return body, end


def punctuation(text: str, rng: random.Random, zh: bool) -> str | None:
    """Drop or add the final mark, or switch punctuation between ASCII and full-width forms."""
    body, end = _split_end(text)
    options: list[str] = []
    if end:
        options.append(body)  # no final mark
    else:
        options.append(body + ("？" if zh else "?"))
    if any(c in _FULL for c in text) or any(c in _HALF for c in text):
        table = _FULL if any(c in _FULL for c in text) else _HALF
        options.append("".join(table.get(c, c) for c in text))
    options = [o for o in options if o and o != text]
    return rng.choice(options) if options else None


def casing(text: str, rng: random.Random, zh: bool) -> str | None:
    """All lower case, all upper case, or sentence case (Latin letters only)."""
    if not re.search(r"[A-Za-z]", text):
        return None
    sentence = text[:1].upper() + text[1:].lower()
    options = [o for o in (text.lower(), text.upper(), sentence) if o != text]
    return rng.choice(options) if options else None


def width(text: str, rng: random.Random, zh: bool) -> str | None:
    """ASCII letters and digits as full-width forms (``4`` -> ``４``), or back."""
    if re.search(r"[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]", text):
        return re.sub(
            r"[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]", lambda m: chr(ord(m[0]) - 0xFEE0), text
        )
    if not re.search(r"[0-9A-Za-z]", text):
        return None
    return re.sub(r"[0-9A-Za-z]", lambda m: chr(ord(m[0]) + 0xFEE0), text)


def clause_order(text: str, rng: random.Random, zh: bool) -> str | None:
    """Move a leading subordinate or prepositional clause behind the main clause.

    Only for exactly one comma and an opener from a fixed list (``if``, ``when``, ``on`` ...;
    ``如果``, ``因为``, ``在`` ...), so the meaning stays.
    """
    body, end = _split_end(text)
    parts = re.split(r"\s*[,，]\s*", body)
    if len(parts) != 2 or not all(parts):
        return None
    first, second = parts
    if zh:
        if not first.startswith(_OPENERS_ZH):
            return None
        return f"{second}，{first}{end}"
    word = first.split()[0]
    if word.lower() not in _OPENERS_EN or not second[:1].isalpha():
        return None
    first = first[:1].lower() + first[1:]
    return f"{second[:1].upper()}{second[1:]} {first}{end}"


def _match_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def synonym(text: str, rng: random.Random, zh: bool) -> str | None:
    """Replace one word of the synonym table (chosen by ``rng``) with another of its group."""
    found: list[tuple[int, int, tuple[str, ...], str]] = []
    for group in SYNONYMS_ZH if zh else SYNONYMS_EN:
        for member in group:
            if zh:
                pattern = re.escape(member)
            else:
                pattern = r"(?<![A-Za-z])" + re.escape(member) + r"(?![A-Za-z])"
            flags = 0 if zh else re.IGNORECASE
            for m in re.finditer(pattern, text, flags):
                found.append((m.start(), m.end(), group, member))
    # Drop matches inside a longer one ("什么时候" holds no "谁", but groups may overlap).
    found.sort(key=lambda f: (f[0], -(f[1] - f[0])))
    kept: list[tuple[int, int, tuple[str, ...], str]] = []
    for f in found:
        if not kept or f[0] >= kept[-1][1]:
            kept.append(f)
    if not kept:
        return None
    start, stop, group, member = rng.choice(kept)
    other = rng.choice([g for g in group if g != member])
    return text[:start] + _match_case(other, text[start:stop]) + text[stop:]


PERTURBATIONS: dict[str, Perturbation] = {
    "punctuation": punctuation,
    "casing": casing,
    "width": width,
    "clause_order": clause_order,
    "synonym": synonym,
}
"""Name (as in the task spec's ``perturbations``) -> function."""


def variants(text: str, n: int, kinds: list[str], seed: int | str) -> list[tuple[str, str]]:
    """Up to ``n`` distinct ``(perturbation names, variant)`` of ``text``, none equal to it.

    Single perturbations first; when those run out, stacked ones (``"casing+synonym"``) on a
    variant found so far. Deterministic for a given ``seed`` (a string seed hashes stably).
    """
    rng = random.Random(f"perturb:{seed}")
    zh = is_cjk([text])
    out: list[tuple[str, str]] = []
    seen = {text}
    for attempt in range(n * 12):
        if len(out) == n:
            break
        kind = kinds[rng.randrange(len(kinds))]
        if attempt < n * 4 or not out:
            label, base = kind, text
        else:
            label, base = rng.choice(out)
            label = f"{label}+{kind}"
        new = PERTURBATIONS[kind](base, rng, zh)
        if new is None or new in seen or not new.strip():
            continue
        seen.add(new)
        out.append((label, new))
    return out
