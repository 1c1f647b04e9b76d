/* Node labels that never overlap: after every draw of a flow graph (first draw, zoom, pan, a patched update),
   keep each top-token label only where it fits. Labels come in priority order (visit/render/figure.py puts the
   residual stream first); a label overlapping one kept before it is hidden, its token stays in the node's
   hover. Runs on the DOM only (no user data is evaluated). */
(function () {
  "use strict";
  var PAD = 1;  // pixels kept between two labels

  function declutter(gd) {
    var texts = gd.querySelectorAll(".scatterlayer .trace text");
    var plot = gd.querySelector(".nsewdrag") || gd;
    var area = plot.getBoundingClientRect();
    var kept = [], cell = 40, grid = {};
    function key(x, y) { return x + ":" + y; }
    for (var i = 0; i < texts.length; i++) {
      var t = texts[i];
      t.style.display = "";
      var r = t.getBoundingClientRect();
      if (!r.width || r.right < area.left || r.left > area.right || r.bottom < area.top || r.top > area.bottom) {
        continue;  // empty or outside the plot area (clipped anyway)
      }
      var x0 = Math.floor(r.left / cell), x1 = Math.floor(r.right / cell);
      var y0 = Math.floor(r.top / cell), y1 = Math.floor(r.bottom / cell);
      var clash = false;
      for (var gx = x0; gx <= x1 && !clash; gx++) {
        for (var gy = y0; gy <= y1 && !clash; gy++) {
          var bucket = grid[key(gx, gy)] || [];
          for (var j = 0; j < bucket.length; j++) {
            var k = bucket[j];
            if (r.left < k.right + PAD && k.left < r.right + PAD && r.top < k.bottom + PAD && k.top < r.bottom + PAD) {
              clash = true; break;
            }
          }
        }
      }
      if (clash) { t.style.display = "none"; continue; }
      var box = {left: r.left, right: r.right, top: r.top, bottom: r.bottom};
      kept.push(box);
      for (gx = x0; gx <= x1; gx++) for (gy = y0; gy <= y1; gy++) (grid[key(gx, gy)] = grid[key(gx, gy)] || []).push(box);
    }
    gd.setAttribute("data-labels-kept", String(kept.length));
  }

  function attach() {
    var plots = document.querySelectorAll(".js-plotly-plot");
    for (var i = 0; i < plots.length; i++) {
      var gd = plots[i];
      if (gd.__visitLabels || !gd.on) continue;
      gd.__visitLabels = true;
      (function (g) {
        g.on("plotly_afterplot", function () { declutter(g); });
        declutter(g);
      })(gd);
    }
  }
  window.visitDeclutterLabels = declutter;
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", attach);
  setInterval(attach, 500);
})();
