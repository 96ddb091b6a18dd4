-- A connection to the daemon: JSON-RPC calls that wait for their reply
-- (running the event loop meanwhile), events for subscribers, and the
-- start of a daemon when none answers.
local core = require "pm.core"
local util = require "pm.util"

local M = {}

local Conn = {}
Conn.__index = Conn

local function open(path)
  local fd, err = core.connect_unix(path)
  if not fd then return nil, err end
  local c = setmetatable({ replies = {}, handlers = {}, next_id = 0, closed = false }, Conn)
  c.stream = core.stream(fd, function(line)
    if c.on_chunk then return c.on_chunk(line) end
    if not line then return end
    -- a result is decoded only when its caller wants it as a value
    local head, id = line:match('^({"jsonrpc":"2%.0","id":(%d+),"result":)')
    if head then
      id = tonumber(id)
      local h = c.handlers[id]
      if h then
        -- a reply nobody waits for (Conn:send with on_result)
        c.handlers[id] = nil
        local full = util.decode(line)
        return h(type(full) == "table" and full.result or nil)
      end
      c.replies[id] = { raw = line, head = #head }
      return
    end
    local msg = util.decode(line)
    if type(msg) ~= "table" then return end
    if msg.id == util.null and type(msg.error) == "table" then
      c.said = tostring(msg.error.message) -- (why it closes, when it does)
    end
    if msg.id ~= nil and msg.id ~= util.null then
      local h = c.handlers[msg.id]
      if h then
        c.handlers[msg.id] = nil
        local e = msg.error
        return h(nil, type(e) == "table" and tostring(e.message) or "bad reply from the daemon")
      end
      msg.raw = line
      c.replies[msg.id] = msg
    elseif msg.method == "event" and type(msg.params) == "table" and c.on_event then
      c.on_event(msg.params.event, msg.params.data)
    end
  end, function()
    c.closed = true
    c:fail_handlers("the pm daemon closed the connection" .. (c.said and ": " .. c.said or ""))
    if c.on_close then c.on_close() end
  end, 256 * 1024 * 1024)
  return c
end

-- The requests sent with on_result that will get no reply (the
-- connection closed): each on_result(nil, why), once.
function Conn:fail_handlers(why)
  local hs = self.handlers
  if next(hs) == nil then return end
  self.handlers = {}
  local ids = {}
  for id in pairs(hs) do ids[#ids + 1] = id end
  table.sort(ids)
  for _, id in ipairs(ids) do hs[id](nil, why) end
end

-- Sends a request without waiting for its reply -> id. on_result(result
-- | nil, err): called when its reply comes (or the connection closes
-- first), if given.
function Conn:send(method, params, on_result)
  if self.closed then return nil, "not connected to the pm daemon" end
  self.next_id = self.next_id + 1
  local id = self.next_id
  local ok, line = pcall(util.encode, { jsonrpc = "2.0", id = id, method = method, params = params or {} })
  if not ok then return nil, "cannot encode the request: " .. tostring(line) end
  if on_result then self.handlers[id] = on_result end
  self.stream:write(line .. "\n")
  return id
end

-- Sends a request and runs the loop until its reply -> result | nil, err.
-- The result's JSON text comes third; raw_only: only that text, the
-- result not decoded (pm jlist prints megabytes as they came).
function Conn:call(method, params, raw_only)
  local id, err = self:send(method, params)
  if not id then return nil, err end
  while not self.replies[id] do
    if self.closed then return nil, "the pm daemon closed the connection" .. (self.said and ": " .. self.said or "") end
    core.run("once")
  end
  local msg = self.replies[id]
  self.replies[id] = nil
  if msg.head then
    local text = msg.raw:sub(msg.head + 1, -2)
    if raw_only then return nil, nil, text end
    local full, derr = util.decode(msg.raw)
    if type(full) ~= "table" then return nil, "bad reply from the daemon: " .. tostring(derr) end
    if full.result == util.null then return nil, nil, text end
    return full.result, nil, text
  end
  if msg.error then
    return nil, type(msg.error) == "table" and tostring(msg.error.message) or "error"
  end
  if msg.result == util.null then return nil end
  return msg.result
end

-- Sends a request whose result may be megabytes and passes the result's
-- JSON text to sink(piece) as it arrives, never holding all of it (pm
-- jlist). The connection serves nothing else afterwards.
-- -> true | nil, err
function Conn:call_streamed(method, params, sink)
  if self.closed then return nil, "not connected to the pm daemon" end
  self.next_id = self.next_id + 1
  local id = self.next_id
  local head = '{"jsonrpc":"2.0","id":' .. id .. ',"result":'
  local got, state, err_text, hold = {}, "head", nil, ""
  local done = false
  -- earlier requests' replies come first, still as lines
  while next(self.handlers) ~= nil and not self.closed do core.run("once") end
  self.stream:chunked()
  self.on_chunk = function(data)
    if done or not data then return end
    if state == "head" then
      got[#got + 1] = data
      local text = table.concat(got)
      if #text < #head then return end
      got = {}
      if text:sub(1, #head) == head then
        state, data = "body", text:sub(#head + 1)
      else
        state, err_text = "error", { text }
        if text:find("\n", 1, true) then done = true end
        return
      end
    elseif state == "error" then
      err_text[#err_text + 1] = data
      if data:find("\n", 1, true) then done = true end
      return
    end
    -- the reply ends with "}\n": hold the last two bytes back
    data = hold .. data
    if data:sub(-1) == "\n" then
      sink(data:sub(1, -3))
      hold, done = "", true
    else
      local cut = math.max(0, #data - 2)
      if cut > 0 then sink(data:sub(1, cut)) end
      hold = data:sub(cut + 1)
    end
  end
  self.stream:write(util.encode({ jsonrpc = "2.0", id = id, method = method, params = params or {} }) .. "\n")
  while not done and not self.closed do core.run("once") end
  self.on_chunk = nil
  if err_text then
    local msg = util.decode((table.concat(err_text):gsub("\n.*", "")))
    local e = type(msg) == "table" and msg.error
    return nil, type(e) == "table" and tostring(e.message) or "bad reply from the daemon"
  end
  if not done then return nil, "the pm daemon closed the connection" end
  return true
end

-- Sends a request whose result may be megabytes and copies the result's
-- JSON text, as the daemon wrote it, to fd (pm jlist: to stdout), in C:
-- no Lua string holds any of it. The connection serves nothing else
-- afterwards. -> true | nil, err
function Conn:call_relayed(method, params, fd)
  if self.closed then return nil, "not connected to the pm daemon" end
  self.next_id = self.next_id + 1
  local id = self.next_id
  -- earlier requests' replies come first, still as lines
  while next(self.handlers) ~= nil and not self.closed do core.run("once") end
  if self.closed then return nil, "the pm daemon closed the connection" end
  self.stream:write(util.encode({ jsonrpc = "2.0", id = id, method = method, params = params or {} }) .. "\n")
  local ok, err, line = self.stream:relay(fd, '{"jsonrpc":"2.0","id":' .. id .. ',"result":')
  if ok then return true end
  if line then
    local msg = util.decode(line)
    local e = type(msg) == "table" and msg.error
    return nil, type(e) == "table" and tostring(e.message) or "bad reply from the daemon"
  end
  return nil, err
end

function Conn:close()
  if not self.closed then
    self.closed = true
    self.stream:close()
    self:fail_handlers("disconnected from the pm daemon")
  end
end

-- Starts a daemon; its early complaints come back on a pipe (its stderr
-- until it has its log). Returns pid, errfd | nil, err
local function spawn_daemon(home, private)
  local bin, berr = util.pm_binary() -- (embedded: never the host's own executable)
  if not bin then return nil, "cannot start the pm daemon: " .. berr end
  local args = { bin, "daemon" }
  local err_r, err_w = core.pipe()
  if not err_r then return nil, err_w end
  local fds = { -1, -1, err_w }
  local keep
  if private then
    local r, w = core.pipe()
    if not r then return nil, w end
    fds[4] = r
    args[3] = "--private-fd=3"
    keep = w
    M.private_fd = w -- held until this process ends: then the daemon stops
  end
  local env = {}
  -- (a sanitizer build, make test's pass: PM_DAEMON_ASAN_OPTIONS are the
  -- daemon's ASAN_OPTIONS, so that its CLI calls may skip the leak check
  -- at exit while every daemon keeps it)
  local san = core.sanitized and os.getenv("PM_DAEMON_ASAN_OPTIONS")
  for k, v in pairs(core.environ()) do
    if not (san and k == "ASAN_OPTIONS") then env[#env + 1] = k .. "=" .. v end
  end
  if san then env[#env + 1] = "ASAN_OPTIONS=" .. san end
  env[#env + 1] = "PM_HOME=" .. home
  local file = bin
  if not private and os.getenv("PM_KEEPER") ~= "0" then
    -- the keeper at once, with PM_HOME's lock taken here: what `pm daemon`
    -- would become (one exec less; a daemon that cannot start ends its
    -- keeper, which ends with its code). Locked: another client's daemon
    -- is starting; `pm daemon` then says so and ends.
    local keeper, found = require("pm.keeper").binary(bin)
    local lock = found and core.lock(home .. "/pm.lock")
    if lock then
      file, args = keeper, { keeper, "3", "null", bin, "daemon" }
      fds[4] = lock
    end
  end
  local pid, err = core.spawn({ file = file, args = args, fds = fds, setsid = true, env = env })
  if fds[4] then core.close(fds[4]) end
  core.close(err_w)
  if not pid then
    core.close(err_r)
    if keep then core.close(keep); M.private_fd = nil end
    return nil, "cannot start the pm daemon: " .. tostring(err)
  end
  return pid, err_r
end

-- What a daemon that ended at once said (one line).
local function early_error(fd)
  local msg = util.read_fd(fd):gsub("^pm: ", ""):match("^[^\n]*")
  return msg ~= "" and msg or nil
end

-- The pid of the daemon that holds PM_HOME's lock ("?" when pm.pid does
-- not say), or nil when none does.
local function running(home)
  local fd, err = core.lock(home .. "/pm.lock")
  if fd then
    core.close(fd)
    return nil
  end
  if err ~= "locked" then return nil end
  return tonumber((util.read_file(home .. "/pm.pid") or ""):match("%d+")) or "?"
end

-- Embedded in another program (core.embedded), pm's loop reaps no child:
-- the daemons this process started are reaped here, each once it ended.
local started = {}

function M.reap_started()
  for pid in pairs(started) do
    local done = core.reap(pid)
    if done ~= false then started[pid] = nil end -- (reaped, or not ours any more)
  end
  return next(started) == nil
end

--[[
Connects to the daemon of PM_HOME. opts.spawn (default true): start one
when none answers; opts.private: such a daemon ends with this process.
Returns conn, started (true when this call started the daemon), or nil,
err [, "down" when no daemon runs].
]]
function M.connect(opts)
  opts = opts or {}
  if core.embedded and next(started) then M.reap_started() end
  local home = util.home()
  local path = home .. "/rpc.sock"
  local c, oerr = open(path)
  if c then return c, false end
  if tostring(oerr):find("too long", 1, true) then return nil, "PM_HOME is too long: " .. oerr end
  local holder = running(home)
  if holder then
    -- a daemon runs without its socket: it binds it again within a second
    -- (or it is still starting: recovering what a crashed one left)
    -- (or it is ending: pm kill's keeper lets go of the lock last)
    local deadline = core.mono() + (opts.timeout or 10000)
    repeat
      core.sleep(20)
      c = open(path)
      if c then return c, false end
      holder = running(home)
    until not holder or core.mono() > deadline
    if holder then
      return nil, ("the pm daemon (pid %s) runs but does not answer on %s (see %s/pm.log)"):format(holder, path, home)
    end
  end
  if opts.spawn == false then return nil, "the pm daemon is not running", "down" end
  local ok, err = util.mkdir_p(home, 448) -- 0700
  if not ok then return nil, err end
  local pid, errfd = spawn_daemon(home, opts.private)
  if not pid then return nil, errfd end
  if core.embedded then started[pid] = true end
  local deadline = core.mono() + (opts.timeout or 10000)
  -- the daemon closes its copy of errfd's other end once it serves
  -- requests (or it writes why it cannot, or ends): wait for that first
  local said = false
  local w = core.watch_read(errfd, function() said = true end)
  M.run_until(function() return said end, opts.timeout or 10000)
  w:close()
  local wait = 0.2
  while core.mono() < deadline do
    c = open(path)
    if c then
      core.close(errfd)
      return c, true
    end
    local st = core.proc_stat(pid)
    if not st or st.state == "Z" then
      -- it ended: another daemon won the race (then it answers soon), or it failed
      local msg = early_error(errfd)
      if msg and not msg:match("a daemon already runs") then
        core.close(errfd)
        return nil, "the pm daemon could not start: " .. msg
      end
    end
    core.sleep(wait)
    wait = math.min(wait * 2, 20)
  end
  core.close(errfd)
  return nil, "the pm daemon did not answer on " .. path .. " (see " .. home .. "/pm.log)"
end

-- Runs the loop until done() is true or ms pass (nil: until done()).
function M.run_until(done, ms)
  local timed_out = false
  local t
  if ms then t = core.timer(ms, 0, function() timed_out = true end) end
  while not timed_out and not done() do core.run("once") end
  if t then t:close() end
  return not timed_out
end

return M
