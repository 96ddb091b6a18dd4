-- The IPC channel of an app's process (Node's: one JSON value per line,
-- NODE_CHANNEL_FD): what a message from the app means ("ready", an event
-- for the bus, Node's own, the cluster preload's request for a socket)
-- and sending to it. Decides nothing about a process's life beyond passing
-- "ready" on to readiness.lua, nor which port an app may have (sockets.lua).
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"
local bus = require "pm.bus"
local proc = require "pm.proc"
local readiness = require "pm.readiness"
local sockets = require "pm.sockets"

local M = {}

-- The cluster preload of an instance of p's app calls listen() on a port
-- no socket it was given is for: the app's socket for that port (bound
-- now, when the app may have it) goes back over the channel the request
-- came on, with the fd, as Node passes handles; or why not.
local function listen_request(p, msg, channel)
  -- (an app that does not read its channel gets no more: MAX_PENDING)
  if channel:pending() > M.MAX_PENDING then return end
  local seq = tonumber(msg.seq) or 0
  local d = p.decl
  local s, spec, code
  if d.exec_mode ~= "cluster_mode" or not require("pm.app").is_node(d.interpreter) then
    spec, code = ("app '%s' is not a Node app in cluster mode: pm holds no port for it"):format(p.name), "EINVAL"
  else
    s, spec, code = sockets.learn(p.name, d, msg.address, msg.port)
  end
  if not s then
    -- (said once a process: an app that asks again and again fills no log)
    if p.listen_warned ~= p.pid then
      p.listen_warned = p.pid
      log.warn("app %s (%d) listens on port %q: %s", p.name, p.pm_id, tostring(msg.port):sub(1, 64), spec)
    end
    return channel:write(util.encode({ cmd = "NODE_PM_LISTEN_ERR", seq = seq, port = tonumber(msg.port),
      code = code, message = spec }) .. "\n")
  end
  if spec then
    log.info("app %s (%d) listens on %s: pm holds it for the app from now on", p.name, p.pm_id, spec)
  end
  -- the port is the app's: its next processes get it from their start
  -- (PM_LISTEN_MAP), after a restart, a reload or a resurrect too
  if sockets.remember(d) then proc.ctx.changed() end
  local ok, err = channel:write_fd(util.encode({ cmd = "NODE_HANDLE", type = "net.Native",
    msg = { cmd = "NODE_PM_LISTEN_OK", seq = seq, port = s.port } }) .. "\n", s.fd)
  if not ok then
    log.warn("app %s (%d): the socket of port %d could not be passed: %s", p.name, p.pm_id, s.port, tostring(err))
    channel:write(util.encode({ cmd = "NODE_PM_LISTEN_ERR", seq = seq, port = s.port, code = "EAGAIN",
      message = "pm could not pass the socket: " .. tostring(err) }) .. "\n")
  end
end

-- @pm2/io's metrics (PM2's probes): an app's {type = "axm:monitor",
-- data = {name = {value, unit, type, historic}}} kept as PM2 keeps them
-- (pm2_env.axm_monitor: merged, a new process starts with none), within
-- bounds: MAX_METRICS names a process, text cut at MAX_TEXT bytes.
M.MAX_METRICS, M.MAX_TEXT = 64, 256
local function text_of(v, max)
  local t = type(v)
  if t == "number" then return v == v and v ~= math.huge and v ~= -math.huge and v or nil end
  if t == "boolean" then return v end
  if t == "string" then return #v > max and v:sub(1, max) or v end
  return nil
end
function M.monitor(p, data)
  if type(data) ~= "table" then return end
  local m = p.axm_monitor
  if not m or m.pid ~= p.pid then
    m = { pid = p.pid, n = 0, by = {} }
    p.axm_monitor = m
  end
  for name, v in pairs(data) do
    if type(name) == "string" and name ~= "" and #name <= M.MAX_TEXT and type(v) == "table" then
      local e = m.by[name]
      if not e and m.n < M.MAX_METRICS then
        e = {}
        m.by[name] = e
        m.n = m.n + 1
      end
      if e then
        e.value = text_of(v.value, M.MAX_TEXT)
        e.unit = type(v.unit) == "string" and text_of(v.unit, 64) or nil
        e.type = type(v.type) == "string" and text_of(v.type, 64) or nil
        e.historic = type(v.historic) == "boolean" and v.historic or nil
      end
    end
  end
  m.json = nil
end

