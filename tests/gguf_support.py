"""Write small GGUF files for tests: a tiny random Llama in llama.cpp's layout with a byte-level BPE tokenizer
of 257 tokens and one merge (a complete file for transformers' GGUF loader, converted in about a second)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

LLAMA_NAMES = {  # Hugging Face name (per block after "model.layers.{i}.") -> llama.cpp name
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode alphabet: the 256 tokens of a byte-level BPE without merges."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_llama_gguf(model, path: Path, architecture: str = "llama") -> Path:
    """``model``: a Hugging Face Llama (tied or untied embeddings). Tensors are written in fp32 as stored (no
    q/k permutation: the loader's inverse permutation only gives another random model, traced as it is)."""
    import gguf

    c = model.config
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-random-llama")
    writer.add_block_count(c.num_hidden_layers)
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(c.vocab_size)
    tokens = byte_tokens() + ["Ġt"]  # one merge: the loader wants some
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * len(tokens))
    writer.add_token_merges(["Ġ t"])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    if "lm_head.weight" in state and not c.tie_word_embeddings:
        writer.add_tensor("output.weight", state["lm_head.weight"])
    for i in range(c.num_hidden_layers):
        for hf, cpp in LLAMA_NAMES.items():
            writer.add_tensor(f"blk.{i}.{cpp}", np.ascontiguousarray(state[f"model.layers.{i}.{hf}"]))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tiny_llama(vocab_size: int = 257, seed: int = 0):
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=False)
    return AutoModelForCausalLM.from_config(config, attn_implementation="eager")
