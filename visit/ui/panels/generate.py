"""Generate panel: what the model says after the traced prompt, token by token, and what steering changes.

"Generate" continues the traced prompt (greedy, or sampled with temperature / top-p / seed) as the session's job:
tokens appear as they are generated, Cancel stops it, and each token shows its probability and the model's top 5
on hover. Clicking a generated token traces prompt + continuation at that token's position, as clicking a prompt
token does (the graph then shows what the model predicts after it; every panel works on it).

"Steer" applies an operation to the pinned nodes (heads, neurons, W_O neurons, residual nodes; a group's members
count as pinned) plus any specs typed in the box (:mod:`visit.generation.steer`), generates the original and the
steered continuations side by side (the steered tokens that differ marked) and then diffs the steered pass's graph
of the traced prompt against the original's in the difference view. Both results go into "Export HTML".

Everything runs on the session's weights (its edits) through the hook layer; nothing changes a weight.
"""

from __future__ import annotations

from dash import ALL, Input, Output, State, ctx as dash_ctx, dcc, html, no_update

from visit import limits
from visit.errors import VisitError
from visit.generation.generate import check_sampling, generate
from visit.generation.steer import differing, steering
from visit.features import GENERATION
from visit.graph.diff import diff_graphs
from visit.report.generation import STEERING_KEY
from visit.tokens import display_token
from visit.tracer import encode_prompt
from visit.ui import ids
from visit.ui.controls import parse_float, parse_int
from visit.ui.diff_view import diff_view, register_row_clicks
from visit.ui.panels.job_widget import job_controls, register_job_callbacks

TITLE = "Generate"
GROUP = "Generate"
DESCRIPTION = ("What the model says: continue the prompt token by token (click a token to trace there); pin nodes "
               "and Steer them to read the original and steered texts side by side.")
WIDTH = 0.55
PREFIX = "generate"
KIND = "generate"
STEER_PREFIX, STEER_KIND = f"{PREFIX}-steer", "steer"
TOKENS, TEMPERATURE, TOP_P, SEED = (f"{PREFIX}-{n}" for n in ("tokens", "temperature", "top-p", "seed"))
OP, VALUE, WHERE, SPECS = (f"{STEER_PREFIX}-{n}" for n in ("op", "value", "where", "specs"))
TOKEN = f"{PREFIX}-token"  # pattern-matching id type: {"type": TOKEN, "index": i} (a generated token)
DIFF_LABELS = ("original", "steered")
MAX_SPEC_CHARS = 2000
OPS = {"zero": "zero", "scale": "scale by", "set": "set to", "add": "add"}
HINT = ("Continue the traced prompt. Hover a token for its probability and the top 5; click it to trace the graph "
        "at that position of prompt + continuation.")
STEER_HINT = ("Steer the pinned nodes (Ctrl/Cmd-click nodes to pin them) with the operation chosen, and/or type "
              "specs, one per line: L20.N123=x5, L7.H3=0, resid L12 += 4 * dir(L20.N123), ... @ gen")


def labelled(text: str, component) -> html.Label:
    """A control with its name beside it (number boxes show only their value once filled)."""
    return html.Label([html.Span(text, className="field-label"), component], className="field field-inline")


def layout():
    controls = [
        labelled("new tokens", dcc.Input(id=TOKENS, type="number", value=16, min=1, max=limits.NEW_TOKENS.default,
                                         step=1, className="input-tiny")),
        labelled("temperature (0: greedy)", dcc.Input(id=TEMPERATURE, type="number", value=0, min=0, step=0.1,
                                                      className="input-tiny")),
        labelled("top-p", dcc.Input(id=TOP_P, type="number", value=1, min=0.05, max=1, step=0.05,
                                    className="input-tiny")),
        labelled("seed", dcc.Input(id=SEED, type="number", value=0, min=0, step=1, className="input-tiny")),
    ]
    steer = [
        dcc.Dropdown(id=OP, value="zero", clearable=False, className="input-small",
                     options=[{"label": v, "value": k} for k, v in OPS.items()]),
        labelled("value (scale, set or add)", dcc.Input(id=VALUE, type="number", value=5, step=0.5,
                                                         className="input-tiny")),
        dcc.RadioItems(id=WHERE, value="all", inline=True,
                       options=[{"label": "every position", "value": "all"},
                                {"label": "generated positions", "value": "gen"}]),
        dcc.Textarea(id=SPECS, placeholder="more steering specs, one per line", maxLength=MAX_SPEC_CHARS, rows=2,
                     className="input-wide"),
    ]
    return html.Div([html.P(HINT, className="hint"), job_controls(PREFIX, "Generate", controls=controls),
                     html.H4("Steer"), html.P(STEER_HINT, className="hint"),
                     job_controls(STEER_PREFIX, "Steer", controls=steer)], className="panel")