-- What a process's metrics are as JSON text ("{}" when none)
function M.monitor_json(p)
  local m = p.axm_monitor
  if not m or m.pid ~= p.pid or m.n == 0 then return "{}" end
  if not m.json then
    local names = {}
    for name in pairs(m.by) do names[#names + 1] = name end
    table.sort(names)
    local parts = {}
    for i, name in ipairs(names) do
      local e = m.by[name]
      local fields = {}
      for _, k in ipairs({ "historic", "unit", "type", "value" }) do
        if e[k] ~= nil then fields[#fields + 1] = util.encode(k) .. ":" .. util.encode(e[k]) end
      end
      parts[i] = util.encode(name) .. ":{" .. table.concat(fields, ",") .. "}"
    end
    m.json = util.utf8_clean("{" .. table.concat(parts, ",") .. "}") -- (the app's words: valid UTF-8)
  end
  return m.json
end

-- The daemon's own events: an app's message of such a type goes out as
-- process:msg (its packet's process says whose), never as the daemon's
-- (a subscriber alerting on daemon:error or reading log:out is not fed
-- fakes by an app's user)
local function reserved(name)
  return name == "process:event" or name == "hook:error" or name:match("^daemon:") ~= nil
    or name:match("^log:") ~= nil or name:match("^bus:") ~= nil
end
M.reserved = reserved -- (a hook's pm.publish is refused them too)

local function on_message(p, line, channel)
  local msg, err = util.decode(line)
  if msg == nil then
    p.bad_messages = (p.bad_messages or 0) + 1
    if p.bad_messages <= 3 or p.bad_messages % 1000 == 0 then
      log.warn("app %s (%d) sent a message that is not JSON (%d so far): %s", p.name, p.pm_id,
        p.bad_messages, err)
    end
    return
  end
  if msg == "ready" then
    -- (a crash loop's channel may still hold the dead process's "ready"
    -- when the next one is being launched: only a live process is ready)
    -- (nor the process a reload replaced, whose channel this no longer is)
    if p.pid and p.pid > 0 and p.channel == channel then readiness.mark_ready(p, "ipc") end
    return
  end
  if type(msg) == "table" and type(msg.cmd) == "string" and msg.cmd:match("^NODE_") then
    if msg.cmd == "NODE_PM_LISTEN" then return listen_request(p, msg, channel) end
    -- (the cluster preload: a server of this process listens)
    if msg.cmd == "NODE_PM_LISTENING" and p.pid and p.pid > 0 and p.channel == channel then
      return readiness.listening(p)
    end
    return -- Node's own internal messages
  end
  if type(msg) == "table" and msg.type == "axm:monitor" and p.channel == channel then
    M.monitor(p, msg.data)
  end
  if type(msg) == "table" and msg.type == "axm:action" and p.channel == channel then
    M.action(p, msg.data)
  end
  local name = "process:msg"
  if type(msg) == "table" and type(msg.type) == "string" and msg.type ~= "" then name = msg.type end
  if reserved(name) then name = "process:msg" end
  if not bus.wants(name) then return end
  local data = msg
  if type(msg) == "table" and msg.type ~= nil and msg.data ~= nil then data = msg.data end
  bus.publish(name, { process = proc.ref(p), at = core.now(), data = data, raw = msg })
end

-- The bytes a second the daemon reads from one process's channel (a burst
-- of a second's worth at once; a line of up to 16 MB): past them the
-- channel is not read until it is back under (the app's writes wait; no
-- message is lost). An app that wrote 15 MB messages without end kept the
-- daemon decoding them at 85-100 % of a core, every `pm ls` seconds long.
M.MAX_RATE = 4 * 1024 * 1024

-- held: the keeper's id of it (let go when it ends)
function M.open(p, fd, held)
  if p.channel then M.close(p) end
  local channel, resume_timer
  local allowance, at = M.MAX_RATE, core.mono()
  local function spend(bytes)
    local now = core.mono()
    allowance = math.min(M.MAX_RATE, allowance + (now - at) * M.MAX_RATE / 1000) - bytes
    at = now
    if allowance >= 0 or resume_timer or channel:closed() then return end
    channel:pause()
    resume_timer = core.timer(math.ceil(-allowance * 1000 / M.MAX_RATE), 0, function()
      resume_timer = nil
      if not channel:closed() then channel:resume() end
    end)
  end
  channel = core.stream(fd, function(line)
    if line then
      on_message(p, line, channel)
      spend(#line + 1)
    end
  end, function()
    if resume_timer then resume_timer:close(); resume_timer = nil end
    if p.channel == channel then
      p.channel = nil
      require("pm.keeper").release(p.channel_held)
      p.channel_held = nil
    end
  end, 16 * 1024 * 1024)
  p.channel = channel
  p.channel_held = held
end

function M.close(p)
  if p.channel then p.channel:close(); p.channel = nil end
  require("pm.keeper").release(p.channel_held)
  p.channel_held = nil
end

-- What may wait in the daemon for an app that does not read its channel:
-- a message past it is refused (the daemon's memory is not the app's queue;
-- one message alone is not: the request that brought it was bounded).
M.MAX_PENDING = 4 * 1024 * 1024

-- Whether p's processes get an IPC channel (one fd of the daemon's per
-- running app): `ipc` when declared; else the apps that use one: Node's
-- (process.send, cluster mode's listen) and Lua's (pm.child), apps that
-- say they are ready or are told to shut down over it (wait_ready,
-- shutdown_with_message, every app under PM2_KILL_USE_MESSAGE), and an app
-- something was sent to once (from its next process).
function M.wanted(p)
  local d = p.decl
  if d.ipc ~= nil then return d.ipc end
  if p.ipc_asked or d.wait_ready or d.shutdown_with_message or d.exec_mode == "cluster_mode" then return true end
  -- PM2_KILL_USE_MESSAGE=true: every app is stopped over its channel
  if require("pm.proc").ctx.kill_use_message then return true end
  local interp = d.interpreter or "none"
  if interp == "pm" or util.basename(interp):match("^lua") then return true end
  return require("pm.app").is_node(interp)
end

-- @pm2/io's actions (io.action(name, fn): {type = "axm:action", data =
-- {action_name}}), what `pm trigger` may call: the names a process
-- registered, MAX_METRICS of them (a new process starts with none)
function M.action(p, data)
  local name = type(data) == "table" and data.action_name
  if type(name) ~= "string" or name == "" or #name > M.MAX_TEXT then return end
  local a = p.axm_actions
  if not a or a.pid ~= p.pid then
    a = { pid = p.pid, names = {} }
    p.axm_actions = a
  end
  if #a.names >= M.MAX_METRICS then return end
  for _, n in ipairs(a.names) do if n == name then return end end
  a.names[#a.names + 1] = name
end

-- The actions p's process registered (a list, maybe empty)
function M.actions(p)
  local a = p.axm_actions
  return a and a.pid == p.pid and a.names or {}
end

-- They as JSON, PM2's pm2_env.axm_actions: [{"action_name": ...}, ...]
local function actions_json(p)
  local a = p.axm_actions
  if not (a and a.pid == p.pid and #a.names > 0) then return "[]" end
  if not a.json or a.json_n ~= #a.names then
    local list = {}
    for i, name in ipairs(a.names) do list[i] = { action_name = name } end
    a.json, a.json_n = util.encode_text(list), #a.names
  end
  return a.json
end

-- pm2_env's ,"axm_monitor":{...},"axm_actions":[...] of p's process, one
-- text (kept by the table of either; one string for every process with
-- neither, most of them)
local NO_AXM = ',"axm_monitor":{},"axm_actions":[]'
function M.axm_json(p)
  local mon, act = M.monitor_json(p), actions_json(p)
  if mon == "{}" and act == "[]" then return NO_AXM end
  local a = p.axm_actions
  local holder = a and a.pid == p.pid and a or p.axm_monitor
  if holder.axm_mon ~= mon or holder.axm_act ~= act then
    holder.axm_text = ',"axm_monitor":' .. mon .. ',"axm_actions":' .. act
    holder.axm_mon, holder.axm_act = mon, act
  end
  return holder.axm_text
end

-- Sends a value to the app over its channel -> true | nil, err
-- (internal: the daemon's own "shutdown", sent while it stops)
function M.send(p, value, internal)
  if not p.channel and not internal and p.pid and p.pid > 0 and p.decl.ipc == nil and not p.channel_fd then
    -- (said again at each send until then: the process runs, without one)
    if not p.ipc_asked then
      p.ipc_asked = true
      require("pm.proc").ctx.changed() -- (saved: a resurrect keeps it)
    end
    return nil, ("process %d (%s) has no IPC channel: pm opens one for Node and Lua apps, wait_ready, "
      .. "shutdown_with_message and ipc = true (--ipc); it has one from its next restart (pm restart %s)")
      :format(p.pm_id, p.name, p.name)
  end
  if not p.channel or p.channel:closed() or not p.pid or p.pid == 0
      or (p.status == "stopping" and not internal) then
    return nil, ("process %d (%s) has no IPC channel (not running, or ipc = false)"):format(p.pm_id, p.name)
  end
  local ok, line = pcall(util.encode, value)
  if not ok then return nil, "cannot encode the message: " .. tostring(line) end
  local waiting = p.channel:pending()
  if not internal and waiting > 0 and waiting + #line + 1 > M.MAX_PENDING then
    return nil, ("process %d (%s) is not reading its IPC channel: %d KB of messages already wait for it"
      .. " (at most %d KB)"):format(p.pm_id, p.name, math.ceil(waiting / 1024), M.MAX_PENDING / 1024)
  end
  return p.channel:write(line .. "\n")
end

return M
