"""Shared fixtures: tiny random models of every supported family, and the real default model.

Tiny models use the default model's tokenizer (the only one on disk offline) and a vocabulary of
its size, so token handling is the real thing.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch

from visit.models import load_model, wrap_model

TINY = dict(d_model=64, n_layers=3, n_heads=4, n_kv_heads=2, d_mlp=96, n_ctx=128)


def tiny_configs(vocab_size: int) -> dict:
    from transformers import (Gemma2Config, Gemma3TextConfig, GemmaConfig, GPT2Config, GPTJConfig, GPTNeoXConfig,
                              LlamaConfig, MistralConfig, MixtralConfig, Olmo2Config, Olmo3Config, Phi3Config, Qwen2Config,
                              Qwen2MoeConfig, Qwen3Config, Qwen3MoeConfig)

    t = TINY
    llama_kw = dict(vocab_size=vocab_size, hidden_size=t["d_model"], intermediate_size=t["d_mlp"],
                    num_hidden_layers=t["n_layers"], num_attention_heads=t["n_heads"],
                    num_key_value_heads=t["n_kv_heads"], max_position_embeddings=t["n_ctx"],
                    tie_word_embeddings=False)
    # Gemma: explicit head_dim; a 4-token sliding window on some layers, so the window is exercised by the prompts
    gemma_kw = dict(llama_kw, head_dim=t["d_model"] // t["n_heads"], query_pre_attn_scalar=t["d_model"] // t["n_heads"])
    sliding = dict(sliding_window=4, layer_types=["sliding_attention", "full_attention", "sliding_attention"])
    # mixtures of experts: 4 experts, 2 chosen per token (so every prompt uses several); 32 neurons each
    moe = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)
    return {
        "olmo2": Olmo2Config(**llama_kw),
        "olmo3": Olmo3Config(**llama_kw, **sliding),
        "mixtral": MixtralConfig(**dict(llama_kw, intermediate_size=32), num_local_experts=4, num_experts_per_tok=2),
        "qwen2_moe": Qwen2MoeConfig(**llama_kw, **moe, shared_expert_intermediate_size=48),
        "qwen3_moe": Qwen3MoeConfig(**llama_kw, **moe, head_dim=t["d_model"] // t["n_heads"]),
        "gemma": GemmaConfig(**gemma_kw),
        "gemma2": Gemma2Config(**gemma_kw, **sliding, final_logit_softcapping=0.3, attn_logit_softcapping=5.0),
        "gemma3": Gemma3TextConfig(**gemma_kw, **sliding),
        "qwen3": Qwen3Config(**llama_kw, head_dim=t["d_model"] // t["n_heads"]),
        "phi3": Phi3Config(**llama_kw, pad_token_id=0),
        "gptj": GPTJConfig(vocab_size=vocab_size, n_embd=t["d_model"], n_layer=t["n_layers"], n_head=t["n_heads"],
                           n_positions=t["n_ctx"], n_inner=t["d_mlp"], rotary_dim=8),
        "gpt2": GPT2Config(vocab_size=vocab_size, n_embd=t["d_model"], n_layer=t["n_layers"], n_head=t["n_heads"],
                           n_positions=t["n_ctx"], n_inner=t["d_mlp"]),
        "llama": LlamaConfig(**llama_kw),
        "mistral": MistralConfig(**llama_kw),
        "qwen2": Qwen2Config(**llama_kw),
        "gpt_neox": GPTNeoXConfig(vocab_size=vocab_size, hidden_size=t["d_model"], intermediate_size=t["d_mlp"],
                                  num_hidden_layers=t["n_layers"], num_attention_heads=t["n_heads"],
                                  max_position_embeddings=t["n_ctx"], rotary_pct=0.5, use_parallel_residual=True),
        "gpt_neox_sequential": GPTNeoXConfig(vocab_size=vocab_size, hidden_size=t["d_model"],
                                             intermediate_size=t["d_mlp"], num_hidden_layers=t["n_layers"],
                                             num_attention_heads=t["n_heads"], max_position_embeddings=t["n_ctx"],
                                             rotary_pct=0.5, use_parallel_residual=False),
    }


FAMILIES = ["gpt2", "llama", "mistral", "qwen2", "gpt_neox", "gpt_neox_sequential"]
# families added for issue 11: tested in tests/test_families.py (exactness, hook points, resume, GGUF) rather
# than through every tiny_model test, to keep the suite lean
MORE_FAMILIES = ["gemma", "gemma2", "gemma3", "qwen3", "gptj", "phi3", "olmo2", "olmo3", "mixtral", "qwen2_moe", "qwen3_moe"]


@pytest.fixture(scope="session")
def tokenizer():
    """The default model's tokenizer, without building the real checkpoint (tests/tokenizer_support.py)."""
    from tokenizer_support import load_test_tokenizer

    return load_test_tokenizer()


