"""Faults over real HTTP: a model that fails to load, out of memory during a trace, a client that hangs up
mid-trace, NaN in a forward pass. Each time the app keeps serving, other sessions are unaffected and the
weights are unchanged. The server runs in a thread on loopback; visit.ui.client speaks Dash's protocol.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import torch

from browser_support import Server
from visit.pipeline import analyze
from visit.ui import create_app, ids
from visit.ui.client import DashClient, message_text

FAULT_WORDS = {" OOM": "oom", " NaN": "nan", " SLOW": "slow"}


class Faults:
    """Hooks on a tiny model: a prompt holding a fault word makes layer 1's MLP misbehave in that pass."""

    def __init__(self, vm):
        tok = vm.tokenizer
        self.words = {tok(w, add_special_tokens=False).input_ids[0]: kind for w, kind in FAULT_WORDS.items()}
        self.current = None
        self.release = threading.Event()
        self.entered = threading.Event()
        embed = vm.model.get_input_embeddings()
        mlp = vm.model.model.layers[1].mlp
        self.handles = [embed.register_forward_pre_hook(self.see_prompt), mlp.register_forward_hook(self.misbehave)]

    def see_prompt(self, module, args):
        found = [self.words[i] for i in args[0].flatten().tolist() if i in self.words]
        self.current = found[0] if found else None

    def misbehave(self, module, args, output):
        if self.current == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")
        if self.current == "nan":
            return output * float("nan")
        if self.current == "slow":
            self.entered.set()
            assert self.release.wait(60), "the test never released the slow trace"
        return output


@pytest.fixture(scope="module")
def served(tiny_factory):
    vm = tiny_factory("llama", seed=5)
    weights = {k: v.detach().clone() for k, v in vm.model.state_dict().items()}
    faults = Faults(vm)
    hooks_before = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in vm.model.modules())

    def loader(name):
        if name == "broken/model":
            raise RuntimeError("safetensors header is corrupt (simulated)")
        if name == "huge/model":
            raise MemoryError("cannot allocate 80 GB (simulated)")
        raise AssertionError(f"unexpected load of {name}")

    app = create_app(model=vm, loader=loader, panels=("visit.ui.panels.details",))
    server = Server(app)
    yield server, vm, faults
    server.stop()
    for k, v in vm.model.state_dict().items():  # the weights are unchanged by every fault
        assert torch.equal(v, weights[k]), k
    hooks_after = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in vm.model.modules())
    assert hooks_after == hooks_before  # no hook left behind by a failed pass
    for h in faults.handles:
        h.remove()


def healthy(server, client, session, prompt="The capital of France is"):
    """A normal trace works and matches the library's own analysis."""
    out = client.trace(session, prompt)
    assert out[f"{ids.ANALYSIS_VERSION}.data"] >= 1, message_text(out)
    analysis = server.app.visit_sessions.analysis(session)
    ref = analyze(analysis.trace.vm, prompt)
    assert [p["id"] for p in analysis.top_predictions] == [p["id"] for p in ref.top_predictions]
    assert client.page().startswith(b"<!DOCTYPE html>")
    return analysis


def test_model_that_fails_to_load(served):
    server, vm, _ = served
    client = DashClient(server.url)
    a, b = client.new_session(), client.new_session()
    before_b = healthy(server, client, b)
    for name, why in (("broken/model", "safetensors header is corrupt"), ("huge/model", "MemoryError")):
        out = client.load_model(a, name)
        assert f"cannot load model '{name}'" in message_text(out) and why in message_text(out)
    assert server.app.visit_registry.loaded() == ["default"]
    assert server.app.visit_sessions.get(a).model_name is None  # session a keeps the default model
    assert server.app.visit_sessions.analysis(b) is before_b
    healthy(server, client, a)


def test_out_of_memory_during_a_trace(served):
    server, vm, _ = served
    client = DashClient(server.url)
    a, b = client.new_session(), client.new_session()
    first = healthy(server, client, a)
    out = client.trace(a, "The capital of OOM is")
    assert "OutOfMemoryError" in message_text(out) and "out of memory" in message_text(out)
    assert f"{ids.GRAPH}.figure" not in out  # the last good graph stays on the page
    assert server.app.visit_sessions.analysis(a) is first
    healthy(server, client, b)
    healthy(server, client, a, "After the fault")


def test_nan_in_a_forward_pass(served):
    server, vm, _ = served
    client = DashClient(server.url)
    a = client.new_session()
    first = healthy(server, client, a)
    out = client.trace(a, "The capital of NaN is")
    assert "the forward pass produced NaN at blocks.1.hook_mlp_out" in message_text(out)
    assert server.app.visit_sessions.analysis(a) is first
    healthy(server, client, client.new_session())


def test_client_disconnects_mid_trace(served):
    server, vm, faults = served
    client = DashClient(server.url)
    a, b = client.new_session(), client.new_session()
    healthy(server, client, a)
    dep = client.find(f"{ids.GRAPH}.figure")
    values = {f"{ids.SESSION}.data": a, f"{ids.PROMPT}.value": "A SLOW prompt", f"{ids.TRACE}.n_clicks": 1}
    inputs = [[] if s["id"].startswith("{") else {**s, "value": values.get(f"{s['id']}.{s['property']}")}
              for s in dep["inputs"]]
    state = [{**s, "value": values.get(f"{s['id']}.{s['property']}")} for s in dep["state"]]
    outputs = [dict(zip(("id", "property"), p.rsplit(".", 1))) for p in dep["output"].strip(".").split("...")]
    body = json.dumps({"output": dep["output"], "outputs": outputs, "inputs": inputs, "state": state,
                       "changedPropIds": [f"{ids.TRACE}.n_clicks"]}).encode()
    faults.release.clear()
    faults.entered.clear()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /_dash-update-component HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert faults.entered.wait(30), "the trace never started"
    # the client is gone while its trace holds the model; the server answers other requests meanwhile
    assert client.page().startswith(b"<!DOCTYPE html>")
    waiting = threading.Thread(target=lambda: healthy(server, client, b, "Waiting for the model"))
    waiting.start()
    from visit.ui import queue as trace_queue

    poll = {f"{ids.SESSION}.data": b, f"{trace_queue.POLL}.n_intervals": 1}
    deadline = time.time() + 30  # the waiting session's page says where it stands
    while time.time() < deadline and "ahead of yours" not in str(client.call(f"{trace_queue.STATUS}.children",
                                                                          f"{trace_queue.POLL}.n_intervals", poll)):
        time.sleep(0.1)
    status = client.call(f"{trace_queue.STATUS}.children", f"{trace_queue.POLL}.n_intervals", poll)
    assert status[f"{trace_queue.STATUS}.children"] == ("waiting for the model: 1 trace ahead of yours "
                                                        "(position 1 in the queue)")
    faults.release.set()
    waiting.join(60)
    assert not waiting.is_alive()
    deadline = time.time() + 30  # the abandoned trace finishes and is kept for its session
    while time.time() < deadline and server.app.visit_sessions.analysis(a).trace.prompt != "A SLOW prompt":
        time.sleep(0.1)
    assert server.app.visit_sessions.analysis(a).trace.prompt == "A SLOW prompt"
    healthy(server, client, a, "The same session again")  # its lock was released
