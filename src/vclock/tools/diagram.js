/* vclock space-time diagram: hover a dot for its clock, click it for its causal past and
   future, zoom. Shared by the offline page (vclock diagram) and the live dashboard
   (vclock.web), which both inline it; it fetches nothing.

   The SVG is drawn on the server (vclock/tools/drawing.py). This script only reads it:

     var view = VClockDiagram.create({scroller: el, tooltip: el, status: el});
     view.bind();                 // take in the dots and arrows now in the SVG
     view.link(ids, edges);       // happened-before edges: ids, or indices into ids
     view.remove(ids);            // dots that scrolled off (the live view), with their arrows
     view.forget();               // before the SVG is replaced
     view.select(id); view.clear(); view.setZoom(z); view.resize(width, height);
     view.fit();                  // the whole drawing in view, text no smaller than 8 px

   Dots are g.event elements (data-id), arrows polyline.message (data-from, data-to), join and
   leave ticks .marker. Everything is keyed by dot id, so dots can come and go. */
var VClockDiagram = (function () {
  "use strict";
  var HL = ["selected", "past", "future", "dimmed"];

  function create(options) {
    var scroller = options.scroller;
    var tooltip = options.tooltip;
    var status = options.status;
    var onSelect = options.onSelect || function () {};
    var zoomLabel = options.zoomLabel || null;
    var nodes = new Map();  // id -> {g, next: [ids], prev: [ids], arrows: [line]}
    var selected = null;
    var hovered = null;
    var zoom = 1, MIN = 0.05, MAX = 4;
    var MIN_TEXT = 8;  // px: the smallest text "fit" allows

    function svg() { return scroller.querySelector("svg.diagram"); }
    function labels() { return scroller.querySelector("svg.lane-labels"); }

    function node(id) {
      var n = nodes.get(id);
      if (!n) { n = { g: null, next: [], prev: [], arrows: [] }; nodes.set(id, n); }
      return n;
    }

    // Take in the dots and arrows added to the SVG since the last call. Their <title>
    // becomes data-tip, so that the browser's own tooltip does not show on top of ours.
    function bind() {
      var root = svg();
      if (!root) return;
      root.querySelectorAll("g.event:not([data-bound])").forEach(function (g) {
        var t = g.querySelector("title");
        if (t) { g.dataset.tip = t.textContent; t.remove(); }
        g.dataset.bound = "1";
        node(g.dataset.id).g = g;
        if (selected !== null) g.classList.add("dimmed");
      });
      root.querySelectorAll(".message:not([data-bound])").forEach(function (a) {
        a.dataset.bound = "1";
        var from = nodes.get(a.dataset.from), to = nodes.get(a.dataset.to);
        if (from) from.arrows.push(a);
        if (to) to.arrows.push(a);
      });
    }

    function link(ids, edges) {
      for (var i = 0; i + 1 < edges.length; i += 2) {
        var a = typeof edges[i] === "number" ? ids[edges[i]] : edges[i];
        var b = typeof edges[i + 1] === "number" ? ids[edges[i + 1]] : edges[i + 1];
        if (!nodes.has(a) || !nodes.has(b)) continue;  // an end scrolled off
        nodes.get(a).next.push(b);
        nodes.get(b).prev.push(a);
      }
      if (selected !== null) select(selected);  // new dots may be in its future
    }

    function without(list, id) { return list.filter(function (x) { return x !== id; }); }

    function remove(ids) {
      ids.forEach(function (id) {
        var n = nodes.get(id);
        if (!n) return;
        if (hovered === id) unhover();
        if (n.g) n.g.remove();
        n.arrows.forEach(function (a) {
          a.remove();
          [a.dataset.from, a.dataset.to].forEach(function (end) {
            var other = nodes.get(end);
            if (other && end !== id) other.arrows = other.arrows.filter(function (x) { return x !== a; });
          });
        });
        n.next.forEach(function (j) { var o = nodes.get(j); if (o) o.prev = without(o.prev, id); });
        n.prev.forEach(function (j) { var o = nodes.get(j); if (o) o.next = without(o.next, id); });
        nodes.delete(id);
        if (selected === id) clear();
      });
    }

    function forget() {
      unhover();
      nodes = new Map();
    }

    function reach(start, key) {
      var seen = new Set([start]), todo = [start], out = [];
      while (todo.length) {
        var list = nodes.get(todo.pop())[key];
        for (var k = 0; k < list.length; k++) {
          var j = list[k];
          if (!seen.has(j) && nodes.has(j)) { seen.add(j); out.push(j); todo.push(j); }
        }
      }
      return out;
    }

    function clearClasses() {
      var root = svg();
      if (!root) return;
      root.querySelectorAll(".event, .message, .marker").forEach(function (el) {
        el.classList.remove.apply(el.classList, HL);
      });
    }

    function clear() {
      clearClasses();
      selected = null;
      status.textContent = "";
      status.dataset.past = "0";
      status.dataset.future = "0";
      delete status.dataset.selected;
      onSelect(null);
    }

    function clockLine(lines) {
      for (var i = 1; i < lines.length; i++) {
        if (/^(clock|frontier|carried) /.test(lines[i])) return lines[i];
      }
      return lines[2] || "";
    }

    function select(id) {
      if (!nodes.has(id) || !nodes.get(id).g) { clear(); return; }
      clearClasses();
      selected = id;
      var past = reach(id, "prev"), future = reach(id, "next");
      var pastSet = new Set(past), futureSet = new Set(future);
      nodes.forEach(function (n, key) {
        if (n.g) n.g.classList.add(key === id ? "selected" : pastSet.has(key) ? "past" : futureSet.has(key) ? "future" : "dimmed");
      });
      var root = svg();
      root.querySelectorAll(".message").forEach(function (a) {
        // An arrow into the past ends in it (or at the selection); one into the future starts there.
        var f = a.dataset.from, t = a.dataset.to;
        a.classList.add(t === id || pastSet.has(t) ? "past" : f === id || futureSet.has(f) ? "future" : "dimmed");
      });
      root.querySelectorAll(".marker").forEach(function (m) { m.classList.add("dimmed"); });
      var concurrent = nodes.size - 1 - past.length - future.length;
      var lines = (nodes.get(id).g.dataset.tip || "").split("\n");
      status.innerHTML = "";
      var b = document.createElement("b");
      b.textContent = lines[0];
      status.appendChild(b);
      status.appendChild(document.createTextNode(
        "  " + clockLine(lines) + "  ·  happened after " + past.length +
        ", before " + future.length + ", concurrent with " + concurrent +
        "  (Esc or click the background to clear)"));
      status.dataset.selected = id;
      status.dataset.past = String(past.length);
      status.dataset.future = String(future.length);
      onSelect({ id: id, tip: lines, past: past, future: future, concurrent: concurrent });
    }

    // Hover: our tooltip, and the dot's arrows stand out.
    function showTip(g, x, y) {
      var lines = (g.dataset.tip || "").split("\n");
      tooltip.innerHTML = "";
      var head = document.createElement("div");
      head.className = "head";
      head.textContent = lines[0];
      tooltip.appendChild(head);
      tooltip.appendChild(document.createTextNode(lines.slice(1).join("\n")));
      tooltip.hidden = false;
      moveTip(x, y);
    }
    function moveTip(x, y) {
      var w = tooltip.offsetWidth, h = tooltip.offsetHeight;
      var left = x + 14, top = y + 16;
      if (left + w > window.innerWidth - 4) left = Math.max(4, x - w - 14);
      if (top + h > window.innerHeight - 4) top = Math.max(4, y - h - 12);
      tooltip.style.left = left + "px";
      tooltip.style.top = top + "px";
    }
    function unhover() {
      if (hovered === null) return;
      var n = nodes.get(hovered);
      if (n) {
        if (n.g) n.g.classList.remove("hover");
        n.arrows.forEach(function (a) { a.classList.remove("hover"); });
      }
      hovered = null;
      tooltip.hidden = true;
    }
    scroller.addEventListener("mouseover", function (e) {
      var g = e.target.closest ? e.target.closest("g.event") : null;
      if (!g || !nodes.has(g.dataset.id)) return;
      var id = g.dataset.id;
      if (id === hovered) return;
      unhover();
      hovered = id;
      g.classList.add("hover");
      nodes.get(id).arrows.forEach(function (a) { a.classList.add("hover"); });
      showTip(g, e.clientX, e.clientY);
    });
    scroller.addEventListener("mousemove", function (e) { if (hovered !== null) moveTip(e.clientX, e.clientY); });
    scroller.addEventListener("mouseout", function (e) {
      var to = e.relatedTarget && e.relatedTarget.closest ? e.relatedTarget.closest("g.event") : null;
      if (hovered !== null && (!to || to.dataset.id !== hovered)) unhover();
    });
    scroller.addEventListener("click", function (e) {
      var g = e.target.closest ? e.target.closest("g.event") : null;
      if (g && nodes.has(g.dataset.id)) select(g.dataset.id); else clear();
    });

    // Zoom: scale both SVGs; the scroller keeps the point under the mouse in place.
    function size(el) { return [+el.dataset.width, +el.dataset.height]; }
    function applyZoom() {
      var main = svg(), side = labels();
      if (!main || !side) return;
      var m = size(main), s = size(side);
      main.setAttribute("width", m[0] * zoom);
      main.setAttribute("height", m[1] * zoom);
      side.setAttribute("width", s[0] * zoom);
      side.setAttribute("height", s[1] * zoom);
      main.dataset.zoom = String(zoom);
      if (zoomLabel) zoomLabel.textContent = Math.round(zoom * 100) + "%";
    }
    function setZoom(z, clientX) {
      z = Math.min(MAX, Math.max(MIN, z));
      var side = labels();
      var LW = side ? +side.dataset.width : 0;
      var rect = scroller.getBoundingClientRect();
      var at = clientX === undefined ? rect.width / 2 : clientX - rect.left;
      var content = (scroller.scrollLeft + at - LW * zoom) / zoom;
      zoom = z;
      applyZoom();
      scroller.scrollLeft = content * z + LW * z - at;
    }
    // Fit: the whole drawing, width and height, in the scroller; but never so small that
    // its smallest text (clock labels, lane names) is under MIN_TEXT px: past that the
    // drawing stays at that scale and scrolls.
    function smallestText() {
      var least = Infinity;
      [".clock-label", ".lane-label"].forEach(function (selector) {
        var t = scroller.querySelector(selector);
        if (t) least = Math.min(least, parseFloat(getComputedStyle(t).fontSize) || Infinity);
      });
      return least;
    }
    function readable() { return Math.min(1, MIN_TEXT / smallestText()); }
    function fit() {
      var main = svg(), side = labels();
      if (!main || !side) return;
      var width = +main.dataset.width + +side.dataset.width + 2;  // + the labels' border
      var height = Math.max(+main.dataset.height, +side.dataset.height) + 2;
      var whole = Math.min(1, scroller.clientWidth / width, scroller.clientHeight / height);
      setZoom(Math.max(whole, readable()));
      if (whole >= readable()) scroller.scrollTop = 0;
    }
    // The live view grows the drawing: new size in user units, at the current zoom.
    function resize(width, height) {
      var main = svg(), side = labels();
      main.dataset.width = String(width);
      main.dataset.height = String(height);
      main.setAttribute("viewBox", "0 0 " + width + " " + height);
      if (side) {
        side.dataset.height = String(height);
        side.setAttribute("viewBox", "0 0 " + side.dataset.width + " " + height);
      }
      applyZoom();
    }
    scroller.addEventListener("wheel", function (e) {
      if (!e.ctrlKey && !e.metaKey) return;
      e.preventDefault();
      setZoom(zoom * Math.exp(-e.deltaY * 0.0015), e.clientX);
    }, { passive: false });
    document.addEventListener("keydown", function (e) {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.target && /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName)) return;
      if (e.key === "Escape") clear();
      else if (e.key === "+" || e.key === "=") setZoom(zoom * 1.25);
      else if (e.key === "-") setZoom(zoom / 1.25);
      else if (e.key === "0") setZoom(1);
      else if (e.key === "f") fit();
    });

    return {
      bind: bind, link: link, remove: remove, forget: forget,
      select: select, clear: clear,
      setZoom: setZoom, fit: fit, resize: resize, applyZoom: applyZoom,
      get readable() { return readable(); },
      get zoom() { return zoom; },
      get selected() { return selected; },
      get size() { return nodes.size; },
      has: function (id) { return nodes.has(id); }
    };
  }

  return { create: create };
})();
