"""Declarative architecture adapters.

An adapter says where things live in a Hugging Face model and how its weights are laid out; all
family-specific knowledge is here and nowhere else. Module paths of the per-layer fields are relative
to one block (``transformer.h[i]``, ``model.layers[i]``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from visit.errors import VisitError


@dataclass(frozen=True)
class MoeLayout:
    """Where a mixture-of-experts MLP keeps its parts (paths relative to one block; sizes are config attributes).

    The router module maps ``x [tokens, d_model]`` to ``(logits [tokens, E], weights [tokens, k], indices
    [tokens, k])``: the experts it chose and their weights. The experts module holds fused 3-D parameters
    ``gate_up_proj [E, 2 * d_expert, d_model]`` ([gate | up]) and ``down_proj [E, d_model, d_expert]`` and an
    ``act_fn``. An optional shared expert (Qwen2-MoE) is a gated MLP (``gate_proj``, ``up_proj``, ``down_proj``,
    ``act_fn``) added to every position, times ``sigmoid(shared_gate(x))`` when ``shared_gate`` is set.
    The maths (neurons, coefficients, hook views) is in :mod:`visit.models.moe`.
    """

    router: str
    experts: str
    n_experts: str
    d_expert: str
    shared: str = ""
    shared_gate: str = ""
    d_shared: str = ""


@dataclass(frozen=True)
class ArchAdapter:
    family: str
    model_types: tuple[str, ...]
    blocks: str  # ModuleList of the transformer blocks
    final_norm: str  # the unembedding is found with get_output_embeddings()
    embed: str
    ln1: str  # the norm before the attention; "" when there is none (OLMo 2: its hook points are the identity)
    ln2: str  # the norm before the MLP; "" when there is none
    attn: str  # the attention module; with eager attention it returns (output, pattern)
    qkv: tuple[str, ...]  # one fused projection or (q, k, v)
    qkv_layout: str  # "separate" | "fused_qkv_blocks" ([q: H*dh | k: KV*dh | v: KV*dh], GPT-2, Phi-3)
    #                  | "fused_per_head" ([H, 3, dh], NeoX)
    attn_out: str  # W_O projection; its input is z
    mlp: str
    mlp_in: tuple[str, ...]  # (fc1,) or (gate, up)
    mlp_out: str  # W_out projection; its input is the neuron coefficients
    weight_layout: str  # "conv1d" ([in, out]) or "linear" ([out, in])
    norm_kind: str  # "layernorm" | "rmsnorm"
    mlp_kind: str  # "plain" | "gated" (act(gate) * up)
    parallel: bool | str = False  # True, False, or a config attribute that decides
    # "sandwich" norms (Gemma 2/3): a norm on the attention's / the MLP's output before it joins the residual
    ln1_post: str = ""
    ln2_post: str = ""
    norm_offset: float = 0.0  # the norm multiplies by (offset + weight): Gemma stores weight - 1
    logit_softcap: str = ""  # config attribute: logits = cap * tanh(logits / cap) when set (Gemma 2)
    embed_scale: str = ""  # "sqrt_d_model": the model multiplies hook_embed by sqrt(d_model) after the module (Gemma)
    mlp_in_fused: bool = False  # one projection outputs [gate | up] (Phi-3); mlp_in names it twice
    # a mixture of experts (Mixtral, Qwen-MoE): mlp_in/mlp_out name the experts module, and the neurons are every
    # expert's neurons in one flat index (expert e's neuron i is e * d_expert + i, the shared expert's last)
    moe: MoeLayout | None = None

    def is_parallel(self, config) -> bool:
        if isinstance(self.parallel, str):
            return bool(getattr(config, self.parallel, True))
        return self.parallel


GPT2 = ArchAdapter(
    family="gpt2",
    model_types=("gpt2",),
    blocks="transformer.h",
    final_norm="transformer.ln_f",
    embed="transformer.wte",
    ln1="ln_1",
    ln2="ln_2",
    attn="attn",
    qkv=("attn.c_attn",),
    qkv_layout="fused_qkv_blocks",
    attn_out="attn.c_proj",
    mlp="mlp",
    mlp_in=("mlp.c_fc",),
    mlp_out="mlp.c_proj",
    weight_layout="conv1d",
    norm_kind="layernorm",
    mlp_kind="plain",
)

LLAMA = ArchAdapter(
    family="llama",
    model_types=("llama", "mistral", "qwen2", "qwen3"),  # Qwen3's QK-norm is inside the attention (after hook_q/k)
    blocks="model.layers",
    final_norm="model.norm",
    embed="model.embed_tokens",
    ln1="input_layernorm",
    ln2="post_attention_layernorm",
    attn="self_attn",
    qkv=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    qkv_layout="separate",
    attn_out="self_attn.o_proj",
    mlp="mlp",
    mlp_in=("mlp.gate_proj", "mlp.up_proj"),
    mlp_out="mlp.down_proj",
    weight_layout="linear",
    norm_kind="rmsnorm",
    mlp_kind="gated",
)

GPT_NEOX = ArchAdapter(
    family="gpt_neox",
    model_types=("gpt_neox",),
    blocks="gpt_neox.layers",
    final_norm="gpt_neox.final_layer_norm",
    embed="gpt_neox.embed_in",
    ln1="input_layernorm",
    ln2="post_attention_layernorm",
    attn="attention",
    qkv=("attention.query_key_value",),
    qkv_layout="fused_per_head",
    attn_out="attention.dense",
    mlp="mlp",
    mlp_in=("mlp.dense_h_to_4h",),
    mlp_out="mlp.dense_4h_to_h",
    weight_layout="linear",
    norm_kind="layernorm",
    mlp_kind="plain",
    parallel="use_parallel_residual",
)

GEMMA = replace(  # Gemma 1: Llama's layout, RMSNorm with (1 + weight), GeGLU, embeddings x sqrt(d_model)
    LLAMA, family="gemma", model_types=("gemma",), norm_offset=1.0, embed_scale="sqrt_d_model")

# Gemma 2 and 3: sandwich norms (ln1 -> attention -> ln1_post -> +residual; ln2 -> MLP -> ln2_post -> +residual),
# Gemma 2's final logit soft-capping; Gemma 3's QK-norm lives inside the attention (hook_q/k are read before it)
GEMMA2 = replace(
    GEMMA,
    family="gemma2",
    model_types=("gemma2", "gemma3_text"),
    ln2="pre_feedforward_layernorm",
    ln1_post="post_attention_layernorm",
    ln2_post="post_feedforward_layernorm",
    logit_softcap="final_logit_softcapping",
)

GPTJ = ArchAdapter(  # parallel block with ONE norm read by both the attention and the MLP (ln1 and ln2 alike)
    family="gptj",
    model_types=("gptj",),
    blocks="transformer.h",
    final_norm="transformer.ln_f",
    embed="transformer.wte",
    ln1="ln_1",
    ln2="ln_1",
    attn="attn",
    qkv=("attn.q_proj", "attn.k_proj", "attn.v_proj"),
    qkv_layout="separate",
    attn_out="attn.out_proj",
    mlp="mlp",
    mlp_in=("mlp.fc_in",),
    mlp_out="mlp.fc_out",
    weight_layout="linear",
    norm_kind="layernorm",
    mlp_kind="plain",
    parallel=True,
)

PHI3 = replace(  # Llama's block with fused projections: qkv_proj [q | k | v] (GQA sizes), gate_up_proj
    LLAMA,
    family="phi3",
    model_types=("phi3",),
    qkv=("self_attn.qkv_proj",),
    qkv_layout="fused_qkv_blocks",
    mlp_in=("mlp.gate_up_proj", "mlp.gate_up_proj"),
    mlp_in_fused=True,
)

OLMO2 = replace(  # no norm before the attention or the MLP, one after each (the sandwich's second half);
    # QK-norm over the whole q/k projections lives inside the attention (hook_q/k are read before it)
    LLAMA,
    family="olmo2",
    model_types=("olmo2", "olmo3"),  # OLMo 3: OLMo 2's block with sliding-window layers
    ln1="",
    ln2="",
    ln1_post="post_attention_layernorm",
    ln2_post="post_feedforward_layernorm",
)


def _moe(family: str, model_types: tuple[str, ...], moe: MoeLayout) -> ArchAdapter:
    """Llama's block with a mixture-of-experts MLP (Mixtral, Qwen2-MoE, Qwen3-MoE: QK-norm inside the attention)."""
    return replace(LLAMA, family=family, model_types=model_types, mlp_in=(moe.experts, moe.experts),
                   mlp_out=moe.experts, moe=moe)


