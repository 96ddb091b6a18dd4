-- The Lua client API: PM2's programmatic API, Lua-style (DESIGN §4).
-- Each call returns its result, or nil, err; each also takes an optional
-- trailing callback fn(err, result), called before the call returns.
local core = require "pm.core"
local util = require "pm.util"
local client = require "pm.client"

local pm = { VERSION = util.VERSION }

local conn      -- the connection of connect()
local buses = {} -- open buses

-- Wraps fn so that a trailing function argument is PM2's callback.
local function api(fn)
  return function(...)
    local n = select("#", ...)
    local args = { ... }
    local cb
    if n > 0 and type(args[n]) == "function" then
      cb = args[n]
      args[n] = nil
      n = n - 1
    end
    local ok, res, err = pcall(fn, unpack(args, 1, n))
    if not ok then res, err = nil, tostring(res):gsub("^[^:]*:%d+: ", "") end
    if cb then cb(err, res) end
    return res, err
  end
end

local function ensure()
  if conn and not conn.closed then return conn end
  local c, err = client.connect({ private = pm._no_daemon })
  if not c then return nil, err end
  conn = c
  return c
end

-- The connection itself, for callers that want a reply's raw JSON text.
function pm._conn() return ensure() end

local function call(method, params)
  local c, err = ensure()
  if not c then return nil, err end
  return c:call(method, params)
end

local function check_version(pong)
  if type(pong) == "table" and pong.version ~= util.VERSION then
    io.stderr:write(("pm: the daemon runs pm %s, this is pm %s: run 'pm update'\n")
      :format(tostring(pong.version), util.VERSION))
  end
end

pm.connect = api(function(no_daemon_mode)
  if conn and not conn.closed then return true end
  pm._no_daemon = no_daemon_mode == true
  local c, err = ensure()
  if not c then return nil, err end
  local pong, perr = c:call("ping")
  if not pong then return nil, perr end
  check_version(pong)
  return true
end)

-- The CLI's connect: the version check rides along with the first real
-- request (its ping is answered first) instead of costing a round trip.
function pm._connect_quick()
  if conn and not conn.closed then return true end
  local c, err = ensure()
  if not c then return nil, err end
  c:send("ping", nil, check_version)
  return true
end

pm.disconnect = api(function()
  if conn then conn:close(); conn = nil end
  for b in pairs(buses) do b:close() end
  return true
end)

local function caller()
  return core.getcwd(), core.environ()
end

pm.start = api(function(opts, extra)
  local cwd, environ = caller()
  local params = { cwd = cwd, environ = environ }
  if type(extra) == "table" then
    for k, v in pairs(extra) do params[k] = v end
  end
  if type(opts) == "string" then
    local path = util.absolute(opts, cwd)
    local st = core.stat(path)
    if st and util.is_ecosystem(opts) then
      params.path = path
    elseif not st then
      -- a known name or id is (re)started; anything else is a command
      params.target = opts
      local res, err = call("start", params)
      if res or not tostring(err):match("not found") then return res, err end
      params.target = nil
      params.app = { script = opts }
    else
      params.app = { script = opts }
    end
  elseif type(opts) == "table" then
    if opts.script == nil and (opts.apps or opts[1]) then
      return nil, "start: pass an ecosystem file's path, or one app"
    end
    params.app = opts
  else
    return nil, "start: a script path or an options table expected"
  end
  return call("start", params)
end)

local function target_call(method)
  return api(function(target, opts)
    if target == nil then return nil, method .. ": a target is required" end
    local params = { target = target }
    if type(target) == "string" and util.is_ecosystem(target) then
      -- a file read again: its apps' default cwd and environment are the caller's
      params.target = util.absolute(target)
      params.cwd, params.environ = caller()
    end
    if type(opts) == "table" then
      for k, v in pairs(opts) do params[k] = v end
      if opts.updateEnv or opts.update_env then params.environ = core.environ() end
    end
    return call(method, params)
  end)
end

pm.stop = target_call("stop")
pm.restart = target_call("restart")
pm.reload = target_call("reload")
pm.delete = target_call("delete")
pm.reset = target_call("reset")
pm.describe = target_call("describe")

