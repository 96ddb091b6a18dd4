-- The daemon's event bus: subscribers are control connections that asked for
-- event patterns ("*", "process:*", exact names). A subscriber that does not
-- read gets a bounded queue; past it, its events are dropped and counted,
-- and a "bus:dropped" notice says how many once it catches up.
local util = require "pm.util"

local M = {}

M.MAX_PENDING = 4 * 1024 * 1024 -- bytes queued per subscriber

local subscribers = {} -- conn -> { patterns }
local count = 0
local listeners = {} -- fn(count) called when the set of subscriptions changes

local function matches(pattern, event)
  if pattern == "*" or pattern == event then return true end
  local prefix = pattern:match("^(.*)%*$")
  return prefix ~= nil and event:sub(1, #prefix) == prefix
end

local function changed()
  for _, fn in ipairs(listeners) do fn() end
end

function M.on_change(fn) listeners[#listeners + 1] = fn end

function M.subscribe(conn, events)
  local pats = subscribers[conn]
  if not pats then
    pats = {}
    subscribers[conn] = pats
    count = count + 1
  end
  for _, e in ipairs(events) do pats[e] = true end
  changed()
end

function M.unsubscribe(conn, events)
  local pats = subscribers[conn]
  if not pats then return end
  if events then
    for _, e in ipairs(events) do pats[e] = nil end
  end
  if not events or next(pats) == nil then
    subscribers[conn] = nil
    count = count - 1
  end
  changed()
end

-- Does anyone listen for this event? (cheap: no subscriber, no work)
function M.wants(event)
  if count == 0 then return false end
  for _, pats in pairs(subscribers) do
    for p in pairs(pats) do
      if matches(p, event) then return true end
    end
  end
  return false
end

-- events dropped for slow subscribers since the daemon started (metrics)
M.dropped_total = 0

-- how many connections subscribe
function M.subscribers() return count end

local function send(conn, event, data)
  local stream = conn.stream
  if stream:pending() > M.MAX_PENDING then
    conn.dropped = (conn.dropped or 0) + 1
    M.dropped_total = M.dropped_total + 1
    return
  end
  if conn.dropped and conn.dropped > 0 then
    local n = conn.dropped
    conn.dropped = 0
    stream:write(util.encode({ jsonrpc = "2.0", method = "event",
      params = { event = "bus:dropped", data = { count = n } } }) .. "\n")
  end
  stream:write(util.encode_text({ jsonrpc = "2.0", method = "event",
    params = { event = event, data = data } }) .. "\n")
end

function M.publish(event, data)
  if M.tap then M.tap(event, data) end -- (metrics.lua counts log:dropped)
  if count == 0 then return end
  for conn, pats in pairs(subscribers) do
    for p in pairs(pats) do
      if matches(p, event) then
        send(conn, event, data)
        break
      end
    end
  end
end

M.matches = matches

return M
