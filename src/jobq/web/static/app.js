// jobq dashboard: live updates by polling the JSON API, and the throughput
// chart. Everything from a job is put in the page as text (textContent),
// never as HTML.
"use strict";
(function () {
  var POLL_MS = 2000;
  var SVG = "http://www.w3.org/2000/svg";
  var body = document.body;
  var base = body.getAttribute("data-base") || "";
  var page = body.getAttribute("data-page");
  var STATUSES = ["pending", "processing", "completed", "failed", "delayed", "cancelled"];

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function setText(id, text) {
    var node = document.getElementById(id);
    if (node && node.textContent !== String(text)) node.textContent = String(text);
  }
  function link(href, text) {
    var a = el("a", text);
    a.setAttribute("href", href);
    return a;
  }
  function replaceRows(tbody, rows) {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    rows.forEach(function (row) { tbody.appendChild(row); });
  }
  function live(ok) {
    var badge = document.getElementById("live");
    if (!badge) return;
    badge.className = ok ? "live" : "live off";
    badge.textContent = ok ? "live " + new Date().toLocaleTimeString() : "offline";
  }
  function getJSON(path) {
    return fetch(base + path, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        // The session ended (expired, or logged out elsewhere): the page
        // reloads, and shows the login form.
        if (r.status === 401) window.location.reload();
        if (!r.ok) throw new Error(r.status);
        return r.json();
      });
  }

  // -- chart ---------------------------------------------------------------
  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }
  // The overview's chart: stacked bars of jobs finished per minute (left
  // axis), the failure rate on its own axis (right, 0-100 %) read over a
  // trailing window and drawn only where enough jobs finished (the server
  // sets both numbers: data-rate-trail, data-rate-min), time along the bottom.
  function niceCeiling(v) {
    if (v <= 1) return 1;
    var power = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * power >= v) return steps[i] * power;
    return 10 * power;
  }
  function text(root, attrs, value) {
    var node = svg("text", attrs);
    node.textContent = value;
    root.appendChild(node);
    return node;
  }
  function drawChart(container, series) {
    var W = 760, H = 230, L = 52, R = 56, T = 12, B = 40;
    var trail = parseInt(container.getAttribute("data-rate-trail") || "5", 10);
    var least = parseInt(container.getAttribute("data-rate-min") || "5", 10);
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "chart-svg", role: "img" });
    var top = 0;
    series.forEach(function (p) { top = Math.max(top, p.completed + p.failed); });
    top = niceCeiling(top);
    var plotW = W - L - R, plotH = H - T - B, bottom = T + plotH;
    var n = Math.max(series.length, 1);
    var slot = plotW / n;
    var y = function (v, scale) { return bottom - (v / scale) * plotH; };
    var tickStep = Math.max(1, niceCeiling(top / 5));
    for (var t = 0; t <= top; t += tickStep) {
      root.appendChild(svg("line", { x1: L, x2: W - R, y1: y(t, top), y2: y(t, top), class: "grid" }));
      text(root, { x: L - 6, y: y(t, top) + 4, class: "tick end y-left" }, String(t));
    }
    [0, 25, 50, 75, 100].forEach(function (pct) {
      text(root, { x: W - R + 6, y: y(pct, 100) + 4, class: "tick y-right" }, pct + "%");
    });
    var segments = [[]];
    series.forEach(function (p, i) {
      var x = L + i * slot + slot * 0.1;
      var w = Math.max(slot * 0.8, 1);
      var total = p.completed + p.failed;
      var group = svg("g", {});
      var tip = svg("title", {});
      tip.textContent = String(p.minute).slice(11, 16) + " UTC: " + p.completed + " completed, " + p.failed + " failed";
      group.appendChild(tip);
      group.appendChild(svg("rect", { x: x, y: y(p.completed, top), width: w, height: bottom - y(p.completed, top), class: "bar completed" }));
      group.appendChild(svg("rect", { x: x, y: y(total, top), width: w, height: y(p.completed, top) - y(total, top), class: "bar failed" }));
      root.appendChild(group);
      var done = 0, failed = 0;
      series.slice(Math.max(0, i - trail + 1), i + 1).forEach(function (q) { done += q.completed; failed += q.failed; });
      if (done + failed >= least) {
        segments[segments.length - 1].push((L + i * slot + slot / 2) + "," + y(100 * failed / (done + failed), 100));
      } else if (segments[segments.length - 1].length) {
        segments.push([]);
      }
    });
    segments.forEach(function (points) {
      if (points.length > 1) root.appendChild(svg("polyline", { points: points.join(" "), class: "rate" }));
      else if (points.length === 1) {
        var xy = points[0].split(",");
        root.appendChild(svg("circle", { cx: xy[0], cy: xy[1], r: 2.5, class: "rate" }));
      }
    });
    var every = Math.max(1, Math.ceil(series.length / 6));
    for (var i = 0; i < series.length; i += every) {
      text(root, { x: L + i * slot + slot / 2, y: bottom + 16, class: "tick x" }, String(series[i].minute).slice(11, 16));
    }
    root.appendChild(svg("line", { x1: L, x2: L, y1: T, y2: bottom, class: "axis" }));
    root.appendChild(svg("line", { x1: W - R, x2: W - R, y1: T, y2: bottom, class: "axis" }));
    root.appendChild(svg("line", { x1: L, x2: W - R, y1: bottom, y2: bottom, class: "axis" }));
    var mid = T + plotH / 2;
    text(root, { x: 12, y: mid, transform: "rotate(-90 12 " + mid + ")", "text-anchor": "middle", class: "axis-title" }, "jobs per minute");
    text(root, { x: W - 8, y: mid, transform: "rotate(90 " + (W - 8) + " " + mid + ")", "text-anchor": "middle", class: "axis-title" },
      "failure rate, last " + trail + " minutes (%)");
    text(root, { x: L + plotW / 2, y: H - 6, "text-anchor": "middle", class: "axis-title" }, "time (UTC)");
    while (container.firstChild) container.removeChild(container.firstChild);
    container.appendChild(root);
  }

  function countRows(grouped, param) {
    return Object.keys(grouped).map(function (name) {
      var tr = el("tr");
      var td = el("td");
      td.appendChild(link(base + "/jobs?" + param + "=" + encodeURIComponent(name), name));
      tr.appendChild(td);
      STATUSES.forEach(function (s) { tr.appendChild(el("td", grouped[name][s] || 0, "num")); });
      return tr;
    });
  }
  function hidden(name, value) {
    var input = el("input");
    input.setAttribute("type", "hidden");
    input.setAttribute("name", name);
    input.setAttribute("value", value);
    return input;
  }
  // The queues' rows: counts, running or paused, and the button that flips it.
  function queueRows(byQueue, paused) {
    var names = Object.keys(byQueue).concat(Object.keys(paused).filter(function (n) { return !(n in byQueue); }));
    names.sort();
    var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
    return names.map(function (name) {
      var counts = byQueue[name] || {};
      var isPaused = name in paused;
      var tr = el("tr");
      tr.setAttribute("data-queue", name);
      var td = el("td");
      td.appendChild(link(base + "/queues/" + encodeURIComponent(name), name));
      td.appendChild(document.createTextNode(" "));
      td.appendChild(link(base + "/jobs?queue=" + encodeURIComponent(name), "jobs"));
      td.lastChild.className = "muted small";
      tr.appendChild(td);
      STATUSES.forEach(function (s) { tr.appendChild(el("td", counts[s] || 0, "num")); });
      var state = el("td", null, "state");
      var badge = el("span", isPaused ? "paused" : "running", "badge " + (isPaused ? "s-paused" : "s-running"));
      if (isPaused) badge.setAttribute("title", "since " + String(paused[name]).slice(0, 19).replace("T", " ") + " UTC");
      state.appendChild(badge);
      state.appendChild(document.createTextNode(" "));
      var form = el("form", null, "inline");
      form.setAttribute("method", "post");
      form.setAttribute("action", base + "/queues/" + (isPaused ? "resume" : "pause"));
      form.appendChild(hidden("csrf_token", csrf));
      form.appendChild(hidden("queue", name));
      var button = el("button", isPaused ? "Resume" : "Pause", "btn small");
      button.setAttribute("type", "submit");
      form.appendChild(button);
      state.appendChild(form);
      tr.appendChild(state);
      return tr;
    });
  }

  // Counts per queue and type and the throughput, once slow to count, come
  // from a background count: say how old they are (see jobq.admin.figures).
  function figuresAge(d) {
    if (d.breakdown === "unfinished") return UNFINISHED_NOTE;
    if (d.figures_age === null || d.figures_age === undefined) return "";
    return "per queue, per type and throughput as counted " + Math.round(d.figures_age) + " s ago (recounted in the background)";
  }
  // The jobs per status, once slow to count, likewise (every few seconds).
  function countsAge(d) {
    if (d.counts_age === null || d.counts_age === undefined) return "";
    return "jobs per status as counted " + Math.round(d.counts_age) + " s ago (recounted every few seconds in the background)";
  }
  var UNFINISHED_NOTE = "per queue and per type: waiting and running jobs only, while the finished ones are counted";

  // -- pages ---------------------------------------------------------------
  function updateOverview() {
    return getJSON("/api/overview").then(function (d) {
      STATUSES.forEach(function (s) {
        var node = document.querySelector('[data-count="' + s + '"]');
        if (node) node.textContent = String(d.counts[s] || 0);
      });
      setText("total", d.total);
      setText("tp-completed", d.throughput.completed);
      setText("tp-failed", d.throughput.failed);
      setText("tp-rate", d.throughput.per_minute);
      setText("tp-failure", (d.throughput.failure_rate * 100).toFixed(1));
      setText("figures-age", figuresAge(d));
      setText("counts-age", countsAge(d));
      var chart = document.getElementById("chart");
      if (chart) drawChart(chart, d.throughput.series);
      var q = document.getElementById("by-queue");
      if (q) replaceRows(q, queueRows(d.by_queue, d.paused || {}));
      var t = document.getElementById("by-type");
      if (t) replaceRows(t, countRows(d.by_type, "type"));
      var workers = document.getElementById("workers");
      if (workers) {
        var rows = d.workers.map(function (w) {
          var tr = el("tr", null, w.alive === false ? "dead" : null);
          tr.appendChild(el("td", w.alive === false ? w.owner + " (dead)" : w.owner));
          tr.appendChild(el("td", w.jobs, "num"));
          return tr;
        });
        if (!rows.length) {
          var tr = el("tr");
          var td = el("td", "none", "muted");
          td.setAttribute("colspan", "2");
          tr.appendChild(td);
          rows.push(tr);
        }
        replaceRows(workers, rows);
      }
      var oldest = document.getElementById("oldest");
      if (oldest) {
        while (oldest.firstChild) oldest.removeChild(oldest.firstChild);
        var o = d.oldest_waiting;
        if (o) {
          oldest.appendChild(link(base + "/jobs/" + encodeURIComponent(o.id), o.type));
          oldest.appendChild(document.createTextNode(" in "));
          oldest.appendChild(el("b", o.queue));
          oldest.appendChild(document.createTextNode(", ready for " + o.waiting_seconds.toFixed(1) + " s"));
        } else {
          oldest.appendChild(el("span", "nothing is waiting", "muted"));
        }
      }
    });
  }

  function updateJobs() {
    var table = document.getElementById("jobs");
    var query = table.getAttribute("data-query");
    return getJSON("/api/jobs" + (query ? "?" + query : "")).then(function (d) {
      setText("total", d.total);
      setText("bulk-total", d.total);
      // The ticks survive the refresh: a row keeps its box while it is listed.
      var picked = {};
      document.querySelectorAll('#job-rows input[name="job"]:checked').forEach(function (box) { picked[box.value] = true; });
      var rows = d.jobs.map(function (j) {
        var tr = el("tr");
        var pick = el("td", null, "pick");
        var box = el("input");
        box.setAttribute("type", "checkbox");
        box.setAttribute("name", "job");
        box.setAttribute("value", j.id);
        box.checked = !!picked[j.id];
        pick.appendChild(box);
        tr.appendChild(pick);
        var id = el("td", null, "mono");
        id.appendChild(link(base + "/jobs/" + encodeURIComponent(j.id), j.id));
        tr.appendChild(id);
        tr.appendChild(el("td", j.type, "name"));
        tr.appendChild(el("td", j.queue, "name"));
        var st = el("td");
        st.appendChild(el("span", j.status, "badge s-" + j.status));
        tr.appendChild(st);
        tr.appendChild(el("td", j.attempts + "/" + j.max_attempts, "num"));
        tr.appendChild(el("td", String(j.created_at).slice(0, 19).replace("T", " "), "mono when"));
        tr.appendChild(el("td", j.data_preview, "mono preview"));
        tr.appendChild(el("td", j.error || "", "preview"));
        return tr;
      });
      if (!rows.length) {
        var tr = el("tr");
        var td = el("td", "no jobs", "muted");
        td.setAttribute("colspan", "9");
        tr.appendChild(td);
        rows.push(tr);
      }
      replaceRows(document.getElementById("job-rows"), rows);
    });
  }

  function updateJob() {
    var box = document.getElementById("job");
    var id = box.getAttribute("data-id");
    var shown = document.getElementById("job-status").textContent;
    return getJSON("/api/jobs/" + encodeURIComponent(id)).then(function (j) {
      var attempts = document.querySelectorAll("#attempts tr.attempt").length;
      if (j.status !== shown || (j.history && j.history.length !== attempts)) {
        // The actions on offer depend on the status, and a new attempt adds
        // a row to the history: render the page anew.
        window.location.reload();
        return;
      }
      var bar = document.getElementById("job-progress");
      if (bar && j.progress !== null) {
        bar.value = j.progress;
        setText("job-progress-text", (j.progress * 100).toFixed(1) + " %");
        setText("job-progress-message", j.progress_message || "");
      }
      setText("job-attempts", j.attempts + " of " + j.max_attempts);
      setText("job-owner", j.lease_owner || "");
      setText("job-error", j.error || "");
      setText("job-result", JSON.stringify(j.result, null, 2));
    });
  }

  function updateWorkers() {
    return getJSON("/api/workers").then(function (d) {
      var stamp = function (t) { return t ? String(t).slice(0, 19).replace("T", " ") : ""; };
      var rows = d.workers.map(function (w) {
        var tr = el("tr", null, w.alive === false ? "worker dead" : "worker");
        tr.setAttribute("data-alive", w.alive === false ? "no" : "yes");
        tr.appendChild(el("td", w.owner, "mono"));
        var state = el("td");
        state.appendChild(el("span", w.alive === false ? "dead" : "alive", w.alive === false ? "badge s-failed" : "badge s-completed"));
        tr.appendChild(state);
        tr.appendChild(el("td", w.host || ""));
        tr.appendChild(el("td", w.pid === undefined || w.pid === null ? "" : w.pid, "num"));
        tr.appendChild(el("td", w.queues ? w.queues.join(", ") : "all"));
        tr.appendChild(el("td", w.concurrency === undefined || w.concurrency === null ? "" : w.concurrency, "num"));
        tr.appendChild(el("td", w.jobs, "num"));
        tr.appendChild(el("td", w.done === undefined || w.done === null ? "" : w.done, "num"));
        tr.appendChild(el("td", stamp(w.started_at), "mono"));
        tr.appendChild(el("td", stamp(w.heartbeat_at), "mono"));
        tr.appendChild(el("td", w.version || "", "mono"));
        return tr;
      });
      if (!rows.length) {
        var tr = el("tr");
        var td = el("td", "no workers registered", "muted");
        td.setAttribute("colspan", "11");
        tr.appendChild(td);
        rows.push(tr);
      }
      replaceRows(document.querySelector("#workers-table tbody"), rows);
    });
  }

  var updaters = { overview: updateOverview, jobs: updateJobs, job: updateJob, workers: updateWorkers };
  var update = updaters[page];

  document.querySelectorAll("form.confirm").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var question = form.getAttribute("data-confirm") || "Remove this job for good?";
      if (!window.confirm(question)) event.preventDefault();
    });
  });
  var pickAll = document.getElementById("pick-all");
  if (pickAll) {
    pickAll.addEventListener("change", function () {
      document.querySelectorAll('#job-rows input[name="job"]').forEach(function (box) { box.checked = pickAll.checked; });
    });
  }
  var chart = document.getElementById("chart");
  if (chart) {
    try { drawChart(chart, JSON.parse(chart.getAttribute("data-series") || "[]")); } catch (e) { /* redrawn on the next poll */ }
  }
  if (!update) return;
  function tick() {
    if (document.hidden) { setTimeout(tick, POLL_MS); return; }
    update().then(function () { live(true); }, function () { live(false); })
      .then(function () { setTimeout(tick, POLL_MS); });
  }
  setTimeout(tick, POLL_MS);
})();
