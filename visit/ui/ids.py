"""Component ids shared by the app and its panels (panels read these; keep them stable)."""

SESSION = "visit-session"  # dcc.Store(storage_type="session"): this browser tab's session id
ANALYSIS_VERSION = "visit-analysis-version"  # dcc.Store: changes whenever the session gets a new analysis
GRAPH_REQUEST = "visit-graph-request"  # dcc.Store panels write to (allow_duplicate=True) to re-draw the graph
GRAPH = "visit-graph"  # the flow graph (dcc.Graph); its clickData names the clicked node

MODEL_INPUT = "visit-model-input"
MODEL_LOAD = "visit-model-load"
MODEL_STATUS = "visit-model-status"
PROMPT = "visit-prompt"
TARGET = "visit-target"
TARGET_SUGGESTIONS = "visit-target-suggestions"
POSITION = "visit-position"
LAYER_START = "visit-layer-start"
LAYER_END = "visit-layer-end"
TRACE = "visit-trace"
EXPORT = "visit-export"
DOWNLOAD = "visit-download"
CLEAR_MARKS = "visit-clear-marks"
MESSAGE = "visit-message"
PREDICTIONS = "visit-predictions"
PREDICTION_CHIP = "visit-prediction-chip"  # pattern-matching id type: {"type": PREDICTION_CHIP, "index": i}
LAYER_STRIP = "visit-layer-strip"
PROMPT_TOKENS = "visit-prompt-tokens"
PROMPT_TOKEN = "visit-prompt-token"  # pattern-matching id type: click a token to trace at its position
TABS = "visit-tabs"
GRAPH_LOADING = "visit-graph-loading"
GRAPH_HINT = "visit-graph-hint"
URL = "visit-url"  # dcc.Location: the query string holds the view (visit.ui.url_state)
URL_TRACE = "visit-url-trace"  # dcc.Store: a link's view was put in the controls: trace it
PROGRESS = "visit-progress"  # a thin bar that runs while a trace is in flight
VIEW_VERSION = "visit-view-version"  # dcc.Store: changes when pins, groups, labels or the selected node change
PIN_CLICK = "visit-pin-click"  # dcc.Store: a Ctrl/Cmd-click on a node (visit.ui.pins, assets/pins.js)

# pruning knobs: GraphSettings field -> component id
KNOBS = {
    "heads_per_layer": "visit-knob-heads",
    "memory_per_head": "visit-knob-memory",
    "wo_neurons": "visit-knob-wo",
    "mlp_top": "visit-knob-mlp-top",
    "mlp_bottom": "visit-knob-mlp-bottom",
    "min_edge_score": "visit-knob-min-edge",
}
PRUNE_BY = "visit-prune-by"
CIRCUIT_SHARE = "visit-circuit-share"  # slider: the share of log p(target)'s increase the circuit mode keeps
SHOW_NORMS = "visit-show-norms"
