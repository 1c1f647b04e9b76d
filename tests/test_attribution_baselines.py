"""The attribution methods' registry (visit.attribution.baselines): one record per method, ids from the
registry's order (a ninth method gets one), a new record is scored like the built-in ones."""

from __future__ import annotations

import pytest
import torch

from visit.attribution.baselines import (METHOD_IDS, METHOD_LABELS, METHODS, PROJECTED, REGISTRY, AttributionMethod,
                                         MethodRegistry, ffn_method_scores, letter_id)
from visit.tracer import trace

PROMPT = "The capital of France is the city of"
TARGET = 7042


@pytest.fixture(scope="module")
def traced(tiny_factory):
    return trace(tiny_factory("gpt2", seed=3), PROMPT)


def test_table_two_ids_labels_and_projection_are_unchanged():
    # Yu & Ananiadou's Table 2 letters: reports and the app's dropdown name methods by them
    assert METHOD_IDS == dict(zip(METHODS, "abcdefgh"))
    assert METHODS == ("logp_increase", "logp", "prob_increase", "norm", "coefficient", "inv_rank", "coef_norm",
                       "coef_inv_rank")
    assert set(PROJECTED) == {"logp_increase", "logp", "prob_increase", "inv_rank", "coef_inv_rank"}
    assert REGISTRY.title("coef_norm") == f"g) {METHOD_LABELS['coef_norm']}" == "g) |m|*|v|"


def test_every_method_record_is_complete():
    for m in REGISTRY:
        assert m.name and m.label and callable(m.score)
        assert m.needs <= {"imp", "logp", "inv_rank"}
        assert m.projected == bool(m.needs)


def test_a_ninth_method_gets_an_id_and_is_scored(traced):
    ninth = AttributionMethod("coef_logp", "|m|*log prob", frozenset({"logp"}), lambda p: p.coeff.abs() * p.logp)
    registry = MethodRegistry((*REGISTRY, ninth))
    assert registry.ids["coef_logp"] == "i" and registry.title("coef_logp") == "i) |m|*log prob"
    assert {k: v for k, v in registry.ids.items() if k != "coef_logp"} == METHOD_IDS  # the others keep theirs
    s = ffn_method_scores(traced, TARGET, methods=("coef_logp", "coefficient", "logp"), registry=registry)
    assert s["coef_logp"].shape == (traced.n_layers, traced.vm.dims.d_mlp)
    torch.testing.assert_close(s["coef_logp"], s["coefficient"] * s["logp"])
    assert s["coef_logp"].abs().sum() > 0
    with pytest.raises(ValueError, match="unknown method"):
        ffn_method_scores(traced, TARGET, methods=("coef_logp",))  # not in the shipped registry


def test_ids_go_on_past_z():
    assert [letter_id(i) for i in (0, 7, 8, 25, 26, 27, 51, 52)] == ["a", "h", "i", "z", "aa", "ab", "az", "ba"]
    many = MethodRegistry(AttributionMethod(f"m{i}", f"m{i}", frozenset(), lambda p: p.norm) for i in range(30))
    assert len(set(many.ids.values())) == 30


def test_bad_registries_and_names_fail_clearly():
    with pytest.raises(ValueError, match="share a name"):
        MethodRegistry((*REGISTRY, REGISTRY.get("norm")))
    with pytest.raises(ValueError, match="unknown method"):
        REGISTRY.get("nope")


def test_subset_scores_equal_full_run(traced):
    """Asking for one method computes only its pieces, and gives what the full run gives."""
    full = ffn_method_scores(traced, TARGET)
    for name in ("prob_increase", "coef_inv_rank", "coef_norm"):
        torch.testing.assert_close(ffn_method_scores(traced, TARGET, methods=(name,))[name], full[name])
