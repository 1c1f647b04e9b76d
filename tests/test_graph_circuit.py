"""Circuit pruning: the fewest heads and neurons that carry a share of the target's log-probability increase."""

from __future__ import annotations

import itertools
import random

import pytest

from visit.errors import VisitError
from visit.graph import GraphSettings, build_graph
from visit.graph.circuit import circuit, effective_total, kept_share
from visit.graph.selection import attribution_scores, circuit_selection
from visit.tracer import trace


def brute_force_fewest(scores: dict, goal: float) -> int:
    """The size of the smallest subset of ``scores`` whose sum reaches ``goal`` (exhaustive)."""
    keys = list(scores)
    for size in range(len(keys) + 1):
        if any(sum(scores[k] for k in combo) >= goal for combo in itertools.combinations(keys, size)):
            return size
    raise AssertionError("unreachable goal")


@pytest.mark.parametrize("seed", range(20))
def test_kept_share_reaches_the_threshold_and_nothing_unneeded_is_kept(seed):
    rng = random.Random(seed)
    scores = {f"c{i}": rng.uniform(-2, 3) for i in range(rng.randint(1, 9))}
    share = rng.choice([0.3, 0.5, 0.8, 0.95, 1.0])
    total = rng.choice([None, 0.5 * sum(v for v in scores.values() if v > 0)])
    kept = circuit(scores, share, total)
    goal = share * effective_total(scores, total)
    if goal <= 0:
        assert kept == []
        return
    assert sum(scores[k] for k in kept) >= goal * (1 - 1e-9)  # the threshold is reached
    assert all(scores[k] > 0 for k in kept)  # nothing that lowers the target
    assert len(kept) == brute_force_fewest(scores, goal * (1 - 1e-9))  # no smaller set reaches it
    assert sum(scores[k] for k in kept[:-1]) < goal  # dropping the last kept one falls short
    assert [scores[k] for k in kept] == sorted((scores[k] for k in kept), reverse=True)
    assert kept_share(scores, kept, total) >= share - 1e-9


def test_edge_cases():
    assert circuit({"a": -1.0, "b": 0.0}) == []
    assert circuit({"a": 3.0, "b": 1.0, "c": -2.0, "d": 0.5}, 1.0) == ["a", "b", "d"]
    assert circuit({"a": 3.0, "b": 1.0}, 1.0, total=100.0) == ["a", "b"]  # capped at the positive sum
    with pytest.raises(ValueError):
        circuit({"a": 1.0}, 0)


@pytest.fixture(scope="module")
def traced(tiny_factory):
    return trace(tiny_factory("llama"), "The capital of France is the city of")


def test_circuit_mode_draws_exactly_the_circuit(traced):
    target = int(traced["logits"][traced.position].argmax())
    settings = GraphSettings(prune_by="circuit", circuit_share=0.6).validated(traced.n_layers)
    layers = settings.layers(traced.n_layers)
    heads, neurons, share = circuit_selection(traced, target, layers, 0.6)
    g = build_graph(traced, target, settings).graph
    drawn_heads = {(a["layer"], a["head"]) for _, a in g.nodes(data=True) if a["kind"] == "head"}
    drawn_neurons = {(a["layer"], a["neuron"]) for _, a in g.nodes(data=True) if a["kind"] == "neuron"}
    assert drawn_heads == {(l, h) for l, hs in heads.items() for h in hs}
    assert drawn_neurons == {(l, i) for l, ns in neurons.items() for i in ns}
    assert all(a["role"] == "circuit" for _, a in g.nodes(data=True) if a["kind"] == "neuron")
    head_scores, neuron_scores = attribution_scores(traced, target)
    kept = [float(head_scores[l, h]) for l, h in drawn_heads] + [float(neuron_scores[l, i]) for l, i in drawn_neurons]
    assert all(v > 0 for v in kept) and share >= 0.6 - 1e-6
    more = build_graph(traced, target, GraphSettings(prune_by="circuit", circuit_share=0.95)).graph
    assert more.number_of_nodes() >= g.number_of_nodes()


def test_circuit_share_is_validated():
    for bad in (0, -0.1, 1.5, "x"):
        with pytest.raises(VisitError, match="circuit_share"):
            GraphSettings(prune_by="circuit", circuit_share=bad).validated(3)
