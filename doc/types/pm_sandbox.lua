---@meta
-- LuaLS stubs for ecosystem.lua files and their hooks: the sandbox's `pm`
-- global (doc/lua.md, sections {#hook} and {#load}). Not a module (the
-- daemon's pm.ecosystem is another thing). Annotate a file with
--   ---@type pm.Ecosystem
--   local file = { apps = { ... } }
--   return file

---@class pm.Ecosystem
---@field apps pm.App[]
---@field hooks? pm.Hooks

---@class pm.Exit
---@field code integer|nil
---@field signal string|nil
---@field uptime integer ms
---@field reason string "exit", "memory", "cron", "watch", "stop"

---@alias pm.Decision "restart"|"stop"|number|{ action: "restart"|"stop", delay?: number }|nil

---@class pm.Hooks
---@field on_exit? fun(proc: pm.Process, exit: pm.Exit): pm.Decision
---@field on_start? fun(proc: pm.Process)
---@field on_stop? fun(proc: pm.Process)

---The `pm` of an ecosystem file and its hooks.
---@class pm.HookAPI
local hook = {}

---@param target pm.Target
---@return true|nil
---@return string? err
function hook.restart(target) end

---@param target pm.Target
---@return true|nil
---@return string? err
function hook.stop(target) end

---@param target pm.Target
---@return true|nil
---@return string? err
function hook.start(target) end

---@return pm.Process[]
function hook.list() end

---@param target pm.Target
---@return pm.Process[]
function hook.describe(target) end

---@param event string
---@param data any
---@return true|nil
---@return string? err
function hook.publish(event, data) end

---@return true
function hook.log(...) end

---@param target string|integer
---@return true|nil ok, string? err
function hook.reload(target) end

---@param target string|integer
---@return true|nil ok, string? err
function hook.reset(target) end

---@param name string
---@param n integer|string N, "+N" or "-N"
---@return true|nil ok, string? err
function hook.scale(name, n) end

---@param signal string|integer
---@param target string|integer
---@return true|nil ok, string? err
function hook.signal(signal, target) end

---@param target string|integer
---@param packet any
---@return true|nil ok, string? err
function hook.send(target, packet) end

---@param target string|integer
---@param n? integer
---@return { out: string[], err: string[] }|nil lines, string? err
function hook.tail(target, n) end

---@class pm.Timer
---@field cancel fun(self: pm.Timer): true

---@param ms number
---@param fn fun(proc: table)
---@return pm.Timer
function hook.after(ms, fn) end

---@param ms number
---@param fn fun(proc: table)
---@return pm.Timer
function hook.every(ms, fn) end

---The app's own table, kept in the journal (JSON values, at most 64 KB).
---@type table
hook.state = {}

---While the file loads: a file's text (relative to the file's folder).
---@param path string
---@return string
function hook.read(path) end

---@param path string
---@return any
function hook.json(path) end

---@param path string
---@return table<string, string>
function hook.dotenv(path) end

---@return string
function hook.hostname() end

---@return integer
function hook.cpus() end

---@type pm.HookAPI
pm = hook -- luacheck: ignore
