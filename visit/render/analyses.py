"""Plotly figures and HTML tables for the analyses (library side: no Dash here).

Every token or prompt string is ``html.escape``d (after making whitespace visible) before it enters
a figure, a hover or a table: Plotly renders an HTML subset in text.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from visit.ids import head_id, neuron_id
from visit.tokens import display_token

KIND_COLORS = {"ln1": "#1f77b4", "ln2": "#ff7f0e", "final": "#2ca02c"}
TARGET_LABELS = {"attn": "attention output", "block": "block output", "final": "final output"}


@dataclass
class Table:
    """A table of raw values (strings unescaped): ``to_html`` escapes, a Dash panel renders cells as text."""

    headers: list[str]
    rows: list[list]
    caption: str | None = None

    def cells(self) -> list[list[str]]:
        return [[_fmt(c) for c in row] for row in self.rows]

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.cells())
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f'<table class="visit-table">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def html_table(headers: list[str], rows: list[list], caption: str | None = None) -> str:
    """A plain HTML table; every cell is escaped here (pass raw strings)."""
    return Table(headers, rows, caption).to_html()


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _tokens_text(items: list[dict], n: int = 5) -> str:
    return ", ".join(display_token(i["token"]) for i in items[:n])


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    """Readable in the app's narrow side panel: subplots stacked (callers), small subplot titles, the legend
    below the last x axis title (never on it), a short title."""
    fig.update_layout(title=dict(text=html.escape(title), font=dict(size=13), x=0.01), height=height,
                      template="plotly_white", margin=dict(l=60, r=20, t=60, b=110),
                      legend=dict(orientation="h", x=0, y=0.005, yanchor="bottom", yref="container",
                                  font=dict(size=10)))
    fig.update_annotations(font_size=11)  # subplot titles
    return fig


# ---- layer-norm filter, one traced prompt ---------------------------------------------------------

def ln_filter_figure(rows, target_label: str | None = None) -> go.Figure:
    """Per layer: how much each norm changes the lens distribution (vs the random control), and the
    target's log10 probability before and after. ``rows``: :func:`layer_norm_filter` output."""
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.22, subplot_titles=(  # stacked: narrow panels
        "distribution change (total variation)", "target probability before → after"))
    for kind in ("ln1", "ln2"):
        sel = [r for r in rows if r.site.kind == kind]
        layers = [r.site.layer for r in sel]
        hover = [f"{r.site.key}<br>gains: {html.escape(_tokens_text(r.gained))}"
                 f"<br>loses: {html.escape(_tokens_text(r.lost))}" for r in sel]
        fig.add_trace(go.Scatter(x=layers, y=[r.total_change for r in sel], mode="lines+markers", name=kind,
                                 line=dict(color=KIND_COLORS[kind]), hovertext=hover, hoverinfo="text+y"), 1, 1)
        fig.add_trace(go.Scatter(x=layers, y=[r.control_total_change for r in sel], mode="lines", name=f"{kind} random",
                                 line=dict(color=KIND_COLORS[kind], dash="dot")), 1, 1)
        if sel and sel[0].target is not None:
            for when, dash in (("before", "dot"), ("after", "solid")):
                fig.add_trace(go.Scatter(
                    x=layers, y=[r.target[f"prob_{when}"] for r in sel], mode="lines+markers",
                    name=f"{kind} target {when}", line=dict(color=KIND_COLORS[kind], dash=dash),
                    hovertext=[f"{r.site.key} rank {r.target['rank_before']} → {r.target['rank_after']}" for r in sel],
                    hoverinfo="text+y"), 2, 1)
    fig.update_yaxes(type="log", row=2, col=1)
    fig.update_xaxes(title_text="layer", title_standoff=4)
    title = "Layer norm as a filter"
    if target_label:
        title += f" (target {display_token(target_label)})"
    return _layout(fig, title, height=680)


def ln_filter_table(rows, n: int = 6) -> Table:
    headers = ["norm", "lens", "gains most", "loses most", "change", "random", "target p before → after",
               "target rank before → after"]
    body = []
    for r in rows:
        t = r.target
        body.append([r.site.key, r.lens_mode, _tokens_text(r.gained, n), _tokens_text(r.lost, n), r.total_change,
                     r.control_total_change,
                     f"{t['prob_before']:.3g} → {t['prob_after']:.3g}" if t else "",
                     f"{t['rank_before']} → {t['rank_after']}" if t else ""])
    return Table(headers, body)


# ---- alignment, one traced prompt -----------------------------------------------------------------

