// Draws each usage chart from the JSON its section carries (first load and htmx swaps).
(function () {
  "use strict";
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

  function draw(section) {
    var holder = section.querySelector(".chart");
    var source = section.querySelector(".chart-data");
    if (!holder || !source || holder.dataset.drawn) return;
    var chart = JSON.parse(source.textContent);
    holder.dataset.drawn = "1";
    holder.dataset.points = String(chart.data[0].length);
    if (chart.data[0].length === 0) {
      section.querySelector(".chart-empty").hidden = false;
      return;
    }
    var series = [{}].concat(chart.labels.map(function (label, i) {
      return { label: label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false };
    }));
    var width = function () { return Math.max(280, holder.clientWidth); };
    var plot = new uPlot({
      width: width(), height: 280, series: series,
      scales: { y: { range: [0, 100] } },
      axes: [{}, { label: "%", size: 50 }],
    }, chart.data, holder);
    window.addEventListener("resize", function () {
      plot.setSize({ width: width(), height: 280 });
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll("#usage").forEach(draw);
  }
  document.addEventListener("DOMContentLoaded", function () { drawAll(); });
  document.addEventListener("htmx:afterSwap", function () { drawAll(); });
})();

// Domains: a page showing a secret once (a mailbox's login, the answer to a POST) puts
// the plain page's URL in its history entry, so a reload fetches that page (GET) and the
// secret is gone.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var once = document.querySelector("[data-replace-url]");
  if (once) window.history.replaceState(null, "", once.getAttribute("data-replace-url"));
});
