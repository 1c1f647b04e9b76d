"""Batched traces (visit/batching.py): every row of a padded pass equals that prompt traced alone, on every family,
with right and left padding; a bad row fails alone; the batcher coalesces concurrent traces by weights."""

import threading
import time

import pytest
import torch

from conftest import FAMILIES, MORE_FAMILIES
from test_exactness import assert_close
from visit.batching import TraceBatcher, TraceRequest, pad, trace_batch
from visit.errors import VisitError
from visit.models.overlay import Overlay, bind_session
from visit.tracer import trace

PROMPTS = [TraceRequest("The Eiffel Tower is located in the city of", None),
           TraceRequest("Paris is", 1),
           TraceRequest("One two three four five six", -2)]


def assert_same_trace(batched, alone):
    assert (batched.input_ids, batched.tokens, batched.position) == (alone.input_ids, alone.tokens, alone.position)
    assert batched.weights_version == alone.weights_version and batched.overlay == alone.overlay
    assert set(batched.values) == set(alone.values)
    for name, value in alone.values.items():
        assert batched[name].shape == value.shape, name
        try:
            assert_close(batched[name], value)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


@pytest.fixture(scope="module", params=FAMILIES + MORE_FAMILIES)
def family_model(request, tiny_factory):
    return tiny_factory(request.param)


@pytest.mark.parametrize("padding", ["right", "left"])
def test_each_row_equals_the_row_traced_alone(family_model, padding):
    vm = family_model
    rows = trace_batch(vm, PROMPTS, padding)
    for request, row in zip(PROMPTS, rows):
        assert_same_trace(row, trace(vm, request.prompt, request.position))


def test_left_padding_masks_and_counts_positions_from_each_prompt():
    ids, mask, positions, offsets = pad([torch.tensor([5, 6, 7]), torch.tensor([8])], pad_id=0, side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions[1, 2] == 0 and positions[0].tolist() == [0, 1, 2] and offsets == [0, 2]
    ids, mask, positions, offsets = pad([torch.tensor([5]), torch.tensor([8, 9])], pad_id=3, side="right")
    assert ids.tolist() == [[5, 3], [8, 9]] and mask.tolist() == [[1, 0], [1, 1]] and offsets == [0, 0]


def test_a_bad_row_fails_alone(tiny_factory):
    vm = tiny_factory("llama")
    long_prompt = "word " * (vm.dims.n_ctx + 10)
    requests = [TraceRequest("Paris is the capital of"), TraceRequest("   "), TraceRequest(long_prompt),
                TraceRequest("A short one", 40), TraceRequest("The last good row")]
    rows = trace_batch(vm, requests)
    assert isinstance(rows[1], VisitError) and "empty" in str(rows[1])
    assert isinstance(rows[2], VisitError) and "context" in str(rows[2])
    assert isinstance(rows[3], VisitError) and "out of range" in str(rows[3])
    for i in (0, 4):
        assert_same_trace(rows[i], trace(vm, requests[i].prompt))


def _concurrently(batcher, vm, jobs):
    """Run ``batcher.trace`` for each (prompt, overlay) on its own thread while the model's lock is held, so
    they all wait and the passes coalesce; returns the results (Trace or exception) in order."""
    results = [None] * len(jobs)

    def one(i, prompt, overlay):
        with bind_session(overlay):
            try:
                results[i] = batcher.trace(vm, prompt)
            except Exception as exc:  # noqa: BLE001 - the test looks at it
                results[i] = exc

    threads = [threading.Thread(target=one, args=(i, *job)) for i, job in enumerate(jobs)]
    with vm.lock:  # the model is busy: every request arrives before the first pass can run
        for t in threads:
            t.start()
        while batcher.waiting() < len(jobs):
            threading.Event().wait(0.01)
    for t in threads:
        t.join(60)
    return results


def test_batcher_coalesces_waiting_traces_and_answers_each(tiny_factory):
    vm = tiny_factory("qwen2")
    batcher = TraceBatcher(max_rows=8)
    prompts = ["Paris is", "The Eiffel Tower is located in the city of", "   ", "Rome is the capital of"]
    results = _concurrently(batcher, vm, [(p, None) for p in prompts])
    assert batcher.stats.rows == 4 and batcher.stats.passes <= 2  # the first may lead alone; the rest wait for it
    assert batcher.stats.largest >= 3
    assert isinstance(results[2], VisitError)
    for prompt, result in zip(prompts, results):
        if prompt.strip():
            assert_same_trace(result, trace(vm, prompt))


def test_batcher_never_mixes_session_weights(tiny_factory):
    """Rows of sessions with different weights (edits) run in different passes, each on its own weights."""
    vm = tiny_factory("llama")
    name = next(n for n, _ in vm.model.named_parameters() if n.endswith("mlp.down_proj.weight"))
    delta = torch.randn_like(dict(vm.model.named_parameters())[name]) * 0.5
    edited = Overlay(key=("test-edit",), deltas=({name: delta},))
    batcher = TraceBatcher(max_rows=8)
    jobs = [("Paris is", None), ("Paris is", edited), ("Rome is", None), ("Rome is", edited)]
    results = _concurrently(batcher, vm, jobs)
    assert batcher.stats.passes >= 2 and batcher.stats.largest <= 2
    for (prompt, overlay), result in zip(jobs, results):
        with bind_session(overlay):
            alone = trace(vm, prompt)
        assert_same_trace(result, alone)
    assert float((results[0]["logits"] - results[1]["logits"]).abs().max()) > 1e-3  # the edit changed the pass


def test_max_rows_one_traces_one_at_a_time(tiny_factory):
    vm = tiny_factory("gpt2")
    batcher = TraceBatcher(max_rows=lambda: 1)
    results = _concurrently(batcher, vm, [("Paris is", None), ("Rome is", None), ("Oslo is", None)])
    assert batcher.stats.largest == 1 and batcher.stats.passes == 3
    assert_same_trace(results[1], trace(vm, "Rome is"))


def test_the_apps_concurrent_traces_share_a_pass_and_each_gets_its_graph(tokenizer):
    """Over real HTTP (a threaded server on 127.0.0.1): sessions tracing while the model is busy are admitted in
    turn, wait together for one pass, and each gets the graph of its own prompt."""
    from werkzeug.serving import make_server

    from conftest import build_tiny
    from visit.ui import create_app, ids
    from visit.ui.client import DashClient

    vm = build_tiny("llama", tokenizer)
    app = create_app(model=vm)
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    prompts = ["Paris is the capital of", "The Eiffel Tower is in", "Rome is", "One two three four"]
    out = {}

    def user(prompt):
        client = DashClient(url, timeout=120)
        out[prompt] = client.trace(client.new_session(), prompt)

    try:
        threads = [threading.Thread(target=user, args=(p,)) for p in prompts]
        with vm.lock:  # the model is busy: every session's trace arrives before a pass can run
            for t in threads:
                t.start()
            deadline = time.time() + 60
            while app.visit_batcher.waiting() < len(prompts):
                assert time.time() < deadline, "the sessions did not all reach the batcher"
                time.sleep(0.02)
        for t in threads:
            t.join(120)
    finally:
        server.shutdown()
    stats = app.visit_batcher.stats
    assert stats.rows == 4 and stats.largest >= 3  # the first pass may take the first row alone
    for prompt in prompts:
        figure = out[prompt][f"{ids.GRAPH}.figure"]
        tokens = str(out[prompt][f"{ids.PROMPT_TOKENS}.children"])
        assert figure["data"] and prompt.split()[-1] in tokens  # each session got its own prompt's graph
