-- The IPC channel of an app's process (Node's: one JSON value per line,
-- NODE_CHANNEL_FD): what a message from the app means ("ready", an event
-- for the bus, Node's own) and sending to it. Decides nothing about a
-- process's life beyond passing "ready" on to readiness.lua.
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"
local bus = require "pm.bus"
local proc = require "pm.proc"
local readiness = require "pm.readiness"

local M = {}

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
    return -- Node's own internal messages
  end
  local name = "process:msg"
  if type(msg) == "table" and type(msg.type) == "string" and msg.type ~= "" then name = msg.type end
  if not bus.wants(name) then return end
  local data = msg
  if type(msg) == "table" and msg.type ~= nil and msg.data ~= nil then data = msg.data end
  bus.publish(name, { process = proc.ref(p), at = core.now(), data = data, raw = msg })
end

function M.open(p, fd)
  if p.channel then p.channel:close() end
  local channel
  channel = core.stream(fd, function(line)
    if line then on_message(p, line, channel) end
  end, function()
    if p.channel == channel then p.channel = nil end
  end, 16 * 1024 * 1024)
  p.channel = channel
end

function M.close(p)
  if p.channel then p.channel:close(); p.channel = nil end
end

-- What may wait in the daemon for an app that does not read its channel:
-- a message past it is refused (the daemon's memory is not the app's queue;
-- one message alone is not: the request that brought it was bounded).
M.MAX_PENDING = 4 * 1024 * 1024

-- Sends a value to the app over its channel -> true | nil, err
-- (internal: the daemon's own "shutdown", sent while it stops)
function M.send(p, value, internal)
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
