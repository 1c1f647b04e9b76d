"""export_html (offline report, plotly.js once, escaped), graph_json, node_details, provider sections."""

from __future__ import annotations

import json

import pytest
import torch

import visit.report as report
from visit.errors import VisitError
from visit.graph import GraphSettings
from visit.pipeline import analyze, export_html, graph_json, node_details
from visit.report import ReportSection

HOSTILE = "<img src=x onerror=alert(1)> says"
PLOTLY_MARKER = "* plotly.js v"  # the embedded bundle's banner


@pytest.fixture(scope="module")
def analysis(tiny_factory):
    return analyze(tiny_factory("qwen2"), HOSTILE, settings=GraphSettings(layer_start=1, layer_end=2))


def test_export_is_standalone_and_escaped(analysis, tmp_path):
    path = tmp_path / "report.html"
    html = export_html(analysis, path)
    assert path.read_text(encoding="utf-8") == html
    assert html.count(PLOTLY_MARKER) == 1 and "src=\"https://cdn" not in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    for node in ("L1.resid_pre", "L2.resid_post", "L2.mlp_out"):
        assert node in html  # the interactive graph's customdata
    for title in ("Flow graph", "Top predictions", "Per layer", "Settings"):
        assert f"<h2>{title}</h2>" in html
    assert "memory_per_head" in html


def test_provider_sections_are_appended(analysis, monkeypatch):
    import plotly.graph_objects as go

    def sections(a):
        return [ReportSection("<i>extra</i>", figure=go.Figure(go.Bar(y=[1, 2])), html="<p>provided</p>")]

    def broken(a):
        raise RuntimeError("boom <b>")

    monkeypatch.setattr(report, "SECTIONS", (sections, broken))
    html = export_html(analysis)
    assert "<h2>&lt;i&gt;extra&lt;/i&gt;</h2>" in html and "<p>provided</p>" in html
    assert "boom &lt;b&gt;" in html and html.count(PLOTLY_MARKER) == 1


def test_graph_json_has_every_field(analysis):
    data = json.loads(json.dumps(graph_json(analysis)))
    assert {"nodes", "edges", "settings"} <= set(data)
    assert len(data["nodes"]) == analysis.graph.number_of_nodes()
    assert len(data["edges"]) == analysis.graph.number_of_edges()
    node = next(n for n in data["nodes"] if n["kind"] == "memory")
    for key in ("id", "kind", "layer", "head", "neuron", "source", "source_token", "attention", "top",
                "target_prob", "target_rank", "entropy", "norm", "label", "location", "x", "y"):
        assert key in node
    assert node["source_token"] == analysis.trace.tokens[node["source"]]
    edge = data["edges"][0]
    assert {"source", "target", "kind", "role", "score"} <= set(edge)
    assert data["settings"]["layer_start"] == 1 and data["prompt"] == HOSTILE


def test_node_details(analysis):
    a, tr = analysis, analysis.trace
    neuron = next(n for n, at in a.graph.nodes(data=True) if at["kind"] == "neuron")
    d = node_details(a, neuron)
    assert len(d["top"]) == len(d["bottom"]) == 20 and d["target_rank"] >= 1
    row = a.vm.weights.W_out(d["layer"])[d["neuron"]]
    ref = a.lens.project(row.unsqueeze(0), k=20, target=a.target.id)
    assert [t["id"] for t in d["static"]["top"]] == ref.top_ids[0].tolist()
    head = node_details(a, "L1.H0")
    pattern = tr["blocks.1.attn.hook_pattern"][0, tr.position, :tr.position + 1]
    assert [x["weight"] for x in head["attention"]] == pytest.approx(pattern.tolist())
    assert [x["token"] for x in head["attention"]] == tr.tokens
    ln = node_details(a, "L1.ln1")
    assert ln["input"]["target_rank"] == a.graph.nodes["L1.resid_pre"]["target_rank"]
    assert node_details(a, "L1.WO0" if "L1.WO0" in a.graph else
                        next(n for n, at in a.graph.nodes(data=True) if at["kind"] == "wo_neuron"))["static"]["top"]
    q = node_details(a, "L1.H0.q")
    assert q["top"] == [] and q["attention"]
    with pytest.raises(VisitError):
        node_details(a, "L7.H0")


def test_blank_target_is_the_top_prediction(tiny_factory):
    vm = tiny_factory("gpt2")
    a = analyze(vm, "Hello world", "", settings=GraphSettings(layer_start=0, layer_end=0))
    assert a.target.id == int(torch.argmax(a.trace["logits"][a.trace.position]))
    last = a.graph.nodes["L0.resid_post"]
    assert last["projected"]
