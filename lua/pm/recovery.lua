-- Bringing apps back: the entries of dump.json (pm resurrect) or of the
-- journal after the previous daemon died without stopping its apps (what
-- is left of them is stopped first, found by pid, start time and marker,
-- then each app starts again, once). Decides which saved app comes back
-- and from where (its file again, or its saved declaration).
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"
local sup = require "pm.supervisor"
local ecosystem = require "pm.ecosystem"
local appdecl = require "pm.app"
local persist = require "pm.persist"
local readiness = require "pm.readiness"

local M = {}

-- persist.split of each entry once (a take-over split each one four times)
local splits = setmetatable({}, { __mode = "k" })
local function split(entry)
  local s = splits[entry]
  if not s then
    s = { persist.split(entry) }
    splits[entry] = s
  end
  return s[1], s[2]
end

--[[ What a take-over or a resurrect read (the journal's text, its
entries, their splits) is garbage once the records are built, but the
records are built while it is still held: with 10,000 apps the heap grew
to 116 MB for 80 MB of records, and the holes stayed in the daemon's
memory (VmRSS 145 MB after a take-over, 115 MB after the same apps'
start). So restore consumes its entries, and a full collection runs
whenever the heap grew by GROWTH_KB since the last one (a few with
thousands of apps; none with a hundred, whose take-over must be quick):
the records then take the place of what was read. ]]
M.GROWTH_KB = 16384
local tidy_kb
-- (start: from here; resurrect's too, before it reads dump.json)
local function tidy(start)
  local kb = collectgarbage("count")
  if start or not tidy_kb then
    tidy_kb = kb
  elseif kb - tidy_kb > M.GROWTH_KB then
    collectgarbage()
    tidy_kb = collectgarbage("count")
  end
end
M.tidy = tidy

--[[ Brings saved entries back (resurrect, or the journal after a crash).
Names that run already are left alone. done(procs it started). What
comes back is the saved declaration (its user, script, args,
interpreter...), never what its ecosystem file says now; the file is
read again only for its hooks (functions are not saved), and only when
the daemon trusts it. entries is consumed (each becomes false once it is
a record). ]]
function M.restore(entries, done)
  tidy()
  local started, failed = {}, {}
  local i = 0
  -- the names that run (one look at every app, not one per entry: 10,000
  -- entries made that 10^8 steps). Only apps this restore did not add
  -- count: two declarations of one name (pm start a.js --name x, then
  -- b.js --name x; the instances of an app whose reload of one of them
  -- failed) are two entries, and both come back (a take-over: both keep
  -- their processes, none left running unmanaged)
  local running, mine = {}, {}
  local function look()
    for _, p in ipairs(sup.all()) do
      if not mine[p] then running[p.name] = true end
    end
  end
  look()
  local function add(decl, environ, origin, meta)
    if type(meta.procs) == "table" and #meta.procs > 0 then decl.instances = #meta.procs end
    for _, p in ipairs(sup.add(decl, environ, origin, meta.procs)) do
      started[#started + 1] = p
      mine[p] = true
    end
  end
  -- Each Lua file (and env) is read once for every app it declared:
  -- (file, env) -> { names = {...}, decls = name -> decl | nil, err }
  local groups = {}
  local function group_of(meta)
    local file = meta.origin_file
    if type(file) ~= "string" or not file:match("%.lua$") then return nil end -- (only Lua has functions)
    local key = file .. "\0" .. tostring(meta.origin_env)
    local g = groups[key]
    if not g then
      g = { names = {}, file = file, env = meta.origin_env }
      groups[key] = g
    end
    return g
  end
  -- the file an entry came from, one table for all of its apps (as when
  -- they were started: 10,000 of them are not 10,000 tables)
  local origins = {}
  local function origin_of(meta)
    local file = meta.origin_file
    if type(file) ~= "string" then return nil end
    local key = file .. "\0" .. tostring(meta.origin_env)
    local o = origins[key]
    if not o then
      o = { path = file, env = meta.origin_env }
      origins[key] = o
    end
    return o
  end
  for _, entry in ipairs(entries) do
    local raw, meta = split(entry)
    local g = type(raw.name) == "string" and group_of(meta)
    if g then g.names[#g.names + 1] = raw.name end
  end
  local function hooks_of(g, environ, cb)
    if g.decls or g.err then return cb(g) end
    if not core.stat(g.file) then g.err = "its file is gone"; return cb(g) end
    local trusted, why = ecosystem.trusted(g.file)
    if not trusted then
      g.err = ("%s is not trusted (%s)"):format(g.file, why)
      return cb(g)
    end
    -- its hooks from its file again (functions are not saved)
    ecosystem.load(g.file, { env_name = g.env, only = g.names, environ = environ, trusted_only = true },
      function(decls, lerr)
        if not decls then
          g.err = tostring(lerr)
        else
          g.decls = {}
          for _, d in ipairs(decls) do g.decls[d.name] = d end
        end
        -- (the loop ran meanwhile: what was started then runs too)
        look()
        cb(g)
      end)
  end
  local function next_entry()
    i = i + 1
    local entry = entries[i]
    if not entry then return done(started, failed) end
    entries[i] = false
    tidy()
    local raw, meta = split(entry)
    local name = raw.name
    if type(name) ~= "string" or running[name] then return next_entry() end
    local environ = type(meta.environ) == "table" and meta.environ or core.environ()
    local decl, err = appdecl.normalize(raw, { base = raw.cwd, environ = environ, keep_cwd = true })
    if not decl then
      log.error("cannot resurrect %s: %s", name, err)
      failed[#failed + 1] = { name = name, err = tostring(err) }
      return next_entry()
    end
    local origin = origin_of(meta)
    local g = origin and group_of(meta)
    if not g then
      add(decl, environ, origin, meta)
      return next_entry()
    end
    hooks_of(g, environ, function()
      if running[name] then return next_entry() end
      local from = g.decls and g.decls[name]
      if g.err then
        log.warn("resurrect %s: %s; the saved declaration comes back without its hooks", name, g.err)
      elseif from then
        for k, v in pairs(from) do
          if type(v) == "function" then decl[k] = v end
        end
      end
      add(decl, environ, origin, meta)
      next_entry()
    end)
  end
  next_entry()
end

--[[ A daemon the keeper started after another one died (or was replaced:
pm update) takes its apps over: each process that still runs is its
record's again (same pid, pm_id, counters, marker), its pipes, channel and
stdin as the keeper held them; one that ended meanwhile gets its real exit
(the keeper reaped it) and the policy as for any exit. What the journal
holds without a running process comes back as after a crash (started,
unless it was stopped or errored). Returns the exits to deliver once the
apps are back: { {pid, code, signal} }. ]]
-- The real uid of pid's process | nil
local function real_uid(pid)
  return tonumber((util.read_file("/proc/" .. pid .. "/status") or ""):match("\nUid:%s+(%d+)"))
end

-- The uid an entry's processes run as (its user or uid; else the daemon's)
local function expected_uid(entry)
  local raw = split(entry)
  local who = type(raw) == "table" and (raw.user or raw.uid)
  if who == nil then return core.getuid() end
  local pw = util.passwd(who)
  return pw and pw.uid
end

local function adoption(entries, tk)
  local keeper = require "pm.keeper"
  local sockets = require "pm.sockets"
  -- the apps' processes: the keeper's children (the last daemon's, now
  -- its), each known by the marker of its record (PM_APP_UID) and leading
  -- its own group (an orphaned descendant of an app carries the marker too)
  local me, by_marker = core.getpid(), {}
  local btime = tonumber((util.read_file("/proc/stat") or ""):match("btime (%d+)")) or 0
  local hz = core.clk_tck()
  -- the journal's (pid, start time) of each record: a child with both is
  -- that record's process, known without its environment (a read of
  -- /proc/<pid>/environ an app: a third of a take-over's time in /proc)
  local journaled = {}
  for _, entry in ipairs(entries) do
    local _, meta = split(entry)
    for _, rec in ipairs(type(meta.procs) == "table" and meta.procs or {}) do
      local pid = type(rec) == "table" and type(rec.marker) == "string" and tonumber(rec.pid)
      if pid and tonumber(rec.start) then journaled[pid] = rec end
    end
  end
  for _, pid in ipairs(keeper.parent_is_keeper() and core.children(keeper.pid) or {}) do
    local st = pid ~= me and core.proc_stat(pid)
    if st and st.state ~= "Z" and st.pgrp == pid then
      local rec = journaled[pid]
      if rec and tonumber(rec.start) ~= st.start then rec = nil end
      local marker
      if rec then
        marker = rec.marker
      else
        local env = core.proc_environ(pid)
        marker = env and ("\0" .. env):match("%zPM_APP_UID=([^%z]+)")
      end
      if marker then
        local list = by_marker[marker] or {}
        by_marker[marker] = list
        list[#list + 1] = { pid = pid, start = st.start, started = math.floor((btime + st.start / hz) * 1000),
          journaled = rec and true or nil }
      end
    end
  end
  -- (the keeper died meanwhile: those were another process's children)
  if not keeper.parent_is_keeper() then by_marker = {} end
  local fds, socks, notify = {}, {}, {}
  for _, h in ipairs(tk.held) do
    if h.kind == "s" and h.fd then
      socks[#socks + 1] = h
    elseif h.kind == "n" and h.fd then
      notify[#notify + 1] = h
    elseif h.fd and h.pm_id then
      local per = fds[h.pm_id] or {}
      fds[h.pm_id] = per
      local cur = per[h.kind]
      if not cur or h.id > cur.id then per[h.kind] = h end
    end
  end
  sockets.take_handed(socks)
  readiness.take_notify(notify)
  local taken, deliver = {}, {}
  local function take(h) if h then taken[h] = true; return h.fd, h.id end end
  for _, entry in ipairs(entries) do
    local _, meta = split(entry)
    for _, rec in ipairs(type(meta.procs) == "table" and meta.procs or {}) do
      local id = type(rec) == "table" and tonumber(rec.pm_id)
      local per = id and fds[id] or {}
      -- (an escapee of the app that made a session of its own carries the
      -- marker too: the pid the journal or its pipes name, else the oldest)
      local cands = id and type(rec.marker) == "string" and by_marker[rec.marker]
      local live
      for _, c in ipairs(cands or {}) do
        if c.pid == tonumber(rec.pid) or (per.o and c.pid == per.o.pid) then live = c end
      end
      -- one that ended while no daemon ran, reaped by the keeper: its pid is
      -- the journal's, or the one its pipes were made for (the journal
      -- writes pids once a second)
      local dead
      for _, pid in ipairs(live and {} or { tonumber(rec.pid), per.o and per.o.pid }) do
        if not dead and tk.exits[pid] then dead = pid end
      end
      -- neither: the oldest that runs as the app's user (a process of
      -- another user with the marker in its environment is not the app's:
      -- an environment is whatever its process chose)
      local uid = not (live or dead) and cands and expected_uid(entry)
      for _, c in ipairs(uid and cands or {}) do
        if real_uid(c.pid) == uid and (not live or c.start < live.start) then live = c end
      end
      local exit = dead and tk.exits[dead]
      if (live or exit) and per.o and per.e then
        local a = { pid = live and live.pid or dead, started = live and live.started, start = live and live.start,
          held = {} }
        -- (the journal's process: the group it noted is its group)
        if live and live.journaled and live.pid == tonumber(rec.pid) then a.cgroup = rec.cgroup end
        a.out, a.held.out = take(per.o)
        a.err, a.held.err = take(per.e)
        a.held.out_part = tk.parts[tostring(a.held.out)]
        a.held.err_part = tk.parts[tostring(a.held.err)]
        a.ipc, a.ipc_held = take(per.c)
        a.stdin, a.stdin_held = take(per.i)
        rec.adopt = a
        -- pm update (a hand-over: its blob says the version) counts from 0,
        -- as PM2's update does; a crash's take-over keeps the counts
        if tk.parts.version then rec.restart_time = 0 end
        if rec.status == "errored" then rec.status = "online" end
        if exit then deliver[#deliver + 1] = { a.pid, exit.code, exit.signal } end
      end
      if type(rec) == "table" and rec.status == "errored" and not rec.adopt then rec.keep_errored = true end
    end
  end
  -- what no record took goes (its fds); a process of the keeper's that no
  -- record took (an app the journal lost, an older one of an app: a
  -- reload's retiree) is stopped
  for _, h in ipairs(tk.held) do
    if not taken[h] and h.kind ~= "s" and h.kind ~= "n" then
      keeper.release(h.id)
      if h.fd then core.close(h.fd) end
    end
  end
  local adopted = {}
  for _, entry in ipairs(entries) do
    for _, rec in ipairs(type(entry.pm_procs) == "table" and entry.pm_procs or {}) do
      if type(rec) == "table" and rec.adopt and rec.marker then adopted[rec.marker] = true end
    end
  end
  local left = 0
  for marker, list in pairs(by_marker) do
    if not adopted[marker] then
      for _, x in ipairs(list) do
        core.killpg(x.pid, core.signals.SIGTERM)
        core.kill(x.pid, core.signals.SIGTERM)
        left = left + 1
      end
    end
  end
  if left > 0 then log.warn("%d process(es) of the last daemon belong to no app it had: stopped", left) end
  return deliver
end

-- After a crash of the previous daemon: stop what is left of its apps
-- (their pipes and parent are gone), then start them again, once each;
-- with a keeper that handed them over (tk), take them over instead.
function M.recover(home, old_pid, tk, done)
  if tk and tk.generation and tk.generation > 1 then
    tidy(true)
    local entries, jerr = persist.read_journal(home)
    tidy()
    if entries and jerr then log.warn("%s", jerr) end
    local why = tk.signal and tk.signal > 0 and ("signal " .. (util.signame(tk.signal) or tk.signal))
      or ("exit code " .. tostring(tk.code))
    if not entries then
      log.error("cannot read the journal (%s): the apps of the last daemon are stopped and started again", jerr)
    elseif tk.young >= M.ADOPT_TRIES then
      log.error("%d daemons in a row died young while taking the apps over: "
        .. "the apps are stopped and started again from the journal", tk.young)
    else
      local t0 = core.mono()
      local deliver = adoption(entries, tk)
      tidy()
      return M.restore(entries, function()
        require("pm.sockets").drop_handed()
        local kept = 0
        for _, p in ipairs(sup.all()) do if (p.pid or 0) > 0 then kept = kept + 1 end end
        require("pm.keeper").took_over = { generation = tk.generation, previous = why, kept = kept,
          exited = #deliver, ms = math.floor((core.mono() - t0) * 10 + 0.5) / 10,
          from_version = tk.parts.version, keeper_warning = tk.warning }
        log.warn("took over from the last daemon (it ended with %s): %d process(es) kept, %d ended meanwhile",
          why, kept, #deliver)
        for _, x in ipairs(deliver) do sup.on_child(x[1], x[2], x[3]) end
        persist.defer(home, sup.all, persist.RUNTIME_DELAY)
        done()
      end)
    end
    -- (the fallback: what the keeper holds is let go, the journal's way)
    local keeper = require "pm.keeper"
    for _, h in ipairs(tk.held) do
      keeper.release(h.id)
      if h.fd then core.close(h.fd) end
    end
  end
  tidy(true)
  local entries, jerr, unreadable = persist.read_journal(home)
  tidy()
  if entries and jerr then log.warn("%s", jerr) end
  if not entries and unreadable then log.error("cannot read the journal: %s", jerr) end
  entries = entries or {}
  local left = {}
  local grace = 0
  -- processes of earlier daemons' apps whose newest pid the journal may
  -- not hold (pids are written once a second; a descendant that left its
  -- app's group; a daemon before the last one, killed while it recovered
  -- them): found by the marker pm put in their environment, "<daemon
  -- pid>-<pm_id>-<time>", whichever daemon's it is. Only those of apps the
  -- journal holds are stopped (every app is in it before its first
  -- process starts): what the daemon cannot account for is left running,
  -- and said.
  local known = {}
  for _, entry in ipairs(entries) do
    for _, rec in ipairs(type(entry.pm_procs) == "table" and entry.pm_procs or {}) do
      if tonumber(rec.pm_id) then known[tonumber(rec.pm_id)] = true end
    end
  end
  local strays = old_pid and persist.strays(home) or {}
  if old_pid then readiness.clean_notify() end
  if #entries == 0 and #strays == 0 then return done() end
  local unknown = {}
  for _, rec in ipairs(strays) do
    if known[tonumber(rec.marker:match("^%d+%-(%d+)%-"))] then
      core.killpg(rec.pid, core.signals.SIGINT)
      core.kill(rec.pid, core.signals.SIGINT)
      left[#left + 1] = rec
      grace = math.max(grace, 1600)
    else
      unknown[#unknown + 1] = rec.pid
    end
  end
  if #unknown > 0 then
    log.error("%d process(es) of an earlier daemon's apps are not in its journal: left running (pids %s)",
      #unknown, table.concat(unknown, " "))
  end
  for _, entry in ipairs(entries) do
    local raw, meta = split(entry)
    for _, rec in ipairs(type(meta.procs) == "table" and meta.procs or {}) do
      if persist.same_process(rec) then
        local sig = util.signum(raw.kill_signal or "SIGINT") or core.signals.SIGINT
        core.killpg(rec.pid, sig)
        core.kill(rec.pid, sig)
        left[#left + 1] = rec
        grace = math.max(grace, tonumber(raw.kill_timeout) or 1600)
      end
    end
  end
  -- an app that was errored stays so: its crash loop is not run again
  for _, entry in ipairs(entries) do
    local _, meta = split(entry)
    for _, rec in ipairs(type(meta.procs) == "table" and meta.procs or {}) do
      if type(rec) == "table" and rec.status == "errored" then rec.keep_errored = true end
    end
  end
  log.warn("the previous daemon ended without stopping its apps: %d app(s) to restore, "
    .. "%d process(es) of theirs still running", #entries, #left)
  local deadline = core.mono() + grace
  local function finish()
    for _, rec in ipairs(left) do
      if persist.same_process(rec) then
        core.killpg(rec.pid, core.signals.SIGKILL)
        core.kill(rec.pid, core.signals.SIGKILL)
      end
    end
    M.restore(entries, function() done() end)
  end
  local function check()
    local alive = false
    for _, rec in ipairs(left) do
      if persist.same_process(rec) then alive = true end
    end
    if not alive or core.mono() > deadline then return finish() end
    core.timer(20, 0, check)
  end
  check()
end

-- Daemons that may die young in a row taking the apps over before the
-- next one recovers from the journal instead (the apps restarted)
M.ADOPT_TRIES = 3

return M
