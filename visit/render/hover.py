"""Hover texts for nodes and edges (VISIT A.6). Every token and prompt string is HTML-escaped here,
before it enters a figure: plotly renders a subset of HTML in hover labels and SVG text."""

from __future__ import annotations

from html import escape

from visit.tokens import display_token


def esc(text: str) -> str:
    """Escape ``& < >`` for plotly text. Quotes stay: plotly decodes only a few entities (not ``&quot;``)
    and they carry no markup."""
    return escape(text, quote=False)


def tok(text: str | None) -> str:
    """A raw token string -> visible whitespace, HTML-escaped."""
    return esc(display_token(text if text is not None else ""))


def node_label(attrs: dict, width: int = 14) -> str:
    """The drawn label: the user's label (``user_label``, :mod:`visit.graph.groups`) if any, else the lens's top
    token with visible whitespace; shortened to ``width`` characters, HTML-escaped."""
    user = attrs.get("user_label")
    label = user if user else attrs.get("label")
    if label is None:
        return ""
    shown = label if user else display_token(label)
    if len(shown) > width:
        shown = shown[: width - 1] + "…"
    return esc(shown)


def optional_number(value, spec: str) -> str:
    """``value`` formatted with ``spec`` (``"+.3f"``, ``"d"`` ...), or "–" when it is unknown (None)."""
    return "–" if value is None else format(value, spec)


def _rank(rank) -> str:
    return "n/a" if rank is None else f"{rank}"


def node_hover(attrs: dict, target_token: str) -> str:
    lines = [f"<b>{esc(attrs['location'])}</b>"]
    if attrs.get("user_label"):
        lines.append(f"label: {esc(attrs['user_label'])}")
    if attrs.get("members"):
        shown = ", ".join(esc(m) for m in attrs["members"][:8]) + (" …" if len(attrs["members"]) > 8 else "")
        lines.append(f"members: {shown}")
        if attrs.get("attribution") is not None:
            lines.append(f"combined contribution: Δ log p(target) {attrs['attribution']:+.4g}")
    if attrs.get("projected"):
        lines.append("top: " + ", ".join(f"'{tok(t['token'])}' {t['prob']:.3f}" for t in attrs["top"]))
        lines.append(f"target '{tok(target_token)}': p={attrs['target_prob']:.4f}, rank {_rank(attrs['target_rank'])}")
        lines.append(f"norm {attrs['norm']:.3g} · entropy {attrs['entropy']:.3g} nats")
    else:
        norm = attrs.get("norm")
        lines.append("d_head-space vector: no vocabulary projection"
                     + ("" if norm is None else f" · norm {norm:.3g}"))
    if attrs.get("source") is not None:
        lines.append(f"source '{tok(attrs['source_token'])}' (position {attrs['source']}), "
                     f"attention {attrs['attention']:.4f}")
    if attrs["kind"] in ("neuron", "wo_neuron"):
        role = f" ({attrs['role']})" if attrs.get("role") else ""
        lines.append(f"activation {attrs['coefficient']:.4g}{role}")
    if attrs.get("flag"):
        lines.append(f"flagged: {esc(str(attrs['flag']))}")
    if attrs.get("pinned"):
        lines.append("pinned")
    if attrs.get("in_target_rank") is not None:
        lines.append(f"norm input: top '{tok(attrs['in_label'])}', target rank {attrs['in_target_rank']}"
                     f" -> {_rank(attrs['target_rank'])}")
    return "<br>".join(lines)


def edge_hover(u_attrs: dict, v_attrs: dict, e: dict) -> str:
    lines = [f"<b>{esc(u_attrs['location'])} → {esc(v_attrs['location'])}</b>",
             f"{e['kind']} ({e['role']})"]
    if e.get("merged", 1) > 1:
        lines.append(f"{e['merged']} edges merged (weights summed)")
    if e.get("coefficient") is not None:
        lines.append(f"coefficient {e['coefficient']:.4g}")
    if e.get("norm") is not None:
        lines.append(f"norm {e['norm']:.4g}")
    if e.get("entropy") is not None:
        lines.append(f"entropy {e['entropy']:.3g} nats")
    if e.get("rank_from") is not None:
        lines.append(f"target rank {e['rank_from']} -> {e['rank_to']}")
    if e.get("via"):
        lines.append(f"through {esc(e['via'])} (hidden): target rank {_rank(e.get('via_rank_in'))}"
                     f" -> {_rank(e.get('via_rank_out'))}")
    return "<br>".join(lines)
