/* Pinning: remember which modifier keys the last click on the page held, so that the clientside callback in
   visit/ui/pins.py can tell a Ctrl/Cmd-click on a graph node (pin it) from a plain click (select it). Plotly's
   click data does not carry the keys. Reads key flags only; no user data is touched. */
(function () {
  "use strict";
  function note(e) {
    window.visitClickKeys = {pin: !!(e.ctrlKey || e.metaKey), t: Date.now()};
  }
  document.addEventListener("mousedown", note, true);
  document.addEventListener("pointerdown", note, true);
})();
