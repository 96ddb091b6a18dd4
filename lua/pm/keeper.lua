-- The keeper, from the daemon's side (DESIGN §11): whether a daemon runs
-- under one; what it gives the keeper to hold (an app process's pipes'
-- read ends, its channel, its stdin, the held sockets: tagged with the
-- app's pm_id, one packet per spawn or batch of spawns; a crash loop's
-- next process, which keeps them, sends nothing); what a daemon the keeper
-- started takes over (those, the exits the keeper reaped meanwhile, the
-- blob the last daemon left: its half-read lines); the keeper's live exit
-- reports; the hand-over of `pm update`. The keeper (core/keeper.c) only
-- holds, reaps and restarts; which app a tag belongs to, and what comes
-- of it, is decided here and in recovery.lua.
local core = require "pm.core"
local log = require "pm.log"
local cjson = require "cjson"

local M = {}

local sock        -- this daemon's end of the keeper's socketpair, or nil
local next_id = 1 -- the ids this daemon gives what it hands to hold
-- what waits to be sent: { line, fd } (fd: this module's duplicate of
-- what the caller holds, closed once sent; the caller may close its own
-- meanwhile, and its number be another file's by then)
local queue = {}
local flush_timer, writable

--[[ Whether this daemon should make itself a keeper first: a daemon of a
PM_HOME, in the background or under systemd; not `pm runtime` (PID 1 of a
container: its own contract) nor a private daemon (it ends with its owner).
PM_KEEPER=0 turns it off. ]]
function M.wanted(opts)
  if opts.runtime or opts.private_fd then return false end
  return os.getenv("PM_KEEPER") ~= "0"
end

--[[ The keeper's fds when this daemon was started by one (PM_KEEPER_FD,
PM_KEEPER_LOCK; taken out of the environment, not given to apps) ->
lock_fd | nil ]]
function M.from_env()
  local fd = tonumber(os.getenv("PM_KEEPER_FD") or "")
  local lock = tonumber(os.getenv("PM_KEEPER_LOCK") or "")
  core.setenv("PM_KEEPER_FD", nil)
  core.setenv("PM_KEEPER_LOCK", nil)
  if not fd or not lock then return nil end
  core.cloexec(fd)
  core.cloexec(lock)
  sock = fd
  local st = core.proc_stat(core.getpid())
  M.pid = st and st.ppid
  return lock
end

-- Whether the keeper is still this daemon's parent (what it reaps are the
-- apps' processes; after its death, another process's children)
function M.parent_is_keeper()
  local st = M.pid and core.proc_stat(core.getpid())
  return st and st.ppid == M.pid or false
end

-- Whether a keeper holds what this daemon hands it
function M.active() return sock ~= nil end

--[[ The keeper program of the build bin belongs to: pm-keeper beside it
(bin/pm-asan's: pm-keeper-asan first) -> path, true | path (the one it
would be), false when there is none ]]
function M.binary(bin)
  local real = core.realpath(bin) or bin
  local dir = real:match("^(.*)/[^/]*$") or "."
  local names = core.sanitized and { "pm-keeper-asan", "pm-keeper" } or { "pm-keeper" }
  for _, name in ipairs(names) do
    local path = dir .. "/" .. name
    if core.access(path, "x") then return path, true end
  end
  return dir .. "/" .. names[1], false
end

