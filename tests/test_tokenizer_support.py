"""The tiny models' tokenizer read from the GGUF alone equals the real checkpoint's tokenizer."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_gguf_tokenizer_matches_the_checkpoint(tmp_path, monkeypatch):
    from hostile import hostile_strings
    from tokenizer_support import load_test_tokenizer
    from transformers import AutoTokenizer

    from visit.models.loading import default_checkpoint

    real = AutoTokenizer.from_pretrained(default_checkpoint())
    monkeypatch.setenv("VISIT_CACHE_DIR", str(tmp_path))  # no checkpoint here: the GGUF route
    fresh = load_test_tokenizer()
    assert (tmp_path / "smollm2-tokenizer" / "tokenizer.json").exists()
    assert not list(tmp_path.glob("*.safetensors")) and not list(tmp_path.glob("*/*.safetensors"))
    assert len(fresh) == len(real) and fresh.eos_token_id == real.eos_token_id
    for text in ["The capital of France is", " Paris", "東京 👩‍💻", *hostile_strings()]:
        assert fresh(text).input_ids == real(text).input_ids, text
        ids = real(text).input_ids
        assert fresh.convert_ids_to_tokens(ids) == real.convert_ids_to_tokens(ids)