def alignment_trace_figure(res) -> go.Figure:
    """Heads vs attention output (heatmap), per-layer means vs the three outputs, memory values vs head."""
    L, H = res.head_norms.shape
    fig = make_subplots(rows=3, cols=1, vertical_spacing=0.12, subplot_titles=(  # stacked: narrow panels
        f"sim_{res.k}(head, attention output)", "mean over heads", "memory values vs their head"))
    hover = [[f"{head_id(l, h)}<br>norm {float(res.head_norms[l, h]):.3g}" for h in range(H)] for l in range(L)]
    fig.add_trace(go.Heatmap(z=res.heads_vs["attn"].T.tolist(), x=list(range(L)), y=list(range(H)),
                             colorscale="Viridis", zmin=0, zmax=1, text=[list(r) for r in zip(*hover)],
                             hoverinfo="text+z", showscale=False), 1, 1)
    for t, v in res.heads_vs.items():
        fig.add_trace(go.Scatter(x=list(range(L)), y=v.mean(1).tolist(), mode="lines+markers",
                                 name=f"head vs {TARGET_LABELS[t]}"), 2, 1)
    for r in range(min(3, res.memory_vs_head.shape[-1])):
        fig.add_trace(go.Scatter(x=list(range(L)), y=res.memory_vs_head[..., r].mean(1).tolist(),
                                 mode="lines+markers", name=f"memory value #{r + 1} by attention"), 3, 1)
    fig.update_xaxes(title_text="layer", title_standoff=4)
    fig.update_yaxes(title_text="head", row=1, col=1)
    return _layout(fig, "Semantic alignment in the attention blocks (sim_k)", height=900)


# ---- studies ---------------------------------------------------------------------------------------

def ln_study_figures(res: dict) -> list[tuple[str, go.Figure | None, Table | None]]:
    """(title, figure, html) triples for the layer-norm study (Fig. 7, Tables 1-6, Fig. 23)."""
    out = []
    for mode in res["modes"]:
        for kind in ("ln1", "ln2"):
            out.append(_ln_curve(res, mode, kind))
    data = res["by_mode"][res["modes"][0]]
    sites = data["sites"]
    fig = go.Figure()
    for kind in ("ln1", "ln2"):
        sel = [s for s in sites if s["kind"] == kind]
        fig.add_trace(go.Scatter(x=[s["layer"] for s in sel], y=[s["mean_total_change"] for s in sel],
                                 mode="lines+markers", name=kind, line=dict(color=KIND_COLORS[kind])))
        fig.add_trace(go.Scatter(x=[s["layer"] for s in sel], y=[s["control_mean_total_change"] for s in sel],
                                 mode="lines", name=f"{kind} random", line=dict(color=KIND_COLORS[kind], dash="dot")))
    fig.update_xaxes(title_text="layer")
    fig.update_yaxes(title_text="mean total-variation change")
    out.append(("How much each norm changes the distribution, per layer", _layout(fig, "Change per layer"), None))

    if "target" in res:
        t = res["target"]
        fig = go.Figure()
        for kind in ("ln1", "ln2"):
            idx = [i for i, s in enumerate(sites) if s["kind"] == kind]
            layers = [sites[i]["layer"] for i in idx]
            fig.add_trace(go.Scatter(x=layers, y=[t["mean_prob_before"][i] for i in idx], mode="lines",
                                     name=f"{kind} before", line=dict(color=KIND_COLORS[kind], dash="dot")))
            fig.add_trace(go.Scatter(x=layers, y=[t["mean_prob_after"][i] for i in idx], mode="lines+markers",
                                     name=f"{kind} after", line=dict(color=KIND_COLORS[kind])))
        fig.update_yaxes(type="log", title_text="mean target probability")
        fig.update_xaxes(title_text="layer")
        rows = [[s["site"], t["mean_prob_before"][i], t["mean_prob_after"][i], t["median_rank_before"][i],
                 t["median_rank_after"][i], t["share_rank_improved"][i], t["share_rank_worse"][i]]
                for i, s in enumerate(sites)]
        table = Table(["norm", "mean p before", "mean p after", "median rank before", "median rank after",
                            "share rank improved", "share rank worse"], rows)
        out.append(("The target through each norm", _layout(fig, "Target probability before/after each norm"),
                    table))

    for m in res["modes"]:
        out.append((f"Top tokens before and after, selected layers (lens {m}; "
                    + ("VISIT Tables 1-5" if m == "renorm" else "without the final norm, Table 6") + ")",
                    None, ln_layers_table(res, m)))
    return out


