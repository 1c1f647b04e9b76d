"""Fluency of generated text: CounterFact's generation entropy (GE), as ROME defines it.

A model that an edit broke tends to repeat itself ("Paris Paris Paris ..."). GE measures that without any
reference corpus: split each text into words, count its word bigrams and trigrams, and take the entropy (in bits)
of each n-gram distribution. ROME weights them 2/3 (bigrams) and 4/3 (trigrams) and takes their arithmetic
mean, i.e. ``GE(text) = (2/3 * H2 + 4/3 * H3) / 2 = H2 / 3 + 2 * H3 / 3``; a corpus's GE is the mean over its
texts. ROME's tables print it x 100 (GPT-2 XL ~622); compare a model before and after an edit rather than
across models or generation lengths (longer texts have more distinct n-grams, hence higher entropy).

Words: ROME splits with NLTK's ``word_tokenize``; here a word is a run of letters/digits/underscores/apostrophes
or a single other non-space character (punctuation counts as a word, as in NLTK), which agrees with it on
ordinary English text and needs no extra package. A text with fewer words than ``n`` contributes an entropy of
0 for that ``n`` (ROME's code divides by zero there).

On CounterFact records, :func:`records_fluency` generates greedily (ROME samples ~100 tokens with top-k; greedy
makes the number reproducible, and the cap :data:`visit.limits.NEW_TOKENS` bounds the length) from each record's
``generation_prompts`` -- or, for records without them (the shipped set), from its rewrite prompt and
paraphrases -- on the model as the calling thread sees it (inside an edit's ``weights_changed`` block: the edited
model), and returns the GE of those continuations. It has the signature ``visit.editing.modes`` expects of its
``fluency`` callable.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

from visit.generation.generate import generate

WORD = re.compile(r"[\w']+|[^\w\s]")
NS = (2, 3)
WEIGHTS = (2 / 3, 4 / 3)


def words(text: str) -> list[str]:
    """The words of ``text`` (see the module doc)."""
    return WORD.findall(text)


def ngram_entropy(tokens: Sequence[str], n: int) -> float:
    """Entropy in bits of the distribution of ``tokens``' n-grams (0 with no n-gram)."""
    counts = Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


def text_entropy(text: str) -> float:
    """GE of one text: the mean of ``2/3 * H2`` and ``4/3 * H3`` (bits)."""
    tokens = words(text)
    weighted = [w * ngram_entropy(tokens, n) for n, w in zip(NS, WEIGHTS)]
    return sum(weighted) / len(weighted)


def generation_entropy(texts: Sequence[str]) -> float:
    """CounterFact's fluency metric GE: the mean of :func:`text_entropy` over ``texts`` (bits; NaN for none)."""
    texts = list(texts)
    return sum(text_entropy(t) for t in texts) / len(texts) if texts else float("nan")


FLUENCY_TOKENS = 32  # new tokens per generation prompt (ROME: 100; at most VISIT_MAX_NEW_TOKENS)


def record_prompts(record) -> list[str]:
    """A CounterFact record's generation prompts (``generation_prompts``), else its rewrite prompt and
    paraphrases (a :class:`visit.editing.counterfact.Record` or anything with those attributes)."""
    prompts = list(getattr(record, "generation_prompts", None) or ())
    if not prompts:
        prompts = [record.request.prompt, *getattr(record, "paraphrases", ())]
    return prompts


def continuations(vm, prompts: Sequence[str], max_new_tokens: int = FLUENCY_TOKENS) -> list[str]:
    """The greedy continuation (text only) of each prompt, on the weights the calling thread sees."""
    return [generate(vm, p, max_new_tokens).text for p in prompts]


def records_fluency(vm, records: Sequence, max_new_tokens: int = FLUENCY_TOKENS) -> float | None:
    """GE of the greedy continuations of every record's generation prompts (:func:`record_prompts`); None when
    there is no prompt."""
    prompts = [p for r in records for p in record_prompts(r)]
    return generation_entropy(continuations(vm, prompts, max_new_tokens)) if prompts else None


__all__ = ["records_fluency", "record_prompts", "continuations", "FLUENCY_TOKENS", "generation_entropy",
           "text_entropy", "ngram_entropy", "words"]
