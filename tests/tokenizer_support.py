"""The tokenizer the tiny test models use, without the real checkpoint.

Tiny random models need only the default model's tokenizer (its vocabulary makes token handling the real
thing), not its 540 MB of weights. This loads it from the fp32 checkpoint when that is cached already, and
otherwise reads just the tokenizer from the shipped GGUF (no weights are dequantised) and caches it in
``$VISIT_CACHE_DIR/smollm2-tokenizer`` (3.5 MB), so the fast test tier runs on a fresh clone without
building the real checkpoint.
"""

from __future__ import annotations

from pathlib import Path


def cached_checkpoint_tokenizer(cache: Path) -> Path | None:
    """A cached fp32 default checkpoint's directory, when one holds a tokenizer already."""
    found = sorted(cache.glob("SmolLM2*/tokenizer.json"))
    return found[0].parent if found else None


def test_tokenizer_dir() -> Path:
    from visit.models.loading import _smollm2_gguf, cache_dir

    cache = cache_dir()
    existing = cached_checkpoint_tokenizer(cache)
    if existing is not None:
        return existing
    target = cache / "smollm2-tokenizer"
    if not (target / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        gguf = _smollm2_gguf()
        tmp = target.with_name(target.name + ".tmp")
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
        tmp.rename(target)
    return target


def load_test_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(test_tokenizer_dir())
