"""Steering specs: parsed into the right hook writes, equal to the existing ablation when they zero a head, the
residual directions mean what the doc says, bad specs fail with one line, and nothing is left behind."""

import pytest
import torch

from visit.attribution.intervention import Component, final_log_probs
from visit.errors import VisitError
from visit.generation.generate import generate
from visit.generation.steer import parse, steering
from visit.hooks import run

PROMPT = "The Eiffel Tower is in the city of"


@pytest.fixture(scope="module")
def vm(tiny_factory):
    return tiny_factory("llama")


@pytest.fixture(scope="module")
def ids(vm):
    return vm.tokenizer(PROMPT).input_ids


def test_specs_parse_to_hook_points_and_operations(vm):
    s = parse(vm, "L2.N17=x5")
    assert (s.op, s.value, s.positions) == ("scale", 5.0, "all")
    assert [(n.id, n.name, n.index) for n in s.nodes] == [("L2.N17", "blocks.2.mlp.hook_post", (17,))]
    s = parse(vm, " L1.H3 , L0.H1 *= 0.5 @ 2-4, 7 ")
    assert [n.index for n in s.nodes] == [(3,), (1,)] and s.op == "scale" and s.positions == (2, 3, 4, 7)
    assert parse(vm, "L1.H3=0").op == "replace" and parse(vm, "L1.H3=0").value == 0.0
    assert parse(vm, "L1.N3 -= 2 @ gen").value == -2.0 and parse(vm, "L1.N3 -= 2 @ gen").positions == "gen"
    wo = parse(vm, f"L1.WO{vm.dims.d_head + 2}=0").nodes[0]
    assert wo.index == (1, 2)
    s = parse(vm, "resid L2 += 4 * dir(L0.N3)")
    assert s.nodes[0].name == "blocks.2.hook_resid_pre" and s.op == "add"
    torch.testing.assert_close(s.value, 4 * vm.weights.W_out(0)[3].float())
    s = parse(vm, "L2.resid_post -= dir(\" Paris\")")
    paris = vm.tokenizer(" Paris", add_special_tokens=False).input_ids[0]
    torch.testing.assert_close(s.value, -vm.weights.W_U[:, paris])


@pytest.mark.parametrize("spec, message", [
    ("", "empty"), ("Paris", "names no node"), ("L1.H2", "names no node"), ("L1.Q2=0", "names no node"),
    ("L9.H1=0", "layer 9 is out of range"), ("L1.H4=0", "out of range"), ("L1.N96=x2", "out of range"),
    ("L1.N5=xnan", "finite"), ("L1.N5 += inf", "finite"), ("L1.N5=xabc", "not a number"),
    ("L1.N5 += dir(L0.N1)", "residual-stream node"), ("L1.resid_mid=0", "names no node"),
    ("L1.N5=0 @ soon", "positions"), ("resid L1 += dir(L0.Q1)", "not a steerable node id"),
])
def test_bad_specs_are_one_line_errors(vm, ids, spec, message):
    with pytest.raises(VisitError, match=message) as info:
        steering(vm, [spec], ids)
    assert "\n" not in str(info.value)


def test_zero_scaled_head_equals_the_ablation(vm, ids):
    last = len(ids) - 1
    s = steering(vm, [f"L1.H2=x0 @ {last}"], ids)
    logits, _ = run(vm, torch.tensor([ids]), write=s.writes(0, len(ids)))
    ablated = final_log_probs(vm, ids, last, [Component("head", 1, 2)])
    torch.testing.assert_close(logits[0, last].float().log_softmax(-1), ablated)
    clean = final_log_probs(vm, ids, last)
    assert not torch.allclose(clean, ablated)  # the head matters on this prompt
    g = generate(vm, PROMPT, 1, writes=s.writes)
    assert g.tokens[0].id == int(ablated.argmax())
    assert g.tokens[0].p == pytest.approx(float(ablated.max().exp()), rel=1e-4)


def test_a_neurons_direction_is_the_neuron_firing_higher(vm, ids):
    """Adding 3 x dir(L1.N5) to the residual entering layer 2 = neuron L1.N5's coefficient raised by 3."""
    n = len(ids)
    a = steering(vm, ["resid L2 += 3 * dir(L1.N5) @ gen"], ids)
    b = steering(vm, ["L1.N5 += 3 @ gen"], ids)
    la, _ = run(vm, torch.tensor([ids]), write=a.writes(0, n))
    lb, _ = run(vm, torch.tensor([ids]), write=b.writes(0, n))
    plain, _ = run(vm, torch.tensor([ids]))
    torch.testing.assert_close(la, lb, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(la[0, :-1], plain[0, :-1])  # @ gen: only the prompt's last position and on
    assert not torch.allclose(la[0, -1], plain[0, -1])


def test_steering_changes_generation_and_is_undone(vm, ids):
    weights = {k: v.detach().clone() for k, v in vm.model.state_dict().items()}
    plain = generate(vm, PROMPT, 5)
    steered = generate(vm, PROMPT, 5, writes=steering(vm, ["L2.resid_pre += 20 * dir(\" Paris\")"], ids).writes)
    assert steered.ids != plain.ids
    with pytest.raises(VisitError, match="NaN or infinite"):  # float32 overflows: stops mid-way, cleanly
        generate(vm, PROMPT, 5, writes=steering(vm, ["L1.resid_pre=x1e39"], ids).writes)
    assert all(torch.equal(v, weights[k]) for k, v in vm.model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in vm.model.modules())
    assert generate(vm, PROMPT, 5).ids == plain.ids
