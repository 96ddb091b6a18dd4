---@meta pm.child
-- LuaLS stubs of `require "pm.child"` (an app written in Lua that pm
-- started: its IPC channel). Reference: doc/lua.md.

---@class pm.child
local child = {}

---@return boolean
function child.available() end

---@param value any anything JSON can hold
---@return true|nil
---@return string? err
function child.send(value) end

---Says the app is ready (wait_ready = true).
---@return true|nil
---@return string? err
function child.ready() end

---@param fn fun(msg: any)
---@return true|nil
---@return string? err
function child.on_message(fn) end

---Runs the event loop until the channel closes.
function child.loop() end

---The IPC channel's descriptor, for an app's own loop.
---@return integer|nil fd, string? err
function child.fd() end

---Reads the channel and runs on_message handlers; false once it closed.
---@param timeout_ms? number
---@return boolean|nil ok, string? err
function child.step(timeout_ms) end

return child
