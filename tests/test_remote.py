"""Remote models through nnsight (visit.remote), tested by simulation: ``VISIT_NDIF_SIMULATE=1`` sends every
request through nnsight's serialise / deserialise-with-visit-hidden / execute path against a local copy of the
model. The remote trace, graph and causal-trace grid must equal the local backend's; sockets are blocked, so
no test reaches a network."""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest
import torch

import visit.remote  # noqa: F401 - registers the ndif: scheme
from visit.errors import VisitError
from visit.hooks import weights_changed, zero
from visit.localization.causal_trace import causal_trace
from visit.models import load_model
from visit.pipeline import analyze, graph_json
from visit.remote import estimate
from visit.tracer import trace

PROMPT = "The Eiffel Tower is located in the city of"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every connection attempt (NDIF, the hub) is refused as if offline and recorded; a test that made one
    fails unless it expects to (the offline test checks the hub and clears the record)."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[:1])
        raise ConnectionRefusedError("the test suite blocks the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield attempts
    assert not attempts, f"a test tried to open network connections: {attempts}"


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tokenizer, request):
    """(local, remote) over the same saved tiny model of the requested family."""
    from conftest import build_tiny

    family = request.param
    root = tmp_path_factory.mktemp(f"remote-{family}")
    vm = build_tiny(family, tokenizer)
    vm.model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    mp = pytest.MonkeyPatch()
    mp.setenv("VISIT_NDIF_SIMULATE", "1")
    mp.setenv("VISIT_CACHE_DIR", str(root / "cache"))
    local = load_model(str(root / "model"))
    remote = load_model(f"ndif:{root / 'model'}")
    yield local, remote
    mp.undo()