-- This process becomes the keeper (bin's pm-keeper), which starts bin
-- with args as the daemon; returns only when that failed -> nil, err
function M.become(bin, args, lock_fd, keep_stdio)
  local keeper, found = M.binary(bin)
  if not found then return nil, "no keeper program: " .. keeper end
  return core.keeper_exec(keeper, bin, args, lock_fd, keep_stdio)
end

-- ---- what goes to the keeper ----

local function send(packet, with)
  local ok, err = core.sendmsg(sock, packet, with)
  if ok then return true end
  if err == "again" then return nil, err end
  log.error("the keeper cannot be told (%s): apps will not survive a crash of this daemon", tostring(err))
  M.gone()
  return nil, err
end

local function drop_queue()
  for _, e in ipairs(queue) do if e.fd then core.close(e.fd) end end
  queue = {}
end

-- Sends what waits (250 fds at most a packet; what the keeper has no room
-- for yet waits for it to read)
function M.flush()
  if flush_timer then flush_timer:close(); flush_timer = nil end
  while sock and #queue > 0 do
    -- a packet: lines up to 250 fds, 60 KB (each fd with its own line)
    local take, size, text, with = 0, 0, {}, {}
    for i, e in ipairs(queue) do
      if e.fd and #with == 250 then break end
      size = size + #e.line + 1
      if size > 60000 and take > 0 then break end
      take = i
      text[i] = e.line
      if e.fd then with[#with + 1] = e.fd end
    end
    local ok, err = send(table.concat(text, "\n") .. "\n", #with > 0 and with or nil)
    if not ok then
      if err == "again" and not writable then
        writable = core.watch_write(sock, function()
          writable:close()
          writable = nil
          M.flush()
        end)
      end
      return
    end
    for _, fd in ipairs(with) do core.close(fd) end
    local rest = {}
    for i = take + 1, #queue do rest[#rest + 1] = queue[i] end
    queue = rest
  end
end

local function later()
  if not flush_timer then flush_timer = core.timer(0, 0, M.flush) end
end

-- Hands fd (or only a record when fd is nil) to the keeper under tag
-- -> its id (nil without a keeper). The fd stays the caller's too.
function M.hold(tag, fd)
  if not sock then return nil end
  local id = next_id
  next_id = next_id + 1
  if fd then
    local copy, err = core.dup(fd)
    if not copy then
      log.error("the keeper cannot hold %s (%s): it will not outlive a crash of this daemon", tag, tostring(err))
      return nil
    end
    queue[#queue + 1] = { line = ("H %d %s"):format(id, tag), fd = copy, id = id }
  else
    queue[#queue + 1] = { line = ("h %d %s"):format(id, tag), id = id }
  end
  later()
  return id
end

-- The keeper lets go of id (its copy of the fd is closed; one not sent
-- yet is not sent)
function M.release(id)
  if not sock or not id then return end
  for i, e in ipairs(queue) do
    if e.id == id then
      if e.fd then core.close(e.fd) end
      table.remove(queue, i)
      return
    end
  end
  queue[#queue + 1] = { line = "R " .. id }
  later()
end

-- ---- start and end ----

--[[ What the keeper hands a daemon it starts (read at once, before
anything else) -> takeover | nil when there is no keeper. takeover:
{ generation, young (deaths of daemons that died young in a row), code,
signal (the last daemon's end), held = { {id, kind, pm_id, pid, fd} },
exits = { [pid] = {code, signal} }, parts (the blob) } ]]
function M.takeover()
  if not sock then return nil end
  local tk = { held = {}, exits = {}, parts = {} }
  local blob = {}
  while true do
    local data, got = core.recvmsg(sock, 5000)
    if not data or data == "" then
      log.error("the keeper did not hand over (%s): running without it", tostring(got or "closed"))
      M.gone()
      for _, h in ipairs(tk.held) do if h.fd then core.close(h.fd) end end
      return nil
    end
    if data:sub(1, 2) == "B " then
      blob[#blob + 1] = data:sub(3)
    else
      local used = 0
      for line in data:gmatch("[^\n]+") do
        local op = line:sub(1, 1)
        if op == "K" then
          local g, y, c, s, k = line:match("^K (%d+) (%d+) (%-?%d+) (%d+) %d+ %d+ %d+ ?(%d*)")
          tk.generation, tk.young, tk.code, tk.signal = tonumber(g), tonumber(y), tonumber(c), tonumber(s)
          tk.keeper = tonumber(k) -- (a keeper before this field: nil)
        elseif op == "H" or op == "h" then
          local id, tag = line:match("^. (%d+) (.*)$")
          local h = { id = tonumber(id), tag = tag }
          if op == "H" then
            used = used + 1
            h.fd = got[used]
          end
          local kind, rest = tag:match("^(%a) ?(.*)$")
          h.kind = kind
          local a, b = rest:match("^(%d+) ?(%d*)$") -- (n <uid>: pm_id is the uid)
          h.pm_id, h.pid = tonumber(a), tonumber(b)
          tk.held[#tk.held + 1] = h
          if h.id and h.id >= next_id then next_id = h.id + 1 end
        elseif op == "E" then
          local pid, code, sig = line:match("^E (%d+) (%-?%d+) (%d+)")
          pid, code, sig = tonumber(pid), tonumber(code), tonumber(sig)
          if pid then tk.exits[pid] = { code = code >= 0 and code or nil, signal = sig > 0 and sig or nil } end
        elseif op == "W" then
          tk.warning = line:sub(3)
          log.warn("%s", tk.warning)
        elseif op == "D" then
          if tk.keeper and (tk.keeper ~= M.pid or not M.parent_is_keeper()) then
            -- it handed over and died: this daemon's parent reaps orphans
            -- (init, a subreaper): its children are not the apps
            log.error("the keeper (pid %d) is gone: running without it", tk.keeper)
            M.gone()
            for _, h in ipairs(tk.held) do if h.fd then core.close(h.fd) end end
            return nil
          end
          local text = table.concat(blob)
          if text ~= "" then
            local ok, parts = pcall(cjson.decode, text)
            if ok and type(parts) == "table" then tk.parts = parts end
          end
          return tk
        end
      end
      for i = used + 1, #got do core.close(got[i]) end
    end
  end
end

-- Live reports of the keeper: on_exit(pid, code, signum, start) for each
-- process it reaped (an adopted app's, or an orphan of one; start: its
-- start time, when the keeper said it)
function M.listen(on_exit)
  if not sock then return end
  M.watch = core.watch_read(sock, function()
    while sock do
      local data, got = core.recvmsg(sock)
      if data == "" or (not data and got ~= "again") then
        log.error("the keeper is gone: apps will not survive a crash of this daemon")
        return M.gone()
      end
      if not data then return end
      for _, fd in ipairs(got) do core.close(fd) end
      for pid, code, sig, start in data:gmatch("E (%d+) (%-?%d+) (%d+) ?(%d*)") do
        -- (the keeper keeps it, for the next daemon, until told it is had)
        queue[#queue + 1] = { line = "A " .. pid }
        later()
        pid, code, sig = tonumber(pid), tonumber(code), tonumber(sig)
        -- start: which process of that pid ended (a keeper before this
        -- version does not say)
        on_exit(pid, code >= 0 and code or nil, sig > 0 and sig or nil, tonumber(start))
      end
    end
  end)
end

-- No keeper any more (it died, or cannot be told): the daemon goes on alone
function M.gone()
  M.pid = nil
  if M.watch then M.watch:close(); M.watch = nil end
  if writable then writable:close(); writable = nil end
  if sock then core.close(sock) end
  sock = nil
  drop_queue()
end

-- The daemon serves: a death from now on is a crash the keeper recovers
function M.ready()
  if not sock then return end
  queue[#queue + 1] = { line = "Y" }
  M.flush()
end

-- The daemon stops for good (its apps stopped): the keeper ends with it
function M.quit()
  if not sock then return end
  queue[#queue + 1] = { line = "Q" }
  M.flush()
end

--[[ pm update: the next daemon is bin, started by the keeper as soon as
this one exits, and the keeper becomes bin's keeper first (the same pid,
its state carried across its exec; one that cannot, goes on and says so
to the next daemon); parts (keeper id of a pipe -> the start of a line read
without its end) go in the blob -> true | nil, err ]]
function M.hand_over(bin, parts)
  if not sock then return nil, "no keeper" end
  M.flush()
  local ok, err = true, nil
  local text = next(parts) and cjson.encode(parts) or ""
  queue[#queue + 1] = { line = "b" }
  M.flush()
  for i = 1, #text, 60000 do
    ok, err = core.sendmsg(sock, "B " .. text:sub(i, i + 59999))
    if not ok then break end
  end
  if ok then
    queue[#queue + 1] = { line = "N " .. bin }
    local keeper = M.binary(bin)
    if not keeper:find("%c") then queue[#queue + 1] = { line = "X " .. keeper } end
    local deadline = core.mono() + 2000
    M.flush()
    while sock and #queue > 0 and core.mono() < deadline do
      core.sleep(5)
      M.flush()
    end
    if #queue > 0 then ok, err = nil, "the keeper does not read" end
  end
  return ok, err
end

return M
