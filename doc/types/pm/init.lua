---@meta pm
-- LuaLS stubs of pm's client API (`require "pm"`): for editors only, never
-- loaded. Installed by `make install` in $(PREFIX)/share/pm/types; point
-- LuaLS at it: "Lua.workspace.library": ["/usr/local/share/pm/types"].
-- The reference is doc/lua.md (`pm help lua`).

---A process as `pm jlist` shows it.
---@class pm.Process
---@field name string
---@field pm_id integer
---@field pid integer
---@field monit { memory: integer, cpu: number }
---@field pm2_env pm.Env

---@class pm.Env
---@field status string "online", "stopped", "errored", "launching", "stopping", "waiting restart"
---@field restart_time integer
---@field unstable_restarts integer
---@field pm_uptime integer
---@field namespace string
---@field exec_mode string
---@field [string] any

---One app, as in an ecosystem file (README: ecosystem.lua reference).
---@class pm.App
---@field script string
---@field name? string
---@field args? string|string[]
---@field cwd? string
---@field instances? integer|string
---@field env? table<string, string>
---@field autorestart? boolean
---@field max_restarts? integer
---@field min_uptime? integer|string
---@field restart_delay? integer
---@field max_memory_restart? integer|string
---@field cron_restart? string
---@field watch? boolean|string[]
---@field [string] any

---A target: a name, an id, "all", a namespace or an ecosystem file's path.
---@alias pm.Target string|integer

---PM2's callback: runs from the event loop after the call returns.
---@alias pm.Callback fun(err: string|nil, result: any)

---@class pm
---@field VERSION string the client's version
local pm = {}

---Connects to the daemon of $PM_HOME, starting one when none runs.
---@param no_daemon_mode? boolean a private daemon that ends with the program
---@param cb? pm.Callback
---@return true|nil ok
---@return string? err
function pm.connect(no_daemon_mode, cb) end

---Closes the connection and every bus.
---@param cb? pm.Callback
---@return true
function pm.disconnect(cb) end

---Starts a script, an ecosystem file, one app, or a known app by name or id.
---@param what string|integer|pm.App
---@param extra? table request options ({ env = "production", only = {...} })
---@param cb? pm.Callback
---@return pm.Process[]|nil procs
---@return string? err
function pm.start(what, extra, cb) end

---@param target pm.Target
---@param opts? table
---@param cb? pm.Callback
---@return pm.Process[]|nil procs
---@return string? err
function pm.stop(target, opts, cb) end

---@param target pm.Target
---@param opts? table app attributes; updateEnv = true takes the caller's environment
---@param cb? pm.Callback
---@return pm.Process[]|nil procs
---@return string? err
function pm.restart(target, opts, cb) end

---Zero-downtime restart.
---@param target pm.Target
---@param opts? table
---@param cb? pm.Callback
---@return pm.Process[]|nil procs
---@return string? err
function pm.reload(target, opts, cb) end

---@param target pm.Target
---@param opts? table
---@param cb? pm.Callback
---@return pm.Process[]|nil procs
---@return string? err
function pm.delete(target, opts, cb) end

---Zeroes restart_time and unstable_restarts.
---@param target pm.Target
---@param cb? pm.Callback
---@return pm.Process[]|nil procs
---@return string? err
function pm.reset(target, cb) end

---@param target pm.Target
---@param cb? pm.Callback
---@return pm.Process[]|nil procs
---@return string? err
function pm.describe(target, cb) end

---@param cb? pm.Callback
---@return pm.Process[]|nil procs
---@return string? err
function pm.list(cb) end

---@param file string an ecosystem file
---@param opts? table
---@param cb? pm.Callback
---@return pm.Process[]|nil procs
---@return string? err
function pm.startOrRestart(file, opts, cb) end

---@param file string an ecosystem file
---@param opts? table
---@param cb? pm.Callback
---@return pm.Process[]|nil procs
---@return string? err
function pm.startOrReload(file, opts, cb) end

---@param file string an ecosystem file
---@param opts? table
---@param cb? pm.Callback
---@return pm.Process[]|nil procs
---@return string? err
function pm.startOrGracefulReload(file, opts, cb) end

---@param name string
---@param instances integer|string N, "+N" or "-N"
---@param cb? pm.Callback
---@return pm.Process[]|nil procs
---@return string? err
function pm.scale(name, instances, cb) end

---Stops every app, then the daemon.
---@param cb? pm.Callback
---@return table|nil
---@return string? err
function pm.killDaemon(cb) end

---@param signal string|integer "SIGUSR1", "USR1" or a number
---@param name string
---@param cb? pm.Callback
---@return pm.Process[]|nil procs
---@return string? err
function pm.sendSignalToProcessName(signal, name, cb) end

---@param signal string|integer
---@param id integer
---@param cb? pm.Callback
---@return pm.Process[]|nil procs
---@return string? err
function pm.sendSignalToProcessId(signal, id, cb) end

---@param id integer|table
---@param packet? { type: string, data: any, topic: any }
---@param cb? pm.Callback
---@return true|nil
---@return string? err
function pm.sendDataToProcessId(id, packet, cb) end

---@param target string|integer
---@param action string
---@param params? any
---@param opts? { timeout: number }
---@param cb? pm.Callback
---@return { process: { name: string, pm_id: integer, namespace: string }, data: any }[]|nil answers
---@return string? err
function pm.trigger(target, action, params, opts, cb) end

---@param id integer
---@param line string
---@param separator? string default "\n"
---@param cb? pm.Callback
---@return { pm_id: integer, line: string }|nil
---@return string? err
function pm.sendLineToStdin(id, line, separator, cb) end

---@param target? pm.Target every app when nil
---@param cb? pm.Callback
---@return any
---@return string? err
function pm.flush(target, cb) end

---@param cb? pm.Callback
---@return true|nil
---@return string? err
function pm.reloadLogs(cb) end

---@param cb? pm.Callback
---@return { msg: string, version: string, pid: integer }|nil
---@return string? err
function pm.ping(cb) end

---@param cb? pm.Callback
---@return pm.Bus|nil bus
---@return string? err
function pm.launchBus(cb) end

---Runs the event loop: for ms when given, else while anything keeps it alive.
---@param ms? number
---@param cb? pm.Callback
---@return true|nil
---@return string? err
function pm.wait(ms, cb) end

---@class pm.Bus
---Waits for the next event (yields in a coroutine, blocks outside one).
---@param event string
---@param predicate? fun(packet: table): boolean
---@param timeout_ms? number
---@return table|nil packet, string? err
function pm.wait_for(event, predicate, timeout_ms) end

---The client's event loop descriptor, for a host loop.
---@return integer|nil fd, string? err
function pm.fd() end

---ms until the client's next timer (0: now), nil when none.
---@return number|nil
function pm.timeout() end

---Turns the client's loop once.
---@param timeout_ms? number
---@return true|nil ok, string? err
function pm.step(timeout_ms) end

local Bus = {}

---@param event string "process:event", "log:out", "*", "log:*", an app's type
---@param fn fun(packet: table, event: string)|fun(event: string, packet: table) the second for "*"
---@return true|nil
---@return string? err
function Bus:on(event, fn) end

---@param event string
---@param fn? function every handler when nil
---@return true
function Bus:off(event, fn) end

---@return true
function Bus:close() end

---The next such event only.
---@param event string
---@param fn fun(packet: table, event: string)
---@return true|nil ok, string? err
function Bus:once(event, fn) end

return pm