def options(values: tuple) -> dict:
    """The generation options typed in the panel (VisitError: the message): tokens, temperature, top_p, seed."""
    tokens, temperature, top_p, seed = values
    n = limits.NEW_TOKENS.check(parse_int(tokens, "new tokens", minimum=1, blank=16), "new tokens")
    t, p = check_sampling(parse_float(temperature, "the temperature", minimum=0, blank=0.0),
                          parse_float(top_p, "top-p", blank=1.0))
    return {"max_new_tokens": n, "temperature": t, "top_p": p,
            "seed": parse_int(seed, "the seed", minimum=0, blank=0)}


def _traced(ctx, session_id: str):
    analysis = ctx.analysis(session_id)
    if analysis is None:
        raise VisitError("trace a prompt first: generation continues the traced prompt")
    return analysis


def start(ctx, session_id: str, values: tuple):
    """The generation job for the session's traced prompt; each token is sent as a partial result."""
    analysis = _traced(ctx, session_id)
    opts = options(values)
    vm, prompt = analysis.vm, analysis.trace.prompt
    encode_prompt(vm, prompt)

    def job(jc):
        tokens = []

        def on_token(token, index):
            tokens.append(token)
            jc.progress(index + 1, opts["max_new_tokens"], "generating")
            jc.partial({"prompt": prompt, "tokens": list(tokens)})

        gen = generate(vm, prompt, on_token=on_token, **opts)
        analysis.extras[GENERATION.result_key] = gen
        return gen

    return job


def pinned_specs(node_ids, op: str, value, where: str) -> list[str]:
    """Steering specs for the pinned nodes that can be steered (heads, neurons, W_O neurons, residual nodes)."""
    if op not in OPS:
        raise VisitError(f"unknown steering operation {op!r}; choose one of {', '.join(OPS)}")
    number = None if op == "zero" else parse_float(value, "the steering value")
    if op != "zero" and number is None:
        raise VisitError("type a value for the steering operation")
    text = {"zero": "=0", "scale": f"=x{number}", "set": f"={number}", "add": f"+={number}"}[op]
    steerable = [n for n in node_ids if _steerable(n)]
    at = "" if where == "all" else " @ gen"
    return [f"{n}{text}{at}" for n in steerable]


def _steerable(node_id: str) -> bool:
    _, _, rest = str(node_id).partition(".")
    return rest[:1] in ("H", "N") and rest[1:].isdigit() or rest.startswith("WO") and rest[2:].isdigit() or \
        rest in ("resid_pre", "resid_post", "attn_out", "mlp_out")


def start_steer(ctx, session_id: str, values: tuple):
    """Original and steered continuations (a partial), then the steered pass's graph diffed against the original."""
    analysis = _traced(ctx, session_id)
    op, value, where, typed, *gen_values = values
    opts = options(tuple(gen_values))
    if len(typed or "") > MAX_SPEC_CHARS:
        raise VisitError(f"the steering specs are too long (at most {MAX_SPEC_CHARS} characters)")
    specs = pinned_specs(ctx.state(session_id).curation.node_ids(), op, value, where or "all")
    specs += [line.strip() for line in (typed or "").splitlines() if line.strip()]
    if not specs:
        raise VisitError("pin a head, neuron or residual node (Ctrl/Cmd-click it) or type a steering spec")
    vm, prompt = analysis.vm, analysis.trace.prompt
    prompt_ids = encode_prompt(vm, prompt)[0].tolist()
    steer = steering(vm, specs, prompt_ids)  # every spec checked before the job starts

    def job(jc):
        total = 2 * opts["max_new_tokens"] + 2
        progress = lambda done: lambda tok, i: jc.progress(done + i + 1, total, "generating")  # noqa: E731
        original = generate(vm, prompt, on_token=progress(0), **opts)
        steered = generate(vm, prompt, writes=steer.writes, on_token=progress(opts["max_new_tokens"]), **opts)
        result = {"specs": steer.specs, "original": original, "steered": steered, "diff": None}
        jc.partial(dict(result))
        jc.progress(total - 2, total, "the steered pass's graph")
        s = analysis.settings
        graphs = [ctx.analyze(vm, prompt, None, analysis.trace.position, s, target_id=analysis.target.id,
                              interventions=w) for w in ((), steer.writes(0, len(prompt_ids)))]
        result["diff"] = diff_graphs(*graphs)
        analysis.extras[STEERING_KEY] = result
        jc.progress(total, total, "done")
        return result

    return job


