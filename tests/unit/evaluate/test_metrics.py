"""Generation metrics against hand-computed values and the reference libraries themselves."""

from __future__ import annotations

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from tunesmith.evaluate import metrics
from tunesmith.evaluate.generation import score


def test_normalise_folds_case_punctuation_and_whitespace() -> None:
    assert metrics.normalise("  Hello,   World! ") == "hello world"
    assert metrics.normalise("Dr. Li 。") == "dr li"
    assert metrics.normalise("ＡＢＣ") == "abc"  # NFKC: full-width letters


def test_exact_match_counts_normalised_equality() -> None:
    preds = ["Paris.", "berlin", "Rome is it", "李明。"]
    refs = ["paris", "Berlin!", "Rome", "李明"]
    assert metrics.exact_match(preds, refs) == 3 / 4
    assert metrics.exact_match([], []) == 0.0


def test_bleu_equals_sacrebleu_on_the_same_strings() -> None:
    preds = ["the cat sat on the mat", "a quick brown fox jumps"]
    refs = ["the cat sat on a mat", "the quick brown fox jumps"]
    expected = sacrebleu.corpus_bleu(preds, [refs], tokenize="13a").score
    assert metrics.bleu(preds, refs, zh=False) == pytest.approx(expected)
    assert 0 < expected < 100


def test_bleu_chinese_uses_the_zh_tokenizer() -> None:
    preds, refs = ["今天天气很好"], ["今天天气不错"]
    zh = sacrebleu.corpus_bleu(preds, [refs], tokenize="zh").score
    assert metrics.bleu(preds, refs, zh=True) == pytest.approx(zh)
    # Unsegmented, the sentence is one "word": 13a gives no credit for the shared characters.
    assert sacrebleu.corpus_bleu(preds, [refs], tokenize="13a").score == 0.0
    assert zh > 0


def test_rouge_english_equals_rouge_score() -> None:
    preds = ["the cat sat on the mat", "hello there"]
    refs = ["the cat was on the mat", "hello world there"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    got = metrics.rouge(preds, refs, zh=False)
    for key in ("rouge1", "rouge2", "rougeL"):
        direct = [scorer.score(r, p)[key].fmeasure for p, r in zip(preds, refs)]
        assert got[key] == pytest.approx(sum(direct) / 2)


def test_rouge_chinese_on_characters_hand_computed() -> None:
    # 我爱北京 vs 我爱上海: 2 of 4 characters shared; bigrams 我爱 of 3; LCS 我爱 = 2.
    got = metrics.rouge(["我爱北京"], ["我爱上海"], zh=True)
    assert got == pytest.approx({"rouge1": 0.5, "rouge2": 1 / 3, "rougeL": 0.5})
    # rouge-score's own tokenizer drops CJK entirely: why the character tokenizer is needed.
    plain = rouge_scorer.RougeScorer(["rouge1"]).score("我爱上海", "我爱北京")["rouge1"]
    assert plain.fmeasure == 0.0


def test_char_tokenizer_splits_cjk_and_keeps_words() -> None:
    assert metrics.CharTokenizer().tokenize("我爱 NLP 模型!") == ["我", "爱", "nlp", "模", "型"]


def test_is_cjk() -> None:
    assert metrics.is_cjk(["你好世界", "hi"])
    assert not metrics.is_cjk(["hello world", "你"])
    assert not metrics.is_cjk([""])


def test_score_records_the_segmentation() -> None:
    scores, details = score(["我爱北京"], ["我爱上海"], "auto")
    assert details["lang"] == "zh" and details["bleu_tokenize"] == "zh"
    assert details["rouge_tokens"].startswith("characters")
    assert scores["rouge1"] == pytest.approx(0.5)
    _, en = score(["a b"], ["a b"], "auto")
    assert en["bleu_tokenize"] == "13a" and en["lang"] == "en"
