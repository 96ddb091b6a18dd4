-- What the dashboard of `pm web` is made of: its page, its style and its
-- script (charts drawn as SVG by the script itself), all served by the web
-- process (lua/pm/web.lua): no CDN, nothing fetched from elsewhere, and
-- nothing inline (the page's Content-Security-Policy allows scripts and
-- styles from its own origin only).
local M = {}

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
    ["'"] = "&#39;" }))
end

M.login_page = [[<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pm: log in</title>
<link rel="stylesheet" href="/assets/app.css"><link rel="icon" href="/assets/icon.svg"></head>
<body class="login"><main>
<h1>pm</h1>
<p>This dashboard needs the token that <code>pm web</code> printed (it is in PM_HOME/web.token).</p>
<form method="post" action="/login">
<input type="password" name="token" placeholder="token" autocomplete="off" autofocus>
<button type="submit">Log in</button>
</form>
</main></body></html>
]]

function M.page(csrf)
  return ([[<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pm</title>
<meta name="csrf" content="%s">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/assets/app.css"><link rel="icon" href="/assets/icon.svg"></head>
<body>
<header><h1>pm</h1><span id="summary"></span><span id="live" class="off">connecting</span></header>
<div id="confirm" hidden><span id="confirm-text"></span>
<input id="confirm-count" type="number" min="0" max="64" hidden>
<button id="confirm-yes" type="button">Confirm</button><button id="confirm-no" type="button">Cancel</button></div>
<div id="message"></div>
<div id="tools"><input id="filter" type="search" placeholder="filter: id, name, namespace or status"
autocomplete="off"><button id="prev" type="button">&lsaquo;</button><span id="page"></span>
<button id="next" type="button">&rsaquo;</button></div>
<table id="procs"><thead><tr><th>id</th><th>name</th><th>namespace</th><th>status</th><th>pid</th>
<th>cpu</th><th>memory</th><th>restarts</th><th>uptime</th><th>actions</th></tr></thead>
<tbody></tbody></table>
<section id="charts"><h2>history <span id="chart-name"></span>
<select id="span"><option value="600">10 min</option><option value="3600">1 h</option>
<option value="86400">24 h</option></select></h2>
<div class="chart"><h3>CPU %%</h3><svg id="chart-cpu" viewBox="0 0 600 120" preserveAspectRatio="none"></svg></div>
<div class="chart"><h3>memory</h3><svg id="chart-mem" viewBox="0 0 600 120" preserveAspectRatio="none"></svg></div>
</section>
<section id="panes"><div><h2>logs</h2><pre id="logs"></pre></div>
<div><h2>events</h2><ul id="events"></ul></div></section>
<script src="/assets/app.js"></script>
</body></html>
]]):format(esc(csrf))
end