def token_spans(tokens, clickable: bool = False, marks=None) -> list:
    """One span per generated token (whitespace made visible), its p and top 5 in the hover title; clickable ones
    carry the pattern id ``{"type": TOKEN, "index": i}``; ``marks[i]`` marks a token that steering changed."""
    out = []
    for i, t in enumerate(tokens):
        top = ", ".join(f"{display_token(a['token'])} {a['p']:.3f}" for a in t.top)
        cls = "gen-token" + (" gen-diff" if marks and marks[i] else "") + (" gen-click" if clickable else "")
        kw = {"id": {"type": TOKEN, "index": i}, "n_clicks": 0} if clickable else {}
        out.append(html.Span(display_token(t.token), title=f"p = {t.p:.4f}; top 5: {top}", className=cls, **kw))
    return out


def render(value, finished: bool):
    if isinstance(value, dict):  # a partial: the tokens so far
        return html.Div([html.Span(value["prompt"], className="gen-prompt"), *token_spans(value["tokens"])],
                        className="gen-text")
    return html.Div([html.Span(value.prompt, className="gen-prompt"), *token_spans(value.tokens, clickable=True)],
                    className="gen-text")


def render_steer(result, finished: bool):
    original, steered = result["original"], result["steered"]
    marks = differing(original.ids, steered.ids)
    sides = html.Div([
        html.Div([html.Div("original", className="diff-side-title"),
                  html.Div(token_spans(original.tokens), className="gen-text", id=f"{STEER_PREFIX}-original")],
                 className="diff-side"),
        html.Div([html.Div("steered: " + "; ".join(result["specs"]), className="diff-side-title"),
                  html.Div(token_spans(steered.tokens, marks=marks), className="gen-text",
                           id=f"{STEER_PREFIX}-steered")],
                 className="diff-side")], className="diff-sides")
    note = html.P(f"{sum(marks)} of {len(marks)} steered tokens differ (marked)."
                  + ("" if result["diff"] is not None else " Diffing the graphs…"), className="hint")
    parts = [sides, note]
    if result["diff"] is not None:
        parts.append(diff_view(result["diff"], DIFF_LABELS))
    return html.Div(parts)


def summary(gen) -> str:
    return f"{len(gen.tokens)} tokens ({gen.stopped})"


def clicked_view(gen, index: int, tokenizer) -> tuple[str, int]:
    """``(prompt + continuation, position)`` to trace for generated token ``index`` of ``gen``: the position is
    that token's own when the text re-encodes to the same tokens, else (re-encoding merged or split tokens) the
    position of the token of the re-encoded text that holds the clicked token's last character."""
    text = gen.prompt + tokenizer.decode(gen.ids)
    if tokenizer(text).input_ids == gen.prompt_ids + gen.ids:
        return text, len(gen.prompt_ids) + index
    end = len(gen.prompt + tokenizer.decode(gen.ids[:index + 1]))
    spans = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    return text, max((i for i, (a, b) in enumerate(spans) if a < end and b > a), default=len(spans) - 1)


def register_callbacks(app, ctx):
    gen_inputs = [State(TOKENS, "value"), State(TEMPERATURE, "value"), State(TOP_P, "value"), State(SEED, "value")]
    register_job_callbacks(app, ctx, PREFIX, KIND, start, render, inputs=gen_inputs, summary=summary)
    register_job_callbacks(app, ctx, STEER_PREFIX, STEER_KIND, start_steer, render_steer,
                           inputs=[State(OP, "value"), State(VALUE, "value"), State(WHERE, "value"),
                                   State(SPECS, "value"), *gen_inputs])
    register_row_clicks(app, DIFF_LABELS)

    @app.callback(Output(ids.PROMPT, "value", allow_duplicate=True),
                  Output(ids.POSITION, "value", allow_duplicate=True),
                  Output(ids.TARGET, "value", allow_duplicate=True),
                  Output(ids.URL_TRACE, "data", allow_duplicate=True),
                  Input({"type": TOKEN, "index": ALL}, "n_clicks"), State(ids.SESSION, "data"),
                  prevent_initial_call=True)
    def _trace_token(_clicks, session_id):
        """A click on a generated token: prompt + continuation into the prompt box, the token's position, trace."""
        trigger = dash_ctx.triggered_id
        if not isinstance(trigger, dict) or not dash_ctx.triggered or not dash_ctx.triggered[0]["value"]:
            return no_update, no_update, no_update, no_update  # tokens were drawn, nobody clicked
        return token_click(ctx, session_id, trigger.get("index"))


def token_click(ctx, session_id: str | None, index) -> tuple:
    """The outputs of a click on generated token ``index`` of the session's last generation: prompt box, position
    box, target box (blank: the model's prediction) and the store that makes the app trace them."""
    gen = ctx.jobs.result(session_id, KIND) if session_id else None
    if gen is None or not isinstance(index, int) or not 0 <= index < len(gen.tokens):
        return no_update, no_update, no_update, no_update
    text, position = clicked_view(gen, index, ctx.model(session_id).tokenizer)
    return text, position, "", {"search": "", "generated": index}