def build_tiny(family: str, tokenizer, seed: int = 0):
    """A fresh tiny model: a copy of the one built once per ``(family, seed)`` in this test session (building
    initialises two 49k-row matrices; copying is several times faster). The global RNG is left as building
    leaves it, so a test that draws random numbers after making its model draws the same ones as before."""
    key = (family, seed, id(tokenizer))
    if key not in _PRISTINE:
        model = _build_tiny_model(family, tokenizer, seed)
        _PRISTINE[key] = (model, torch.get_rng_state())
        while len(_PRISTINE) > PRISTINE_KEPT:
            _PRISTINE.popitem(last=False)
    _PRISTINE.move_to_end(key)
    model, rng = _PRISTINE[key]
    torch.set_rng_state(rng)
    return wrap_model(copy.deepcopy(model), tokenizer, f"tiny-{family}")


PRISTINE_KEPT = 8  # ~25 MB each (two 49k x 64 matrices); most calls ask for llama or gpt2 with seed 0
_PRISTINE: OrderedDict[tuple, tuple] = OrderedDict()  # (family, seed, tokenizer) -> (unused model, RNG after it)


def _build_tiny_model(family: str, tokenizer, seed: int):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = tiny_configs(len(tokenizer))[family]
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():  # random biases, so every bias term is exercised by the exactness tests
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0, 0.1)
            elif name.endswith("norm.weight") and not param.any():  # Gemma's (1 + w) norms start at w = 0
                param.normal_(0, 0.3)
            elif family.startswith("olmo") and name.endswith("norm.weight"):  # post-norms and QK-norm, so gains are folded
                param.normal_(1, 0.3)
    return model


@pytest.fixture(scope="session", params=FAMILIES)
def tiny_model(request, tokenizer):
    """A tiny randomly initialised model of each supported family (parametrised)."""
    return build_tiny(request.param, tokenizer)


@pytest.fixture(scope="session")
def tiny_factory(tokenizer):
    """``tiny_factory(family, seed=0)`` builds a fresh tiny model (for tests that edit weights)."""
    return lambda family, seed=0: build_tiny(family, tokenizer, seed)


@pytest.fixture(scope="session")
def default_model():
    """The real embedded default model (SmolLM2-135M-Instruct), loaded once per test session."""
    return load_model()


@pytest.fixture(scope="session")
def gemma_model():
    """The second real model, Gemma-3-270M (``--model gemma3-270m``; its packages come with
    ``scripts/setup.sh --dev``), loaded once per test session."""
    return load_model("gemma3-270m")


@pytest.fixture(scope="session")
def downloads(tmp_path_factory):
    """Where the shared browser saves downloads."""
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def browser(downloads):
    """One headless Chromium for the whole test session (tests/browser_support.py); skips without it."""
    import browser_support

    if not browser_support.available():
        pytest.skip("headless chromium + chromedriver are not installed")
    driver = browser_support.make_driver(downloads)
    yield driver
    driver.quit()
