(function () {
  "use strict";
  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };

  // Copy buttons: the command is in data-copy (the clipboard API where allowed, else a textarea).
  function fallbackCopy(text) {
    var ta = document.createElement("textarea");
    ta.value = text;
    ta.setAttribute("readonly", "");
    ta.style.position = "fixed";
    ta.style.opacity = "0";
    document.body.appendChild(ta);
    ta.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(ta);
    return ok;
  }
  function copied(button, ok) {
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    button.textContent = ok ? "copied" : "copy failed";
    setTimeout(function () { button.textContent = label; }, 1400);
  }
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest && ev.target.closest("button.copy");
    if (!b) return;
    ev.stopPropagation();
    var text = b.getAttribute("data-copy") || "";
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { copied(b, true); },
        function () { copied(b, fallbackCopy(text)); });
    } else {
      copied(b, fallbackCopy(text));
    }
  });

  // Open / fold every card of a list.
  $$("button[data-open], button[data-close]").forEach(function (b) {
    b.addEventListener("click", function () {
      var open = b.hasAttribute("data-open");
      $$("details.card", $(b.getAttribute(open ? "data-open" : "data-close"))).forEach(function (d) { d.open = open; });
    });
  });

  var table = $("#cases");
  if (!table) return;
  var bodies = $$("tbody.case", table);
  var q = $("#q"), statusFilter = $("#status-filter"), shown = $("#shown"), noMatch = $("#no-match");
  var statuses = (table.getAttribute("data-statuses") || "").split(" ");
  var attention = (table.getAttribute("data-attention") || "").split(" ");
  var ok = ["exact", "within_bound", "acceptable"];

  // Filter: every term must match. "field:value" (or field:"a value") compares one field exactly;
  // a term that names a status (or "ok") matches that status only; any other term is a
  // substring of the case's id, implementation, scenario, diagnosis... "Quotes" keep spaces.
  var fields = ["status", "impl", "adapter", "device", "dtype", "scenario", "mode"];
  function terms(value) {
    var out = [], re = /(?:([a-z]+):)?(?:"([^"]*)"|(\S+))/g, m;
    value = value.toLowerCase();
    while ((m = re.exec(value)) !== null) {
      var v = m[2] !== undefined ? m[2] : m[3];
      if (m[1] && fields.indexOf(m[1]) >= 0) out.push([m[1], v]);
      else if (m[1]) out.push(["", m[1] + ":" + v]);
      else if (v) out.push(["", v]);
    }
    return out;
  }
  function matches(body, ts, wanted) {
    var st = body.getAttribute("data-st");
    if (wanted === "attention" ? attention.indexOf(st) < 0 : wanted !== "all" && st !== wanted) return false;
    var s = body.getAttribute("data-s");
    for (var i = 0; i < ts.length; i++) {
      var f = ts[i][0], t = ts[i][1];
      if (f === "status" || (!f && (t === "ok" || statuses.indexOf(t) >= 0))) {
        if (t === "ok" ? ok.indexOf(st) < 0 : st !== t) return false;
      } else if (f) {
        if ((body.getAttribute("data-" + f) || "").toLowerCase() !== t) return false;
      } else if (s.indexOf(t) < 0) return false;
    }
    return true;
  }
  function apply() {
    var ts = terms(q.value), wanted = statusFilter.value, n = 0;
    bodies.forEach(function (b) {
      var keep = matches(b, ts, wanted);
      b.hidden = !keep;
      if (keep) n++;
    });
    shown.textContent = n + " of " + bodies.length + " cases shown";
    noMatch.hidden = n > 0;
  }
  q.addEventListener("input", apply);
  statusFilter.addEventListener("change", apply);
  $("#clear").addEventListener("click", function () { q.value = ""; statusFilter.value = "all"; apply(); });
  function showCases(query, status) {
    q.value = query;
    statusFilter.value = status;
    apply();
    $("#cases-section").scrollIntoView();
  }
  $$("button.cell[data-q]").forEach(function (b) {
    b.addEventListener("click", function () { showCases(b.getAttribute("data-q"), "all"); });
  });
  $$("button.chip[data-status]").forEach(function (b) {
    b.addEventListener("click", function () { showCases("", b.getAttribute("data-status")); });
  });

  // Details row of a case.
  table.addEventListener("click", function (ev) {
    var b = ev.target.closest && ev.target.closest("button.toggle");
    if (!b) return;
    var more = b.closest("tbody").querySelector("tr.more");
    more.hidden = !more.hidden;
    b.setAttribute("aria-expanded", String(!more.hidden));
  });

  // Sort by a column: numbers by data-v (NaN and inf last), text by its content; empty last.
  function key(body, col, kind) {
    var td = body.rows[0].cells[col];
    var v = td.hasAttribute("data-v") ? td.getAttribute("data-v") : td.textContent.trim();
    if (v === "" || v === "-") return null;
    if (kind === "num") { var x = parseFloat(v); return isNaN(x) ? Infinity : x; }
    return v.toLowerCase();
  }
  $$("th[data-sort]", table).forEach(function (th) {
    th.querySelector("button").addEventListener("click", function () {
      var col = +th.getAttribute("data-col"), kind = th.getAttribute("data-sort");
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      $$("th[data-sort]", table).forEach(function (o) { o.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
      var keyed = bodies.map(function (b) { return [key(b, col, kind), +b.getAttribute("data-i"), b]; });
      keyed.sort(function (a, b) {
        if (a[0] === null || b[0] === null) return a[0] === b[0] ? a[1] - b[1] : (a[0] === null ? 1 : -1);
        if (a[0] < b[0]) return -dir;
        if (a[0] > b[0]) return dir;
        return a[1] - b[1];
      });
      var frag = document.createDocumentFragment();
      keyed.forEach(function (k) { frag.appendChild(k[2]); });
      table.appendChild(frag);
    });
  });
  apply();
})();
