/* The live dashboard's page: applies the server's snapshot and batched updates (an
   event stream from "events", the only thing it fetches) to the clients table, the
   sync panel, the rates and the live diagram. The diagram's behaviour (tooltips,
   causal past and future, zoom) is VClockDiagram, shared with the offline page. */
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("vc-config").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var scroller = $("scroller");
  var canvas = scroller.querySelector(".canvas");
  var status = $("status");
  var view = VClockDiagram.create({
    scroller: scroller, tooltip: $("tooltip"), status: $("selection"),
    zoomLabel: $("zoom-level")
  });

  var source = null;
  var paused = false;
  var follow = true;
  var upto = 0;  // the newest diagram item this page holds
  var clients = new Map();  // id -> client row data
  var columns = [];  // clock ids shown as columns
  var lastState = null;
  var updates = 0;
  var slowest = 0;  // ms, the longest an update took to apply

  // Helpers

  function naturalKey(a, b) {
    var ra = a.split(/(\d+)/), rb = b.split(/(\d+)/);
    for (var i = 0; i < Math.min(ra.length, rb.length); i++) {
      if (ra[i] === rb[i]) continue;
      var na = /^\d+$/.test(ra[i]), nb = /^\d+$/.test(rb[i]);
      if (na && nb) return +ra[i] - +rb[i];
      return ra[i] < rb[i] ? -1 : 1;
    }
    return ra.length - rb.length;
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function ago(t, now) {
    if (t === null || t === undefined) return "–";
    var s = Math.max(0, now - t);
    if (s < 1) return "just now";
    if (s < 60) return s.toFixed(0) + " s ago";
    if (s < 3600) return (s / 60).toFixed(0) + " min ago";
    return (s / 3600).toFixed(1) + " h ago";
  }
  function clockText(clock) {
    return "{" + Object.keys(clock).sort(naturalKey).map(function (k) { return k + ": " + clock[k]; }).join(", ") + "}";
  }
  function chips(target, clock, own, changed) {
    target.textContent = "";
    var keys = Object.keys(clock).sort(naturalKey);
    if (!keys.length) { target.appendChild(el("span", "muted", "{}")); return; }
    keys.forEach(function (k) {
      var cls = "chip" + (k === own ? " own" : "") + (changed && changed.has(k) ? " changed" : "");
      target.appendChild(el("span", cls, k + " " + clock[k]));
    });
  }
  function few(ids, n) {  // "A, B, C … +12"
    return ids.slice(0, n).join(", ") + (ids.length > n ? " … +" + (ids.length - n) : "");
  }
  function fmt(x) { return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2).replace(/\.?0+$/, "") || "0"; }

  // Clients table

  function wantedColumns() {
    var keys = new Set();
    clients.forEach(function (c) { Object.keys(c.clock).forEach(function (k) { keys.add(k); }); keys.add(c.id); });
    return Array.from(keys).sort(naturalKey);
  }
  var MATRIX_LIMIT = 12;  // past this many ids, a clock is a line of text, not columns
  function matrix() { return columns.length <= MATRIX_LIMIT; }

  function renderHead() {
    var thead = $("clients").tHead;
    thead.textContent = "";
    var group = el("tr", "group");
    group.appendChild(el("th", "", ""));
    var span = el("th", "", "last clock reported to the server");
    span.colSpan = matrix() ? columns.length : 2;
    group.appendChild(span);
    group.appendChild(el("th", "", ""));
    var tail = el("th", "", "messages");
    tail.colSpan = 4;
    group.appendChild(tail);
    group.appendChild(el("th", "", ""));
    thead.appendChild(group);
    var tr = el("tr");
    tr.appendChild(el("th", "", "client"));
    if (matrix()) columns.forEach(function (k) { var th = el("th", "c", k); th.style.textAlign = "center"; tr.appendChild(th); });
    else { tr.appendChild(el("th", "", "clock (" + columns.length + " processes)")); tr.appendChild(el("th", "", "just changed")); }
    tr.appendChild(el("th", "", "address"));
    [["sent", "messages it sent to peers (broadcasts included)"], ["reports", "clocks it reported to the server alone"],
     ["delivered", "messages the server delivered to it"], ["syncs", "syncs the server sent it"]].forEach(function (h) {
      var th = el("th", "n", h[0]);
      th.title = h[1];
      tr.appendChild(th);
    });
    tr.appendChild(el("th", "n", "heard"));
    thead.appendChild(tr);
  }

  function renderRow(c, changed) {
    var tr = c.tr || el("tr");
    c.tr = tr;
    tr.className = c.connected ? "" : "gone";
    tr.dataset.client = c.id;
    tr.dataset.clock = JSON.stringify(c.clock);
    tr.dataset.connected = String(c.connected);
    tr.title = "server sent it at most " + clockText(c.sent) + (c.refused ? " · " + c.refused + " frame(s) refused" : "");
    tr.textContent = "";
    var id = el("td", "id");
    id.appendChild(el("span", "dot"));
    id.appendChild(document.createTextNode(c.id));
    tr.appendChild(id);
    if (matrix()) {
      columns.forEach(function (k) {
        var v = c.clock[k] || 0;
        var cls = "c clock" + (k === c.id ? " own" : "") + (v === 0 ? " zero" : "") + (changed && changed.has(k) ? " changed" : "");
        var td = el("td", cls, String(v));
        td.dataset.key = k;
        tr.appendChild(td);
      });
    } else {
      // Many processes: one line of text per clock (a cell per entry would make the
      // browser lay out thousands of cells at every update), and what changed beside it.
      var td = el("td", "clock wide");
      td.title = clockText(c.clock);
      td.appendChild(el("span", "chip own" + (changed && changed.has(c.id) ? " changed" : ""), c.id + " " + (c.clock[c.id] || 0)));
      td.appendChild(document.createTextNode(" " + Object.keys(c.clock).filter(function (k) { return k !== c.id; })
        .sort(naturalKey).map(function (k) { return k + ":" + c.clock[k]; }).join(" ")));
      tr.appendChild(td);
      var moved = changed ? Array.from(changed).filter(function (k) { return k !== c.id; }).sort(naturalKey) : [];
      var note = el("td", "moved" + (moved.length ? " changed" : ""),
        moved.length ? moved.slice(0, 3).join(", ") + (moved.length > 3 ? " +" + (moved.length - 3) : "") : "");
      note.title = moved.join(", ");
      tr.appendChild(note);
    }
    tr.appendChild(el("td", "muted mono", c.address || ""));
    [c.sends, c.reports, c.delivered, c.syncs].forEach(function (n) { tr.appendChild(el("td", "n", String(n))); });
    var heard = el("td", "n muted ago");
    heard.dataset.t = c.heard === null ? "" : String(c.heard);
    heard.textContent = ago(c.heard, lastState ? lastState.now : c.heard);
    tr.appendChild(heard);
    return tr;
  }

  function applyClients(list, full) {
    var body = $("clients").tBodies[0];
    if (full) { clients.clear(); body.textContent = ""; }
    var changedRows = [];
    list.forEach(function (c) {
      var old = clients.get(c.id);
      var changed = new Set();
      if (old) {
        Object.keys(c.clock).forEach(function (k) { if (old.clock[k] !== c.clock[k]) changed.add(k); });
        c.tr = old.tr;
      }
      clients.set(c.id, c);
      changedRows.push([c, full ? null : changed]);
    });
    var wanted = wantedColumns();
    if (wanted.join("\u0000") !== columns.join("\u0000") || full) {
      columns = wanted;
      renderHead();
      clients.forEach(function (c) { var hit = changedRows.find(function (x) { return x[0] === c; }); renderRow(c, hit ? hit[1] : null); });
    } else {
      changedRows.forEach(function (x) { renderRow(x[0], x[1]); });
    }
    // Rows in the diagram's lane order (c2 before c10); re-sorted only when one is new.
    var fresh = false;
    clients.forEach(function (c) { if (c.tr.parentNode !== body) fresh = true; });
    if (fresh) {
      Array.from(clients.keys()).sort(naturalKey).forEach(function (id) { body.appendChild(clients.get(id).tr); });
    }
    $("no-clients").hidden = clients.size > 0;
  }

  // Panels

  function applyState(s, full) {
    lastState = s;
    applyClients(s.clients, full);
    $("c-connected").textContent = String(s.connected);
    $("c-seen").textContent = String(s.client_count);
    ["messages", "reports", "deliveries", "syncs", "refused"].forEach(function (k) {
      $("r-" + k).textContent = fmt(s.rates[k] || 0);
    });
    spark(s.history);
    var y = s.sync;
    $("sync-cycle").textContent = y.cycle ? "#" + y.cycle + " · " + y.clients + " client" + (y.clients === 1 ? "" : "s") : "–";
    var frontier = $("sync-frontier");
    var keys = Object.keys(y.frontier);
    if (!y.cycle || !keys.length) frontier.innerHTML = '<span class="muted">no clock received yet</span>';
    else if (keys.length <= MATRIX_LIMIT) chips(frontier, y.frontier, null, null);
    else {
      frontier.textContent = "";
      frontier.appendChild(el("div", "clock long", keys.sort(naturalKey).map(function (k) { return k + ":" + y.frontier[k]; }).join(" ")));
    }
    var synced = $("sync-synced");
    synced.textContent = !y.cycle ? "–" : y.synced.length ? few(y.synced, 8) : "none: every client is up to date";
    synced.title = y.synced.join(", ");
    $("sync-totals").textContent = y.cycles + " cycles · " + y.sent + " syncs sent" + (y.last_sent_cycle ? " · last sent in #" + y.last_sent_cycle : "");
    $("sync-ago").textContent = ago(y.at, s.now);
    $("sync").dataset.cycle = String(y.cycle);
    $("sync").dataset.frontier = JSON.stringify(y.frontier);
    var r = $("refusals");
    r.textContent = "";
    if (!s.refusals.length) r.appendChild(el("span", "muted", "none"));
    s.refusals.slice(-3).reverse().forEach(function (x) {
      var line = el("div", "refusal", x.who + ": " + x.code);
      line.title = x.message;
      r.appendChild(line);
    });
    var recent = $("recent").tBodies[0];
    recent.textContent = "";
    s.recent.slice().reverse().forEach(function (x) {
      var tr = el("tr");
      tr.appendChild(el("td", "mono", "#" + x.cycle));
      tr.appendChild(el("td", "n", String(x.clients)));
      var who = el("td", "synced", x.synced.length ? few(x.synced, 4) : "none: all up to date");
      who.title = x.synced.join(", ");
      if (!x.synced.length) who.className += " muted";
      tr.appendChild(who);
      tr.appendChild(el("td", "n muted", ago(x.at, s.now)));
      recent.appendChild(tr);
    });
    var note = s.window + " of the last " + s.max_events + " events";
    if (s.events_seen > s.window) note += " (" + (s.events_seen - s.window) + " older ones scrolled off)";
    $("window-note").textContent = note;
    $("download").title = "What the server saw, in ShiViz/GoVector format: " + s.log.events +
      " events seen, " + s.log.unseen + " unseen ones in between" +
      (s.log.dropped ? "; the log is full (" + (s.log.max_bytes >> 20) + " MB): the last " + s.log.dropped + " are not in it" : "");
    $("clock-now").textContent = new Date(s.now * 1000).toLocaleTimeString();
  }

  function spark(history) {
    var svg = $("spark");
    var max = Math.max.apply(null, history.concat([1]));
    var w = +svg.getAttribute("width"), h = +svg.getAttribute("height");
    var pts = history.map(function (v, i) {
      return (i * w / Math.max(1, history.length - 1)).toFixed(1) + "," + (h - 1 - v / max * (h - 3)).toFixed(1);
    }).join(" ");
    svg.innerHTML = '<polyline fill="none" stroke="#60a5fa" stroke-width="1.5" points="' + pts + '"/>';
  }

  function tick() {  // "3 s ago" labels move on without an update
    if (!lastState || paused) return;
    var now = lastState.now + (Date.now() / 1000 - lastState.received);
    document.querySelectorAll("td.ago").forEach(function (td) {
      td.textContent = td.dataset.t ? ago(+td.dataset.t, now) : "–";
    });
  }
  setInterval(tick, 1000);

  // Diagram

  function applyDiagram(d) {
    if (d.kind === "reset") {
      var keep = view.selected;
      view.forget();
      canvas.innerHTML = d.labels + d.diagram;
      view.bind();
      view.link([], d.edges);
      view.applyZoom();
      upto = d.upto;
      if (keep && view.has(keep)) view.select(keep); else if (keep) view.clear();
    } else {
      var svg = canvas.querySelector("svg.diagram");
      if (!svg) return;
      view.remove(d.removed);
      svg.querySelectorAll("g.tick").forEach(function (t) { if (+t.dataset.serial <= d.markers_removed) t.remove(); });
      var fresh = new Set();
      var dots = [], arrows = [], ticks = [];
      d.events.forEach(function (x, i) {
        if (x[0] > upto) { dots.push(x[1]); arrows.push(d.arrows[i][1]); }
      });
      d.markers.forEach(function (x) { if (x[0] > upto) ticks.push(x[1]); });
      svg.querySelector("g.window > g.markers").insertAdjacentHTML("beforeend", ticks.join(""));
      svg.querySelector("g.window > g.events").insertAdjacentHTML("beforeend", dots.join(""));
      svg.querySelector("g.window > g.arrows").insertAdjacentHTML("beforeend", arrows.join(""));
      svg.querySelectorAll("g.event:not([data-bound])").forEach(function (g) { fresh.add(g.dataset.id); });
      view.bind();
      var edges = [];
      for (var i = 0; i + 1 < d.edges.length; i += 2) {
        if (fresh.has(d.edges[i + 1])) edges.push(d.edges[i], d.edges[i + 1]);
      }
      view.link([], edges);
      upto = Math.max(upto, d.upto);
      svg.querySelector("g.window").setAttribute("transform", "translate(" + (-d.shift) + ",0)");
      svg.querySelectorAll(".process-line").forEach(function (l) { l.setAttribute("x2", d.width - 20); });
      view.resize(d.width, +svg.dataset.height);
    }
    canvas.dataset.upto = String(upto);
    if (follow) toEnd();
  }

  var scrolling = false;
  function toEnd() {  // once per frame, so an update never forces a layout of its own
    if (scrolling) return;
    scrolling = true;
    requestAnimationFrame(function () {
      scrolling = false;
      if (follow) scroller.scrollLeft = scroller.scrollWidth;
    });
  }

  scroller.addEventListener("scroll", function () {
    var atEnd = scroller.scrollLeft + scroller.clientWidth >= scroller.scrollWidth - 30;
    if (atEnd !== follow) setFollow(atEnd);
  });
  function setFollow(on) {
    follow = on;
    $("follow").setAttribute("aria-pressed", String(on));
    if (on) toEnd();
  }
  $("follow").addEventListener("click", function () { setFollow(!follow); });
  $("zoom-in").addEventListener("click", function () { view.setZoom(view.zoom * 1.25); });
  $("zoom-out").addEventListener("click", function () { view.setZoom(view.zoom / 1.25); });
  $("zoom-fit").addEventListener("click", view.fit);
  $("zoom-reset").addEventListener("click", function () { view.setZoom(1); });
  $("clear").addEventListener("click", view.clear);

  // The stream

  function setStatus(kind, text) {
    status.className = "pill " + kind;
    status.textContent = text;
    document.body.dataset.status = kind;
  }
  function onMessage(full) {
    return function (e) {
      if (paused) return;
      var began = performance.now();
      var msg = JSON.parse(e.data);
      msg.state.received = Date.now() / 1000;
      applyState(msg.state, full);
      if (msg.diagram) applyDiagram(msg.diagram);
      var took = performance.now() - began;  // for the tests: the page keeps up
      slowest = Math.max(slowest, full ? 0 : took);
      document.body.dataset.slowestMs = slowest.toFixed(1);
      updates += 1;
      document.body.dataset.updates = String(updates);
      document.body.dataset.ready = "true";
      setStatus("live", "live");
    };
  }
  function connect() {
    source = new EventSource(config.events);
    source.addEventListener("snapshot", onMessage(true));
    source.addEventListener("update", onMessage(false));
    source.addEventListener("error", function () {
      if (!paused) setStatus("down", "reconnecting…");
    });
  }
  $("pause").addEventListener("click", function () {
    paused = !paused;
    this.setAttribute("aria-pressed", String(paused));
    this.textContent = paused ? "Resume" : "Pause";
    if (paused) {
      source.close();
      source = null;
      setStatus("paused", "paused");
    } else {
      setStatus("", "connecting…");
      connect();  // a fresh snapshot, then updates
    }
  });
  connect();
})();
