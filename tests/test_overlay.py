"""Session weights: work bound to a session sees its edits exactly inside ``vm.weights_for``, nobody else ever
does, versions come back, and values computed later from a trace meet the weights it was traced on."""

import threading
import time

import pytest
import torch

from visit.editing import Edit, EditRequest, EditStack
from visit.editing.edit import mlp_out_param
from visit.graph.attribution import node_attribution
from visit.hooks import run
from visit.models.overlay import NONE, OverlayConflict, bind_session, current, version_under, weights_of
from visit.pipeline import analyze
from visit.tracer import trace

REQ = EditRequest("The capital of {} is", "France", "Rome", old="Paris")
PROMPT = "The capital of France is"


def big_edit(vm, layer=1, seed=0, size=0.5):
    name = mlp_out_param(vm, layer)
    shape = dict(vm.model.named_parameters())[name].shape
    g = torch.Generator().manual_seed(seed)
    return Edit("test", REQ, layer, {name: torch.randn(shape, generator=g) * size})


def logits_of(vm, prompt=PROMPT):
    ids = torch.tensor([vm.tokenizer(prompt).input_ids])
    logits, _ = run(vm, ids, logits_to_keep=1)
    return logits[0, -1]


def waits_for_exclusive(vm, seconds: float = 30.0) -> bool:
    """True once a thread is registered as waiting for the lock's exclusive side (False only if that never
    happens within ``seconds``: a broken lock, not a slow machine)."""
    deadline = time.monotonic() + seconds
    while not vm.lock.writers_waiting():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


@pytest.fixture(scope="module")
def model(tiny_factory):
    """One tiny model for the module: every test leaves its weights as they were (what the tests check)."""
    return tiny_factory("llama")


@pytest.fixture
def edited(model):
    stack = EditStack()
    stack.push(model, big_edit(model))
    return model, stack


def test_edits_exist_only_inside_weights_for(edited):
    vm, stack = edited
    name = mlp_out_param(vm, 1)
    at_rest = {n: p.detach().clone() for n, p in vm.model.named_parameters()}
    clean = logits_of(vm)
    with stack.applied(vm):
        reference = logits_of(vm)
    assert not torch.allclose(clean, reference)
    with bind_session(stack.overlay()):
        assert torch.equal(logits_of(vm), reference)  # swapped in by the weights_for inside run()
        assert all(torch.equal(at_rest[n], p) for n, p in vm.model.named_parameters())  # and out after it
        with vm.lock:  # the plain lock swaps nothing
            assert torch.equal(at_rest[name], dict(vm.model.named_parameters())[name])
        with vm.weights_for():
            assert vm.lock.held_by_me()
            assert not torch.equal(at_rest[name], dict(vm.model.named_parameters())[name])
            assert torch.equal(logits_of(vm), reference)  # nested: the same weights, swapped once
    assert current() is NONE and not vm.lock.held_by_me()
    assert torch.equal(logits_of(vm), clean)
    assert all(torch.equal(at_rest[n], p) for n, p in vm.model.named_parameters())


def test_concurrent_sessions_never_see_each_others_edits(edited):
    vm, stack = edited
    clean = logits_of(vm)
    with stack.applied(vm):
        reference = logits_of(vm)
    seen = {"edited": [], "clean": []}

    def worker(kind, overlay):
        with bind_session(overlay):
            for _ in range(25):
                seen[kind].append(logits_of(vm))

    threads = [threading.Thread(target=worker, args=("edited", stack.overlay())),
               threading.Thread(target=worker, args=("clean", NONE))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(x, reference) for x in seen["edited"])
    assert all(torch.equal(x, clean) for x in seen["clean"])


def test_versions_come_back_and_keyed_versions_repeat(edited):
    vm, stack = edited
    rest = vm.weights.version
    first = version_under(vm, stack.overlay())
    assert first != rest and vm.weights.version == rest
    assert version_under(vm, stack.overlay()) == first  # same edits, same weights: caches stay valid
    other = EditStack(list(stack.edits))
    other.push(vm, big_edit(vm, seed=1))
    assert version_under(vm, other.overlay()) not in (rest, first)
    with vm.lock, torch.no_grad():  # a permanent in-place write, announced
        dict(vm.model.named_parameters())[mlp_out_param(vm, 0)].mul_(1.0)
        vm.weights.written()
    assert vm.weights.version != rest


def test_switching_weights_inside_weights_for_is_refused(edited):
    vm, stack = edited
    other = EditStack(list(stack.edits))
    other.push(vm, big_edit(vm, seed=1))
    at_rest = {n: p.detach().clone() for n, p in vm.model.named_parameters()}
    for outer, inner in [(NONE, stack.overlay()), (stack.overlay(), NONE), (stack.overlay(), other.overlay())]:
        with vm.weights_for(outer):
            with pytest.raises(OverlayConflict):
                with vm.weights_for(inner):
                    pass
            with vm.weights_for():  # no argument: the weights of the block around it
                pass
        assert not vm.lock.held_by_me() and not vm.lock.reading_by_me()
    with vm.lock.reading(), pytest.raises(OverlayConflict):  # a reader asking for edits would deadlock
        with vm.weights_for(stack.overlay()):
            pass
    with vm.lock:  # the exclusive holder may swap edits in (and back)
        with vm.weights_for(stack.overlay()):
            assert vm.weights.version == version_under(vm, stack.overlay())
    assert all(torch.equal(at_rest[n], p) for n, p in vm.model.named_parameters())


