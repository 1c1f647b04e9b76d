/* The workspace (visit/ui/workspace.py): open a tool, arrange the graph and the tool, drag the split between them.
   The split's state is the browser's own: CSS variables and classes on <body>, kept in localStorage, so the app's
   re-draws (a new trace, a re-render of the page's components) never reset it and a reload keeps it. Each tool
   opens at its own share of the width (its pane's data-width) until the user drags the split while it is open.
   Reads and writes only layout state (no user data is evaluated). */
(function () {
  "use strict";
  var KEY = "visit.workspace";
  var MIN_SHARE = 0.2, MAX_SHARE = 0.8;

  function load() {
    try { return JSON.parse(window.localStorage.getItem(KEY)) || {}; } catch (e) { return {}; }
  }
  function save(s) {
    try { window.localStorage.setItem(KEY, JSON.stringify(s)); } catch (e) { /* private mode: not kept */ }
  }
  var state = load();
  delete state.tool;  // the page opens on its first tool
  state.widths = state.widths || {};
  state.heights = state.heights || {};

  function clamp(v) { return Math.min(MAX_SHARE, Math.max(MIN_SHARE, v)); }
  function pane(tool) { return document.querySelector('.tool-pane[data-tool="' + tool + '"]'); }
  function share(tool) {
    if (state.widths[tool]) return state.widths[tool];
    var p = pane(tool);
    return clamp(p ? parseFloat(p.getAttribute("data-width")) || 0.4 : 0.4);
  }
  function apply() {
    var body = document.body;
    if (!body) return;
    var tool = state.tool || (document.querySelector(".tool-pane.tool-open") || {getAttribute: function () { return ""; }})
      .getAttribute("data-tool");
    body.classList.toggle("visit-stacked", state.mode === "stacked");
    body.style.setProperty("--tool-share", (share(tool) * 100).toFixed(1) + "%");
    body.style.setProperty("--graph-share", ((state.heights[tool] || 0.5) * 100).toFixed(1) + "%");
  }

  function dragging(handle, event) {
    var split = handle.parentElement;
    var box = split.getBoundingClientRect();
    var stacked = state.mode === "stacked";
    var tool = state.tool || (document.querySelector(".tool-pane.tool-open") || {}).getAttribute("data-tool");
    handle.setPointerCapture(event.pointerId);
    document.body.classList.add("visit-dragging");
    function move(e) {
      if (stacked) state.heights[tool] = clamp((e.clientY - box.top) / box.height);
      else state.widths[tool] = clamp((box.right - e.clientX) / box.width);
      apply();
    }
    function up() {
      handle.removeEventListener("pointermove", move);
      handle.removeEventListener("pointerup", up);
      handle.removeEventListener("pointercancel", up);
      document.body.classList.remove("visit-dragging");
      save(state);
      window.dispatchEvent(new Event("resize"));  // charts that listen to the window follow
    }
    handle.addEventListener("pointermove", move);
    handle.addEventListener("pointerup", up);
    handle.addEventListener("pointercancel", up);
    event.preventDefault();
  }

  document.addEventListener("pointerdown", function (e) {
    var handle = e.target.closest && e.target.closest(".split-handle");
    if (handle) dragging(handle, e);
  }, true);
  document.addEventListener("keydown", function (e) {  // the handle has focus: arrows move the split
    if (!e.target.classList || !e.target.classList.contains("split-handle")) return;
    var tool = state.tool, stacked = state.mode === "stacked";
    var step = ({ArrowLeft: 0.05, ArrowRight: -0.05, ArrowUp: -0.05, ArrowDown: 0.05})[e.key];
    if (!step) return;
    if (stacked) state.heights[tool] = clamp((state.heights[tool] || 0.5) + step);
    else state.widths[tool] = clamp(share(tool) + step);
    apply(); save(state); e.preventDefault();
  });

  // the legend (visit/ui/welcome.py) is a dialog over a backdrop: a click beside it or Escape closes it
  document.addEventListener("click", function (e) {
    if (e.target.classList && (e.target.classList.contains("legend-backdrop") || e.target.classList.contains("legend-close"))) {
      var d = e.target.closest("details");
      if (d) d.open = false;
    }
  });
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Escape") return;
    var d = document.querySelector("details.legend[open]");
    if (d) d.open = false;
  });

  var observer = new MutationObserver(function () {
    if (document.querySelector(".tool-pane")) { apply(); observer.disconnect(); }
  });
  function start() { apply(); observer.observe(document.body, {childList: true, subtree: true}); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();

  var no = function () { return window.dash_clientside.no_update; };
  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    visit_workspace: {
      select: function (clicks, current) {
        var ctx = window.dash_clientside.callback_context;
        var keys = ctx.inputs_list[0].map(function (i) { return i.id.index; });
        var picked = ctx.triggered_id && ctx.triggered_id.index;
        if (!picked || keys.indexOf(picked) < 0) return [no(), keys.map(no), ctx.outputs_list[2].map(no)];
        state.tool = picked; apply();
        return [picked === current ? no() : picked,
                keys.map(function (k) { return "tab tool-button" + (k === picked ? " tab-selected" : ""); }),
                ctx.outputs_list[2].map(function (o) { return "tool-pane" + (o.id.index === picked ? " tool-open" : ""); })];
      },
      arrange: function () {
        var ctx = window.dash_clientside.callback_context;
        var mode = ctx.triggered_id && ctx.triggered_id.index;
        if (!mode) return no();
        state.mode = mode; apply(); save(state);
        window.dispatchEvent(new Event("resize"));
        return mode;
      },
      traced: function (version, className) {
        var want = version ? "workspace" : "workspace untraced";
        return want === className ? no() : want;
      },
      example: function (clicks, texts, traces) {
        var ctx = window.dash_clientside.callback_context;
        var id = ctx.triggered_id;
        if (!id || !ctx.triggered.length || !ctx.triggered[0].value) return [no(), no(), no()];
        var keys = ctx.inputs_list[0].map(function (i) { return i.id.index; });
        var text = texts[keys.indexOf(id.index)];
        if (!text) return [no(), no(), no()];
        return [text, "", (traces || 0) + 1];
      }
    }
  });
})();
