"""Generate the built-in identity data (``identity.jsonl``) and its held-out questions.

Run ``python -m datagen.make_identity`` (or ``python datagen/make_identity.py``) from the repository
root to rewrite both files in ``src/tunesmith/data/builtin/``; the output is byte-identical on every
run. Hand-written core questions (grouped by intent) are expanded with the
shared surface variation in ``_variants`` until each language has ``TARGET`` distinct questions.
Replies carry ``{{name}}`` / ``{{author}}`` placeholders that ``data.selfcog`` fills in later.
The held-out questions are written separately and checked to be genuinely new phrasings.
"""

from __future__ import annotations

import sys
from pathlib import Path
from random import Random

if __package__ in (None, ""):  # `python datagen/<script>.py`: let it `import datagen`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datagen import OUT_DIR, out_dir_arg, render, write_outputs
from datagen._identity_en import EN_CORES, EN_MODELS, EN_ORGS, EN_REPLIES
from datagen._identity_zh import ZH_CORES, ZH_MODELS, ZH_ORGS, ZH_REPLIES
from datagen._variants import (
    EN_PREFIXES,
    EN_TAILS,
    ZH_PREFIXES,
    ZH_TAILS,
    normalize,
    vary,
)

TARGET = 400  # distinct questions per language
SEED = 0
# Held-out phrasings: natural questions a user might type, never trained on. Each must be a new
# phrasing, not a core question with another prefix or tail (``heldout_records`` checks both).
EN_HELDOUT: tuple[str, ...] = (
    "Mind telling me who I'm chatting with?",
    "Who exactly is answering my messages?",
    "What name were you given?",
    "Is there a name I should use for you?",
    "How would you like to be addressed?",
    "Who put you together?",
    "Which organization trained you?",
    "Who is responsible for building you?",
    "Which team is behind this assistant?",
    "Give me a quick introduction to yourself.",
    "Could you describe who you are in a few words?",
    "Tell me something about yourself.",
    "Are you some kind of computer program?",
    "I'd like to know who I'm talking to.",
    "Are you actually ChatGPT under the hood?",
    "So you're basically Claude, aren't you?",
    "Am I chatting with a human or a machine?",
    "Are you a person or a program?",
    "Which AI model am I talking to right now?",
    "What kind of model powers you?",
    "Who developed the assistant I'm using?",
    "What's the name of this assistant?",
    "Whose assistant are you?",
    "What do your creators call you?",
    "Before we begin, could you say who you are?",
    "Sorry, I didn't catch your name.",
    "Can I get your name?",
    "Who created this chatbot?",
    "What are you, some kind of AI?",
    "What company built this AI?",
)
ZH_HELDOUT: tuple[str, ...] = (
    "你叫什么来着？",
    "能问问你的名字吗？",
    "现在和我聊天的是谁？",
    "我该用什么名字叫你？",
    "你究竟是谁呀？",
    "你的身份是什么？",
    "可以先自我介绍一下吗？",
    "你是被谁训练出来的？",
    "是谁把你做出来的？",
    "哪个团队负责开发你？",
    "你出自哪家公司？",
    "你的研发团队是哪个？",
    "你该不会是ChatGPT吧？",
    "你跟Claude是一个东西吗？",
    "跟我聊天的是活人吗？",
    "回我消息的是真人还是机器人？",
    "你底层用的哪个模型？",
    "你是哪一款AI助手？",
    "你是什么来头？",
    "平时大家怎么叫你？",
    "你有没有自己的名字？",
    "咱们聊了半天，还不知道你是谁呢。",
    "能做个简短的自我介绍吗？",
    "这个助手是谁做的？",
    "开发你的公司叫什么？",
    "跟我对话的是什么程序？",
    "你是文心一言还是通义千问？",
    "你是一个AI程序吧？",
    "你是哪个公司训练的模型？",
    "不好意思，还没请教你的名字。",
)
# Reply pools per intent; asking for a name may also get a general self-introduction.
POOLS: dict[str, tuple[str, ...]] = {
    "self": ("self",),
    "name": ("name", "self"),
    "intro": ("intro", "self"),
    "creator": ("creator",),
    "model": ("model",),
    "not_model": ("not_model",),
    "not_org": ("not_org",),
    "human": ("human",),
    "ai": ("ai",),
    "abilities": ("abilities",),
}


