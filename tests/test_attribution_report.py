"""Attribution figures and report sections: shapes, escaping, registration."""

from visit.attribution.contrast import contrast
from visit.attribution.logprob import head_logprob_increase, layer_logprob_increase
from visit.attribution.ranking import ranked_components
from visit.render import attribution as figures
from visit.tracer import trace


def test_figures_carry_the_scores(tiny_factory):
    vm = tiny_factory("gpt2", seed=8)
    tr = trace(vm, "The capital of France is")
    layers = layer_logprob_increase(tr, 42)
    fig = figures.layer_bars(layers)
    assert [t.name for t in fig.data] == ["attention", "FFN"]
    assert list(fig.data[1].y) == [float(x) for x in layers["ffn"]]
    heads = head_logprob_increase(tr, 42)
    hm = figures.head_heatmap(heads)
    assert len(hm.data[0].z) == vm.dims.n_layers and hm.data[0].customdata[1][2] == "L1.H2"
    c = contrast(tr, 42, 43)
    cf = figures.contrast_figure(c, "<b>x</b>", " y&z")
    text = cf.to_json()
    assert "<b>x</b>" not in text and "&lt;b&gt;" in text


def test_tables_escape_tokens(tiny_factory):
    vm = tiny_factory("llama", seed=8)
    tr = trace(vm, "<script>alert(1)</script> is")
    entries = ranked_components(tr, 42, "attn", top=5)
    entries[0]["top_tokens"] = ["<img src=x>"] + entries[0]["top_tokens"]
    html = figures.ranked_table_html(entries, ["<script>"] * len(tr.tokens))
    assert "<script>" not in html and "<img" not in html and "&lt;img" in html


def test_report_includes_attribution_sections(tiny_factory):
    from visit.report.attribution import report_sections
    from visit.pipeline import analyze
    from visit.report import SECTIONS

    assert report_sections in SECTIONS
    vm = tiny_factory("gpt2", seed=9)
    analysis = analyze(vm, "The capital of France is", " Paris")
    sections = report_sections(analysis)
    titles = [s.title for s in sections]
    assert any("per layer" in t for t in titles) and any("FFN neurons" in t for t in titles)
    assert sections[0].figure is not None and "<table" in sections[2].html


def test_exported_report_contains_the_attribution_charts(tiny_factory, tmp_path):
    from visit.pipeline import analyze, export_html

    vm = tiny_factory("qwen2", seed=9)
    html = export_html(analyze(vm, "The capital of France is", " Paris"), tmp_path / "r.html")
    assert "Attribution: heads" in html and "(failed)" not in html
    assert "Log-probability increase per layer" in html
