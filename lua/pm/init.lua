-- The Lua client API: PM2's programmatic API, Lua-style (DESIGN §4).
-- Each call returns its result, or nil, err; each also takes an optional
-- trailing callback fn(err, result). As in Node, a callback never runs
-- inside the call given it: it is queued, and runs from the event loop
-- once the calling chunk yields to it (the end of a `pm run` script's main
-- chunk, pm.wait, a loop the caller runs); bus handlers too, when their
-- event comes during a call. The return-value style stays synchronous.
local core = require "pm.core"
local util = require "pm.util"
local client = require "pm.client"

local pm = { VERSION = util.VERSION }

local conn      -- the connection of connect()
local buses = {} -- open buses
local waitbus     -- the bus of the pm.wait_for calls made in coroutines
local waiters = {} -- their finish functions

-- ---- callbacks: queued, run from the event loop ----

local queue, head, tail = {}, 1, 0 -- callbacks ready to run, in order
local pending = 0 -- requests under way whose callback is not queued yet
local sync = 0    -- synchronous calls under way: the loops they run run no callback
local kick        -- a timer of 0 ms while callbacks wait (a loop turn runs them)
local failed      -- the first callback error (pm.run ends on it)

-- pm._on_error(msg, traceback): how a callback's error is reported (the
-- console prints it; by default one line on stderr, the traceback with
-- pm._verbose). With
-- pm._fatal (pm run, pm -e: Node's uncaught exception) nothing runs after
-- it and the loops return.
local errors, last_error = 0, nil -- callback errors so far, the last one's message (pm.wait, pm.step)
local function report(msg, tb)
  msg = tostring(msg)
  failed = failed or msg
  errors, last_error = errors + 1, msg
  if pm._on_error then return pm._on_error(msg, tb) end
  io.stderr:write("pm: error in a callback: ", pm._verbose and tostring(tb or msg) or msg, "\n")
end

local function arm()
  if kick or head > tail then return end
  kick = core.timer(0, 0, function()
    kick = nil
    pm._dispatch()
  end)
end

--[[ Under plain LuaJIT (no `pm run`, console or host loop), what a
script leaves when its main chunk ends (queued callbacks, replies it
awaits, a bus with a subscription) runs then, as Node's loop runs after
the main module; a callback's error then ends the process with status 1.
luajit's lua_close finalizes the newest userdata first: a sentinel made
again after each thing the client adds runs before the client's
connections and timers are finalized. ]]
local sentinel
local function at_exit()
  if pm._fatal or pm._on_error or pm._driven or not pm._alive() then return end
  pm._fatal = true -- (as `pm run`: the first error ends it)
  -- (the watchers made now are finalized after this round's, when lua_close
  -- has unloaded pm.core's core.so already: loaded once more under another
  -- name, it stays until they are)
  local so = package.searchpath and package.searchpath("pm.core", package.cpath)
  if so and not package.preload["pm.core"] then package.loadlib((so:gsub("/([^/]*)$", "/./%1")), "*") end
  local ok = pm._run()
  io.stdout:flush()
  if not ok then os.exit(1) end
end
local function keep_alive()
  if pm._fatal or pm._on_error or pm._driven then return end -- (a loop of pm's or the host's runs it)
  local s = newproxy(true)
  getmetatable(s).__gc = function()
    if sentinel ~= s then return end -- (one made since stands in)
    local ok, err = pcall(at_exit)
    if not ok then io.stderr:write("pm: ", tostring(err), "\n") end
  end
  sentinel = s
end

local function defer(fn, ...)
  tail = tail + 1
  queue[tail] = { fn = fn, n = select("#", ...), ... }
  arm()
  keep_alive()
end

-- Runs the queued callbacks (not while a synchronous call runs the loop:
-- they wait for it to return).
function pm._dispatch()
  if sync > 0 then return end
  while head <= tail and not (failed and pm._fatal) do
    local item = queue[head]
    queue[head] = nil
    head = head + 1
    local ok, err = xpcall(function() return item.fn(unpack(item, 1, item.n)) end, debug.traceback)
    if not ok then
      local msg = tostring(err):match("^[^\n]*")
      report(msg, err)
    end
  end
end

-- Does anything keep a script's loop alive: a queued callback, a request
-- whose callback waits for its reply, a bus with a subscription?
function pm._alive()
  if head <= tail or pending > 0 then return true end
  for b in pairs(buses) do
    if not b.conn.closed and next(b.handlers) then return true end
  end
  return false
end

-- The console after a chunk: the callbacks it queued run, and those of
-- its requests once their replies come (a bus alone does not hold it).
function pm._settle()
  pm._dispatch()
  client.run_until(function() return head > tail and pending == 0 end)
end

-- The first error a callback raised (nil when none did).

-- fn(...) as a synchronous call: callbacks wait until it is over.
local function synchronous(fn, ...)
  sync = sync + 1
  local res = { pcall(fn, ...) }
  -- driven by a host's loop: the watchers the call started join pm.fd()'s
  -- set (a turn of the loop, no callback run: sync still counts this call)
  if sync == 1 and pm._driven then pcall(core.run, "nowait") end
  sync = sync - 1
  if sync == 0 then arm() end
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end

-- Splits a trailing function argument off: -> cb, n, args
local function split_cb(...)
  local n = select("#", ...)
  local args = { ... }
  local cb
  if n > 0 and type(args[n]) == "function" then
    cb = args[n]
    args[n] = nil
    n = n - 1
  end
  return cb, n, args
end

-- Wraps fn so that a trailing function argument is PM2's callback.
local function api(fn)
  return function(...)
    local cb, n, args = split_cb(...)
    local ok, res, err = pcall(synchronous, fn, unpack(args, 1, n))
    if not ok then res, err = nil, tostring(res):gsub("^[^:]*:%d+: ", "") end
    if cb then defer(cb, err, res) end
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

-- (a result's null members are not there: util.denull)
local function call(method, params)
  local c, err = ensure()
  if not c then return nil, err end
  local res, cerr, text = c:call(method, params)
  return util.denull(res), cerr, text
end

local function check_version(pong)
  if type(pong) == "table" and pong.version ~= util.VERSION then
    io.stderr:write(("pm: the daemon runs pm %s, this is pm %s: run 'pm update'\n")
      :format(tostring(pong.version), util.VERSION))
  end
end

local function connect(no_daemon_mode)
  if conn and not conn.closed then return true end
  pm._no_daemon = no_daemon_mode == true
  local c, err = ensure()
  if not c then return nil, err end
  local pong, perr = c:call("ping")
  if not pong then return nil, perr end
  check_version(pong)
  return true
end

-- connect(cb): cb runs once the daemon has answered a ping (in Node, the
-- callback of a connection comes after its round trips: a launchBus's
-- callback, ready at once, runs before it)
function pm.connect(...)
  local cb, n, args = split_cb(...)
  if not cb then return api(connect)(unpack(args, 1, n)) end
  local ok, c, err = pcall(synchronous, function()
    if not (conn and not conn.closed) then pm._no_daemon = args[1] == true end
    return ensure()
  end)
  if not ok then c, err = nil, (tostring(c):gsub("^[^:]*:%d+: ", "")) end
  if not c then
    defer(cb, err)
    return nil, err
  end
  pending = pending + 1
  keep_alive()
  local id, serr = c:send("ping", nil, function(pong, perr)
    pending = pending - 1
    if pong then check_version(pong) end
    defer(cb, perr, pong and true or nil)
  end)
  if not id then
    pending = pending - 1
    defer(cb, serr)
    return nil, serr
  end
  return true
end

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
  elseif type(opts) == "number" then
    -- an id: that app is started (PM2's start takes a name or an id)
    params.target = opts
  elseif type(opts) == "table" then
    if opts.script == nil and (opts.apps or opts[1]) then
      return nil, "start: pass an ecosystem file's path, or one app"
    end
    -- (a function cannot travel to the daemon: hooks live in a file it reads)
    for k, v in pairs(opts) do
      if type(v) == "function" then
        return nil, ("start: app %s: %s is a function; hooks (on_exit, on_start, on_stop) run in the daemon, "
          .. "from an ecosystem file: put the app in one and pass its path"):format(
          tostring(opts.name or opts.script), tostring(k))
      end
    end
    params.app = opts
  else
    return nil, "start: a script path, an options table, or an app's name or id expected"
  end
  return call("start", params)
end)

-- attrs: the options that are app attributes go as params.attrs
-- (restart, reload: PM2 applies them to the app; a name renames it), an
-- env that is a string names an ecosystem file's env_<name>.
local function target_params(target, opts, attrs)
  local params = { target = target }
  if type(target) == "string" and util.is_ecosystem(target) then
    -- a file read again: its apps' default cwd and environment are the caller's
    params.target = util.absolute(target)
    params.cwd, params.environ = caller()
  end
  if type(opts) == "table" then
    local appdecl = attrs and require "pm.app"
    for k, v in pairs(opts) do
      local a = appdecl and appdecl.attribute(k)
      if a and not (a == "env" and type(v) ~= "table") then
        params.attrs = params.attrs or {}
        params.attrs[k] = v
      else
        params[k] = v
      end
    end
    if opts.updateEnv or opts.update_env then params.environ = core.environ() end
  end
  return params
end

local function target_call(method, attrs)
  return api(function(target, opts)
    if target == nil then return nil, method .. ": a target is required" end
    return call(method, target_params(target, opts, attrs))
  end)
end
-- (the CLI's several targets at once: each request's params as pm.<method>
-- makes them; attrs for restart and reload)
pm._target_params = target_params

pm.stop = target_call("stop")
pm.restart = target_call("restart", true)
pm.reload = target_call("reload", true)
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

-- (brief: the reply's descriptions are not decoded, true for them: the
-- CLI's, which prints none of 9,500 apps' 46 MB)
local function kill_daemon(brief)
  local c, err, down = client.connect({ spawn = false })
  if not c then
    if conn or not down then return nil, err end -- (one runs and does not answer)
    return {} -- nothing runs: nothing to kill
  end
  local pong = c:call("ping")
  local dpid = type(pong) == "table" and tonumber(pong.pid)
  local kpid = type(pong) == "table" and tonumber(pong.keeper)
  local res, cerr = c:call("killDaemon", nil, brief)
  if brief and not cerr then res = true end
  -- the daemon closes the connection as it ends
  client.run_until(function() return c.closed end, 5000)
  c:close()
  -- then returns once it has exited (PM2's kill): it holds pm.lock until
  -- then, and a command right after would find a daemon that does not answer
  -- (whether or not its reply came before the close)
  -- (and its keeper, which holds the lock too and ends with it)
  for _, pid in ipairs({ dpid or false, kpid or false }) do
    local deadline = core.mono() + 10000
    while pid and core.mono() < deadline do
      -- (a zombie has let go of everything, unless it is a leader whose
      -- threads still run, as at a sanitizer's exit: its other tasks say)
      local st = core.proc_stat(pid)
      if not st then break end
      if st.state == "Z" then
        local n = 0
        for _ in pairs(core.listdir("/proc/" .. pid .. "/task") or {}) do n = n + 1 end
        if n <= 1 then break end
      end
      core.sleep(5)
    end
  end
  -- embedded (pm's loop reaps nothing): the daemon this program started
  -- is its child, reaped once it has ended
  if core.embedded then
    local deadline = core.mono() + 2000
    while not client.reap_started() and core.mono() < deadline do core.sleep(10) end
  end
  if conn then conn:close(); conn = nil end
  return res, cerr
end
pm.killDaemon = api(function() return kill_daemon(false) end)
pm._kill_brief = api(function() return kill_daemon(true) end)

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

pm.sendLineToStdin = api(function(id, line, separator)
  return call("sendLineToStdin", { pm_id = id, line = tostring(line) .. (separator or "\n") })
end)

pm.flush = api(function(target) return call("flush", { target = target }) end)
pm.scale = api(function(name, instances) return call("scale", { name = name, instances = tostring(instances) }) end)
pm.reloadLogs = api(function() return call("reloadLogs") end)
pm.ping = api(function() return call("ping", { fds = true }) end)

-- ---- the bus ----

local Bus = {}
Bus.__index = Bus

-- bus.on(...) (the JavaScript's dot, kept in a translation) says so at
-- once instead of subscribing to nothing
local function dotted(self, verb)
  if getmetatable(self) ~= Bus then
    error(("bus.%s(...) called with a dot: write bus:%s(event, fn)"):format(verb, verb), 3)
  end
end

-- Sends a (un)subscription on the bus's own connection. Outside the
-- bus's own delivery it returns once the daemon has it (a subscription is
-- in effect when bus:on returns: an event a later call causes is seen);
-- inside a handler of this bus, whose connection reads nothing more until
-- the handler returns, it is sent and takes effect in order (never waited
-- for: waiting there hung for ever).
function Bus:_ask(method, event)
  if self.reading > 0 then
    local verb = method == "subscribe" and "on" or "off"
    local id, err = self.conn:send(method, { events = { event } }, function(ok, why)
      if not ok and why and not self.conn.closed then report(("bus:%s(%q): %s"):format(verb, event, why)) end
    end)
    if not id then return nil, err end
    return true
  end
  return synchronous(self.conn.call, self.conn, method, { events = { event } })
end

function Bus:on(event, fn)
  dotted(self, "on")
  if type(event) ~= "string" or type(fn) ~= "function" then
    return nil, "bus:on(event, fn) expects a string and a function"
  end
  local list = self.handlers[event]
  if not list then
    list = {}
    self.handlers[event] = list -- (delivered to from now on, its subscription in order)
    local ok, err = self:_ask("subscribe", event)
    if not ok then
      if self.handlers[event] == list then self.handlers[event] = nil end
      return nil, err
    end
  end
  list[#list + 1] = fn
  keep_alive()
  return true
end

-- bus:once(event, fn): fn for the next such event only (then it is off).
function Bus:once(event, fn)
  dotted(self, "once")
  if type(event) ~= "string" or type(fn) ~= "function" then
    return nil, "bus:once(event, fn) expects a string and a function"
  end
  local done = false
  local function one(...)
    if done then return end
    done = true
    self:off(event, one)
    return fn(...)
  end
  return self:on(event, one)
end

function Bus:off(event, fn)
  dotted(self, "off")
  local list = self.handlers[event]
  if not list then return true end
  if fn then
    for i = #list, 1, -1 do
      if list[i] == fn then table.remove(list, i) end
    end
  end
  if not fn or #list == 0 then
    self.handlers[event] = nil
    if not self.conn.closed then self:_ask("unsubscribe", event) end
  end
  return true
end

function Bus:close()
  if self == waitbus then
    waitbus = nil
    for finish in pairs(waiters) do defer(finish, nil, "wait_for: the bus was closed (pm.disconnect)") end
  end
  buses[self] = nil
  self.handlers = {}
  self.conn:close()
  return true
end

-- Is fn still a handler of pattern (a handler before it may turn it off)?
local function still_on(bus, pattern, list, fn)
  if bus.handlers[pattern] ~= list then return false end
  for _, f in ipairs(list) do
    if f == fn then return true end
  end
  return false
end

-- An event's handlers, now. An error is a callback's (reported).
function Bus:deliver(event, data)
  local subs = {}
  for pattern, list in pairs(self.handlers) do subs[pattern] = list end
  for pattern, list in pairs(subs) do
    local star = pattern == "*"
    local prefix = pattern:match("^(.*)%*$")
    if star or pattern == event or (prefix and event:sub(1, #prefix) == prefix) then
      for _, fn in ipairs({ unpack(list) }) do
        if failed and pm._fatal then return end
        if still_on(self, pattern, list, fn) then
          local ok, err
          if star then
            ok, err = xpcall(function() return fn(event, data) end, debug.traceback)
          else
            -- (the event's name second: which of "log:*" it is)
            ok, err = xpcall(function() return fn(data, event) end, debug.traceback)
          end
          if not ok then report("bus handler of " .. event .. ": " .. tostring(err):match("^[^\n]*"), err) end
        end
      end
    end
  end
end

-- An event that comes while a synchronous call runs the loop waits for it
-- to return, in order with the callbacks (bus.live: at once, the CLI's
-- progress line).
function Bus:dispatch(event, data)
  util.denull(data) -- (a packet's null members are not there, as a result's)
  if (sync > 0 or head <= tail) and not self.live then
    return defer(function() if not self.conn.closed then self:deliver(event, data) end end)
  end
  self:deliver(event, data)
end

-- A bus whose daemon went away (a crash its keeper recovers, pm update)
-- connects again, every 50 ms for 30 s, and subscribes again to what it
-- had; meanwhile it is not closed (bus.conn.closed is true only once it
-- gives up, or after bus:close()).
local function bus_attach(bus, c)
  bus.conn = c
  c.on_event = function(event, data)
    -- (inside this, the connection reads no reply: see Bus:_ask)
    bus.reading = bus.reading + 1
    local ok, derr = pcall(bus.dispatch, bus, event, data)
    bus.reading = bus.reading - 1
    if not ok then error(derr, 0) end
  end
  c.on_close = function()
    if not buses[bus] then return end
    -- (what is subscribed meanwhile is sent with the rest once connected)
    local stub = { closed = false, close = function(self) self.closed = true end,
      send = function() return true end, call = function() return true end }
    bus.conn = stub -- (not closed while it reconnects)
    local deadline = core.mono() + 30000
    local timer
    timer = core.timer(50, 50, function()
      if stub.closed or not buses[bus] then return timer:close() end
      local nc = client.connect({ spawn = false, timeout = 0 })
      if nc then
        timer:close()
        bus_attach(bus, nc)
        for event in pairs(bus.handlers) do nc:send("subscribe", { events = { event } }) end
      elseif core.mono() > deadline then
        timer:close()
        stub.closed = true
      end
    end)
  end
end

pm.launchBus = api(function()
  local _, err = ensure()
  if err then return nil, err end
  local c, cerr = client.connect({ spawn = false })
  if not c then return nil, cerr end
  local bus = setmetatable({ handlers = {}, reading = 0 }, Bus)
  bus_attach(bus, c)
  buses[bus] = true
  return bus
end)

-- PM2's trigger(target, action [, params] [, cb]): each running process of
-- target that registered action (@pm2/io's io.action) is sent it ->
-- its answers, { { process = {name, pm_id, namespace}, data = <return> } }
-- by pm_id, once every one answered (opts.timeout ms, 10 s by default)
pm.trigger = api(function(target, action, params, opts)
  if type(action) ~= "string" or action == "" then
    return nil, "trigger(target, action [, params]): an action name expected"
  end
  local bus, berr = pm.launchBus()
  if not bus then return nil, berr end
  bus.live = true -- (its own handler, at once: inside this call)
  local ms = type(opts) == "table" and tonumber(opts.timeout) or 10000
  -- (answers may come before the daemon's reply says who was sent it)
  local seen, answers, want = {}, {}, nil
  local function take(packet)
    local pr = type(packet) == "table" and packet.process or {}
    local data = type(packet.data) == "table" and packet.data or {}
    if (want and not want[pr.pm_id]) or seen[pr.pm_id] or (data.action_name ~= nil and data.action_name ~= action) then
      return
    end
    seen[pr.pm_id] = true
    answers[#answers + 1] = { process = pr, data = data["return"] }
  end
  bus:on("axm:reply", take)
  local r, err = call("trigger", { target = target, action = action, params = params })
  if not r then
    bus:close()
    return nil, err
  end
  want = {}
  for _, id in ipairs(r.ids or {}) do want[id] = true end
  local kept = {}
  for _, a in ipairs(answers) do if want[a.process.pm_id] then kept[#kept + 1] = a end end
  answers = kept
  local done = client.run_until(function() return #answers >= r.process_count end, ms)
  bus:close()
  if not done then
    return nil, ("%d of %d processes answered the action %s within %d ms"):format(#answers, r.process_count,
      action, ms)
  end
  table.sort(answers, function(a, b) return a.process.pm_id < b.process.pm_id end)
  return answers
end)

-- ---- waiting for an event ----

-- A waiter's handler: fn(data) for an event or a prefix, fn(event, data)
-- for "*" (as bus:on). -> the packet and whether it passes predicate
-- (a predicate's error is the wait's).
local function matcher(event, predicate, done)
  return function(a, b)
    local data = event == "*" and b or a
    if predicate == nil then return done(data) end
    local ok, yes = pcall(predicate, data)
    if not ok then return done(nil, "wait_for: the predicate failed: " .. tostring(yes)) end
    if yes then return done(data) end
  end
end

local function check_wait_args(event, predicate, ms)
  if type(event) ~= "string" then return "wait_for(event, predicate, timeout_ms): an event name expected" end
  if predicate ~= nil and type(predicate) ~= "function" then
    return "wait_for(event, predicate, timeout_ms): the predicate is a function or nil"
  end
  if ms ~= nil and (type(ms) ~= "number" or ms ~= ms or ms < 0) then
    return "wait_for(event, predicate, timeout_ms): a number of ms >= 0 expected"
  end
end

local function timeout_error(event, ms)
  return ("timeout: no %s within %d ms"):format(event, ms)
end

-- Outside a coroutine: the loop runs until the event (a synchronous call:
-- other callbacks wait for it to return).
local function wait_blocking(event, predicate, ms)
  local bus, err = pm.launchBus()
  if not bus then return nil, err end
  bus.live = true -- (its own handler, at once)
  local got
  local ok, serr = bus:on(event, matcher(event, predicate, function(data, derr)
    got = got or { data, derr }
  end))
  if not ok then bus:close(); return nil, serr end
  synchronous(client.run_until, function()
    return got ~= nil or bus.conn.closed or (failed ~= nil and pm._fatal)
  end, ms)
  local lost = bus.conn.closed
  bus:close()
  if got then return got[1], got[2] end
  if lost then return nil, "wait_for: the pm daemon closed the connection" end
  if failed ~= nil and pm._fatal then return nil, failed end
  return nil, timeout_error(event, ms)
end

-- In a coroutine: it yields; pm's loop resumes it with the event.
local function wait_yielding(co, event, predicate, ms)
  if not (waitbus and not waitbus.conn.closed) then
    local bus, err = pm.launchBus()
    if not bus then return nil, err end
    waitbus = bus
  end
  local bus, token = waitbus, {}
  local handler, timer, finished
  local function finish(data, err)
    if finished then return end
    finished = true
    waiters[finish] = nil
    if timer then timer:close() end
    bus:off(event, handler)
    local ok, cerr = coroutine.resume(co, token, data, err)
    if not ok then report("a coroutine pm.wait_for resumed: " .. tostring(cerr), debug.traceback(co, cerr)) end
  end
  handler = matcher(event, predicate, finish)
  local ok, serr = bus:on(event, handler)
  if not ok then return nil, serr end
  waiters[finish] = true
  if ms then
    -- (resumed where callbacks run: never inside a synchronous call)
    timer = core.timer(ms, 0, function()
      timer = nil
      defer(finish, nil, timeout_error(event, ms))
    end)
  end
  local r
  repeat r = { coroutine.yield() } until r[1] == token
  return r[2], r[3]
end

-- pm.wait_for(event, predicate, timeout_ms) -> packet | nil, err: the next
-- bus event named event (a pattern, as bus:on) for which predicate(packet)
-- is true (nil: any). In a coroutine it yields, and pm's loop resumes it
-- (pm.wait, pm.step, a pm run script's end); outside one it runs the loop
-- until then. Events that came before the call are not seen.
function pm.wait_for(event, predicate, ms)
  local err = check_wait_args(event, predicate, ms)
  if err then return nil, err end
  local co = coroutine.running() -- (LuaJIT: nil in the main thread)
  if co then return wait_yielding(co, event, predicate, ms) end
  return wait_blocking(event, predicate, ms)
end

-- ---- driven by another event loop (luv, copas, cqueues) ----

-- pm.fd() -> fd | nil, err: a descriptor that is readable when pm has work
-- (a reply, a bus event, a timer or callback due): poll it for reading in
-- the host's loop and call pm.step() when it is (cqueues' pollfd).
function pm.fd()
  local fd, err = core.loop_fd()
  if fd then pm._driven = true end
  return fd, err
end

-- pm.timeout() -> ms | nil: until pm's next timer is due (0: work waits
-- now), nil when none runs (cqueues' timeout). pm.fd() already becomes
-- readable then: a loop that polls it needs no timer of its own.
function pm.timeout() return core.loop_timeout() end

-- pm.step([timeout_ms]) -> true | nil, err: runs what is ready (replies,
-- bus events, callbacks, resumed pm.wait_for coroutines) and returns,
-- waiting at most timeout_ms (default 0) for something to be ready. The
-- error is a callback's, as pm.wait's.
function pm.step(ms)
  if ms ~= nil and (type(ms) ~= "number" or ms ~= ms or ms < 0) then
    return nil, "step: a number of ms >= 0 expected"
  end
  local saved, errs = sync, errors
  sync = 0
  pm._dispatch()
  util.turn_loop(ms)
  pm._dispatch()
  sync = saved
  if failed and pm._fatal then return nil, failed end
  if errors > errs then return nil, last_error end -- (a callback's error: reported, and returned)
  return true
end

-- Runs the client's loop (callbacks, bus events, timers): for timeout_ms
-- when given (even with nothing to wait for), else until nothing keeps it
-- alive (pm._alive). A place where callbacks run, called from one too.
function pm.wait(...)
  local cb, _, args = split_cb(...)
  local ms = args[1]
  if ms ~= nil and (type(ms) ~= "number" or ms ~= ms) then
    local err = "wait: a number of ms expected"
    if cb then defer(cb, err) end
    return nil, err
  end
  local saved, errs = sync, errors
  sync = 0
  pm._dispatch()
  local function over() return failed ~= nil and pm._fatal end
  if ms then
    -- (math.huge: for ever, a script that serves; a timer keeps the loop
    -- blocking in the meantime)
    client.run_until(over, math.min(math.max(0, ms), 1e12))
  else
    client.run_until(function() return over() or not pm._alive() end)
  end
  sync = saved
  -- (a callback's or a handler's error meanwhile: reported, and returned)
  local err = errors > errs and last_error or nil
  if cb then defer(cb, err, not err or nil) end
  if err then return nil, err end
  return true
end

-- What `pm run` and `pm -e` do once the chunk is over: the loop runs
-- while anything keeps it alive, and stops at a callback's error.
-- -> true | nil, the error
function pm._run()
  sync = 0
  pm._dispatch()
  client.run_until(function() return failed ~= nil or not pm._alive() end)
  if failed then return nil, failed end
  return true
end

return pm
