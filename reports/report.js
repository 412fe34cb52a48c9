(function () {
  "use strict";
  var $ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };
  var control = function (name) { return document.querySelector('[data-filter="' + name + '"]'); };
  var val = function (name) { var c = control(name); return c ? c.value.trim() : ""; };
  var fmt = function (n) {
    var a = Math.abs(n), d = (a >= 100 || Number.isInteger(n)) ? 0 : (a >= 10 ? 1 : 2);
    return n.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
  };
  function apply() {
    var org = val("org").toLowerCase(), risk = val("risk"), from = val("from"), to = val("to");
    $("table[data-table]").forEach(function (table) {
      var rows = $("tbody tr", table), shown = 0;
      rows.forEach(function (tr) {
        var ok = true, d = tr.dataset;
        if (org && d.org !== undefined && d.org.indexOf(org) < 0) ok = false;
        if (risk && d.risk !== undefined && Number(d.risk) < Number(risk)) ok = false;
        if (from && d.to && d.to < from) ok = false;
        if (to && d.from && d.from > to) ok = false;
        if (tr.hidden === ok) tr.hidden = !ok;
        if (ok) shown += 1;
      });
      var count = document.querySelector('[data-count="' + table.id + '"]');
      var total = rows.length.toLocaleString("en-US") + (rows.length === 1 ? " row" : " rows");
      if (count) count.textContent = shown === rows.length ? total : shown.toLocaleString("en-US") + " of " + total;
      $("tfoot [data-sum]", table).forEach(function (cell) {
        var col = Number(cell.dataset.sum), total = 0;
        rows.forEach(function (tr) { if (!tr.hidden) { var v = parseFloat(tr.cells[col].dataset.v); if (!isNaN(v)) total += v; } });
        cell.textContent = fmt(total);
      });
    });
    $("g.bucket").forEach(function (g) {
      var out = (from && g.dataset.to < from) || (to && g.dataset.from > to);
      if (g.classList.contains("out") !== Boolean(out)) g.classList.toggle("out");
    });
  }
  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    $("th", table.tHead).forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var numeric = th.dataset.type === "number" || th.dataset.type === "rank";
    var key = function (tr) { var c = tr.cells[col], v = c.dataset.v !== undefined ? c.dataset.v : c.textContent; return numeric ? (v === "" ? -Infinity : Number(v)) : v.toLowerCase(); };
    var rows = $("tr", body);
    rows.sort(function (a, b) { var x = key(a), y = key(b); return x < y ? -dir : x > y ? dir : 0; });
    rows.forEach(function (tr) { body.appendChild(tr); });
  }
  function quote(text) { return /[",\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text; }
  function exportCsv(button) {
    var table = document.getElementById(button.dataset.csv);
    var heads = $("thead th", table);
    var lines = [heads.map(function (th) { return quote(th.dataset.name || th.textContent.trim()); }).join(",")];
    // numbers as their raw values; a rank (risk, severity) as its label, not its sort code
    var raw = heads.map(function (th) { return th.dataset.type !== "rank"; });
    $("tbody tr", table).forEach(function (tr) {
      if (tr.hidden) return;
      lines.push(Array.prototype.map.call(tr.cells, function (c, i) { return quote(raw[i] && c.dataset.v !== undefined ? c.dataset.v : c.textContent.trim()); }).join(","));
    });
    var link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
    link.download = button.dataset.file || button.dataset.csv + ".csv";
    document.body.appendChild(link); link.click(); link.remove();
    setTimeout(function () { URL.revokeObjectURL(link.href); }, 1000);
  }
  document.addEventListener("input", function (e) { if (e.target.dataset && e.target.dataset.filter) apply(); });
  document.addEventListener("change", function (e) { if (e.target.dataset && e.target.dataset.filter) apply(); });
  document.addEventListener("click", function (e) {
    var th = e.target.closest("th[data-type]");
    if (th) { sortBy(th); return; }
    var button = e.target.closest("button[data-csv]");
    if (button) exportCsv(button);
    var reset = e.target.closest("button[data-reset]");
    if (reset) { $("[data-filter]").forEach(function (c) { c.value = ""; }); apply(); }
  });
  // the filter bars are written invisible (they need this script) but take their space, so
  // showing them repaints them without laying out the page's tables again
  $(".filters.off").forEach(function (bar) { bar.classList.remove("off"); });
  // a page opened afresh shows everything as written; only re-apply filters the browser restored
  if ($("[data-filter]").some(function (c) { return c.value; })) apply();
})();