MIXTRAL = _moe("mixtral", ("mixtral",), MoeLayout(router="mlp.gate", experts="mlp.experts",
                                                   n_experts="num_local_experts", d_expert="intermediate_size"))
QWEN_MOE = _moe("qwen_moe", ("qwen2_moe",), MoeLayout(
    router="mlp.gate", experts="mlp.experts", n_experts="num_experts", d_expert="moe_intermediate_size",
    shared="mlp.shared_expert", shared_gate="mlp.shared_expert_gate", d_shared="shared_expert_intermediate_size"))
QWEN3_MOE = _moe("qwen3_moe", ("qwen3_moe",), MoeLayout(router="mlp.gate", experts="mlp.experts",
                                                        n_experts="num_experts", d_expert="moe_intermediate_size"))

ADAPTERS: tuple[ArchAdapter, ...] = (GPT2, LLAMA, GPT_NEOX, GEMMA, GEMMA2, GPTJ, PHI3, OLMO2, MIXTRAL, QWEN_MOE,
                                     QWEN3_MOE)


def supported_model_types() -> list[str]:
    return sorted(t for a in ADAPTERS for t in a.model_types)


def adapter_for(model_type: str) -> ArchAdapter:
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    raise VisitError(
        f"architecture '{model_type}' is not supported; supported model types: {', '.join(supported_model_types())}"
    )