def core_questions(lang: str, rng: Random) -> list[tuple[str, str, str]]:
    """Concrete core questions as ``(question, intent, filler)``.

    Templates with ``{x}`` (another assistant) or ``{org}`` (another company) are filled with three
    names each, so that no single name becomes the cue.
    """
    cores, models, orgs = (
        (EN_CORES, EN_MODELS, EN_ORGS) if lang == "en" else (ZH_CORES, ZH_MODELS, ZH_ORGS)
    )
    out: list[tuple[str, str, str]] = []
    for intent, questions in cores.items():
        for q in questions:
            if "{x}" in q:
                out += [(q.replace("{x}", x), intent, x) for x in rng.sample(models, 3)]
            elif "{org}" in q:
                out += [(q.replace("{org}", o), intent, o) for o in rng.sample(orgs, 3)]
            else:
                out.append((q, intent, ""))
    return out


def _reply(lang: str, intent: str, filler: str, rng: Random) -> str:
    replies = EN_REPLIES if lang == "en" else ZH_REPLIES
    pool = [r for group in POOLS[intent] for r in replies[group]]
    reply = rng.choice(pool)
    return reply.replace("{x}", filler).replace("{org}", filler)


def is_core_variant(question: str, lang: str) -> bool:
    """Whether ``question`` is a core question with only a known prefix and/or tail added."""
    prefixes, tails = (EN_PREFIXES, EN_TAILS) if lang == "en" else (ZH_PREFIXES, ZH_TAILS)
    cores = {normalize(q) for q, _, _ in core_questions(lang, Random(SEED))}
    cores |= {normalize(q) for qs in (EN_CORES if lang == "en" else ZH_CORES).values() for q in qs}
    key = normalize(question)
    heads = [""] + [normalize(p) for p in prefixes]
    ends = [""] + [normalize(t) for t in tails]
    for h in heads:
        for e in ends:
            if key.startswith(h) and key.endswith(e):
                core = key[len(h) : len(key) - len(e)].strip()
                if core in cores:
                    return True
    return False


def build_identity(seed: int = SEED) -> list[dict]:
    """All identity records, English first, each language with ``TARGET`` distinct questions."""
    records: list[dict] = []
    for lang in ("en", "zh"):
        rng = Random(f"{seed}-{lang}")
        held = {normalize(q) for q in (EN_HELDOUT if lang == "en" else ZH_HELDOUT)}
        cores = core_questions(lang, rng)
        seen: set[str] = set()
        rows: list[tuple[str, str, str]] = []
        for q, intent, filler in cores:  # every core once, as written
            seen.add(normalize(q))
            rows.append((q, intent, filler))
        attempts = 0
        while len(rows) < TARGET:
            attempts += 1
            assert attempts < 100 * TARGET, f"cannot reach {TARGET} distinct {lang} questions"
            q, intent, filler = cores[attempts % len(cores)]
            v = vary(q, lang, rng, force=True)
            key = normalize(v)
            if key in seen or key in held:
                continue
            seen.add(key)
            rows.append((v, intent, filler))
        for q, intent, filler in rows:
            reply = _reply(lang, intent, filler, rng)
            messages = [{"role": "user", "content": q}, {"role": "assistant", "content": reply}]
            records.append({"messages": messages, "lang": lang})
    return records


def heldout_records(train: list[dict] | None = None) -> list[dict]:
    """Held-out questions (hand-written), checked against the training questions ``train``
    (default: ``build_identity()``)."""
    train_rows = build_identity() if train is None else train
    train_keys = {normalize(r["messages"][0]["content"]) for r in train_rows}
    out: list[dict] = []
    for lang, questions in (("en", EN_HELDOUT), ("zh", ZH_HELDOUT)):
        assert len(set(map(normalize, questions))) == len(questions), f"duplicate {lang} held-out"
        for q in questions:
            assert normalize(q) not in train_keys, f"held-out question is in training: {q!r}"
            assert not is_core_variant(q, lang), f"held-out question is a core variant: {q!r}"
            out.append({"question": q, "lang": lang})
    return out


def outputs() -> dict[str, str]:
    """File name -> exact contents of ``identity.jsonl`` and ``identity_heldout.jsonl``."""
    rows = build_identity()
    return {"identity.jsonl": render(rows), "identity_heldout.jsonl": render(heldout_records(rows))}


def main(out_dir: Path = OUT_DIR) -> None:
    """Rewrite ``identity.jsonl`` and ``identity_heldout.jsonl`` (into ``out_dir``)."""
    write_outputs(outputs(), out_dir)


if __name__ == "__main__":
    main(out_dir_arg())
