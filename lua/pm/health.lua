-- Health checks: one probe of an app, over HTTP, TCP or a command.
--   health = { http = "http://127.0.0.1:8080/health" | tcp = "127.0.0.1:8080"
--              (an IP address or localhost)
--              | exec = "cmd", interval = ms, timeout = ms, retries = n }
local core = require "pm.core"

local M = {}

M.DEFAULTS = { interval = 5000, timeout = 2000, retries = 3 }

M.MIN_INTERVAL = 100 -- ms: checks more often would keep the daemon busy

-- The address a probe connects to: an IP address as it is, localhost as
-- 127.0.0.1; nil for another name (the daemon resolves none: a lookup
-- would wait on DNS in its loop)
local function address(host)
  if host == "localhost" or host == "" then return "127.0.0.1" end -- (":PORT": loopback, as before)
  if host:match("^%d+%.%d+%.%d+%.%d+$") or (host:find(":", 1, true) and host:match("^[%x:.]+$")) then
    return host
  end
  return nil
end

-- http://HOST[:PORT][/PATH] -> host, port, path | nil (HOST: a name, an
-- IPv4 address or an IPv6 one in brackets)
local function http_parts(url)
  local rest = tostring(url):match("^http://(.*)$")
  if not rest then return nil end
  local host, after = rest:match("^%[([^%]]*)%](.*)$")
  if not host then host, after = rest:match("^([^/:%[%]]+)(.*)$") end
  if not host then return nil end
  local port, path = after:match("^:(%d+)(.*)$")
  if not port then path = after end
  if path ~= "" and path:sub(1, 1) ~= "/" then return nil end
  return host, tonumber(port) or 80, path ~= "" and path or "/"
end

-- HOST:PORT or [IPv6]:PORT -> host, port | nil
local function tcp_parts(spec)
  local host, port = tostring(spec):match("^%[([^%]]*)%]:(%d+)$")
  if not host then host, port = tostring(spec):match("^([^:%[%]]*):(%d+)$") end
  return host, tonumber(port)
end

function M.check_spec(h)
  if type(h) ~= "table" then return nil, "health must be a table" end
  local n = (h.http and 1 or 0) + (h.tcp and 1 or 0) + (h.exec and 1 or 0)
  if n ~= 1 then return nil, "health needs exactly one of http, tcp or exec" end
  local host, what
  if h.http then
    host, what = http_parts(h.http), "health.http"
    if not host then return nil, "health.http must be an http://HOST[:PORT][/PATH] URL" end
  elseif h.tcp then
    host, what = tcp_parts(h.tcp), "health.tcp"
    if not host then return nil, "health.tcp must be HOST:PORT" end
  end
  if host and not address(host) then
    return nil, ("%s: %s is not an IP address nor localhost (the daemon looks up no names)"):format(what, host)
  end
  for _, k in ipairs({ "interval", "timeout", "retries" }) do
    local v = h[k]
    if v ~= nil and (type(v) ~= "number" or v ~= v or v <= 0 or v == math.huge) then
      return nil, "health." .. k .. " must be a positive number"
    end
  end
  if h.interval and h.interval < M.MIN_INTERVAL then
    return nil, ("health.interval: at least %d ms"):format(M.MIN_INTERVAL)
  end
  return true
end

-- Connects to host:port; on success sends request (if any) and waits for
-- the first line. done(ok, err) once, within timeout ms.
local function probe_tcp(host, port, request, timeout, done)
  local finished, fd, watcher, stream, timer
  local function finish(ok, err)
    if finished then return end
    finished = true
    if timer then timer:close() end
    if watcher then watcher:close() end
    if stream then stream:close() elseif fd then core.close(fd) end
    done(ok, err)
  end
  timer = core.timer(timeout, 0, function() finish(false, ("no answer in %d ms"):format(timeout)) end)
  local err
  fd, err = core.connect_tcp(host, tostring(port))
  if not fd then return finish(false, err) end
  watcher = core.watch_write(fd, function()
    watcher:close()
    watcher = nil
    local serr = core.sock_error(fd)
    if serr then return finish(false, serr) end
    if not request then return finish(true) end
    stream = core.stream(fd, function(line)
      if not line then return finish(false, "answer too long") end
      local code = tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
      if code and code >= 200 and code < 400 then return finish(true) end
      finish(false, "answered " .. line:gsub("\r$", ""))
    end, function(why) finish(false, "connection closed: " .. tostring(why)) end, 65536)
    stream:write(request)
  end)
end

-- One probe. run(argv, timeout, done(code)) runs a command (the daemon's
-- spawn). done(ok, err).
function M.probe(h, run, done)
  local timeout = h.timeout or M.DEFAULTS.timeout
  local function probe(host, port, req)
    -- localhost: 127.0.0.1, then ::1 (a server may listen on one of them
    -- only: Node's listen(port, "localhost") binds ::1 where it comes first)
    if host ~= "localhost" then return probe_tcp(address(host), port, req, timeout, done) end
    local t0 = core.mono()
    probe_tcp("127.0.0.1", port, req, timeout, function(ok, err)
      if ok then return done(true) end
      local left = timeout - (core.mono() - t0)
      if left <= 0 then return done(false, err) end
      probe_tcp("::1", port, req, math.floor(left), function(ok6, err6)
        if ok6 then return done(true) end
        done(false, err .. "; ::1: " .. tostring(err6))
      end)
    end)
  end
  if h.http then
    local host, port, path = http_parts(h.http)
    local req = ("GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: pm-health\r\n\r\n")
      :format(path, host:find(":", 1, true) and ("[" .. host .. "]") or host)
    return probe(host, port, req)
  end
  if h.tcp then
    local host, port = tcp_parts(h.tcp)
    return probe(host, port, nil)
  end
  run({ "/bin/sh", "-c", tostring(h.exec) }, timeout, function(code)
    if code == 0 then return done(true) end
    done(false, code and ("exit " .. code) or ("no answer in " .. timeout .. " ms"))
  end)
end

return M
