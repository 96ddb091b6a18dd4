-- Health checks: one probe of an app, over HTTP, TCP or a command.
--   health = { http = "http://127.0.0.1:8080/health" | tcp = "127.0.0.1:8080"
--              | exec = "cmd", interval = ms, timeout = ms, retries = n }
local core = require "pm.core"

local M = {}

M.DEFAULTS = { interval = 5000, timeout = 2000, retries = 3 }

M.MIN_INTERVAL = 100 -- ms: checks more often would keep the daemon busy

function M.check_spec(h)
  if type(h) ~= "table" then return nil, "health must be a table" end
  local n = (h.http and 1 or 0) + (h.tcp and 1 or 0) + (h.exec and 1 or 0)
  if n ~= 1 then return nil, "health needs exactly one of http, tcp or exec" end
  if h.http and not tostring(h.http):match("^http://[^/:]+:?%d*") then
    return nil, "health.http must be an http:// URL"
  end
  if h.tcp and not tostring(h.tcp):match("^%[?[^%]]*%]?:%d+$") then
    return nil, "health.tcp must be HOST:PORT"
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
  if h.http then
    local host, port, path = tostring(h.http):match("^http://([^/:]+):?(%d*)(.*)$")
    if host and host:match("^%[") then host = host:sub(2, -2) end
    path = path ~= "" and path or "/"
    local req = ("GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: pm-health\r\n\r\n"):format(path, host)
    return probe_tcp(host, tonumber(port) or 80, req, timeout, done)
  end
  if h.tcp then
    local host, port = tostring(h.tcp):match("^%[?([^%]]*)%]?:(%d+)$")
    return probe_tcp(host, port, nil, timeout, done)
  end
  run({ "/bin/sh", "-c", tostring(h.exec) }, timeout, function(code)
    if code == 0 then return done(true) end
    done(false, code and ("exit " .. code) or ("no answer in " .. timeout .. " ms"))
  end)
end

return M
