"""Surface variation shared by the built-in identity and general generators.

The demo model is tiny and randomly initialised, so it can only learn from surface cues. Both data
sets therefore get the *same* prefixes ("hey,", "quick question:", "请问"), tails, casing and typo
noise: if only identity questions carried "hey," the model would learn that "hey," means "say your
name". Everything here is deterministic given the ``random.Random`` passed in.
"""

from __future__ import annotations

import re
import unicodedata
from random import Random

EN_PREFIXES: tuple[str, ...] = (
    "hey, ",
    "hey ",
    "Hey! ",
    "hi, ",
    "Hi! ",
    "hello, ",
    "Hello. ",
    "ok, ",
    "okay so ",
    "so, ",
    "um, ",
    "hmm, ",
    "Quick question: ",
    "quick q: ",
    "One question: ",
    "sorry, ",
    "Excuse me, ",
    "btw, ",
    "By the way, ",
    "Just curious: ",
    "Out of curiosity, ",
    "I was wondering, ",
    "real quick, ",
    "alright, ",
    "yo, ",
    "Hey there, ",
    "Good morning! ",
    "Good evening. ",
    "Hi again. ",
    "Another question: ",
    "Honest question: ",
    "Random question, ",
    "Before I forget, ",
    "Okay, next one: ",
)
ZH_PREFIXES: tuple[str, ...] = (
    "请问",
    "请问，",
    "你好，",
    "您好，",
    "嗨，",
    "哈喽，",
    "嘿，",
    "那个，",
    "问一下，",
    "问个问题：",
    "冒昧问一句，",
    "好奇问一下，",
    "打扰一下，",
    "对了，",
    "话说，",
    "顺便问下，",
    "我想问一下，",
    "喂，",
    "早上好！",
    "晚上好，",
    "再问一个：",
    "说真的，",
    "嗯，",
    "诶，",
    "在吗？",
    "你好呀，",
)
# Sentences appended after the question.
EN_TAILS: tuple[str, ...] = (
    " Thanks!",
    " Thank you.",
    " thx",
    " Just curious.",
    " Just wondering.",
    " :)",
    " Thanks in advance.",
    " Please answer briefly.",
    " pls",
    " Be quick.",
)
ZH_TAILS: tuple[str, ...] = (
    "谢谢！",
    "，谢谢",
    "～",
    "，麻烦了",
    "，在线等",
    "，简单说说就好",
    " 谢谢啦",
    "，好奇",
    "😊",
)
# Whole-word informal spellings people really type.
EN_SLANG: tuple[tuple[str, str], ...] = (
    ("you", "u"),
    ("your", "ur"),
    ("are", "r"),
    ("what's", "whats"),
    ("who's", "whos"),
    ("please", "pls"),
    ("can't", "cant"),
    ("don't", "dont"),
    ("it's", "its"),
    ("thanks", "thx"),
)
ZH_SLANG: tuple[tuple[str, str], ...] = (
    ("什么", "啥"),
    ("什么", "神马"),
    ("什么", "什麽"),
    ("你", "妳"),
    ("你", "您"),
    ("谁", "誰"),
    ("吗", "嘛"),
    ("名字", "名子"),
    ("怎么", "咋"),
    ("一下", "一哈"),
)
_TERMINAL = "?？.。!！"
_WORD = re.compile(r"[A-Za-z']+")


def normalize(text: str) -> str:
    """Key for overlap checks: NFKC, lower case, punctuation and spacing removed."""
    text = unicodedata.normalize("NFKC", text).lower()
    kept = [c if (c.isalnum() or c.isspace()) else " " for c in text]
    return " ".join("".join(kept).split())


def with_prefix(question: str, prefix: str) -> str:
    """Prepend ``prefix``; after a comma or a bare space the first letter goes lower case."""
    first = question.split(" ", 1)[0]
    lowerable = (
        prefix.endswith((", ", " "))
        and not prefix.endswith((". ", "! ", ": "))
        and question[:1].isupper()
        and question[1:2].islower()
        and first not in ("I", "I'm", "I'd", "I've")
    )
    return prefix + (question[0].lower() + question[1:] if lowerable else question)


def with_tail(question: str, tail: str) -> str:
    """Append a short trailing sentence (Chinese comma tails replace the final punctuation)."""
    if tail.startswith("，"):
        return question.rstrip(_TERMINAL) + tail
    return question + tail


def en_typo(question: str, rng: Random) -> str:
    """One informal spelling or one letter-level slip (swap, drop or double) in a plain word."""
    words = question.split(" ")
    slang = [
        (i, short)
        for i, w in enumerate(words)
        for long, short in EN_SLANG
        if w.lower().strip("?,.!") == long and "{" not in w
    ]
    if slang and rng.random() < 0.6:
        i, short = rng.choice(slang)
        tail = words[i][len(words[i].rstrip("?,.!")) :]
        words[i] = short + tail
        return " ".join(words)
    plain = [i for i, w in enumerate(words) if re.fullmatch(r"[a-z]{5,}", w)]
    if not plain:
        return question
    i = rng.choice(plain)
    w = words[i]
    j = rng.randrange(1, len(w) - 2)
    op = rng.randrange(3)
    if op == 0:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    elif op == 1:
        w = w[:j] + w[j + 1 :]
    else:
        w = w[:j] + w[j] + w[j:]
    words[i] = w
    return " ".join(words)


def zh_typo(question: str, rng: Random) -> str:
    """One colloquial or mistyped character substitution, if the question has a candidate."""
    options = [(a, b) for a, b in ZH_SLANG if a in question]
    if not options:
        return question
    a, b = rng.choice(options)
    return question.replace(a, b, 1)


def punctuate(question: str, lang: str, rng: Random) -> str:
    """Casing and end-punctuation noise: lower case, no question mark, doubled or ASCII marks."""
    r = rng.random()
    if lang == "en":
        if r < 0.22:
            question = question.lower()
        elif r < 0.25 and "{" not in question:  # upper case would break format slots
            question = question.upper()
        r = rng.random()
        if r < 0.18:
            question = question.rstrip(_TERMINAL)
        elif r < 0.23 and question.endswith("?"):
            question += "?"
        return question
    if r < 0.2:
        question = question.replace("？", "?")
    elif r < 0.33:
        question = question.rstrip(_TERMINAL)
    elif r < 0.37 and question.endswith("？"):
        question += "？"
    return question


def vary(question: str, lang: str, rng: Random, *, force: bool = False) -> str:
    """Apply a random mix of prefix, tail, typo and punctuation noise.

    Placeholders such as ``{a}`` are never touched, so general-task templates can be varied before
    their slots are filled. With ``force`` at least one of prefix/tail/typo is applied.
    """
    prefixes, tails = (EN_PREFIXES, EN_TAILS) if lang == "en" else (ZH_PREFIXES, ZH_TAILS)
    while True:
        use_prefix = rng.random() < 0.4
        use_tail = rng.random() < 0.2
        use_typo = rng.random() < 0.3
        if not force or use_prefix or use_tail or use_typo:
            break
    if use_typo:
        question = en_typo(question, rng) if lang == "en" else zh_typo(question, rng)
    question = punctuate(question, lang, rng)
    if use_prefix:
        question = with_prefix(question, rng.choice(prefixes))
    if use_tail:
        question = with_tail(question, rng.choice(tails))
    return question
