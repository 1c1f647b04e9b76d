import torch

from visit.lens import LogitLens
from visit.tracer import trace


def test_lens_modes_match_manual_projection(tiny_model):
    tr = trace(tiny_model, "The Eiffel Tower is in")
    lens = LogitLens.for_trace(tr)
    w = tiny_model.weights
    x = torch.stack([tr.resid(l, "mid") for l in range(tiny_model.dims.n_layers)])
    b_U = 0 if w.b_U is None else w.b_U
    expected = {
        "renorm": w.final_norm.apply(x) @ w.W_U + b_U,
        "frozen": w.final_norm.apply(x, scale=tr["ln_final.hook_scale"][tr.position]) @ w.W_U + b_U,
        "raw": x @ w.W_U + b_U,
    }
    for mode, logits in expected.items():
        torch.testing.assert_close(lens.logits(x, mode), logits, rtol=1e-5, atol=1e-5)
        res = lens.project(x, mode=mode, k=5, target=42)
        probs = logits.softmax(-1)
        torch.testing.assert_close(res.top_probs, probs.topk(5).values, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(res.bottom_probs, probs.topk(5, largest=False).values, rtol=1e-4, atol=1e-9)
        torch.testing.assert_close(res.target_prob, probs[:, 42], rtol=1e-5, atol=1e-9)
        # ranks from the lens's own logits: two matmul kernels may order fp32 near-ties differently
        ranks = [int((row > row[42]).sum()) + 1 for row in lens.logits(x, mode)]
        assert res.target_rank.tolist() == ranks
        entropy = -(probs * probs.log()).sum(-1)
        torch.testing.assert_close(res.entropy, entropy, rtol=1e-4, atol=1e-5)


def test_frozen_lens_is_additive(tiny_model):
    """Under the frozen norm, the logits of parts (minus the bias) sum to the logits of the whole."""
    tr = trace(tiny_model, "The Eiffel Tower is in")
    lens = LogitLens.for_trace(tr)
    layer = 1
    parts = torch.cat([tr.resid(layer, "pre").unsqueeze(0), tr[f"blocks.{layer}.hook_attn_out"][tr.position][None]])
    whole = parts.sum(0, keepdim=True)
    offset = lens.logits(torch.zeros_like(whole), "frozen")  # the norm's and unembedding's biases, counted once
    torch.testing.assert_close(lens.logits(parts, "frozen").sum(0, keepdim=True) - offset,
                               lens.logits(whole, "frozen"), rtol=1e-4, atol=1e-4)


def test_chunking_does_not_change_results(tiny_model):
    tr = trace(tiny_model, "The Eiffel Tower is in")
    x = torch.stack([tr.resid(l, w) for l in range(tiny_model.dims.n_layers) for w in ("pre", "mid", "post")])
    a = LogitLens.for_trace(tr, chunk_size=2).project(x, k=3, target=7)
    b = LogitLens.for_trace(tr, chunk_size=1000).project(x, k=3, target=7)
    assert torch.equal(a.top_ids, b.top_ids)
    torch.testing.assert_close(a.entropy, b.entropy)
