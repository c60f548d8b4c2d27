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

  // The exchange browser: every exchange, paginated client-side from the embedded JSON.
  // Logged content only ever reaches the page through textContent (never as markup).
  var dataEl = document.getElementById("exchange-data");
  var xb = document.getElementById("xb");
  if (dataEl && xb) { initExchangeBrowser(dataEl, xb); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function tokens(s) { return s.match(/\s+|[^\s]+/g) || []; }

  // Word-level diff (LCS over tokens); falls back to plain text for very long answers.
  function wordDiff(a, b) {
    var ta = tokens(a), tb = tokens(b), n = ta.length, m = tb.length;
    if (n * m > 400000) { return null; }
    var w = m + 1, dp = new Uint16Array((n + 1) * w), i, j;
    for (i = n - 1; i >= 0; i--) {
      for (j = m - 1; j >= 0; j--) {
        dp[i * w + j] = ta[i] === tb[j] ? dp[(i + 1) * w + j + 1] + 1 : Math.max(dp[(i + 1) * w + j], dp[i * w + j + 1]);
      }
    }
    var left = [], right = [];
    i = 0; j = 0;
    while (i < n && j < m) {
      if (ta[i] === tb[j]) { left.push([0, ta[i]]); right.push([0, tb[j]]); i++; j++; }
      else if (dp[(i + 1) * w + j] >= dp[i * w + j + 1]) { left.push([1, ta[i]]); i++; }
      else { right.push([1, tb[j]]); j++; }
    }
    for (; i < n; i++) { left.push([1, ta[i]]); }
    for (; j < m; j++) { right.push([1, tb[j]]); }
    return [left, right];
  }

  function fillDiff(pre, parts, tag) {
    var run = "", kind = 0;
    var flush = function () {
      if (!run) { return; }
      pre.appendChild(kind ? el(tag, null, run) : document.createTextNode(run));
      run = "";
    };
    parts.forEach(function (p) {
      if (p[0] !== kind) { flush(); kind = p[0]; }
      run += p[1];
    });
    flush();
  }

  function initExchangeBrowser(dataEl, xb) {
    var D = JSON.parse(dataEl.textContent || "{}");
    var verdictEl = document.getElementById("task-verdicts");
    var V = verdictEl ? JSON.parse(verdictEl.textContent || "{}") : {};
    if (!D.ids) { return; }
    var n = D.ids.length, PAGE = 50, page = 0, view = [];
    var taskSel = document.getElementById("xb-task"), candSel = document.getElementById("xb-cand");
    var outcomeSel = document.getElementById("xb-outcome"), verdictSel = document.getElementById("xb-verdict");
    var search = document.getElementById("xb-search"), orderSel = document.getElementById("xb-order");
    var tbody = document.querySelector("#xb-table tbody"), count = document.getElementById("xb-count");
    var pageLabel = document.getElementById("xb-page"), detail = document.getElementById("xb-detail");
    var passEl = document.getElementById("pass-threshold");
    var pass = passEl ? parseFloat(passEl.getAttribute("data-value")) : 0.8;
    if (isNaN(pass)) { pass = 0.8; }
    D.tasks.forEach(function (t, i) { var o = el("option", null, t || "(no task)"); o.value = String(i); taskSel.appendChild(o); });
    D.candidates.forEach(function (c, i) { var o = el("option", null, c); o.value = String(i); candSel.appendChild(o); });
    var lower = null;
    function haystack(i) {
      if (!lower) {
        lower = new Array(n);
      }
      if (lower[i] === undefined) {
        var parts = [D.ids[i], D.user[i], D.logged[i]];
        for (var c = 0; c < D.candidates.length; c++) { parts.push(D.answer[c][i]); }
        lower[i] = parts.join("\n").toLowerCase();
      }
      return lower[i];
    }
    function apply() {
      var t = taskSel.value === "" ? -1 : parseInt(taskSel.value, 10);
      var c = parseInt(candSel.value || "0", 10);
      var outcome = outcomeSel.value, verdict = verdictSel.value;
      var q = search.value.trim().toLowerCase();
      var par = D.parity[c] || [], st = D.status[c] || [], tv = V[D.candidates[c]] || {};
      view = [];
      for (var i = 0; i < n; i++) {
        if (t >= 0 && D.task[i] !== t) { continue; }
        var p = par[i], s = D.statuses[st[i]];
        if (outcome === "regression" && !(p !== null && p < pass)) { continue; }
        if (outcome === "below" && !(p !== null && p < 1 - 1e-9)) { continue; }
        if (outcome === "failed" && !(s === "error" || s === "unsupported")) { continue; }
        if (outcome === "perfect" && !(p !== null && p >= 1 - 1e-9)) { continue; }
        if (verdict && tv[D.tasks[D.task[i]]] !== verdict) { continue; }
        if (q && haystack(i).indexOf(q) === -1) { continue; }
        view.push(i);
      }
      if (orderSel.value === "worst") {
        view.sort(function (a, b) {
          var x = par[a], y = par[b];
          x = x === null ? -1 : x; y = y === null ? -1 : y;
          return x - y || a - b;
        });
      }
      page = 0;
      render();
    }
    // What a reader sees for a scored answer follows its parity, not the call's status:
    // a call that returned (status "ok") with parity 0 is "differs", never "OK".
    function outcome(s, p) {
      if (s !== "ok") { return s === "error" ? "failed call" : s; }
      if (p === null) { return "not scored"; }
      if (p >= 1 - 1e-9) { return "same as logged"; }
      if (p >= pass) { return "close to logged"; }
      return "differs from logged";
    }
    function render() {
      var c = parseInt(candSel.value || "0", 10);
      var pages = Math.max(1, Math.ceil(view.length / PAGE));
      if (page >= pages) { page = pages - 1; }
      while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
      view.slice(page * PAGE, page * PAGE + PAGE).forEach(function (i) {
        var tr = el("tr", "xb-row");
        tr.setAttribute("data-index", String(i));
        tr.tabIndex = 0;
        tr.appendChild(el("td", "xb-id", D.ids[i]));
        tr.appendChild(el("td", null, D.tasks[D.task[i]]));
        var u = D.user[i] || "";
        tr.appendChild(el("td", "xb-user", u.length > 140 ? u.slice(0, 139) + "…" : u));
        var p = D.parity[c][i];
        tr.appendChild(el("td", "num", p === null ? "n/a" : p.toFixed(3)));
        tr.appendChild(el("td", "xb-outcome", outcome(D.statuses[D.status[c][i]], p)));
        tr.addEventListener("click", function () { show(i); });
        tr.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { show(i); } });
        tbody.appendChild(tr);
      });
      count.textContent = view.length + " of " + n + " exchanges match";
      pageLabel.textContent = "page " + (page + 1) + " of " + pages;
    }
    function show(i) {
      while (detail.firstChild) { detail.removeChild(detail.firstChild); }
      detail.hidden = false;
      var head = el("h3", null, "Exchange " + D.ids[i]);
      detail.appendChild(head);
      detail.appendChild(el("p", "label", "User's last message"));
      detail.appendChild(el("pre", "content", D.user[i] || "(none)"));
      var grid = el("div", "xb-answers");
      var logged = el("div", "answer answer-logged");
      logged.appendChild(el("h5", null, "Logged OpenAI answer (the reference)"));
      logged.appendChild(el("pre", "content", D.logged[i]));
      grid.appendChild(logged);
      D.candidates.forEach(function (name, c) {
        var box = el("div", "answer answer-candidate");
        var p = D.parity[c][i];
        box.appendChild(el("h5", null, name + " - parity " + (p === null ? "n/a" : p.toFixed(3)) + " - " + outcome(D.statuses[D.status[c][i]], p)));
        var pre = el("pre", "content diff");
        var d = wordDiff(D.logged[i] || "", D.answer[c][i] || "");
        if (d) { fillDiff(pre, d[1], "ins"); } else { pre.textContent = D.answer[c][i]; }
        box.appendChild(pre);
        grid.appendChild(box);
      });
      detail.appendChild(grid);
      detail.appendChild(el("p", "muted small", "Marked: where the candidate's answer differs from the logged answer (a difference, not necessarily an error; parity says how much it matters)."));
      detail.scrollIntoView({ block: "nearest" });
    }
    [taskSel, candSel, outcomeSel, verdictSel, orderSel].forEach(function (s) { s.addEventListener("change", apply); });
    var timer = null;
    search.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(apply, 150); });
    document.getElementById("xb-prev").addEventListener("click", function () { if (page > 0) { page -= 1; render(); } });
    document.getElementById("xb-next").addEventListener("click", function () { if ((page + 1) * PAGE < view.length) { page += 1; render(); } });
    xb.hidden = false;
    apply();
  }

  // Printing shows every task, even the ones a reader collapsed.
  window.addEventListener("beforeprint", function () {
    Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) { d.open = true; });
  });

  // Signals that the page is interactive (read by the benchmarks and browser tests).
  window.__ready = true;
})();
