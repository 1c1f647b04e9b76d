"""KN-E and CNE: the value-vector update on both weight layouts, and both editors end to end on tiny models."""

import pytest
import torch

from visit.editing import Edit, EditRequest, EditStack
from visit.editing.kn_edit import causal_neurons, cne_edit, kn_edit, neuron_deltas
from visit.editing.request import object_ids
from visit.errors import VisitError

REQ = EditRequest("The capital of {} is", "France", "Rome", old="Paris")


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("scale", ["norm", "raw"])
def test_value_vectors_move_from_old_to_new_embedding(tiny_factory, family, scale):
    vm = tiny_factory(family)
    old, new = object_ids(vm.tokenizer, "Paris")[0], object_ids(vm.tokenizer, "Rome")[0]
    before = vm.weights.W_out(1).clone()
    deltas = neuron_deltas(vm, [(1, 5), (1, 7)], old, new, scale=scale)
    with EditStack([Edit("kn", REQ, 1, deltas)]).applied(vm):
        after = vm.weights.W_out(1).clone()
    changed = (after - before).abs().sum(1) > 0
    assert changed.nonzero().flatten().tolist() == [5, 7]  # only those neurons' value vectors
    W_U = vm.weights.W_U
    t_old, t_new = W_U[:, old], W_U[:, new]
    if scale == "norm":
        n = before[5].norm()
        t_old, t_new = t_old * n / t_old.norm(), t_new * n / t_new.norm()
    torch.testing.assert_close(after[5] - before[5], -t_old + 8 * t_new, atol=1e-5, rtol=1e-5)


def test_kn_edit_uses_the_refined_neurons(tiny_factory):
    """Exactly the refined neurons' value vectors change. The inputs are chosen so that the refined set is not
    empty (on this tiny model the two prompts share 3 neurons at the default threshold): an empty set would
    leave nothing to check."""
    from visit.localization.knowledge_neurons import knowledge_neurons
    from visit.tokens import target_from_id

    vm = tiny_factory("llama")
    paraphrases = ["France's capital is"]
    edit = kn_edit(vm, REQ, paraphrases=paraphrases, steps=4)
    rows = {(n["layer"], n["neuron"]) for n in edit.info["neurons"]}
    assert rows and edit.info["n_neurons"] == len(edit.info["neurons"]) == len(rows)
    paris = target_from_id(vm.tokenizer, object_ids(vm.tokenizer, "Paris")[0])
    kn = knowledge_neurons(vm, REQ.prompt, paris, paraphrases=paraphrases, steps=4, unrelated=(), compare=False)
    assert rows == {(n.layer, n.neuron) for n in kn.refined}
    touched = set()
    for name, delta in edit.deltas.items():
        layer = int(name.split(".")[2])
        per_neuron = (delta.T if vm.adapter.weight_layout == "linear" else delta).abs().sum(1)  # [d_mlp]
        touched |= {(layer, int(i)) for i in per_neuron.nonzero().flatten()}
    assert touched == rows


def test_cne_edits_the_neuron_of_the_strongest_mlp_state(tiny_factory):
    vm = tiny_factory("gpt2")
    found = causal_neurons(vm, REQ.prompt, REQ.subject, object_ids(vm.tokenizer, "Paris")[0], top=2, samples=3)
    assert len(found["neurons"]) == 2 and all(n["layer"] == found["layer"] for n in found["neurons"])
    edit = cne_edit(vm, REQ, samples=3)
    assert edit.layer == found["layer"] and edit.info["neurons"][0] == found["neurons"][0]
    EditStack().push(vm, edit)


def test_kn_methods_need_the_old_object(tiny_factory):
    vm = tiny_factory("gpt2")
    with pytest.raises(VisitError, match="old object"):
        kn_edit(vm, EditRequest("The capital of {} is", "France", "Rome"))
    with pytest.raises(VisitError, match="scaling"):
        neuron_deltas(vm, [(0, 1)], 5, 6, scale="odd")
