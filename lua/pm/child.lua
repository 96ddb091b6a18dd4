-- For apps written in Lua: talk to pm over the IPC channel it gives Lua
-- apps (and any app declared with ipc = true; Node's protocol: one JSON
-- value per line on the fd NODE_CHANNEL_FD).
--   local child = require "pm.child"
--   child.on_message(function(msg) child.send({ type = "process:msg", data = { ok = true } }) end)
--   child.ready()          -- for wait_ready
--   child.loop()           -- runs until the channel closes
--   (or, in a luv/copas/cqueues app: poll child.fd(), call child.step())
local core = require "pm.core"
local util = require "pm.util"

local M = {}

-- (a Lua app pm runs through a shebang, interpreter "none", has none unless
-- declared with ipc = true)
local NONE = "no IPC channel (not started by pm, or without one: declare the app with ipc = true)"

local fd = tonumber(os.getenv("NODE_CHANNEL_FD") or "")
local stream
local handlers = {}

function M.available() return fd ~= nil end

local function open()
  if stream or not fd then return stream end
  stream = core.stream(fd, function(line)
    if not line then return end
    local msg = util.decode(line)
    if msg == nil then return end
    for _, fn in ipairs(handlers) do
      local ok, err = pcall(fn, msg)
      if not ok then io.stderr:write("pm.child: message handler: ", tostring(err), "\n") end
    end
  end, function() stream = nil; fd = nil end, 16 * 1024 * 1024)
  return stream
end

-- Sends a value (anything JSON can hold) -> true | nil, err
function M.send(value)
  local s = open()
  if not s then return nil, NONE end
  local ok, line = pcall(util.encode, value)
  if not ok then return nil, tostring(line) end
  return s:write(line .. "\n")
end

function M.ready() return M.send("ready") end

function M.on_message(fn)
  if not open() then return nil, NONE end
  handlers[#handlers + 1] = fn
  return true
end

-- Runs the event loop: messages, and the app's own pm.core timers.
function M.loop()
  while stream do core.run("once") end
end

-- For an app with a loop of its own (luv, copas, cqueues):
-- child.fd() -> fd | nil, err: readable when a message (or a pm.core
-- timer) waits: poll it and call child.step(). The channel is opened here.
function M.fd()
  if not open() then return nil, NONE end
  return core.loop_fd()
end

-- child.step([timeout_ms]) -> bool | nil, err: runs what is ready
-- (message handlers, timers, queued writes), waiting at most timeout_ms
-- (default 0); false once the channel has closed.
function M.step(ms)
  if ms ~= nil and (type(ms) ~= "number" or ms ~= ms or ms < 0) then
    return nil, "child.step: a number of ms >= 0 expected"
  end
  util.turn_loop(ms)
  return stream ~= nil
end

return M