local CSS = [[
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #111418; color: #dde; }
header { display: flex; gap: 1em; align-items: baseline; padding: .5em 1em; background: #1c2128; }
h1 { margin: 0; font-size: 1.3em; } h2 { font-size: 1em; margin: .5em 0; }
h3 { font-size: .85em; margin: 0; color: #99a; }
#live.on { color: #5c5; } #live.off { color: #c55; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25em .6em; border-bottom: 1px solid #2a3038; white-space: nowrap; }
tbody tr { cursor: pointer; } tbody tr.selected { background: #223; }
.online { color: #5c5; } .stopped, .stopping { color: #aa8; } .errored { color: #e55; }
.launching, .waiting { color: #6ae; }
td button { font-size: .8em; margin-right: .2em; }
button { background: #2a3340; color: #dde; border: 1px solid #445; border-radius: 3px;
  padding: .15em .6em; cursor: pointer; }
button:hover { background: #3a4a60; }
#tools { padding: .4em 1em; display: flex; gap: .5em; align-items: baseline; }
#filter { width: 22em; } button:disabled { opacity: .4; cursor: default; }
#confirm { padding: .5em 1em; background: #432; } #message { padding: 0 1em; color: #fa6; min-height: 1.2em; }
#charts { padding: 0 1em; } .chart { display: inline-block; width: 48%; margin-right: 1%; }
svg { width: 100%; height: 120px; background: #181c22; }
svg polyline { fill: none; stroke-width: 1.5; } #chart-cpu polyline { stroke: #6ae; }
#chart-mem polyline { stroke: #c8a; }
svg text { fill: #889; font-size: 10px; }
#panes { display: flex; gap: 1em; padding: 0 1em 1em; } #panes > div { flex: 1; min-width: 0; }
#logs { height: 18em; overflow: auto; background: #0b0d10; padding: .5em; margin: 0;
  font-size: 12px; }
#events { height: 18em; overflow: auto; list-style: none; padding: .5em; margin: 0;
  background: #0b0d10; font-size: 12px; }
.err { color: #e77; } .name { color: #79a; }
.a1 { font-weight: bold; } .a30 { color: #555; } .a31 { color: #e55; } .a32 { color: #5c5; }
.a33 { color: #cc5; }
.a34 { color: #58e; } .a35 { color: #c5c; } .a36 { color: #5cc; } .a37 { color: #ddd; }
.a90 { color: #888; } .a91 { color: #f77; } .a92 { color: #7f7; } .a93 { color: #ff7; } .a94 { color: #79f; }
.a95 { color: #f7f; } .a96 { color: #7ff; } .a97 { color: #fff; }
body.login main { max-width: 30em; margin: 4em auto; }
input { background: #0b0d10; color: #dde; border: 1px solid #445; padding: .2em .4em; }
]]

local JS = [[
'use strict';
(function () {
  var csrf = document.querySelector('meta[name=csrf]').content;
  var tbody = document.querySelector('#procs tbody');
  var rows = {}, selected = null, pending = null;
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function bytes(n) {
    if (!n) return '0 B';
    var u = ['B', 'KB', 'MB', 'GB', 'TB'], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + ' ' + u[i];
  }
  function duration(ms) {
    var s = Math.floor(ms / 1000);
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm';
    if (s < 86400) return Math.floor(s / 3600) + 'h';
    return Math.floor(s / 86400) + 'd';
  }
  function say(text) { $('message').textContent = text; }

  // ---- actions: a POST with the CSRF token, after a confirmation ----
  function post(action, target, instances, name) {
    return fetch('/api/action', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify({ action: action, target: target, instances: instances })
    }).then(function (r) { return r.json(); }).then(function (res) {
      say(res.error ? action + ' ' + name + ': ' + res.error : action + ' ' + name + ': done');
    }, function (e) { say(action + ': ' + e); });
  }
  function ask(action, p) {
    pending = { action: action, target: p.pm_id, name: p.name };
    $('confirm-text').textContent = action + ' ' + p.name + ' (id ' + p.pm_id + ')?';
    var count = $('confirm-count');
    count.hidden = action !== 'scale';
    if (action === 'scale') { pending.target = p.name; count.value = p.pm2_env.instances || 1; }
    $('confirm').hidden = false;
  }
  $('confirm-yes').addEventListener('click', function () {
    $('confirm').hidden = true;
    if (!pending) return;
    var p = pending; pending = null;
    post(p.action, p.target, p.action === 'scale' ? $('confirm-count').value : undefined, p.name);
  });
  $('confirm-no').addEventListener('click', function () { $('confirm').hidden = true; pending = null; });

  // ---- the process table ----
  var ACTIONS = ['restart', 'reload', 'stop', 'start', 'scale', 'flush'];
  function row(p) {
    var r = rows[p.pm_id];
    if (r) return r;
    var tr = el('tr'); tr.id = 'app-' + p.pm_id;
    r = { tr: tr, cells: {} };
    ['id', 'name', 'namespace', 'status', 'pid', 'cpu', 'memory', 'restarts', 'uptime'].forEach(function (k) {
      var td = el('td', k); r.cells[k] = td; tr.appendChild(td);
    });
    var acts = el('td', 'actions');
    ACTIONS.forEach(function (a) {
      var b = el('button', 'act-' + a, a); b.type = 'button'; b.dataset.action = a;
      b.addEventListener('click', function (ev) { ev.stopPropagation(); ask(a, r.p); });
      acts.appendChild(b);
    });
    tr.appendChild(acts);
    tr.addEventListener('click', function () { select(r.p); });
    if (selected && selected.pm_id === p.pm_id) tr.classList.add('selected');
    rows[p.pm_id] = r;
    return r;
  }
  // (a page of the table at a time: thousands of rows would keep the page
  // busy on each update)
  var PAGE = 100, all = [], first = 0;
  function render() {
    var q = $('filter').value.trim().toLowerCase(), now = Date.now(), online = 0, shown = [];
    all.forEach(function (p) {
      var e = p.pm2_env || {};
      if (e.status === 'online') online++;
      if (!q || (p.pm_id + ' ' + p.name + ' ' + (e.namespace || 'default') + ' ' + (e.status || ''))
        .toLowerCase().indexOf(q) >= 0) shown.push(p);
    });
    if (first >= shown.length) first = Math.max(0, Math.floor((shown.length - 1) / PAGE) * PAGE);
    var page = shown.slice(first, first + PAGE), seen = {};
    page.forEach(function (p, i) {
      var e = p.pm2_env || {}, m = p.monit || {}, r = row(p);
      r.p = p; seen[p.pm_id] = true;
      var st = e.status || '?';
      var c = r.cells;
      c.id.textContent = p.pm_id; c.name.textContent = p.name; c.namespace.textContent = e.namespace || 'default';
      c.status.textContent = st; c.status.className = 'status ' + st.split(' ')[0];
      c.pid.textContent = p.pid || 0;
      c.cpu.textContent = (m.cpu || 0) + '%'; c.memory.textContent = bytes(m.memory || 0);
      c.restarts.textContent = e.restart_time || 0;
      c.uptime.textContent = st === 'online' && e.pm_uptime ? duration(now - e.pm_uptime) : '0';
      var at = tbody.children[i]; // (in the list's order; a row in place stays)
      if (at !== r.tr) tbody.insertBefore(r.tr, at || null);
    });
    Object.keys(rows).forEach(function (id) {
      if (!seen[id]) { rows[id].tr.remove(); delete rows[id]; }
    });
    $('summary').textContent = all.length + ' process(es), ' + online + ' online';
    $('page').textContent = shown.length ? (first + 1) + '\u2013' + (first + page.length) + ' of ' + shown.length
      : 'none';
    $('prev').disabled = first === 0; $('next').disabled = first + PAGE >= shown.length;
    if (!selected && page.length) select(page[0]);
  }
  function procs(list) { all = list; render(); }
  $('filter').addEventListener('input', function () { first = 0; render(); });
  $('prev').addEventListener('click', function () { first = Math.max(0, first - PAGE); render(); });
  $('next').addEventListener('click', function () { first += PAGE; render(); });

  // ---- charts: the history of the selected process, as SVG ----
  function polyline(svg, values, unit) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var ns = 'http://www.w3.org/2000/svg', max = 0;
    values.forEach(function (v) { if (v !== false && v > max) max = v; });
    if (max === 0) max = unit === '%' ? 1 : 1024;
    var pts = [], n = values.length, line = null;
    function flush() {
      if (pts.length) {
        line = document.createElementNS(ns, 'polyline');
        line.setAttribute('points', pts.join(' '));
        svg.appendChild(line);
      }
      pts = [];
    }
    values.forEach(function (v, i) {
      if (v === false) return flush();
      pts.push((n > 1 ? i * 600 / (n - 1) : 0).toFixed(1) + ',' + (115 - v / max * 105).toFixed(1));
    });
    flush();
    var t = document.createElementNS(ns, 'text');
    t.setAttribute('x', 4); t.setAttribute('y', 12);
    t.textContent = 'max ' + (unit === '%' ? max.toFixed(1) + '%' : bytes(max));
    svg.appendChild(t);
  }
  function charts() {
    if (!selected) return;
    fetch('/api/history?id=' + selected.pm_id + '&span=' + $('span').value, { credentials: 'same-origin' })
      .then(function (r) { return r.json(); }).then(function (res) {
        var h = res && res[0];
        if (!h) return;
        polyline($('chart-cpu'), h.cpu, '%');
        polyline($('chart-mem'), h.memory, 'B');
      }, function () {});
  }
  function select(p) {
    if (selected && rows[selected.pm_id]) rows[selected.pm_id].tr.classList.remove('selected');
    selected = p;
    if (rows[p.pm_id]) rows[p.pm_id].tr.classList.add('selected');
    $('chart-name').textContent = p.name + ' (id ' + p.pm_id + ')';
    charts();
  }
  $('span').addEventListener('change', charts);
  setInterval(charts, 5000);

  // ---- logs, ANSI colours as classes (never as markup) ----
  var logs = $('logs');
  function ansi(line, into) {
    var re = /\x1b\[([0-9;]*)m/g, last = 0, cls = [], m;
    function put(text) {
      if (!text) return;
      into.appendChild(cls.length ? el('span', cls.map(function (c) { return 'a' + c; }).join(' '), text)
        : document.createTextNode(text));
    }
    while ((m = re.exec(line))) {
      put(line.slice(last, m.index));
      last = re.lastIndex;
      m[1].split(';').forEach(function (c) {
        c = +c || 0;
        if (c === 0) cls = [];
        else if (c === 1 || (c >= 30 && c <= 37) || (c >= 90 && c <= 97)) cls.push(c);
      });
    }
    put(line.slice(last).replace(/\x1b\[[0-9;]*[A-Za-z]/g, ''));
  }
  function log(d) {
    var stick = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
    String(d.data).split('\n').forEach(function (line) {
      if (line === '') return;
      var div = el('div', d.err ? 'err' : '');
      div.appendChild(el('span', 'name', d.name + ' | '));
      ansi(line, div);
      logs.appendChild(div);
    });
    while (logs.childNodes.length > 1000) logs.removeChild(logs.firstChild);
    if (stick) logs.scrollTop = logs.scrollHeight;
  }
  function event(d) {
    var ul = $('events');
    var text = new Date(d.at || Date.now()).toLocaleTimeString() + ' ' + d.name + ' ' + d.event;
    if (d.event === 'exit') {
      text += d.signal ? ' signal ' + d.signal : ' code ' + d.code;
      if (d.reason) text += ' (' + d.reason + ')';
    }
    var li = el('li', d.event === 'exit' ? 'err' : '', text);
    ul.insertBefore(li, ul.firstChild);
    while (ul.childNodes.length > 200) ul.removeChild(ul.lastChild);
  }

  // ---- live: Server-Sent Events, after the logs' last lines ----
  function live() {
    var src = new EventSource('/events');
    src.addEventListener('open', function () { $('live').textContent = 'live'; $('live').className = 'on'; });
    src.addEventListener('error', function () { $('live').textContent = 'reconnecting'; $('live').className = 'off'; });
    src.addEventListener('procs', function (e) { procs(JSON.parse(e.data)); });
    src.addEventListener('log', function (e) { log(JSON.parse(e.data)); });
    src.addEventListener('event', function (e) { event(JSON.parse(e.data)); });
  }
  fetch('/api/tail', { credentials: 'same-origin' })
    .then(function (r) { return r.json(); }).then(function (res) {
      (res || []).forEach(function (a) {
        if (a.out && a.out.length) log({ name: a.name, err: false, data: a.out.join('\n') });
        if (a.err && a.err.length) log({ name: a.name, err: true, data: a.err.join('\n') });
      });
    }, function () {}).then(live, live);
})();
]]

local ICON = [[<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">
<rect width="16" height="16" rx="3" fill="#1c2128"/><polyline points="2,11 5,7 8,9 11,4 14,6" fill="none"
stroke="#5c5" stroke-width="1.6"/></svg>
]]

M.files = {
  ["icon.svg"] = { type = "image/svg+xml", body = ICON },
  ["app.css"] = { type = "text/css; charset=utf-8", body = CSS },
  ["app.js"] = { type = "text/javascript; charset=utf-8", body = JS },
}

return M