-- ---- PM2's startOr* verbs: an ecosystem file read again ----
-- pm.startOrRestart(file [, { env = "production", only = {...} }]): its
-- new apps start, its known apps take what changed and restart (reload,
-- for startOrReload and startOrGracefulReload); what `pm restart <file>`
-- and `pm reload <file>` do.
local function start_or(method)
  return api(function(file, opts)
    if type(file) ~= "string" or not util.is_ecosystem(file) then
      return nil, "an ecosystem file expected (ecosystem.lua, .json, .yml, .config.js)"
    end
    local cwd, environ = caller()
    local path = util.absolute(file, cwd)
    if not core.stat(path) then return nil, "file not found: " .. path end
    local params = { target = path, cwd = cwd, environ = environ }
    if type(opts) == "table" then
      for k, v in pairs(opts) do params[k] = v end
    end
    return call(method, params)
  end)
end
pm.startOrRestart = start_or("restart")
pm.startOrReload = start_or("reload")
pm.startOrGracefulReload = start_or("reload")

pm.list = api(function() return call("list") end)

pm.killDaemon = api(function()
  local c, err, down = client.connect({ spawn = false })
  if not c then
    if conn or not down then return nil, err end -- (one runs and does not answer)
    return {} -- nothing runs: nothing to kill
  end
  local res, cerr = c:call("killDaemon")
  -- the daemon closes the connection as it ends
  client.run_until(function() return c.closed end, 5000)
  c:close()
  if conn then conn:close(); conn = nil end
  return res, cerr
end)

pm.sendSignalToProcessName = api(function(signal, name)
  return call("sendSignalToProcessName", { signal = signal, target = name })
end)

pm.sendSignalToProcessId = api(function(signal, id)
  return call("sendSignalToProcessId", { signal = signal, target = id })
end)

pm.sendDataToProcessId = api(function(id, packet)
  if type(id) == "table" then id, packet = id.id, id end
  return call("sendDataToProcessId", { id = id, packet = packet })
end)

pm.flush = api(function(target) return call("flush", { target = target }) end)
pm.scale = api(function(name, instances) return call("scale", { name = name, instances = tostring(instances) }) end)
pm.reloadLogs = api(function() return call("reloadLogs") end)
pm.ping = api(function() return call("ping") end)

-- ---- the bus ----

local Bus = {}
Bus.__index = Bus

function Bus:on(event, fn)
  if type(event) ~= "string" or type(fn) ~= "function" then
    return nil, "bus:on(event, fn) expects a string and a function"
  end
  local list = self.handlers[event]
  if not list then
    list = {}
    self.handlers[event] = list
    local ok, err = self.conn:call("subscribe", { events = { event } })
    if not ok then return nil, err end
  end
  list[#list + 1] = fn
  return true
end

function Bus:off(event, fn)
  local list = self.handlers[event]
  if not list then return true end
  if fn then
    for i = #list, 1, -1 do
      if list[i] == fn then table.remove(list, i) end
    end
  end
  if not fn or #list == 0 then
    self.handlers[event] = nil
    self.conn:call("unsubscribe", { events = { event } })
  end
  return true
end

function Bus:close()
  buses[self] = nil
  self.handlers = {}
  self.conn:close()
  return true
end

function Bus:dispatch(event, data)
  for pattern, list in pairs(self.handlers) do
    local star = pattern == "*"
    local prefix = pattern:match("^(.*)%*$")
    if star or pattern == event or (prefix and event:sub(1, #prefix) == prefix) then
      for _, fn in ipairs(list) do
        local ok, err
        if star then ok, err = pcall(fn, event, data) else ok, err = pcall(fn, data) end
        if not ok then io.stderr:write("pm: bus handler: ", tostring(err), "\n") end
      end
    end
  end
end

pm.launchBus = api(function()
  local _, err = ensure()
  if err then return nil, err end
  local c, cerr = client.connect({ spawn = false })
  if not c then return nil, cerr end
  local bus = setmetatable({ conn = c, handlers = {} }, Bus)
  c.on_event = function(event, data) bus:dispatch(event, data) end
  buses[bus] = true
  return bus
end)

-- Runs the client's loop (bus events, timers) for timeout_ms, or until
-- nothing is left to wait for.
pm.wait = api(function(timeout_ms)
  local function idle()
    for b in pairs(buses) do
      if not b.conn.closed and next(b.handlers) then return false end
    end
    return true
  end
  if idle() then return true end
  client.run_until(idle, timeout_ms)
  return true
end)

return pm
