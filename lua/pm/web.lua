-- The web process of `pm web` (the app pm-web, namespace pm): an HTTP
-- server (core.http_server: libmicrohttpd in pm's loop) that is a client
-- of rpc.sock. It serves /metrics (Prometheus' text, made by the daemon's
-- `metrics`), the dashboard (/ and /assets/*: every byte from pm, no CDN),
-- its JSON (/api/*), live updates as Server-Sent Events (/events) and the
-- actions (POST /api/action). Who may: /metrics from loopback freely,
-- elsewhere with the token as a bearer; everything else with a session
-- cookie (HttpOnly, SameSite=Strict) got for the token (PM_HOME/web.token),
-- and every POST with the session's CSRF token in X-CSRF-Token.
local core = require "pm.core"
local util = require "pm.util"
local assets = require "pm.web_assets"
local metrics = require "pm.metrics"

local M = {}

-- (stream_pending: the bytes an event stream may have waiting unsent, a
-- process table larger than that beside them; streams: the live streams
-- (/events) at once, half of per_ip: an address with them all open still
-- gets its pages and /metrics)
M.LIMITS = { connections = 64, per_ip = 16, timeout = 10, memory = 32768, max_body = 16384,
  stream_pending = 1024 * 1024, streams = 8 }
M.MAX_SESSIONS = 64
M.RECONNECT_EVERY_MS, M.RECONNECT_MS = 200, 30000 -- the daemon gone: connecting again
M.TABLE_ROWS_PER_S, M.TABLE_EVERY_MAX = 2000, 5 -- the live table: every ceil(rows/2000) s, 5 s at most
M.SESSION_IDLE_MS = 12 * 3600 * 1000 -- a session unused this long is gone
M.TOKEN_FILE = "web.token"

local CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
  .. "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

local function random_hex(bytes)
  local f = io.open("/dev/urandom", "rb")
  if not f then error("cannot read /dev/urandom") end
  local s = f:read(bytes)
  f:close()
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end
M.random_hex = random_hex

-- The token of PM_HOME (made 0600 when there is none) -> token | nil, err
function M.token(home, create)
  local path = home .. "/" .. M.TOKEN_FILE
  local t = util.read_file(path)
  t = t and t:match("^%s*(%x+)%s*$")
  if t and #t >= 32 then return t end
  if not create then return nil, "no web token in " .. path .. " (pm web makes one)" end
  t = random_hex(24)
  local ok, err = util.write_atomic(path, t .. "\n", { mode = 384 }) -- 0600
  if not ok then return nil, err end
  return t
end

local same = util.same_secret

local function loopback(ip)
  return ip:match("^127%.") ~= nil or ip == "::1" or ip:match("^::ffff:127%.") ~= nil
end
M.loopback = loopback

local function cookie_of(headers, name)
  local c = headers.cookie
  if not c then return nil end
  for k, v in c:gmatch("([^=;%s]+)=([^;]*)") do
    if k == name then return v end
  end
end

local function urldecode(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function form_of(body)
  local t = {}
  for k, v in body:gmatch("([^&=]+)=([^&]*)") do t[urldecode(k)] = urldecode(v) end
  return t
end

--[[ Serves until the daemon is gone for good (-> 1) or SIGTERM (-> 0).
opts: host, port, home, conn (a client connection), connect (-> a new one
| nil: after the daemon went), token, and the LIMITS fields. ]]
function M.serve(opts)
  local http, herr = require("pm.httplib").load()
  if not http then return nil, herr end
  local conn, token = opts.conn, opts.token
  -- a request to the daemon; on_result(nil, err) at once when the
  -- connection is down (between a daemon and the next: a take-over)
  local function ask(method, params, on_result)
    local id, err = conn:send(method, params, on_result)
    if not id and on_result then on_result(nil, err) end
  end
  local srv
  local sessions, nsessions = {}, 0 -- sid -> { csrf, at }
  local sse = {}                     -- request id -> true: the open event streams
  local nsse = 0
  local subscribed = false
  local stats = { requests = 0, refused = 0 }

  local function headers(extra, ctype)
    local h = { ["Content-Type"] = ctype or "text/plain; charset=utf-8", ["X-Content-Type-Options"] = "nosniff",
      ["Referrer-Policy"] = "no-referrer", ["Cache-Control"] = "no-store" }
    for k, v in pairs(extra or {}) do h[k] = v end
    return h
  end
  local function respond(id, status, body, ctype, extra)
    srv:respond(id, status, headers(extra, ctype), body)
  end
  local function refuse(id, status, why)
    stats.refused = stats.refused + 1
    respond(id, status, why .. "\n")
  end
  local function json(id, status, v)
    respond(id, status, util.encode(v), "application/json")
  end

  local function session_of(h)
    local sid = cookie_of(h, "pm_session")
    local s = sid and sessions[sid]
    if s and core.mono() - s.at > M.SESSION_IDLE_MS then
      sessions[sid], s = nil, nil
      nsessions = nsessions - 1
    end
    if s then s.at = core.mono() end
    return s, sid
  end
  local function new_session()
    if nsessions >= M.MAX_SESSIONS then -- the least recently used goes
      local old, at
      for k, s in pairs(sessions) do if not at or s.at < at then old, at = k, s.at end end
      sessions[old] = nil
      nsessions = nsessions - 1
    end
    local sid = random_hex(24)
    sessions[sid] = { csrf = random_hex(24), at = core.mono() }
    nsessions = nsessions + 1
    return sid
  end

  -- ---- live updates ----
  local pending = opts.stream_pending or M.LIMITS.stream_pending
  local function broadcast(event, data)
    local msg = "event: " .. event .. "\ndata: " .. data .. "\n\n"
    -- a client still reading the last process table misses this one (the
    -- next is newer); logs and events wait, within the bound (a stream
    -- holds at most a table and the bound)
    local bound = event == "procs" and #msg + pending or pending
    for id in pairs(sse) do
      local ok, err = srv:send(id, msg, bound)
      if not ok and err == "gone" then sse[id] = nil; nsse = nsse - 1 end
    end
  end
  local ROW_FIELDS = { "name", "pid", "pm_id", "monit", "pm2_env.namespace", "pm2_env.status",
    "pm2_env.pm_uptime", "pm2_env.restart_time", "pm2_env.instances", "pm2_env.exec_mode" }
  -- the table every second, every few seconds for thousands of apps (a
  -- new stream gets it at once)
  local listing, next_at = false, 0
  local function tick(at_once)
    if nsse == 0 or listing or (not at_once and core.mono() < next_at) then return end
    listing = true
    local asked = core.mono()
    ask("list", { fields = ROW_FIELDS }, function(res)
      listing = false
      if not res then return end
      local rows = util.array(res)
      next_at = asked + math.min(M.TABLE_EVERY_MAX, math.ceil(#rows / M.TABLE_ROWS_PER_S)) * 1000 - 100
      broadcast("procs", util.encode(rows))
    end)
  end
  local function subscribe(on)
    if on == subscribed then return end
    subscribed = on
    ask(on and "subscribe" or "unsubscribe", { events = { "process:event", "log:out", "log:err" } })
  end
  local function on_event(event, data)
    if nsse == 0 or type(data) ~= "table" then return end
    local p = type(data.process) == "table" and data.process or {}
    if event == "log:out" or event == "log:err" then
      local text = tostring(data.data or "")
      if #text > 16384 then text = text:sub(-16384) end
      broadcast("log", util.encode({ id = p.pm_id, name = p.name, err = event == "log:err", data = text }))
    elseif event == "process:event" then
      broadcast("event", util.encode({ id = p.pm_id, name = p.name, event = data.event, at = data.at,
        code = data.code, signal = data.signal, reason = data.reason, manually = data.manually }))
    end
  end

  -- ---- requests ----
  local ACTIONS = { start = "start", stop = "stop", restart = "restart", reload = "reload", flush = "flush",
    scale = "scale" }

  local function action(id, body, s)
    local req = util.decode(body)
    if type(req) ~= "table" then req = form_of(body) end
    local method = ACTIONS[req.action]
    if not method then return refuse(id, 400, "unknown action") end
    local target = req.target
    if type(target) == "string" and target:match("^%d+$") then target = tonumber(target) end
    if type(target) ~= "number" and type(target) ~= "string" then return refuse(id, 400, "target needed") end
    local params = { target = target }
    if method == "scale" then
      params = { name = target, instances = tostring(req.instances or "") }
    end
    ask(method, params, function(res, err)
      if err then return json(id, 409, { error = err }) end
      json(id, 200, { ok = true, count = type(res) == "table" and #res or res })
    end)
    return s
  end

  local function authorized_metrics(h, peer)
    if loopback(peer) then return true end
    local bearer = (h.authorization or ""):match("^[Bb]earer%s+(%S+)$")
    if bearer and same(bearer, token) then return true end
    return session_of(h) ~= nil
  end

  local function on_request(id, method, url, h, body, peer, args)
    stats.requests = stats.requests + 1
    -- HEAD: a GET's head (libmicrohttpd sends no body), for what a GET
    -- serves without a side effect: the page, /metrics, the assets
    if method == "HEAD" and (url == "/" or url == "/metrics" or url == "/favicon.ico" or url:match("^/assets/")) then
      method = "GET"
    end
    if url == "/metrics" and method == "GET" then
      if not authorized_metrics(h, peer) then
        return respond(id, 401, "a bearer token is needed from " .. peer .. "\n", nil,
          { ["WWW-Authenticate"] = 'Bearer realm="pm"' })
      end
      ask("metrics", {}, function(res, err)
        if not res then return refuse(id, 502, "the daemon: " .. tostring(err)) end
        local text, terr = metrics.pieces(res)
        if not text then return refuse(id, 502, "the daemon's numbers: " .. terr) end
        respond(id, 200, text, "text/plain; version=0.0.4; charset=utf-8")
      end)
      return
    end
    -- (/favicon.ico: what a browser asks for beside a page that names no
    -- icon, a refusal's text among them; the dashboard's icon, to anyone)
    local asset = url == "/favicon.ico" and "icon.svg" or url:match("^/assets/(.*)$")
    if asset and method == "GET" then
      local a = asset:match("^[%w_-]+%.%w+$") and assets.files[asset]
      if not a then return refuse(id, 404, "no such asset") end
      return respond(id, 200, a.body, a.type, { ["Cache-Control"] = "no-cache" })
    end
    local s = session_of(h)
    if method == "GET" and url == "/" then
      if args.token then
        if not same(args.token, token) then return refuse(id, 403, "wrong token") end
        local sid = new_session()
        return respond(id, 303, "", nil, { Location = "/",
          ["Set-Cookie"] = "pm_session=" .. sid .. "; Path=/; HttpOnly; SameSite=Strict" })
      end
      if not s then
        return respond(id, 401, assets.login_page, "text/html; charset=utf-8", { ["Content-Security-Policy"] = CSP })
      end
      return respond(id, 200, assets.page(s.csrf), "text/html; charset=utf-8", { ["Content-Security-Policy"] = CSP,
        ["X-Frame-Options"] = "DENY" })
    end
    if method == "POST" and url == "/login" then
      local f = form_of(body)
      if not same(f.token, token) then return refuse(id, 403, "wrong token") end
      local sid = new_session()
      return respond(id, 303, "", nil, { Location = "/",
        ["Set-Cookie"] = "pm_session=" .. sid .. "; Path=/; HttpOnly; SameSite=Strict" })
    end
    if not s then return refuse(id, 401, "log in first: open the URL pm web printed") end
    if method == "POST" then
      -- a state change: the session's CSRF token, from a page of this origin
      if not same(h["x-csrf-token"], s.csrf) then return refuse(id, 403, "CSRF token missing or wrong") end
      local origin = h.origin
      if origin and origin ~= "http://" .. tostring(h.host) and origin ~= "https://" .. tostring(h.host) then
        return refuse(id, 403, "cross-origin request refused")
      end
      if url == "/api/action" then return action(id, body, s) end
      return refuse(id, 404, "no such thing")
    end
    if method ~= "GET" or url == "/api/action" then return refuse(id, 405, "method not allowed") end
    if url == "/api/list" then
      ask("list", { fields = ROW_FIELDS }, function(res, err)
        if not res then return refuse(id, 502, "the daemon: " .. tostring(err)) end
        json(id, 200, util.array(res))
      end)
      return
    end
    if url == "/api/tail" then -- the last lines of each app's logs (the log pane's start)
      ask("tail", { lines = math.min(tonumber(args.lines) or 20, 200) }, function(res, err)
        if not res then return json(id, 502, { error = err }) end
        json(id, 200, res)
      end)
      return
    end
    if url == "/api/history" then
      local span = tonumber(args.span) or 600
      local target = args.id and tonumber(args.id)
      if not target then return refuse(id, 400, "id needed") end
      ask("history", { target = target, span = span }, function(res, err)
        if not res then return json(id, 400, { error = err }) end
        json(id, 200, res)
      end)
      return
    end
    if url == "/events" then
      if nsse >= (opts.streams or M.LIMITS.streams) then
        return refuse(id, 503, "too many live streams: close a dashboard")
      end
      srv:stream(id, 200, headers({ ["X-Accel-Buffering"] = "no" }, "text/event-stream"))
      sse[id] = true
      nsse = nsse + 1
      subscribe(true)
      srv:send(id, "retry: 2000\n\n")
      tick(true)
      return
    end
    return refuse(id, 404, "no such thing")
  end

  local function on_close(id)
    if sse[id] then
      sse[id] = nil
      nsse = nsse - 1
      if nsse == 0 then subscribe(false) end
    end
  end

  local lim = {}
  for k, v in pairs(M.LIMITS) do lim[k] = opts[k] or v end
  lim.host, lim.port = opts.host, opts.port
  local err
  srv, err = http.http_server(lim, on_request, on_close)
  if not srv then return nil, ("%s:%s: %s"):format(opts.host, opts.port, err) end
  M.server = srv
  if opts.on_listen then opts.on_listen(srv:port()) end
  local done
  local ticker = core.timer(1000, 1000, tick)
  -- history sampled while the web runs (the daemon stops a few minutes
  -- after the last ask)
  local function keep_history() ask("history", { span = 1, target = "all" }) end
  -- a new connection (the first, or one to the daemon that took over):
  -- events, subscription and history asked for again
  local function attach(c)
    conn = c
    c.on_event = on_event
    subscribed = false
    if nsse > 0 then subscribe(true) end
    keep_history()
  end
  attach(conn)
  local keeper = core.timer(30000, 30000, keep_history)
  local term = core.signal(core.signals.SIGTERM, function() done = 0 end)
  local int = core.signal(core.signals.SIGINT, function() done = 0 end)
  -- the daemon gone: another takes over (the keeper's) and this process
  -- is kept; it connects again, tried every RECONNECT_EVERY_MS for
  -- RECONNECT_MS, then ends (-> 1: the daemon starts it again, if any)
  local lost_at, retry
  while not done do
    if conn.closed then
      lost_at = lost_at or core.mono()
      if not opts.connect or core.mono() - lost_at > M.RECONNECT_MS then done = 1 break end
      retry = retry or core.timer(M.RECONNECT_EVERY_MS, 0, function()
        retry = nil
        local c = opts.connect()
        if c then
          lost_at = nil
          attach(c)
        end
      end)
    end
    core.run("once")
  end
  if retry then retry:close() end
  ticker:close(); keeper:close(); term:close(); int:close()
  srv:close()
  return done
end

return M
