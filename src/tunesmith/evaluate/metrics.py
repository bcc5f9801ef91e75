"""Text metrics for generation: exact match, BLEU (sacrebleu), ROUGE-1/2/L (rouge-score).

Chinese (and other CJK) text has no spaces between words, so word-based scores would see one
"word" per sentence: BLEU uses sacrebleu's ``zh`` tokenizer and ROUGE counts characters
(rouge-score's own tokenizer drops every CJK character).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from typing import Any

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_PUNCT = set(string.punctuation)

EXACT_MATCH_RULE = (
    "NFKC, case-folded, punctuation removed (ASCII and Unicode P*), whitespace collapsed, stripped"
)


def normalise(text: str) -> str:
    """The form exact match compares (see :data:`EXACT_MATCH_RULE`)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(
        " " if ch in _PUNCT or unicodedata.category(ch).startswith("P") else ch for ch in text
    )
    return " ".join(text.split())


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference after :func:`normalise`."""
    if not predictions:
        return 0.0
    hits = sum(normalise(p) == normalise(r) for p, r in zip(predictions, references))
    return hits / len(predictions)


def is_cjk(texts: Sequence[str]) -> bool:
    """Whether CJK characters make up at least a third of the letters in ``texts``."""
    letters = sum(ch.isalnum() for t in texts for ch in t)
    cjk = sum(len(_CJK.findall(t)) for t in texts)
    return letters > 0 and cjk * 3 >= letters


def bleu(predictions: Sequence[str], references: Sequence[str], *, zh: bool) -> float:
    """Corpus BLEU (0-100) with sacrebleu's ``zh`` tokenizer for Chinese, ``13a`` otherwise."""
    import sacrebleu

    tokenize = "zh" if zh else "13a"
    return float(
        sacrebleu.corpus_bleu(list(predictions), [list(references)], tokenize=tokenize).score
    )


class CharTokenizer:
    """rouge-score tokenizer: each CJK character one token, other text as lower-cased words."""

    def tokenize(self, text: str) -> list[str]:
        """Tokens of ``text``."""
        spaced = _CJK.sub(lambda m: f" {m.group(0)} ", text.casefold())
        return re.findall(
            r"[\w\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]+", spaced
        )


def rouge(predictions: Sequence[str], references: Sequence[str], *, zh: bool) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (0-1) over the pairs; on characters for Chinese."""
    from rouge_score import rouge_scorer

    keys = ("rouge1", "rouge2", "rougeL")
    kw: dict[str, Any] = {"tokenizer": CharTokenizer()} if zh else {"use_stemmer": False}
    scorer = rouge_scorer.RougeScorer(list(keys), **kw)
    totals = dict.fromkeys(keys, 0.0)
    for p, r in zip(predictions, references):
        scores = scorer.score(r, p)  # (target, prediction)
        for k in keys:
            totals[k] += scores[k].fmeasure
    n = max(len(predictions), 1)
    return {k: v / n for k, v in totals.items()}