def _assert_same_json(a, b, path="$"):
    """Equal structure, strings and ints; floats within 1e-4."""
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys differ: {set(a) ^ set(b)}"
        for key in a:
            _assert_same_json(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_json(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert isinstance(b, (int, float)) and (math.isclose(a, b, abs_tol=1e-4) or (math.isnan(a) and math.isnan(b))), \
            f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


FAST = ["llama", "gpt2", "gemma2"]


@pytest.mark.parametrize("pair", FAST, indirect=True)
def test_trace_values_equal_local(pair):
    local, remote = pair
    mark = len(remote.backend.ledger.requests)
    a, b = trace(local, PROMPT), trace(remote, PROMPT)
    assert a.input_ids == b.input_ids and a.tokens == b.tokens
    assert set(a.values) == set(b.values)
    for name in a.values:
        torch.testing.assert_close(b.values[name], a.values[name], atol=1e-5, rtol=1e-5, msg=name)
    sent = remote.backend.ledger.since(mark)
    assert [r[0] for r in sent.requests].count("forward") == 1  # one pass, one request
    assert sent.bytes_down > 0 and sent.bytes_up > 0


@pytest.mark.parametrize("pair", FAST, indirect=True)
def test_graph_json_equal_local(pair):
    local, remote = pair
    a, b = graph_json(analyze(local, PROMPT)), graph_json(analyze(remote, PROMPT))
    assert b.pop("model") == f"ndif:{a.pop('model')}"
    b["graph"]["model"] = a["graph"]["model"]
    assert [n["id"] for n in a["nodes"]] == [n["id"] for n in b["nodes"]]
    assert [n["label"] for n in a["nodes"]] == [n["label"] for n in b["nodes"]]
    _assert_same_json(a, b)


@pytest.mark.parametrize("pair", ["llama"], indirect=True)
def test_interventions_run_remotely(pair):
    local, remote = pair
    write = [zero("blocks.1.attn.hook_z", index=([0, 2],)), zero("blocks.0.mlp.hook_post", index=([3, 5],))]
    a, b = trace(local, PROMPT, interventions=write), trace(remote, PROMPT, interventions=write)
    torch.testing.assert_close(b["logits"], a["logits"], atol=1e-5, rtol=1e-5)
    assert float(b["blocks.1.attn.hook_z"][:, [0, 2]].abs().max()) == 0.0


@pytest.mark.parametrize("pair", ["llama"], indirect=True)
def test_causal_trace_grid_equal_local(pair):
    local, remote = pair
    kw = dict(subject="Eiffel Tower", samples=3, window=2, noise=0.5, kinds=("hidden", "mlp"))
    a, b = causal_trace(local, "The Eiffel Tower is in", **kw), causal_trace(remote, "The Eiffel Tower is in", **kw)
    assert (a.target.id, a.subject_range, a.clean_top_id) == (b.target.id, b.subject_range, b.clean_top_id)
    assert b.p_clean == pytest.approx(a.p_clean, abs=1e-6) and b.p_corrupted == pytest.approx(a.p_corrupted, abs=1e-6)
    for kind in a.kinds:
        np.testing.assert_allclose(b.kinds[kind], a.kinds[kind], atol=1e-5)


@pytest.mark.parametrize("pair", ["llama"], indirect=True)
def test_default_noise_read_remotely(pair):
    from visit.localization.causal_trace import default_noise
    from visit.remote.causal import _subject_embedding_std

    local, remote = pair
    assert _subject_embedding_std(remote) * 3 == pytest.approx(default_noise(local), rel=1e-5)


@pytest.mark.parametrize("pair", ["llama"], indirect=True)
def test_editing_refused_with_one_line(pair):
    _, remote = pair
    name = next(n for n, _ in remote.model.named_parameters())
    with pytest.raises(VisitError) as err:
        with weights_changed(remote, {name: torch.zeros(1)}):
            pass
    assert "remotely" in str(err.value) and "\n" not in str(err.value)
    from visit.editing.edit import check_editable

    with pytest.raises(VisitError, match="remotely"):
        check_editable(remote)


@pytest.mark.parametrize("pair", ["llama"], indirect=True)
def test_whole_matrix_download_refused_past_the_limit(pair):
    _, remote = pair
    cache = remote.weights.cache
    limit, cache.limit = cache.limit, cache.fetched  # nothing more may be downloaded whole
    try:
        with pytest.raises(VisitError, match="VISIT_REMOTE_MAX_FETCH"):
            remote.weights.W_U
    finally:
        cache.limit = limit


@pytest.mark.parametrize("pair", ["llama"], indirect=True)
def test_weight_rows_fetched_once_and_cached_per_model_and_revision(pair):
    local, remote = pair
    cache = remote.weights.cache
    ledger = remote.backend.ledger
    remote.weights.W_out(2)[[0]]
    cached = set(cache.rows["model.layers.2.mlp.down_proj.weight"])  # rows earlier graphs fetched
    fresh = [i for i in range(remote.dims.d_mlp) if i not in cached][:2]
    before = len(ledger.requests)
    rows = remote.weights.W_out(2)[fresh]
    assert len(ledger.requests) == before + 1  # only those rows ...
    assert ledger.requests[-1][2] < 4 * 64 * 4 * 4  # ... (2 rows of d_model=64, not the [96, 64] matrix)
    torch.testing.assert_close(rows, local.weights.W_out(2)[fresh])
    torch.testing.assert_close(remote.weights.W_out(2)[fresh[1]], local.weights.W_out(2)[fresh[1]])  # cached
    assert len(ledger.requests) == before + 1
    torch.testing.assert_close(remote.weights.W_O(2)[[1, 3]], local.weights.W_O(2)[[1, 3]])
    assert "@" in cache.root.name and (cache.root / "model.layers.2.mlp.down_proj.weight.rows.pt").exists()


@pytest.mark.parametrize("pair", ["llama"], indirect=True)
def test_estimate_matches_measured_forward_request(pair):
    _, remote = pair
    ids = remote.tokenizer(PROMPT).input_ids
    mark = len(remote.backend.ledger.requests)
    trace(remote, PROMPT)
    measured = remote.backend.ledger.since(mark).requests[0][2]
    predicted = estimate.trace_download(remote.model.config, len(ids), bytes_per_value=4)
    assert 0.5 * predicted < measured <= 1.1 * predicted  # the answer is compressed; the estimate is raw


def test_no_key_is_one_line(monkeypatch):
    monkeypatch.delenv("VISIT_NDIF_SIMULATE", raising=False)
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    with pytest.raises(VisitError) as err:
        load_model("ndif:meta-llama/Llama-3.1-70B")
    assert "NDIF_API_KEY" in str(err.value) and "\n" not in str(err.value)


def test_offline_is_one_line(monkeypatch, no_network):
    monkeypatch.delenv("VISIT_NDIF_SIMULATE", raising=False)
    monkeypatch.setenv("NDIF_API_KEY", "not-a-real-key")
    with pytest.raises(VisitError) as err:
        load_model("ndif:meta-llama/Llama-3.1-70B")
    assert "offline" in str(err.value) and "\n" not in str(err.value)
    assert no_network  # the hub was checked (and refused) ...
    no_network.clear()  # ... and nothing went out


def test_cli_refuses_without_key(monkeypatch, capsys):
    from visit.cli import main

    monkeypatch.delenv("VISIT_NDIF_SIMULATE", raising=False)
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    assert main(["trace", "--model", "ndif:meta-llama/Llama-3.1-70B", "hello"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "NDIF_API_KEY" in err and "\n" not in err


@pytest.mark.slow
def test_default_model_trace_graph_and_grid_equal_local(monkeypatch, tmp_path):
    monkeypatch.setenv("VISIT_NDIF_SIMULATE", "1")
    local = load_model("default")
    remote = load_model("ndif:default")
    a, b = graph_json(analyze(local, PROMPT)), graph_json(analyze(remote, PROMPT))
    a.pop("model"), b.pop("model")
    b["graph"]["model"] = a["graph"]["model"]
    _assert_same_json(a, b)
    kw = dict(subject="Eiffel Tower", samples=2, window=10, noise=0.1, kinds=("mlp",))
    ga, gb = causal_trace(local, PROMPT, **kw), causal_trace(remote, PROMPT, **kw)
    np.testing.assert_allclose(gb.kinds["mlp"], ga.kinds["mlp"], atol=1e-5)
