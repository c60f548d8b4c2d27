(function () {
  "use strict";
  // Sort the task x candidate matrix by clicking a column header.
  var table = document.getElementById("matrix");
  if (table && table.tHead && table.tBodies.length) {
    var headers = table.tHead.rows[0].cells;
    var body = table.tBodies[0];
    var sortValue = function (row, index, type) {
      var cell = row.cells[index];
      var raw = cell ? (cell.getAttribute("data-sort") || cell.textContent || "") : "";
      if (type === "number") {
        var n = parseFloat(raw);
        return isNaN(n) ? -Infinity : n;
      }
      return raw.toLowerCase();
    };
    Array.prototype.forEach.call(headers, function (th, index) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort-button";
      while (th.firstChild) { button.appendChild(th.firstChild); }
      th.appendChild(button);
      button.addEventListener("click", function () {
        var type = th.getAttribute("data-sort-type") || "text";
        var dir = button.getAttribute("data-dir") === "asc" ? "desc" : "asc";
        Array.prototype.forEach.call(headers, function (h) {
          var b = h.querySelector(".sort-button");
          if (b) { b.removeAttribute("data-dir"); }
          h.removeAttribute("aria-sort");
        });
        button.setAttribute("data-dir", dir);
        th.setAttribute("aria-sort", dir === "asc" ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.forEach(function (row, i) { row._order = i; });
        rows.sort(function (a, b) {
          var x = sortValue(a, index, type), y = sortValue(b, index, type);
          var c = x < y ? -1 : (x > y ? 1 : a._order - b._order);
          return dir === "asc" ? c : -c;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  }

  // Filter the regressions by text (case-insensitive).
  var bar = document.getElementById("filter-bar");
  var input = document.getElementById("regression-filter");
  var count = document.getElementById("filter-count");
  var items = document.querySelectorAll(".regression");
  if (bar && input && items.length) {
    bar.hidden = false;
    var texts = Array.prototype.map.call(items, function (el) { return (el.textContent || "").toLowerCase(); });
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase();
      var shown = 0;
      Array.prototype.forEach.call(items, function (el, i) {
        var match = !q || texts[i].indexOf(q) !== -1;
        el.hidden = !match;
        if (match) { shown += 1; }
      });
      count.textContent = q ? shown + " of " + items.length + " shown" : "";
    });
  }

  // Printing shows every task, even the ones a reader collapsed.
  window.addEventListener("beforeprint", function () {
    Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) { d.open = true; });
  });
})();