def _ln_curve(res: dict, mode: str, kind: str) -> tuple[str, go.Figure, Table]:
    k = res["by_mode"][mode]["kinds"][kind]
    has_control = "control_curve" in k
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=k["curve"]["rank"], y=k["curve"]["value"], mode="lines", name="hidden states"))
    if has_control:
        fig.add_trace(go.Scatter(x=k["control_curve"]["rank"], y=k["control_curve"]["value"], mode="lines",
                                 name="random vectors (control)", line=dict(dash="dot")))
    fig.update_xaxes(title_text="token (sorted by mean change)", type="log")
    fig.update_yaxes(title_text="mean probability change after the norm")
    headers = ["gains most", "mean change", "loses most", "mean change"]
    columns = [k["gained"], k["lost"]]
    if has_control:
        headers += ["random gains", "random loses"]
        columns += [k["control_gained"], k["control_lost"]]
    rows = []
    for items in zip(*columns):
        row = [items[0]["token"], items[0]["value"], items[1]["token"], items[1]["value"]]
        row += [i["token"] for i in items[2:]]
        rows.append(row)
    lens = "final norm re-applied" if mode == "renorm" else "without the final norm (Fig. 23)"
    title = f"{kind}: mean probability change per token over {res['n_prompts']} prompts, all layers ({lens}"
    title += f"; correlation with the random control {k['correlation_with_control']:.2f})" if has_control else ")"
    return title, _layout(fig, f"{kind}, {lens}"), Table(headers, rows)


def ln_layers_table(res: dict, mode: str, n_layers_shown: int = 4, n: int = 8) -> Table:
    sites = res["by_mode"][mode]["sites"]
    layers = sorted({s["layer"] for s in sites if s["layer"] is not None})
    if len(layers) > n_layers_shown:
        step = (len(layers) - 1) / (n_layers_shown - 1)
        layers = [layers[round(i * step)] for i in range(n_layers_shown)]
    rows = []
    for s in sites:
        if s["layer"] in layers or s["kind"] == "final":
            rows.append([s["site"], _tokens_text(s["top_before"], n), _tokens_text(s["top_after"], n),
                         _tokens_text(s["gained"], n), _tokens_text(s["lost"], n)])
    return Table(["norm", "top tokens before (mean prob)", "top tokens after", "gain most", "lose most"], rows)


def alignment_study_figures(res: dict) -> list[tuple[str, go.Figure | None, Table | None]]:
    """VISIT Figures 2-5 and 18 as per-layer line plots."""
    layers = res["layers"]
    k = res["k"]
    out = []
    fig = go.Figure()
    for t, v in res["heads_vs"].items():
        fig.add_trace(go.Scatter(x=layers, y=v, mode="lines+markers", name=f"head vs {TARGET_LABELS[t]}"))
    fig.update_yaxes(title_text=f"mean sim_{k}", range=[0, 1])
    out.append(("Heads projected through W_O vs the attention, block and final outputs (Fig. 2)",
                _layout(fig, f"Heads (through W_O) vs outputs, {res['n_prompts']} prompts"), None))
    for t, figno in (("attn", "3"), ("final", "4")):
        fig = go.Figure()
        ranks = res["by_norm_rank"][t]
        n_heads = len(ranks[0]) if ranks else 0
        for r in range(n_heads):
            fig.add_trace(go.Scatter(x=layers, y=[row[r] for row in ranks], mode="lines",
                                     name=f"norm rank {r + 1}", line=dict(width=3 if r == 0 else 1.5)))
        fig.update_yaxes(title_text=f"mean sim_{k}", range=[0, 1])
        out.append((f"Heads ranked by norm vs the {TARGET_LABELS[t]} (Fig. {figno})",
                    _layout(fig, f"Heads by norm rank vs {TARGET_LABELS[t]}"), None))
    fig = go.Figure()
    mem = res["memory_vs_head"]
    for r in range(len(mem[0]) if mem else 0):
        fig.add_trace(go.Scatter(x=layers, y=[row[r] for row in mem], mode="lines+markers",
                                 name=f"memory value with attention rank {r + 1}"))
    fig.update_yaxes(title_text=f"mean sim_{k} with its head", range=[0, 1])
    out.append(("Memory values ranked by attention vs their head (Fig. 5)",
                _layout(fig, "Memory values vs their head"), None))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=layers, y=res["source_token_prob"], mode="lines+markers",
                             name=f"the {res.get('n_memory', 3)} memory values with the highest attention"))
    fig.add_trace(go.Scatter(x=layers, y=res["top_memory_source_token_prob"], mode="lines+markers",
                             name="memory value with the highest attention"))
    fig.add_trace(go.Scatter(x=layers, y=[res["uniform_prob"]] * len(layers), mode="lines", name="uniform (1/V)",
                             line=dict(dash="dot")))
    fig.update_yaxes(title_text="mean probability of the source token", type="log")
    out.append(("Probability of each memory value's own source token (Fig. 18)",
                _layout(fig, "Memory values and their source tokens"), None))
    for _, f, _ in out:
        if f is not None:
            f.update_xaxes(title_text="layer")
    return out


