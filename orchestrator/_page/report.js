/* orch run report: renders the run embedded in <script id="orch-data"> into <main id="app">.
 *
 * Runs under a strict Content-Security-Policy (this script and report.css are pinned by
 * hash): nothing is parsed as HTML, every node is built with createElement(NS) and every
 * string from the data reaches the page only through textContent, createTextNode,
 * dataset or a non-URL, non-event attribute. Log links are the single exception, and
 * only for relative paths under logs/ (see safeLogHref). ASCII only, so the hash of the
 * file is the hash of the embedded bytes whatever the embedding code's encoding.
 */
(function () {
  "use strict";

  var SVGNS = "http://www.w3.org/2000/svg";
  var STATUSES = ["failed", "timeout", "error", "passed", "skipped"];
  var STATUS_RANK = { failed: 0, timeout: 1, error: 2, passed: 3, skipped: 4 };
  var BADGES = [
    { key: "flaky", label: "flaky", bit: 1 },
    { key: "new-failure", label: "new failure", bit: 2 },
    { key: "fixed", label: "fixed", bit: 4 }
  ];
  var DEFAULT_COLUMNS = ["path", "status", "exit", "start", "time", "lane", "mem", "cpu", "why",
    "note", "attempts", "flaky", "change", "recent", "out", "err", "cut", "logs"];
  var CHUNK = 200;
  var DASH = "\u2014";
  var TIMES = "\u00d7";

  /* ------------------------------------------------------------ helpers */

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function svgEl(tag, cls) {
    var e = document.createElementNS(SVGNS, tag);
    if (cls) e.setAttribute("class", cls);
    return e;
  }
  function attrs(e, map) {
    for (var k in map) e.setAttribute(k, String(map[k]));
    return e;
  }
  function str(v) {
    return typeof v === "string" ? v : v == null ? "" : String(v);
  }
  function num(v) {
    return typeof v === "number" && isFinite(v) ? v : null;
  }
  function r2(x) {
    return Math.round(x * 100) / 100;
  }
  function plural(n, one, many) {
    return n + " " + (n === 1 ? one : many || one + "s");
  }
  function fmtDur(s) {
    if (s == null) return DASH;
    if (s < 60) return s.toFixed(2) + " s";
    if (s < 3600) {
      var m = Math.floor(s / 60), sec = Math.round(s - m * 60);
      if (sec === 60) { m += 1; sec = 0; }
      return m + " m " + (sec < 10 ? "0" : "") + sec + " s";
    }
    var h = Math.floor(s / 3600), mm = Math.round((s - h * 3600) / 60);
    if (mm === 60) { h += 1; mm = 0; }
    return h + " h " + (mm < 10 ? "0" : "") + mm + " m";
  }
  function fmtShort(s) {
    // Stat tiles: fewer decimals than the table.
    if (s == null) return DASH;
    if (s < 10) return s.toFixed(2) + " s";
    if (s < 60) return s.toFixed(1) + " s";
    return fmtDur(s);
  }
  function fmtMem(mb) {
    if (mb == null) return DASH;
    if (mb >= 1024) return (mb / 1024).toFixed(mb >= 10240 ? 0 : 1) + " GB";
    return (mb >= 10 ? Math.round(mb) : mb.toFixed(1)) + " MB";
  }
  function fmtWhen(iso) {
    var s = str(iso);
    var m = /^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d(?::\d\d)?)(?:\.\d+)?(Z|[+-]\d\d:?\d\d)?$/.exec(s);
    if (!m) return s;
    var tz = m[3] || "";
    if (tz === "Z" || tz === "+00:00" || tz === "+0000" || tz === "-00:00") tz = "UTC";
    return m[1] + " " + m[2] + (tz ? " " + tz : "");
  }
  function median(arr) {
    if (!arr.length) return null;
    var s = arr.slice().sort(function (a, b) { return a - b; });
    var h = s.length >> 1;
    return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
  }
  function flakyText(f) {
    var p = num(f.passes), q = num(f.failures);
    var t = "same inputs: " + (p == null ? "?" : plural(p, "pass", "passes")) + ", " +
      (q == null ? "?" : plural(q, "failure"));
    if (f.since) t += " since " + fmtWhen(f.since);
    return t;
  }

  /* A log link is set only for a plain relative path under logs/ that resolves
     inside logs/: no scheme (":"), no ".." segment (also spelt %2e), no control
     characters or backslashes (the URL parser drops or turns those into "/").
     The value is a raw file path, not a URL: "%", "#" and "?" are escaped so that a
     file named with them still links to itself. */
  var LOGS_BASE = null;
  function safeLogHref(v) {
    if (typeof v !== "string" || !/^logs\//.test(v)) return null;
    if (v.indexOf(":") >= 0 || /[\x00-\x1f\x7f\\]/.test(v)) return null;
    var segs = v.split("/");
    for (var k = 0; k < segs.length; k++) {
      if (segs[k].replace(/%2e/gi, ".") === "..") return null;
    }
    var href = v.replace(/%/g, "%25").replace(/#/g, "%23").replace(/\?/g, "%3F");
    var resolved;
    try {
      if (LOGS_BASE === null) LOGS_BASE = new URL("logs/", document.baseURI).href;
      resolved = new URL(href, document.baseURI).href;
    } catch (e) {
      return null; // not a URL at all: show the path as text
    }
    return resolved.indexOf(LOGS_BASE) === 0 ? href : null;
  }

  /* ------------------------------------------------------------ ANSI SGR */

  var ESC_RE = /\x1b(?:\[([0-9;:]*)m|\[[0-?]*[ -\/]*[@-~]?|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[PX^_][^\x1b]*(?:\x1b\\)?|[ -\/]*[0-~]?)/g;
  var CTRL_RE = /[\x00-\x08\x0b-\x1f\x7f]/g;
  var CUBE = [0, 95, 135, 175, 215, 255];

  function color256(n) {
    if (n < 16) return n;
    if (n < 232) {
      n -= 16;
      return "rgb(" + CUBE[Math.floor(n / 36)] + "," + CUBE[Math.floor(n / 6) % 6] + "," + CUBE[n % 6] + ")";
    }
    var g = 8 + 10 * (n - 232);
    return "rgb(" + g + "," + g + "," + g + ")";
  }
  function byte(x) {
    var n = parseInt(x, 10);
    return isFinite(n) ? Math.max(0, Math.min(255, n)) : 0;
  }
  function sgr(st, params) {
    var parts = params === "" ? ["0"] : params.split(";");
    for (var k = 0; k < parts.length; k++) {
      var p = parts[k], sub = null;
      if (p.indexOf(":") >= 0) { sub = p.split(":"); p = sub[0]; }
      var n = p === "" ? 0 : parseInt(p, 10);
      if (n === 0) { st.b = st.d = st.i = st.u = false; st.fg = st.bg = null; }
      else if (n === 1) st.b = true;
      else if (n === 2) st.d = true;
      else if (n === 3) st.i = true;
      else if (n === 4) st.u = true;
      else if (n === 22) st.b = st.d = false;
      else if (n === 23) st.i = false;
      else if (n === 24) st.u = false;
      else if (n >= 30 && n <= 37) st.fg = n - 30;
      else if (n >= 90 && n <= 97) st.fg = n - 90 + 8;
      else if (n === 39) st.fg = null;
      else if (n >= 40 && n <= 47) st.bg = n - 40;
      else if (n >= 100 && n <= 107) st.bg = n - 100 + 8;
      else if (n === 49) st.bg = null;
      else if (n === 38 || n === 48) {
        var c = null, mode, rgb;
        if (sub) {
          mode = sub[1];
          if (mode === "5") c = color256(byte(sub[2]));
          else if (mode === "2") {
            rgb = sub.length >= 6 ? sub.slice(3, 6) : sub.slice(2, 5);
            c = "rgb(" + byte(rgb[0]) + "," + byte(rgb[1]) + "," + byte(rgb[2]) + ")";
          }
        } else {
          mode = parts[k + 1];
          if (mode === "5") { c = color256(byte(parts[k + 2])); k += 2; }
          else if (mode === "2") {
            c = "rgb(" + byte(parts[k + 2]) + "," + byte(parts[k + 3]) + "," + byte(parts[k + 4]) + ")";
            k += 4;
          } else k += 1;
        }
        if (c !== null) { if (n === 38) st.fg = c; else st.bg = c; }
      }
    }
  }
  function ansiInto(parent, text) {
    var st = { b: false, d: false, i: false, u: false, fg: null, bg: null };
    var frag = document.createDocumentFragment();
    var last = 0, m;
    function emit(t) {
      t = t.replace(CTRL_RE, "");
      if (!t) return;
      if (!st.b && !st.d && !st.i && !st.u && st.fg === null && st.bg === null) {
        frag.appendChild(document.createTextNode(t));
        return;
      }
      var span = document.createElement("span");
      var cls = [];
      if (st.b) cls.push("a-b");
      if (st.d) cls.push("a-d");
      if (st.i) cls.push("a-i");
      if (st.u) cls.push("a-u");
      if (typeof st.fg === "number") cls.push("a-fg" + st.fg);
      else if (st.fg !== null) span.style.color = st.fg;
      if (typeof st.bg === "number") cls.push("a-bg" + st.bg);
      else if (st.bg !== null) span.style.backgroundColor = st.bg;
      if (cls.length) span.className = cls.join(" ");
      span.textContent = t;
      frag.appendChild(span);
    }
    ESC_RE.lastIndex = 0;
    while ((m = ESC_RE.exec(text)) !== null) {
      if (m.index > last) emit(text.slice(last, m.index));
      if (m[1] !== undefined) sgr(st, m[1]);
      last = ESC_RE.lastIndex;
      if (m[0].length === 0) ESC_RE.lastIndex++; // never: the pattern starts with ESC
    }
    if (last < text.length) emit(text.slice(last));
    parent.appendChild(frag);
  }

  /* ---------------------------------------------------------------- data */

  var data = JSON.parse(document.getElementById("orch-data").textContent);
  if (!data || typeof data !== "object") data = {};
  var run = data.run && typeof data.run === "object" ? data.run : {};
  var columns = Array.isArray(data.columns) ? data.columns : DEFAULT_COLUMNS;
  var C = {};
  DEFAULT_COLUMNS.forEach(function (name) { C[name] = columns.indexOf(name); });
  var raw = Array.isArray(data.rows) ? data.rows : [];

  function cell(r, name) {
    var k = C[name];
    return k >= 0 ? r[k] : null;
  }

  var R = new Array(raw.length);
  var flagCounts = { flaky: 0, "new-failure": 0, fixed: 0 };
  var statusCounts = { failed: 0, timeout: 0, error: 0, passed: 0, skipped: 0 };
  for (var i = 0; i < raw.length; i++) {
    var r = Array.isArray(raw[i]) ? raw[i] : [];
    var status = str(cell(r, "status"));
    var known = STATUS_RANK.hasOwnProperty(status);
    var recentRaw = cell(r, "recent"), recent = [];
    if (Array.isArray(recentRaw)) {
      for (var k = 0; k < recentRaw.length; k++) {
        if (num(recentRaw[k]) !== null) recent.push(recentRaw[k]);
      }
    }
    var flaky = cell(r, "flaky");
    if (!flaky || typeof flaky !== "object") flaky = null;
    var change = str(cell(r, "change"));
    var flags = (flaky ? 1 : 0) | (change === "new failure" ? 2 : 0) | (change === "fixed" ? 4 : 0);
    var lane = num(cell(r, "lane"));
    var logs = cell(r, "logs");
    var path = str(cell(r, "path"));
    var o = {
      i: i,
      path: path,
      lpath: path.toLowerCase(),
      status: status,
      cls: known ? status : "unknown",
      rank: known ? STATUS_RANK[status] : 2.5,
      exit: num(cell(r, "exit")),
      start: num(cell(r, "start")),
      time: num(cell(r, "time")) || 0,
      lane: lane !== null && lane >= 1 && Math.floor(lane) === lane ? lane : null,
      mem: num(cell(r, "mem")),
      cpu: num(cell(r, "cpu")),
      why: str(cell(r, "why")),
      note: str(cell(r, "note")),
      attempts: num(cell(r, "attempts")),
      flaky: flaky,
      change: change,
      flags: flags,
      recent: recent,
      median: median(recent),
      out: str(cell(r, "out")),
      err: str(cell(r, "err")),
      cut: cell(r, "cut") === true,
      logs: logs && typeof logs === "object" ? logs : null,
      hay: null
    };
    R[i] = o;
    if (known) statusCounts[status]++;
    if (flags & 1) flagCounts.flaky++;
    if (flags & 2) flagCounts["new-failure"]++;
    if (flags & 4) flagCounts.fixed++;
  }
  var counts = run.counts && typeof run.counts === "object" ? run.counts : statusCounts;
  function countOf(s) {
    var v = num(counts[s]);
    return v === null ? statusCounts[s] : v;
  }

  // Default order, computed once: failures first, then passed, then skipped; by path.
  var defaultOrder = R.map(function (o) { return o.i; });
  defaultOrder.sort(function (a, b) {
    var x = R[a], y = R[b];
    if (x.rank !== y.rank) return x.rank - y.rank;
    if (x.lpath !== y.lpath) return x.lpath < y.lpath ? -1 : 1;
    if (x.path !== y.path) return x.path < y.path ? -1 : 1;
    return a - b;
  });
  var defPos = new Int32Array(R.length);
  for (i = 0; i < defaultOrder.length; i++) defPos[defaultOrder[i]] = i;

  /* --------------------------------------------------------------- state */

  var state = {
    q: "",
    statuses: new Set(),
    badges: new Set(),
    sortKey: "status",
    sortDir: 1
  };
  var sorted = defaultOrder; // every row, in the current sort order
  var view = []; // the rows that pass the filter, in order
  var from = 0, rendered = 0; // the table shows view[from .. rendered)
  var rowEls = new Map(); // row index -> its <tr>, for the rows now rendered
  var detailEls = new Map(); // row index -> its details <tr>, built on first expand
  var expanded = new Set();

  var app = document.getElementById("app");
  var ui = {};

  /* ------------------------------------------------------------- verdict */

  function buildVerdict() {
    var bad = countOf("failed") + countOf("timeout") + countOf("error");
    var total = 0;
    STATUSES.forEach(function (s) { total += countOf(s); });
    var interrupted = run.interrupted === true;
    var head = el("header", "card verdict " + (interrupted ? "halted" : bad ? "bad" : total ? "ok" : "empty"));
    head.id = "verdict";

    var eyebrow = el("div", "eyebrow");
    eyebrow.appendChild(el("span", "brand", "orch"));
    eyebrow.appendChild(el("span", null, "run report"));
    eyebrow.appendChild(el("span", "outcome",
      interrupted ? "interrupted" : bad ? "failed" : total ? "passed" : "empty"));
    head.appendChild(eyebrow);

    var h1 = el("h1", "headline");
    h1.id = "headline";
    var first = true;
    STATUSES.forEach(function (s) {
      var n = countOf(s);
      if (!n) return;
      if (!first) h1.appendChild(el("span", "sr-only", ", "));
      first = false;
      var chip = el("button", "chip " + s);
      chip.type = "button";
      chip.dataset.status = s;
      chip.setAttribute("aria-pressed", "false");
      chip.title = "show only " + s + " scripts";
      chip.appendChild(el("span", "dot"));
      chip.appendChild(document.createTextNode(n + " " + s));
      h1.appendChild(chip);
    });
    if (first) h1.appendChild(el("span", "none", "no scripts"));
    head.appendChild(h1);

    var anyFlag = BADGES.some(function (b) { return flagCounts[b.key] > 0; });
    if (anyFlag) {
      var fl = el("div", "flag-chips");
      BADGES.forEach(function (b) {
        var n = flagCounts[b.key];
        if (!n) return;
        var chip = el("button", "chip " + b.key);
        chip.type = "button";
        chip.dataset.badge = b.key;
        chip.setAttribute("aria-pressed", "false");
        chip.title = "show only " + b.label + " scripts";
        chip.appendChild(el("span", "dot"));
        chip.appendChild(document.createTextNode(n + " " + b.label));
        fl.appendChild(chip);
      });
      head.appendChild(fl);
    }

    if (interrupted) {
      head.appendChild(el("p", "banner",
        "Interrupted \u2014 the run was stopped before every script finished; scripts that did not get to run are missing or skipped."));
    }

    var stats = el("dl", "stats");
    function stat(label, value, sub, cls) {
      var d = el("div", "stat" + (cls ? " " + cls : ""));
      d.appendChild(el("dt", null, label));
      d.appendChild(el("dd", null, value));
      if (sub) d.appendChild(el("div", "sub", sub));
      stats.appendChild(d);
    }
    var wall = num(run.wall), summed = num(run.summed), jobs = num(run.jobs), eff = num(run.efficiency);
    stat("Wall time", fmtShort(wall), run.start ? "started " + fmtWhen(run.start) : null);
    stat("Script time", fmtShort(summed),
      wall && summed ? TIMES + (summed / wall).toFixed(1) + " the wall time, summed" : "summed over scripts");
    if (eff !== null) {
      stat("Parallel efficiency", Math.round(eff * 100) + "%",
        jobs !== null ? "at -j" + jobs : null);
    }
    var saved = run.saved && typeof run.saved === "object" ? run.saved : {};
    var sc = num(saved.changed), sk = num(saved.cache);
    if (sc !== null && sc > 0) stat("Saved by --changed", fmtShort(sc), "up-to-date scripts not re-run", "saved");
    if (sk !== null && sk > 0) stat("Saved by cache", fmtShort(sk), "results restored from the cache", "saved");
    head.appendChild(stats);

    var lines = el("ul", "infolines");
    if (typeof run.cache === "string" && run.cache) lines.appendChild(el("li", "cache", run.cache));
    if (Array.isArray(run.notes)) {
      run.notes.forEach(function (n) {
        if (n != null && n !== "") lines.appendChild(el("li", "note", str(n)));
      });
    }
    if (data.v !== 1) lines.appendChild(el("li", "note", "report format v" + str(data.v) + "; this page knows v1"));
    if (lines.firstChild) head.appendChild(lines);

    var meta = el("p", "meta");
    var idp = el("span", null, "run ");
    idp.appendChild(el("code", null, str(run.id) || DASH));
    meta.appendChild(idp);
    if (run.command) {
      var cmd = el("span", null, "command ");
      cmd.appendChild(el("code", null, str(run.command)));
      meta.appendChild(cmd);
    }
    if (run.end) meta.appendChild(el("span", null, "ended " + fmtWhen(run.end)));
    head.appendChild(meta);

    head.addEventListener("click", function (e) {
      var chip = e.target.closest("button.chip");
      if (!chip) return;
      var s = chip.dataset.status, b = chip.dataset.badge;
      var on = chip.getAttribute("aria-pressed") !== "true";
      state.q = "";
      state.statuses.clear();
      state.badges.clear();
      if (on && s) state.statuses.add(s);
      if (on && b) state.badges.add(b);
      syncControls();
      applyFilter();
      if (on) ui.tableCard.scrollIntoView({ block: "start", behavior: "smooth" });
    });
    return head;
  }

  /* ------------------------------------------------------------ timeline */

  function niceStep(raw) {
    var p = Math.pow(10, Math.floor(Math.log10(raw)));
    var f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }

  function buildTimeline(W) {
    var card = el("section", "card");
    card.id = "timeline-card";
    var hd = el("div", "card-head");
    hd.appendChild(el("h2", null, "Timeline"));
    card.appendChild(hd);

    var ran = [], T = 0, lanes = num(run.lanes) || 0;
    for (var i = 0; i < R.length; i++) {
      var o = R[i];
      if (o.lane === null || o.start === null) continue;
      ran.push(o);
      if (o.start + o.time > T) T = o.start + o.time;
      if (o.lane > lanes) lanes = o.lane;
    }
    var wall = num(run.wall);
    if (wall !== null && wall > T) T = wall;

    var svg = svgEl("svg");
    svg.id = "timeline";
    svg.setAttribute("role", "img");
    var wrap = el("div", "timeline-wrap");
    wrap.appendChild(svg);

    if (!ran.length) {
      attrs(svg, { viewBox: "0 0 " + W + " 56", "aria-label": "nothing ran" });
      var t = svgEl("text", "empty-text");
      attrs(t, { x: W / 2, y: 32, "text-anchor": "middle" });
      t.textContent = "nothing ran";
      svg.appendChild(t);
      card.appendChild(wrap);
      return card;
    }
    if (!(T > 0)) T = 1;

    // Legend: the statuses drawn, then the chain.
    var legend = el("div", "legend");
    var seen = {};
    ran.forEach(function (o) { seen[o.cls] = true; });
    STATUSES.concat(["unknown"]).forEach(function (s) {
      if (!seen[s]) return;
      var it = el("span", "item " + s);
      it.appendChild(el("span", "sw"));
      it.appendChild(document.createTextNode(s === "unknown" ? "other" : s));
      legend.appendChild(it);
    });
    var chain = [];
    if (Array.isArray(run.chain)) {
      run.chain.forEach(function (k) {
        if (typeof k === "number" && k >= 0 && k < R.length && Math.floor(k) === k) chain.push(k);
      });
    }
    var inChain = new Set(chain);
    if (chain.length) {
      var chainTime = 0;
      chain.forEach(function (k) { chainTime += R[k].time; });
      var it = el("span", "item chain-legend");
      it.appendChild(el("span", "sw chain-sw"));
      it.appendChild(document.createTextNode("outlined: longest chain, " +
        plural(chain.length, "script") + ", " + fmtShort(chainTime)));
      legend.appendChild(it);
    }
    hd.appendChild(el("span", "spacer"));
    hd.appendChild(legend);

    var laneH = lanes <= 12 ? 24 : Math.max(4, Math.floor(384 / lanes));
    var labelEvery = laneH >= 13 ? 1 : Math.ceil(13 / laneH);
    var left = 62, right = 14, top = 4, axisH = 24;
    var plotW = Math.max(100, W - left - right);
    var H = top + lanes * laneH + axisH;
    var sx = plotW / T;
    attrs(svg, {
      viewBox: "0 0 " + W + " " + H,
      "aria-label": "timeline of " + plural(ran.length, "script") + " over " + plural(lanes, "slot")
    });

    var bg = document.createDocumentFragment();
    for (var l = 1; l <= lanes; l++) {
      var y = top + (l - 1) * laneH;
      bg.appendChild(attrs(svgEl("rect", "lane-bg" + (l % 2 ? "" : " alt")),
        { x: left, y: y, width: plotW, height: laneH }));
      if ((l - 1) % labelEvery === 0) {
        var lt = attrs(svgEl("text", "lane-label"),
          { x: left - 8, y: y + laneH / 2, "text-anchor": "end", "dominant-baseline": "central" });
        lt.textContent = "slot " + l;
        bg.appendChild(lt);
      }
    }
    var step = niceStep(T / Math.max(2, Math.floor(plotW / 90)));
    var decimals = step >= 1 ? 0 : Math.min(6, Math.ceil(-Math.log10(step)));
    var yAxis = top + lanes * laneH;
    bg.appendChild(attrs(svgEl("line", "axis"), { x1: left, x2: left + plotW, y1: yAxis, y2: yAxis }));
    for (var v = 0; v <= T + step * 1e-9; v += step) {
      var x = r2(left + v * sx);
      bg.appendChild(attrs(svgEl("line", "grid"), { x1: x, x2: x, y1: top, y2: yAxis }));
      var tt = attrs(svgEl("text", "tick"), {
        x: x, y: yAxis + 16,
        "text-anchor": v === 0 ? "start" : x > left + plotW - 24 ? "end" : "middle"
      });
      tt.textContent = v.toFixed(decimals) + " s";
      bg.appendChild(tt);
    }
    svg.appendChild(bg);

    var bars = document.createDocumentFragment();
    var chainBars = document.createDocumentFragment();
    var inset = laneH >= 10 ? 3 : laneH >= 6 ? 1 : 0;
    var bh = laneH - 2 * inset;
    for (i = 0; i < ran.length; i++) {
      o = ran[i];
      var isChain = inChain.has(o.i);
      var rect = svgEl("rect", "bar " + o.cls + (isChain ? " chain" : ""));
      rect.setAttribute("x", r2(left + o.start * sx));
      rect.setAttribute("y", top + (o.lane - 1) * laneH + inset);
      rect.setAttribute("width", Math.max(1, r2(o.time * sx)));
      rect.setAttribute("height", bh);
      rect.setAttribute("data-i", o.i);
      var title = document.createElementNS(SVGNS, "title");
      title.textContent = o.path + " " + DASH + " " + o.status + " " + DASH + " " + fmtDur(o.time);
      rect.appendChild(title);
      (isChain ? chainBars : bars).appendChild(rect);
    }
    svg.appendChild(bars);
    svg.appendChild(chainBars); // drawn last, so the outlines are on top

    svg.addEventListener("click", function (e) {
      var bar = e.target.closest ? e.target.closest("rect.bar") : null;
      if (bar) reveal(+bar.getAttribute("data-i"));
    });
    card.appendChild(wrap);

    if (chain.length) {
      var det = el("details", "chain-list");
      det.appendChild(el("summary", null, "longest chain (" + plural(chain.length, "script") + ")"));
      var ol = el("ol");
      chain.forEach(function (k) {
        ol.appendChild(el("li", null, R[k].path + "  " + fmtDur(R[k].time)));
      });
      det.appendChild(ol);
      card.appendChild(det);
    }
    return card;
  }

  /* --------------------------------------------------------------- table */

  var COLS = [
    { key: null, cls: "c-toggle", label: "" },
    { key: "status", cls: "c-status", label: "Status", first: 1 },
    { key: "path", cls: "c-path", label: "Script", first: 1 },
    { key: "why", cls: "c-why", label: "Why it ran", first: 1 },
    { key: "time", cls: "c-time", label: "Duration", first: -1 },
    { key: "mem", cls: "c-mem num", label: "Memory", first: -1 },
    { key: "attempts", cls: "c-att num", label: "Attempts", first: -1 },
    { key: "flags", cls: "c-flags", label: "Flags", first: -1 }
  ];
  var SORT_KEYS = {
    status: function (o) { return o.rank; },
    path: function (o) { return o.lpath; },
    why: function (o) { return o.why ? o.why.toLowerCase() : null; },
    time: function (o) { return o.start === null && o.status === "skipped" ? null : o.time; },
    mem: function (o) { return o.mem; },
    attempts: function (o) { return o.attempts; },
    flags: function (o) { return o.flags ? (o.flags & 2 ? 4 : 0) + (o.flags & 1 ? 2 : 0) + (o.flags & 4 ? 1 : 0) : null; }
  };

  function buildTableCard() {
    var card = el("section", "card");
    card.id = "scripts-card";
    var hd = el("div", "card-head");
    var h2 = el("h2", null, "Scripts");
    h2.id = "scripts-title";
    hd.appendChild(h2);
    ui.shown = el("span", null);
    ui.shown.id = "shown";
    ui.shown.setAttribute("aria-live", "polite");
    hd.appendChild(ui.shown);
    card.appendChild(hd);

    // Filter bar.
    var bar = el("div", "filterbar");
    bar.setAttribute("role", "search");
    var input = el("input");
    input.id = "filter";
    input.type = "search";
    input.placeholder = "Filter by path, reason or note  ( / )";
    input.setAttribute("aria-label", "filter scripts by path, why it ran or note");
    input.autocomplete = "off";
    input.spellcheck = false;
    ui.filter = input;
    bar.appendChild(input);

    var st = el("div", "toggles status-toggles");
    st.setAttribute("role", "group");
    st.setAttribute("aria-label", "status");
    ui.statusToggles = [];
    STATUSES.forEach(function (s) {
      var b = el("button", "toggle " + s);
      b.type = "button";
      b.dataset.status = s;
      b.setAttribute("aria-pressed", "false");
      b.appendChild(el("span", "dot"));
      b.appendChild(document.createTextNode(s + " "));
      b.appendChild(el("span", "n", String(statusCounts[s])));
      b.disabled = statusCounts[s] === 0;
      ui.statusToggles.push(b);
      st.appendChild(b);
    });
    bar.appendChild(st);

    var bt = el("div", "toggles badge-toggles");
    bt.setAttribute("role", "group");
    bt.setAttribute("aria-label", "flags");
    ui.badgeToggles = [];
    BADGES.forEach(function (bd) {
      var b = el("button", "toggle " + bd.key);
      b.type = "button";
      b.dataset.badge = bd.key;
      b.setAttribute("aria-pressed", "false");
      b.appendChild(el("span", "dot"));
      b.appendChild(document.createTextNode(bd.label + " "));
      b.appendChild(el("span", "n", String(flagCounts[bd.key])));
      b.disabled = flagCounts[bd.key] === 0;
      ui.badgeToggles.push(b);
      bt.appendChild(b);
    });
    bar.appendChild(bt);

    var clear = el("button", null, "clear filters");
    clear.id = "clear";
    clear.type = "button";
    clear.hidden = true;
    ui.clear = clear;
    bar.appendChild(clear);
    card.appendChild(bar);

    var timer = 0;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        state.q = input.value.trim().toLowerCase();
        syncControls();
        applyFilter();
      }, R.length > 2000 ? 120 : 30);
    });
    bar.addEventListener("click", function (e) {
      var b = e.target.closest("button");
      if (!b) return;
      if (b === clear) {
        clearFilters();
      } else if (b.dataset.status) {
        toggleIn(state.statuses, b.dataset.status);
      } else if (b.dataset.badge) {
        toggleIn(state.badges, b.dataset.badge);
      } else return;
      syncControls();
      applyFilter();
    });

    // Table.
    var wrap = el("div", "table-wrap");
    var table = el("table");
    table.id = "scripts";
    table.setAttribute("aria-labelledby", "scripts-title");
    table.appendChild(el("caption", "sr-only", "Every script of the run; activate a row to see its output"));
    var cg = el("colgroup");
    COLS.forEach(function (c) { cg.appendChild(el("col", c.cls.split(" ")[0])); });
    table.appendChild(cg);
    var thead = el("thead"), tr = el("tr");
    ui.ths = [];
    COLS.forEach(function (c) {
      var th = el("th", c.cls);
      th.scope = "col";
      if (c.key) {
        var b = el("button", "sort");
        b.type = "button";
        b.dataset.sort = c.key;
        b.appendChild(el("span", "label", c.label));
        var ar = el("span", "arrow");
        ar.setAttribute("aria-hidden", "true");
        b.appendChild(ar);
        th.appendChild(b);
        th.dataset.sort = c.key;
        ui.ths.push(th);
      } else {
        th.appendChild(el("span", "sr-only", "details"));
      }
      tr.appendChild(th);
    });
    thead.appendChild(tr);
    table.appendChild(thead);
    thead.addEventListener("click", function (e) {
      var b = e.target.closest("button.sort");
      if (!b) return;
      var key = b.dataset.sort;
      if (state.sortKey === key) state.sortDir = -state.sortDir;
      else {
        state.sortKey = key;
        state.sortDir = COLS.filter(function (c) { return c.key === key; })[0].first;
      }
      resort();
      applyFilter();
    });

    var tbody = el("tbody");
    ui.tbody = tbody;
    table.appendChild(tbody);
    tbody.addEventListener("click", onRowClick);
    wrap.appendChild(table);
    card.appendChild(wrap);

    var ew = el("div", "more-wrap earlier-wrap");
    var earlier = el("button", null, "show earlier");
    earlier.id = "earlier";
    earlier.type = "button";
    earlier.addEventListener("click", function () { renderEarlier(); });
    ew.appendChild(earlier);
    ew.hidden = true;
    ui.earlier = earlier;
    ui.earlierWrap = ew;
    card.insertBefore(ew, wrap);

    ui.noMatch = el("div", "no-match", "No script matches the filter.");
    ui.noMatch.hidden = true;
    card.appendChild(ui.noMatch);

    var sentinel = el("div");
    sentinel.id = "sentinel";
    card.appendChild(sentinel);
    var mw = el("div", "more-wrap");
    var more = el("button", null, "show more");
    more.id = "more";
    more.type = "button";
    more.addEventListener("click", function () { renderChunk(); });
    ui.more = more;
    mw.appendChild(more);
    card.appendChild(mw);
    ui.moreWrap = mw;

    if (typeof IntersectionObserver === "function") {
      var io = new IntersectionObserver(function (entries) {
        var hit = false;
        for (var k = 0; k < entries.length; k++) if (entries[k].isIntersecting) hit = true;
        if (hit && rendered < view.length) {
          renderChunk();
          // Observe afresh: if the sentinel is still in view, the callback runs again.
          io.unobserve(sentinel);
          io.observe(sentinel);
        }
      }, { rootMargin: "0px 0px 600px 0px" });
      io.observe(sentinel);
    }

    document.addEventListener("keydown", function (e) {
      if (e.key === "/" && document.activeElement !== input &&
          !/^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement && document.activeElement.tagName)) {
        e.preventDefault();
        input.focus();
      }
    });
    return card;
  }

  function toggleIn(set, v) {
    if (set.has(v)) set.delete(v);
    else set.add(v);
  }
  function clearFilters() {
    state.q = "";
    state.statuses.clear();
    state.badges.clear();
    syncControls();
  }
  function syncControls() {
    if (ui.filter.value.trim().toLowerCase() !== state.q) ui.filter.value = state.q;
    ui.statusToggles.forEach(function (b) {
      b.setAttribute("aria-pressed", state.statuses.has(b.dataset.status) ? "true" : "false");
    });
    ui.badgeToggles.forEach(function (b) {
      b.setAttribute("aria-pressed", state.badges.has(b.dataset.badge) ? "true" : "false");
    });
    var chips = document.querySelectorAll("#verdict button.chip");
    for (var k = 0; k < chips.length; k++) {
      var c = chips[k];
      var on = !state.q && (c.dataset.status
        ? state.statuses.size === 1 && state.statuses.has(c.dataset.status) && !state.badges.size
        : state.badges.size === 1 && state.badges.has(c.dataset.badge) && !state.statuses.size);
      c.setAttribute("aria-pressed", on ? "true" : "false");
    }
    ui.clear.hidden = !(state.q || state.statuses.size || state.badges.size);
  }

  function resort() {
    var key = state.sortKey, dir = state.sortDir;
    if (key === "status" && dir === 1) {
      sorted = defaultOrder;
    } else {
      var get = SORT_KEYS[key];
      var keys = new Array(R.length);
      for (var k = 0; k < R.length; k++) keys[k] = get(R[k]);
      sorted = defaultOrder.slice();
      sorted.sort(function (a, b) {
        var x = keys[a], y = keys[b];
        if (x !== y) {
          if (x === null) return 1; // blanks last, either way
          if (y === null) return -1;
          return (x < y ? -1 : 1) * dir;
        }
        return defPos[a] - defPos[b];
      });
    }
    ui.ths.forEach(function (th) {
      var on = th.dataset.sort === key;
      if (on) th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
      th.querySelector(".arrow").textContent = on ? (dir === 1 ? "\u25b2" : "\u25bc") : "";
    });
  }

  function matches(o) {
    if (state.statuses.size && !state.statuses.has(o.status)) return false;
    if (state.badges.size) {
      var want = 0;
      BADGES.forEach(function (b) { if (state.badges.has(b.key)) want |= b.bit; });
      if (!(o.flags & want)) return false;
    }
    if (state.q) {
      if (o.hay === null) o.hay = (o.path + "\n" + o.why + "\n" + o.note).toLowerCase();
      if (o.hay.indexOf(state.q) < 0) return false;
    }
    return true;
  }

  function applyFilter() {
    if (!state.q && !state.statuses.size && !state.badges.size) {
      view = sorted;
    } else {
      view = [];
      for (var k = 0; k < sorted.length; k++) if (matches(R[sorted[k]])) view.push(sorted[k]);
    }
    resetWindow(0);
    ui.shown.textContent = "showing " + view.length + " of " + plural(R.length, "script");
    ui.noMatch.hidden = view.length > 0 || R.length === 0;
  }

  // Empty the table and render the chunk of view that starts at start.
  function resetWindow(start) {
    ui.tbody.textContent = "";
    rowEls.clear();
    from = rendered = start;
    renderChunk();
  }

  function rowsFragment(a, b) {
    var frag = document.createDocumentFragment();
    for (var k = a; k < b; k++) {
      var idx = view[k];
      var tr = renderRow(R[idx]);
      rowEls.set(idx, tr);
      frag.appendChild(tr);
      if (expanded.has(idx)) {
        tr.classList.add("open");
        tr.querySelector(".expander").setAttribute("aria-expanded", "true");
        frag.appendChild(detailsFor(R[idx]));
      }
    }
    return frag;
  }

  function renderChunk() {
    var end = Math.min(view.length, rendered + CHUNK);
    ui.tbody.appendChild(rowsFragment(rendered, end));
    rendered = end;
    updateMore();
  }

  function renderEarlier() {
    var start = Math.max(0, from - CHUNK);
    ui.tbody.insertBefore(rowsFragment(start, from), ui.tbody.firstChild);
    from = start;
    updateMore();
  }

  function updateMore() {
    var left = view.length - rendered;
    ui.moreWrap.hidden = left <= 0;
    ui.more.textContent = "show " + Math.min(CHUNK, left) + " more (" + left + " below)";
    ui.earlierWrap.hidden = from <= 0;
    ui.earlier.textContent = "show " + Math.min(CHUNK, from) + " earlier (" + from + " above)";
  }

  function renderRow(o) {
    var tr = document.createElement("tr");
    tr.className = "row " + o.cls;
    tr.dataset.path = o.path;
    tr.dataset.i = o.i;

    var td = el("td", "c-toggle");
    var btn = el("button", "expander");
    btn.type = "button";
    btn.setAttribute("aria-expanded", "false");
    btn.setAttribute("aria-label", "details of " + o.path);
    btn.appendChild(el("span", "caret"));
    td.appendChild(btn);
    tr.appendChild(td);

    td = el("td", "c-status");
    var pill = el("span", "pill " + o.cls, o.status || "?");
    if (o.exit !== null && o.exit !== 0) pill.title = "exit code " + o.exit;
    td.appendChild(pill);
    tr.appendChild(td);

    td = el("td", "c-path");
    td.appendChild(el("div", "path", o.path));
    if (o.note) {
      var sub = el("div", "sub", o.note);
      sub.title = o.note;
      td.appendChild(sub);
    }
    tr.appendChild(td);

    td = el("td", "c-why");
    if (o.why) {
      var w = el("span", "clip", o.why);
      w.title = o.why;
      td.appendChild(w);
    } else td.appendChild(el("span", "muted", DASH));
    tr.appendChild(td);

    td = el("td", "c-time");
    td.appendChild(durationCell(o));
    tr.appendChild(td);

    td = el("td", "c-mem num", fmtMem(o.mem));
    if (o.cpu !== null) td.title = "CPU " + fmtDur(o.cpu);
    if (o.mem === null) td.className += " muted";
    tr.appendChild(td);

    td = el("td", "c-att num");
    if (o.attempts === null) td.appendChild(el("span", "muted", DASH));
    else td.appendChild(el("span", o.attempts > 1 ? "warn" : null, String(o.attempts)));
    tr.appendChild(td);

    td = el("td", "c-flags");
    if (o.flags) {
      var bs = el("div", "badges");
      if (o.flags & 2) bs.appendChild(el("span", "badge new-failure", "new failure"));
      if (o.flags & 4) bs.appendChild(el("span", "badge fixed", "fixed"));
      if (o.flags & 1) {
        var fb = el("span", "badge flaky", "flaky");
        fb.title = flakyText(o.flaky);
        bs.appendChild(fb);
      }
      td.appendChild(bs);
    }
    tr.appendChild(td);
    return tr;
  }

  function durationCell(o) {
    var box = el("div", "dur");
    var notRun = o.start === null && o.status === "skipped";
    var series = o.recent.length ? o.recent.concat(notRun ? [] : [o.time]) : [];
    if (series.length >= 2 || (series.length && o.median !== null)) box.appendChild(sparkline(o, series, notRun));
    var t = el("span", "t", notRun ? DASH : fmtDur(o.time));
    if (!notRun && o.median !== null) {
      var cmp = " (median " + fmtDur(o.median);
      var cls = "cmp";
      if (o.median > 0) {
        var ratio = o.time / o.median;
        cmp += ", " + TIMES + (ratio >= 10 ? ratio.toFixed(0) : ratio.toFixed(1));
        if (ratio >= 1.5 && o.time - o.median >= 0.5) cls += " slower";
        else if (ratio <= 0.67 && o.median - o.time >= 0.5) cls += " faster";
      }
      t.appendChild(el("span", cls, cmp + ")"));
    } else if (notRun && o.median !== null) {
      t.appendChild(el("span", "cmp", " (median " + fmtDur(o.median) + ")"));
    }
    box.appendChild(t);
    return box;
  }

  function sparkline(o, series, notRun) {
    var W = 64, H = 18, pad = 2;
    var max = 0;
    for (var k = 0; k < series.length; k++) if (series[k] > max) max = series[k];
    if (!(max > 0)) max = 1;
    var n = series.length;
    var dx = n > 1 ? (W - 2 * pad) / (n - 1) : 0;
    function X(k) { return r2(n > 1 ? pad + k * dx : W / 2); }
    function Y(v) { return r2(H - pad - (v / max) * (H - 2 * pad)); }
    var svg = svgEl("svg", "spark " + o.cls);
    attrs(svg, { viewBox: "0 0 " + W + " " + H, width: W, height: H, "aria-hidden": "true", focusable: "false" });
    if (o.median !== null) {
      var my = Y(o.median);
      svg.appendChild(attrs(svgEl("line", "spark-median"), { x1: 0, x2: W, y1: my, y2: my }));
    }
    if (n > 1) {
      var pts = [];
      for (k = 0; k < n; k++) pts.push(X(k) + "," + Y(series[k]));
      svg.appendChild(attrs(svgEl("polyline", "spark-line"), { points: pts.join(" ") }));
    }
    if (!notRun) {
      svg.appendChild(attrs(svgEl("circle", "spark-dot"), { cx: X(n - 1), cy: Y(series[n - 1]), r: 2.6 }));
    }
    return svg;
  }

  /* ------------------------------------------------------------- details */

  function onRowClick(e) {
    var t = e.target;
    if (t.closest("tr.details") || t.closest("a")) return;
    var tr = t.closest("tr.row");
    if (!tr) return;
    if (!t.closest("button.expander")) {
      var sel = window.getSelection && window.getSelection();
      if (sel && !sel.isCollapsed && tr.contains(sel.anchorNode)) return; // selecting text
    }
    toggleRow(+tr.dataset.i);
  }

  function toggleRow(idx, forceOpen) {
    var tr = rowEls.get(idx);
    if (!tr) return;
    var open = expanded.has(idx);
    if (open && forceOpen) return;
    var btn = tr.querySelector(".expander");
    if (open) {
      expanded.delete(idx);
      tr.classList.remove("open");
      btn.setAttribute("aria-expanded", "false");
      var d = detailEls.get(idx);
      if (d && d.parentNode) d.parentNode.removeChild(d);
    } else {
      expanded.add(idx);
      tr.classList.add("open");
      btn.setAttribute("aria-expanded", "true");
      tr.parentNode.insertBefore(detailsFor(R[idx]), tr.nextSibling);
    }
  }

  function detailsFor(o) {
    var have = detailEls.get(o.i);
    if (have) return have;
    var tr = el("tr", "details " + o.cls);
    var td = el("td");
    td.colSpan = COLS.length;
    tr.appendChild(td);

    var facts = el("div", "facts");
    function fact(label, value) {
      var s = el("span");
      s.appendChild(document.createTextNode(label + " "));
      s.appendChild(el("b", null, value));
      facts.appendChild(s);
    }
    fact("status", o.status || "?");
    if (o.exit !== null) fact("exit code", String(o.exit));
    if (o.attempts !== null) facts.appendChild(el("span", null, "attempt " + o.attempts));
    if (o.start !== null) fact("started at", fmtDur(o.start));
    if (!(o.start === null && o.status === "skipped")) fact("took", fmtDur(o.time));
    if (o.cpu !== null) fact("CPU", fmtDur(o.cpu));
    if (o.mem !== null) fact("peak memory", fmtMem(o.mem));
    if (o.lane !== null) fact("slot", String(o.lane));
    td.appendChild(facts);

    if (o.note) td.appendChild(el("div", "note-box", o.note));

    var kv = el("dl", "kv");
    function pair(label, value, cls) {
      kv.appendChild(el("dt", null, label));
      kv.appendChild(el("dd", cls || null, value));
    }
    pair("script", o.path, "mono");
    if (o.why) pair("why it ran", o.why);
    if (o.change === "new failure") pair("change", "new failure: it did not fail last time");
    else if (o.change === "fixed") pair("change", "fixed: it failed last time");
    if (o.flaky) pair("flaky", flakyText(o.flaky));
    if (o.recent.length) {
      pair("previous runs", o.recent.map(fmtDur).join(", ") + "  (median " + fmtDur(o.median) + ")");
    }
    td.appendChild(kv);

    var links = [];
    if (o.logs) {
      ["stderr", "stdout"].forEach(function (k) {
        if (typeof o.logs[k] === "string" && o.logs[k]) links.push([k, o.logs[k]]);
      });
    }
    function linkTo(k) {
      for (var n = 0; n < links.length; n++) if (links[n][0] === k) return logLink(links[n][1], "full log");
      return null;
    }
    [["stderr", o.err], ["stdout", o.out]].forEach(function (p) {
      if (!p[1]) return;
      var box = el("div", "stream");
      var h = el("div", "stream-head");
      h.appendChild(el("span", "name", p[0]));
      if (o.cut) {
        h.appendChild(el("span", "cut", "last lines shown"));
        var a = linkTo(p[0]);
        if (a) h.appendChild(a);
      }
      box.appendChild(h);
      var pre = el("pre", "log " + p[0]);
      ansiInto(pre, p[1]);
      box.appendChild(pre);
      td.appendChild(box);
    });
    if (!o.out && !o.err && !(o.start === null && o.status === "skipped")) {
      td.appendChild(el("div", "muted", "no output captured"));
    }
    if (links.length) {
      var ll = el("div", "loglinks");
      ll.appendChild(el("span", null, "logs:"));
      links.forEach(function (p) { ll.appendChild(logLink(p[1], p[0] === "stderr" ? "stderr" : "stdout", true)); });
      td.appendChild(ll);
    }
    detailEls.set(o.i, tr);
    return tr;
  }

  function logLink(path, label, showPath) {
    var href = safeLogHref(path);
    var text = showPath ? label + " " + path : label;
    if (href === null) {
      var s = el("span", "mono", text);
      s.title = "not linked: not a path under logs/";
      return s;
    }
    var a = el("a", null, text);
    a.href = href;
    a.title = path;
    return a;
  }

  function reveal(idx) {
    if (!(idx >= 0 && idx < R.length)) return;
    var pos = view.indexOf(idx);
    if (pos < 0) {
      clearFilters();
      applyFilter();
      pos = view.indexOf(idx);
      if (pos < 0) return;
    }
    if (pos < from || pos >= rendered + 2 * CHUNK) resetWindow(pos - pos % CHUNK);
    while (rendered <= pos) renderChunk();
    toggleRow(idx, true);
    var tr = rowEls.get(idx);
    if (tr.classList.contains("flash")) {
      tr.classList.remove("flash"); // restart the animation on the next frame
      requestAnimationFrame(function () { tr.classList.add("flash"); });
    } else tr.classList.add("flash");
    tr.scrollIntoView({ block: "center", behavior: "smooth" });
    var btn = tr.querySelector(".expander");
    if (btn.focus) btn.focus({ preventScroll: true });
  }

  /* -------------------------------------------------------------- render */

  app.textContent = "";
  app.appendChild(buildVerdict());
  var W = Math.round(Math.max(360, Math.min(2400, (app.clientWidth || 1200) - 80)));
  app.appendChild(buildTimeline(W));
  ui.tableCard = buildTableCard();
  app.appendChild(ui.tableCard);
  resort();
  syncControls();
  applyFilter();

  document.body.dataset.ready = "1";
  document.body.dataset.renderMs = String(Math.round(performance.now()));
})();
