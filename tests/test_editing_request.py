"""Edit requests: validation of bad input, subject positions, object tokens."""

import pytest

from visit.editing.request import EditRequest, check_against_model, from_prompt, object_ids, subject_last_token
from visit.errors import VisitError


def test_template_needs_one_placeholder():
    with pytest.raises(VisitError, match="exactly one"):
        EditRequest("The capital of France is", "France", "Rome")
    with pytest.raises(VisitError, match="exactly one"):
        EditRequest("{} and {} are", "France", "Rome")
    with pytest.raises(VisitError, match="besides the subject"):
        EditRequest("{}", "France", "Rome")


@pytest.mark.parametrize("kwargs, message", [
    (dict(template="The capital of {} is", subject="", new="Rome"), "subject is empty"),
    (dict(template="The capital of {} is", subject="France", new="  "), "new object is empty"),
    (dict(template="The capital of {} is", subject="France", new="Paris", old=" paris"), "same as the old"),
    (dict(template="The capital of {} is", subject=" France", new="Rome"), "leading or trailing"),
])
def test_bad_requests_say_why(kwargs, message):
    with pytest.raises(VisitError, match=message):
        EditRequest(**kwargs)


def test_from_prompt_puts_the_placeholder_where_the_subject_is():
    req = from_prompt("The capital of France is", "France", "Rome")
    assert req.template == "The capital of {} is" and req.prompt == "The capital of France is"
    assert req.subject_span == (15, 21)
    with pytest.raises(VisitError, match="does not occur"):
        from_prompt("The capital of France is", "Germany", "Rome")


def test_braces_in_the_template_are_kept(tokenizer):
    req = EditRequest("{} {{really}} is in", "Rome", "Paris")
    assert req.prompt == "Rome {{really}} is in"


def test_subject_last_token_by_offsets(tokenizer):
    text = "Some text. The Eiffel Tower is in"
    start = text.index("Eiffel Tower")
    ids, last = subject_last_token(tokenizer, text, (start, start + len("Eiffel Tower")))
    assert tokenizer.decode(ids[last]).strip() == "Tower"


def test_object_ids_have_a_leading_space(tokenizer):
    assert object_ids(tokenizer, "Paris") == object_ids(tokenizer, " Paris")
    assert tokenizer.decode(object_ids(tokenizer, "Paris")) == " Paris"


def test_new_object_the_model_already_predicts_is_refused(tiny_factory):
    import torch

    from visit.hooks import run, weights_changed

    vm = tiny_factory("llama")  # untied output embedding
    req = EditRequest("The capital of {} is", "France", "Rome")
    check_against_model(vm, req)  # a random model does not predict " Rome"
    _, rec = run(vm, torch.tensor([vm.tokenizer(req.prompt).input_ids]), read=["ln_final.hook_out"])
    rome = object_ids(vm.tokenizer, "Rome")[0]
    W = vm.model.get_output_embeddings().weight
    delta = torch.zeros_like(W)
    delta[rome] = 100 * rec["ln_final.hook_out"][0, -1]  # now " Rome" is the top prediction
    with weights_changed(vm, {"lm_head.weight": delta}):
        with pytest.raises(VisitError, match="already continues"):
            check_against_model(vm, req)
