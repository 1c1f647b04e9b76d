"""CounterFact's generation entropy (GE), checked against ROME's formula written out independently."""

import math
from collections import Counter

import numpy as np
import pytest

from visit.generation.fluency import generation_entropy, ngram_entropy, text_entropy, words


def rome_style(text: str) -> float:
    """ROME's compute_n_gram_entropy (ns=[2, 3], weights=[2/3, 4/3], arithmetic mean) over our words."""
    toks = words(text)
    ents = []
    for n in (2, 3):
        freqs = np.array(list(Counter(zip(*[toks[i:] for i in range(n)])).values()), dtype=float)
        freqs /= freqs.sum()
        ents.append(np.sum(-freqs * np.log(freqs) / np.log(2)))
    return float(np.mean(np.array(ents) * np.array([2 / 3, 4 / 3])))


TEXTS = ["The Eiffel Tower is in Paris, France. It was built in 1889 for the World's Fair.",
         "Paris Paris Paris Paris Paris Paris Paris Paris",
         "a b c d"]


@pytest.mark.parametrize("text", TEXTS)
def test_text_entropy_is_romes_formula(text):
    assert text_entropy(text) == pytest.approx(rome_style(text), abs=1e-12)


def test_small_case_by_hand():
    # 4 words: 3 distinct bigrams, 2 distinct trigrams
    assert ngram_entropy(["a", "b", "c", "d"], 2) == pytest.approx(math.log2(3))
    assert text_entropy("a b c d") == pytest.approx((2 / 3 * math.log2(3) + 4 / 3 * 1.0) / 2)


def test_repetition_lowers_fluency_and_corpus_is_the_mean():
    assert text_entropy(TEXTS[1]) == 0.0  # one bigram, one trigram
    assert text_entropy(TEXTS[0]) > 3
    assert generation_entropy(TEXTS) == pytest.approx(sum(map(text_entropy, TEXTS)) / 3)
    assert text_entropy("") == 0.0 and text_entropy("one") == 0.0
    assert math.isnan(generation_entropy([]))


def test_punctuation_counts_as_words():
    assert words("Paris, France.") == ["Paris", ",", "France", "."]
