/* The workspace (visit/ui/workspace.py): open a tool, arrange the graph and the tool, drag the split between them.
   The split's state is the browser's own: CSS variables and classes on <body>, kept in localStorage, so the app's
   re-draws (a new trace, a re-render of the page's components) never reset it and a reload keeps it. Each tool
   keeps the split when another is opened (a resized flow graph is re-drawn, seconds in software rendering); its
   "more room" button sets the split to the share it is made for (its pane's data-width).
   Reads and writes only layout state (no user data is evaluated). */
(function () {
  "use strict";
  var KEY = "visit.workspace";
  var MIN_SHARE = 0.2, MAX_SHARE = 0.8, DEFAULT_SHARE = 0.4;

  function load() {
    try { return JSON.parse(window.localStorage.getItem(KEY)) || {}; } catch (e) { return {}; }
  }
  function save() {
    try { window.localStorage.setItem(KEY, JSON.stringify(state)); } catch (e) { /* private mode: not kept */ }
  }
  var state = load();

  function clamp(v) { return Math.min(MAX_SHARE, Math.max(MIN_SHARE, v)); }
  function apply() {
    var body = document.body;
    if (!body) return;
    body.classList.toggle("visit-stacked", state.mode === "stacked");
    body.style.setProperty("--tool-share", (clamp(state.width || DEFAULT_SHARE) * 100).toFixed(1) + "%");
    body.style.setProperty("--graph-share", (clamp(state.height || 0.5) * 100).toFixed(1) + "%");
    offerRoom();
  }
  function offerRoom() {  // "more room" only where the open tool is made for more than the split gives it
    var pane = document.querySelector(".tool-pane.tool-open");
    var button = pane && pane.querySelector(".tool-widen");
    if (button) button.hidden = clamp(parseFloat(pane.getAttribute("data-width")) || 0) <= clamp(state.width || DEFAULT_SHARE) + 0.01;
  }
  function resized() {
    save();
    window.dispatchEvent(new Event("resize"));  // charts that listen to the window follow
  }

  function dragging(handle, event) {
    var box = handle.parentElement.getBoundingClientRect();
    var stacked = state.mode === "stacked";
    handle.setPointerCapture(event.pointerId);
    document.body.classList.add("visit-dragging");
    function move(e) {
      if (stacked) state.height = clamp((e.clientY - box.top) / box.height);
      else state.width = clamp((box.right - e.clientX) / box.width);
      apply();
    }
    function up() {
      handle.removeEventListener("pointermove", move);
      handle.removeEventListener("pointerup", up);
      handle.removeEventListener("pointercancel", up);
      document.body.classList.remove("visit-dragging");
      resized();
    }
    handle.addEventListener("pointermove", move);
    handle.addEventListener("pointerup", up);
    handle.addEventListener("pointercancel", up);
    event.preventDefault();
  }

  // open a tool at the click: the buttons' and panes' classes change here, in the same frame (the clientside
  // callback below only tells the panels); React leaves them be, their className props never change
  function select(button) {
    var tool = button.getAttribute("data-tool");
    var buttons = document.querySelectorAll(".tool-button");
    for (var i = 0; i < buttons.length; i++) buttons[i].classList.toggle("tab-selected", buttons[i] === button);
    var panes = document.querySelectorAll(".tool-pane");
    for (i = 0; i < panes.length; i++) panes[i].classList.toggle("tool-open", panes[i].getAttribute("data-tool") === tool);
    offerRoom();
  }

  document.addEventListener("pointerdown", function (e) {
    var handle = e.target.closest && e.target.closest(".split-handle");
    if (handle) dragging(handle, e);
  }, true);
  document.addEventListener("click", function (e) {
    if (!e.target.closest) return;
    var button = e.target.closest(".tool-button");
    if (button) { select(button); return; }
    var widen = e.target.closest(".tool-widen");
    if (widen) {
      var pane = widen.closest(".tool-pane");
      state.mode = "side";
      state.width = clamp(parseFloat(pane.getAttribute("data-width")) || DEFAULT_SHARE);
      apply(); resized(); return;
    }
    // the legend (visit/ui/welcome.py) is a dialog over a backdrop: a click beside it or on its x closes it
    if (e.target.classList.contains("legend-backdrop") || e.target.classList.contains("legend-close")) {
      var d = e.target.closest("details");
      if (d) d.open = false;
    }
  }, true);
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") {
      var d = document.querySelector("details.legend[open]");
      if (d) d.open = false;
      return;
    }
    if (!e.target.classList || !e.target.classList.contains("split-handle")) return;  // arrows move the split
    var step = ({ArrowLeft: 0.05, ArrowRight: -0.05, ArrowUp: -0.05, ArrowDown: 0.05})[e.key];
    if (!step) return;
    if (state.mode === "stacked") state.height = clamp((state.height || 0.5) + step);
    else state.width = clamp((state.width || DEFAULT_SHARE) + step);
    apply(); resized(); e.preventDefault();
  });

  var observer = new MutationObserver(function () {  // the page's components arrive after the document
    if (document.querySelector(".tool-pane")) { apply(); observer.disconnect(); }
  });
  function start() { apply(); observer.observe(document.body, {childList: true, subtree: true}); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();

  var no = function () { return window.dash_clientside.no_update; };
  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    visit_workspace: {
      select: function (clicks, current) {
        var id = window.dash_clientside.callback_context.triggered_id;
        return id && id.index && id.index !== current ? id.index : no();
      },
      arrange: function () {
        var id = window.dash_clientside.callback_context.triggered_id;
        if (!id || !id.index) return no();
        state.mode = id.index; apply(); resized();
        return id.index;
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