def regularization_study_figures(res: dict) -> list[tuple[str, go.Figure | None, Table | None]]:
    """Counts per layer, norm vs entropy (Fig. 8) and the weights of each neuron (Fig. 9)."""
    out = []
    neurons = res["neurons"]
    layers = list(range(len(res["per_layer_count"])))
    fig = go.Figure(go.Bar(x=layers, y=res["per_layer_count"], name="neurons"))
    fig.add_trace(go.Scatter(x=layers, y=res["per_layer_max_share"], mode="lines+markers", yaxis="y2",
                             name="largest share of prompts"))
    fig.update_layout(yaxis=dict(title="regularization neurons"),
                      yaxis2=dict(title="share", overlaying="y", side="right", range=[0, 1]))
    fig.update_xaxes(title_text="layer")
    out.append((f"Neurons among their layer's top {res['top_n']} on more than {res['threshold']:.0%} "
                f"of {res['n_prompts']} prompts", _layout(fig, "Regularization neurons per layer"), None))
    if not neurons:
        return out
    fig = go.Figure()
    labels = [neuron_id(n["layer"], n["neuron"]) for n in neurons]
    fig.add_trace(go.Scatter(
        x=[n["norm"] for n in neurons], y=[n["entropy"] for n in neurons], mode="markers",
        marker=dict(color=[n["share"] for n in neurons], colorscale="Viridis", cmin=0.5, cmax=1,
                    colorbar=dict(title="share"), size=7), name="flagged neurons",
        hovertext=[f"{lab}<br>{html.escape(', '.join(display_token(t) for t in n['top'][:6]))}"
                   for lab, n in zip(labels, neurons)], hoverinfo="text"))
    fig.add_trace(go.Scatter(x=[n["layer_median_norm"] for n in neurons],
                             y=[n["layer_median_entropy"] for n in neurons], mode="markers",
                             marker=dict(symbol="x", color="grey"), name="median neuron of the same layer",
                             hovertext=[f"layer {n['layer']} median" for n in neurons], hoverinfo="text"))
    fig.update_xaxes(title_text="norm of the value vector W_out[i]")
    fig.update_yaxes(title_text="entropy of its projection (nats)")
    out.append(("Norm and projection entropy (Fig. 8)", _layout(fig, "Norm vs entropy"), None))
    fig = go.Figure()
    for lab, n in zip(labels, neurons):
        if "weights" in n:
            fig.add_trace(go.Scatter(y=n["weights"], mode="lines", name=lab))
    fig.update_xaxes(title_text="dimension of d_model")
    fig.update_yaxes(title_text="weight")
    out.append(("Weights of the value vectors of the most consistent neurons (Fig. 9)",
                _layout(fig, "Outlier weights"), None))
    rows = [[neuron_id(n["layer"], n["neuron"]), n["share"], n["mean_coefficient"] if "mean_coefficient" in n else "",
             n["norm"], n["layer_median_norm"], n["entropy"], n["layer_median_entropy"],
             ", ".join(display_token(t) for t in n["top"][:8]),
             ", ".join(f"{o['dim']}: {o['weight']:.3g}" for o in n["outliers"][:5])] for n in neurons]
    out.append(("The flagged neurons", None, Table(
        ["neuron", "share of prompts", "mean coefficient", "norm", "layer median norm", "entropy",
         "layer median entropy", "top tokens", "outlier weights (dim: value)"], rows)))
    return out


def cases_table(cases: list) -> Table:
    rows = [[c.prompt, display_token(c.target_token or c.target), display_token(c.predicted or ""),
             "yes" if c.correct else "no", "yes" if c.kept else "no", c.relation or "", c.error or ""] for c in cases]
    return Table(["prompt", "target", "predicted", "correct", "kept", "relation", "error"], rows)


STUDY_FIGURES = {"ln": ln_study_figures, "alignment": alignment_study_figures,
                 "regularization": regularization_study_figures}