def test_a_trace_keeps_its_weights_for_later_work(edited):
    vm, stack = edited
    with bind_session(stack.overlay()):
        after = analyze(vm, PROMPT)
        expected = dict(node_attribution(after))
    after.trace.memos.clear()
    assert after.trace.overlay == stack.overlay()
    later = node_attribution(after)  # another thread, no session weights: the trace's own are used
    assert later.keys() == expected.keys()
    scored = [k for k, v in expected.items() if v is not None]
    assert scored and all(later[k] == pytest.approx(expected[k], abs=1e-6) for k in scored)
    clean = node_attribution(analyze(vm, PROMPT))
    assert any(abs(clean[k] - expected[k]) > 1e-4 for k in scored if clean.get(k) is not None)


def test_an_offloaded_layer_cannot_be_edited(tiny_factory):
    from visit.errors import VisitError
    from visit.hooks import weights_changed

    vm = tiny_factory("gpt2", seed=11)  # a private copy: one weight is moved to the meta device (offloaded)
    name = mlp_out_param(vm, 0)
    module_path, _, attr = name.rpartition(".")
    module = vm.model.get_submodule(module_path)
    original = getattr(module, attr)
    setattr(module, attr, torch.nn.Parameter(torch.empty(original.shape, device="meta"), requires_grad=False))
    try:
        with pytest.raises(VisitError, match="offloaded"):
            with weights_changed(vm, {name: torch.zeros(original.shape)}):
                pass
    finally:
        setattr(module, attr, original)


def test_other_sessions_run_between_the_batches_of_a_long_job(edited):
    """A causal trace for an edited session lets go of the model between batches: another session's pass, started
    from inside the job's progress callback, finishes meanwhile and sees the weights at rest."""
    from visit.localization.causal_trace import causal_trace

    vm, stack = edited
    at_rest = logits_of(vm)
    seen = []

    def other_session():
        seen.append(logits_of(vm))

    def progress(done, total, note=""):
        if not seen:
            t = threading.Thread(target=other_session)
            t.start()
            t.join(timeout=60)
            assert not t.is_alive(), "the job held the model's lock between batches"

    with bind_session(stack.overlay()):
        causal_trace(vm, PROMPT, "France", kinds=["hidden"], samples=2, progress=progress)
    assert len(seen) == 1 and torch.equal(seen[0], at_rest)


def test_readers_at_rest_share_and_edits_wait_for_them(edited):
    """A reader of a trace at rest runs beside forward passes at rest; a session's edits are swapped in only once
    the reader is done (and it never sees them). Events only: nothing depends on how long anything takes."""
    vm, stack = edited
    tr = trace(vm, PROMPT)
    at_rest = logits_of(vm)
    inside, leave, read = threading.Event(), threading.Event(), []

    def reader():
        with weights_of(tr):
            inside.set()
            leave.wait(30)
            read.append(dict(vm.model.named_parameters())[mlp_out_param(vm, 1)].detach().clone())

    r = threading.Thread(target=reader)
    r.start()
    assert inside.wait(30)
    assert torch.equal(logits_of(vm), at_rest)  # a forward pass at rest does not wait for the reader
    edited_seen = []

    def writer():
        with bind_session(stack.overlay()):
            edited_seen.append(logits_of(vm))

    w = threading.Thread(target=writer)
    w.start()
    assert waits_for_exclusive(vm)  # the edits wait for the reader...
    assert not edited_seen and w.is_alive()  # ...and nothing ran on them yet
    leave.set()
    r.join(30)
    w.join(30)
    assert not w.is_alive() and len(edited_seen) == 1 and not torch.equal(edited_seen[0], at_rest)
    assert torch.equal(read[0], dict(vm.model.named_parameters())[mlp_out_param(vm, 1)])  # the reader saw rest


def test_an_exception_under_a_sessions_weights_restores_and_frees_the_lock(edited):
    vm, stack = edited
    at_rest = {n: p.detach().clone() for n, p in vm.model.named_parameters()}
    with pytest.raises(RuntimeError):
        with vm.weights_for(stack.overlay()):
            raise RuntimeError("boom")
    assert not vm.lock.held_by_me()
    assert all(torch.equal(at_rest[n], p) for n, p in vm.model.named_parameters())
    assert vm.weights.version == version_under(vm, NONE)
    done = []
    t = threading.Thread(target=lambda: done.append(logits_of(vm)))  # another session: lock and write side free
    t.start()
    t.join(30)
    assert done and version_under(vm, stack.overlay()) != vm.weights.version
