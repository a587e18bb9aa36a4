// Draws every chart from the JSON beside it (first load and htmx swaps): the server page's
// #usage section and any .chart-section (usage, costs). A chart's JSON has its labels and
// uPlot's columns, and may give each series a style (line, forecast: dashed, marks:
// points alone, e.g. anomalies) and a colour index (a forecast in its series' colour).
(function () {
  "use strict";
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
  var HEIGHT = 280;

  function seriesOf(chart) {
    var styles = chart.styles || [], colors = chart.colors || [];
    return [{}].concat(chart.labels.map(function (label, i) {
      var color = COLORS[(colors[i] === undefined ? i : colors[i]) % COLORS.length];
      var s = { label: label, stroke: color, width: 2, spanGaps: false };
      if (styles[i] === "forecast") {
        s.dash = [6, 4];
        s.spanGaps = true; // two points, far apart: one dashed line between them
      } else if (styles[i] === "marks") {
        s.paths = function () { return null; };
        s.points = { show: true, size: 11, width: 2, stroke: "#000", fill: color };
      }
      return s;
    }));
  }

  // One chart: its holder (.chart) and, in the same .chart-unit (else its section), the
  // JSON (.chart-data) and what to say when it has no points (.chart-empty).
  function draw(holder) {
    var unit = holder.closest(".chart-unit") || holder.closest("#usage, .chart-section");
    var source = unit && unit.querySelector(".chart-data");
    if (!source || holder.dataset.drawn) return;
    var chart = JSON.parse(source.textContent);
    holder.dataset.drawn = "1";
    holder.dataset.points = String(chart.data[0].length);
    if (chart.data[0].length === 0) {
      var empty = unit.querySelector(".chart-empty");
      if (empty) empty.hidden = false;
      return;
    }
    var width = function () { return Math.max(280, holder.clientWidth); };
    var plot = new uPlot({
      width: width(), height: HEIGHT, series: seriesOf(chart),
      scales: { y: { range: chart.range || [0, 100] } },
      axes: [{}, { label: chart.unit || "%", size: 50 }],
    }, chart.data, holder);
    var resize = function () {
      if (!holder.isConnected) { // swapped out: let it go
        window.removeEventListener("resize", resize);
        plot.destroy();
        return;
      }
      plot.setSize({ width: width(), height: HEIGHT });
    };
    window.addEventListener("resize", resize);
  }

  function drawAll() {
    document.querySelectorAll("#usage .chart, .chart-section .chart").forEach(draw);
  }
  document.addEventListener("DOMContentLoaded", drawAll);
  document.addEventListener("htmx:afterSwap", drawAll);
})();

// Domains: a page showing a secret once (a mailbox's login, the answer to a POST) puts
// the plain page's URL in its history entry, so a reload fetches that page (GET) and the
// secret is gone.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var once = document.querySelector("[data-replace-url]");
  if (once) window.history.replaceState(null, "", once.getAttribute("data-replace-url"));
});
