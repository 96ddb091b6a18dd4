-- The declared app set on disk: dump.json (pm save / pm resurrect, with
-- dump.json.bak) and journal.json, rewritten atomically on every change so
-- that a daemon killed with SIGKILL is followed by one that restores every
-- app exactly once, after stopping what is left of the old one's apps.
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"
local appdecl = require "pm.app"
local lifecycle = require "pm.lifecycle"
local cgroup = require "pm.cgroup"

local M = {}

-- ---- the journal as text, from cached pieces ----
-- The declared apps as JSON text, one entry per declaration (its
-- instances under pm_procs), with what is needed to bring them back,
-- without re-encoding what did not
-- change: a declaration's part is encoded once (until scale changes its
-- instances), an environment once, a process's start time read once per
-- pid. A journal of 2,000 apps took 100-150 ms to build from tables.
-- decl -> { rest, instances, origin, learned } (arrays: with 10,000 apps
-- a table of named fields per app is 1.5 MB more)
local decl_cache = setmetatable({}, { __mode = "k" })
local environ_cache = setmetatable({}, { __mode = "k" }) -- environ -> JSON

-- -> the entry's opening, "{" .. members .. "," .. shared .. rest
-- ("{...,"), in pieces: members and shared are the texts descriptions
-- use too (appdecl.members_json's, not copied: 900 bytes an app less),
-- rest the private members'
local function decl_text(p)
  local d = p.decl
  local c = decl_cache[d]
  if not (c and c[2] == d.instances and c[3] == (p.origin or false) and c[4] == (d.learned_listen or false)) then
    -- the members descriptions show are encoded once for both; the rest
    local e = {}
    for k in pairs(appdecl.PRIVATE) do
      if d[k] ~= nil and type(d[k]) ~= "function" then e[k] = d[k] end
    end
    if e.env_remove then e.env_remove = util.array(e.env_remove) end
    e.pm_origin_file = p.origin and p.origin.path or nil
    e.pm_origin_env = p.origin and p.origin.env or nil
    local rest = next(e) ~= nil and ("," .. util.encode(e):sub(2, -2) .. ",") or ","
    c = { rest, d.instances, p.origin or false, d.learned_listen or false }
    decl_cache[d] = c
  end
  local members, shared = appdecl.members_json(d)
  return members, shared, c[1]
end

local num = util.json_number

local jstr = require("cjson").encode

-- record -> its last line and what it was made from, an array (see C_*)
local proc_cache = setmetatable({}, { __mode = "k" })
local C_TEXT, C_STATUS, C_RESTARTS, C_PID, C_STARTED, C_START, C_CGROUP, C_STATE, C_IPC = 1, 2, 3, 4, 5, 6, 7, 8, 9

local function proc_text(p)
  local status = lifecycle.saved_status(p)
  local c = proc_cache[p]
  if not c then
    c = { false, false, false, false, false, false, false, false, false }
    proc_cache[p] = c
  end
  local same = c[C_PID] == p.pid and c[C_STARTED] == p.started -- (a pid may come back)
  if c[C_TEXT] and same and c[C_STATUS] == status and c[C_RESTARTS] == p.restart_time
    and c[C_STATE] == (p.hook_state_text or false) and c[C_IPC] == (p.ipc_asked or false) then
    return c[C_TEXT]
  end
  if not same then -- a process's start time, read once
    local st = p.pid and p.pid > 0 and core.proc_stat(p.pid)
    c[C_PID], c[C_STARTED], c[C_START] = p.pid, p.started, st and st.start or false
    c[C_CGROUP] = st and cgroup.group(p) or false -- (its process's group: a take-over's, without /proc)
  end
  local start = c[C_START]
  local text = ('{"pm_id":%s,"status":%s,"restart_time":%s,"created_at":%s,"pid":%s%s%s%s}'):format(
    num(p.pm_id), jstr(status), num(p.restart_time or 0), num(p.created_at or 0),
    num(p.pid or 0), start and (',"start":' .. num(start)) or "",
    p.uid_marker and (',"marker":' .. jstr(p.uid_marker)) or "",
    c[C_CGROUP] and (',"cgroup":' .. jstr(c[C_CGROUP])) or "")
  if p.ipc_asked then text = text:sub(1, -2) .. ',"ipc_asked":true}' end
  -- pm.state of its hooks (JSON text, as hooks.save_state made it)
  if p.hook_state_text then text = text:sub(1, -2) .. ',"hook_state":' .. jstr(p.hook_state_text) .. "}" end
  c[C_TEXT], c[C_STATUS], c[C_RESTARTS], c[C_STATE], c[C_IPC] = text, status, p.restart_time,
    p.hook_state_text or false, p.ipc_asked or false
  return text
end

-- The start time (/proc's, clock ticks after boot) of p's process as the
-- journal noted it, read when it was written first after the spawn (a
-- pid that came back since is another process's) -> start | nil
function M.start_of(p)
  local c = proc_cache[p]
  if c and c[C_PID] == p.pid and c[C_STARTED] == p.started and c[C_START] then return c[C_START] end
end

-- The journal's JSON text for procs (read back by read_journal), tail
-- (e.g. "\n") after it. inline: each entry carries its environment
-- (pm_environ) and there is no first entry of environments: dump.json's
-- text (built as tables, 9,500 apps took 270 MB).
function M.journal_text(procs, tail, inline)
  local groups, order = {}, {}
  local environs, env_index = {}, {}
  for _, p in ipairs(procs) do
    local g = groups[p.decl]
    if not g then
      g = { p = p, procs = {} }
      if p.environ then
        local ref = env_index[p.environ]
        if not ref then
          local ej = environ_cache[p.environ]
          if not ej then
            ej = util.encode(p.environ)
            environ_cache[p.environ] = ej
          end
          environs[#environs + 1] = ej
          ref = #environs
          env_index[p.environ] = ref
        end
        g.ref = ref
      end
      groups[p.decl] = g
      order[#order + 1] = g
    end
    g.procs[#g.procs + 1] = proc_text(p)
  end
  local parts = inline and { "[" } or { '[{"pm_environs":[', table.concat(environs, ","), "]}" }
  for n, g in ipairs(order) do
    local members, shared, rest = decl_text(g.p)
    parts[#parts + 1] = (inline and n == 1) and "{" or ",{"
    parts[#parts + 1] = members
    parts[#parts + 1] = (members ~= "" and shared ~= "") and "," or ""
    parts[#parts + 1] = shared
    parts[#parts + 1] = rest -- ("{...," open)
    if not g.ref then
      parts[#parts + 1] = ""
    elseif inline then
      parts[#parts + 1] = '"pm_environ":' .. environs[g.ref] .. ","
    else
      parts[#parts + 1] = '"pm_environ_ref":' .. g.ref .. ","
    end
    parts[#parts + 1] = '"pm_procs":['
    for i, text in ipairs(g.procs) do
      if i > 1 then parts[#parts + 1] = "," end
      parts[#parts + 1] = text
    end
    parts[#parts + 1] = "]}"
  end
  parts[#parts + 1] = tail and ("]" .. tail) or "]"
  return table.concat(parts)
end

-- Splits a saved entry into the raw declaration and what pm keeps beside it.
function M.split(entry)
  local raw, meta = {}, {}
  for k, v in pairs(entry) do
    if type(k) == "string" and k:match("^pm_") then meta[k:sub(4)] = v else raw[k] = v end
  end
  if type(raw.instances) == "number" and type(meta.procs) == "table" and #meta.procs > 0 then
    raw.instances = #meta.procs
  end
  return raw, meta
end

local function read_list(path)
  local s, err = util.read_file(path)
  if not s then return nil, err end
  local v, derr = util.decode(s)
  if type(v) ~= "table" then return nil, path .. ": " .. tostring(derr or "not a JSON array") end
  for i, e in ipairs(v) do
    if type(e) ~= "table" then return nil, ("%s: entry %d is not an object"):format(path, i) end
  end
  return v
end

-- Writes dump.json of procs (0600) atomically and durably, keeping the previous one
-- as dump.json.bak. On failure the old dump.json stays: nil, err.
function M.save(home, procs)
  local path = home .. "/dump.json"
  local ok, err = util.write_atomic(path, M.journal_text(procs, "\n", true), { mode = 384, backup = path .. ".bak" })
  if ok then M.pm2_names(home) end
  return ok, err
end

-- PM2's names of the saved list, dump.pm2 and dump.pm2.bak: links to
-- dump.json and dump.json.bak (what PM2's users look for; the format is
-- pm's), made when what they name exists, removed when it does not.
local PM2_NAMES = { ["dump.pm2"] = "dump.json", ["dump.pm2.bak"] = "dump.json.bak" }
function M.pm2_names(home)
  for alias, file in pairs(PM2_NAMES) do
    local link = home .. "/" .. alias
    local st = core.stat(link, true)
    local there = core.stat(home .. "/" .. file, true)
    -- (a file of that name that is no link is someone's: left alone)
    if there and not st then
      core.symlink(file, link)
    elseif not there and st and st.type == "link" then
      os.remove(link)
    end
  end
end

-- Reads dump.json, or dump.json.bak when it is missing or corrupt.
-- Returns entries, warning | nil, err
function M.load(home)
  local path = home .. "/dump.json"
  local list, err = read_list(path)
  if list then return list end
  local bak, berr = read_list(path .. ".bak")
  if bak then
    -- (as PM2 drops a broken dump: kept aside, for whoever looks)
    if core.stat(path) then os.rename(path, path .. ".broken") end
    M.pm2_names(home)
    return bak, ("%s unreadable (%s): restored from dump.json.bak"):format(path, err)
  end
  return nil, ("nothing to resurrect: %s; %s"):format(err, berr)
end

-- ---- the journal ----
-- journal.json (0600), written durably; the one before it is kept as
-- journal.json.bak (read when journal.json cannot be). A change of the
-- declared set or of a desired state is on disk before the reply that
-- acknowledges it (M.sync); counters and pids are batched.

local pending, pending_due
local dirty = false -- a change that is not only counters and pids is not on disk yet
M.unsaved = nil -- why the last write of the journal failed (nil: it is saved)
M.JOURNAL_DELAY = 20 -- ms: the changes of a burst (100 starts) make one write
-- ... or, when a write costs more, DECL_SHARE times its CPU (1 s at most):
-- a reload's steps beside 9,000 other apps each rewrote their records.
-- The reply that acknowledges a change waits for it on disk (M.sync)
-- whatever the delay.
M.DECL_SHARE = 4
M.DECL_DELAY_MAX = 1000
-- Changes of counters and pids only (an app restarting, one crash loop at
-- a thousand restarts a second): at most one write a second, or, when a
-- write costs more than RUNTIME_SHARE of that (thousands of apps), that
-- many times its CPU apart (10 s at most): a crash loop beside 10,000 idle
-- apps does not rewrite their 10,000 records every second. A daemon killed meanwhile
-- finds the newer process by its PM_APP_UID marker.
M.RUNTIME_DELAY = 1000
M.RUNTIME_SHARE = 0.01
M.RUNTIME_DELAY_MAX = 10000
local runtime_delay = M.RUNTIME_DELAY
local decl_delay = M.JOURNAL_DELAY
M.RETRY_DELAY = 1000 -- ms between the tries of a journal that cannot be written

M.writes = 0 -- journal writes since the daemon started (metrics)
M.on_written = nil -- function called after each write (daemon.lua: a collection once idle)
local function write_journal(home, procs_fn)
  if pending then pending:close(); pending = nil end
  M.writes = M.writes + 1
  local was_dirty = dirty
  dirty = false
  local path = home .. "/journal.json"
  local c0 = os.clock()
  local procs = procs_fn()
  local ok, err = util.write_atomic(path, M.journal_text(procs, "\n"), { mode = 384, backup = path .. ".bak" })
  local cost = (os.clock() - c0) * 1000
  runtime_delay = math.min(M.RUNTIME_DELAY_MAX, math.max(M.RUNTIME_DELAY, cost / M.RUNTIME_SHARE))
  decl_delay = math.min(M.DECL_DELAY_MAX, math.max(M.JOURNAL_DELAY, cost * M.DECL_SHARE))
  if M.on_written then M.on_written() end -- (daemon.lua: its garbage collected once idle)
  if ok then
    if M.unsaved then log.info("journal.json is written again") end
    M.unsaved = nil
    return true
  end
  dirty = dirty or was_dirty
  if not M.unsaved then log.warn("cannot write the journal (retrying every second): %s", err) end
  M.unsaved = "cannot write journal.json: " .. tostring(err)
  -- keep trying: the state on disk is the last good one meanwhile
  M.journal(home, procs_fn, "runtime", M.RETRY_DELAY)
  return nil, M.unsaved
end

function M.journal(home, procs_fn, kind, delay)
  if kind ~= "runtime" then dirty = true end
  delay = delay or (kind == "runtime" and runtime_delay or decl_delay)
  local due = core.mono() + delay
  if pending then
    if pending_due <= due then return end
    pending:close() -- a declaration change does not wait for the slower write
  end
  pending_due = due
  pending = core.timer(delay, 0, function()
    pending = nil
    write_journal(home, procs_fn)
  end)
end

-- A write that waits goes delay ms from now, no sooner (a take-over: the
-- journal on disk names the same apps and pids; the first requests are
-- not kept waiting behind its rewrite). What is not on disk stays dirty.
function M.defer(home, procs_fn, delay)
  if not pending then return end
  pending:close()
  pending = nil
  M.journal(home, procs_fn, "runtime", delay)
end

-- Writes the journal of procs_fn() now -> true | nil, err (then it is
-- tried again).
function M.journal_now(home, procs_fn)
  return write_journal(home, procs_fn)
end

-- Before a reply that acknowledges a change: the journal holding it is on
-- disk -> true | nil, err. Nothing is written when only counters and pids
-- changed since the last write.
function M.sync(home, procs_fn)
  if not dirty and not M.unsaved then return true end
  return write_journal(home, procs_fn)
end

-- sync, the replies of one turn of the loop sharing one write (a group
-- commit: the requests a client sent at once, the exits that came
-- together) -> cb(true) | cb(nil, err), at once when nothing waits
local sync_waiting, sync_timer = {}, nil
function M.sync_soon(home, procs_fn, cb)
  if not dirty and not M.unsaved then return cb(true) end
  sync_waiting[#sync_waiting + 1] = cb
  if sync_timer then return end
  sync_timer = core.timer(0, 0, function()
    sync_timer = nil
    local waiting = sync_waiting
    sync_waiting = {}
    local ok, err = M.sync(home, procs_fn)
    for _, f in ipairs(waiting) do
      local cok, cerr = pcall(f, ok, err) -- (one reply's error loses no other's)
      if not cok then log.error("a reply after the journal's write: %s", tostring(cerr)) end
    end
  end)
end

local function read_journal_file(path)
  local list, err = read_list(path)
  if not list then return nil, err end
  local head = list[1]
  if type(head) == "table" and head.pm_environs ~= nil then
    table.remove(list, 1)
    local envs = type(head.pm_environs) == "table" and head.pm_environs or {}
    for _, e in ipairs(list) do
      local ref = tonumber(e.pm_environ_ref)
      e.pm_environ_ref = nil
      if ref then e.pm_environ = envs[ref] end
    end
  end
  return list
end

-- The journal's entries, or the previous journal's when it cannot be read
-- -> list, warning | nil, err, unreadable (false: there is no journal)
function M.read_journal(home)
  local path = home .. "/journal.json"
  local list, err = read_journal_file(path)
  if list then return list end
  local prev, perr = read_journal_file(path .. ".bak")
  if prev then
    return prev, ("%s unreadable (%s): the previous journal (journal.json.bak) is used"):format(path, err)
  end
  local unreadable = core.stat(path) ~= nil or core.stat(path .. ".bak") ~= nil
  return nil, ("%s; %s"):format(err, perr), unreadable
end

function M.drop_journal(home)
  if pending then pending:close(); pending = nil end
  dirty = false
  os.remove(home .. "/journal.json")
  os.remove(home .. "/journal.json.bak")
end

-- Is pid still the process the journal recorded (its pid, start time and
-- marker)?
function M.same_process(rec)
  return type(rec.marker) == "string" and util.same_process(rec.pid, rec.start, rec.marker)
end

-- Processes whose environment says they were started by an earlier daemon
-- of this PM_HOME (any: one killed during the recovery of another's apps
-- leaves both's), or descend from one: { {pid, start, marker}, ... }. Only
-- before this daemon starts anything (every marker is then an earlier's).
function M.strays(home)
  local out = {}
  local me = core.getpid()
  local prefix = "PM_APP_UID="
  local home_var = "PM_HOME=" .. home
  for name in pairs(core.listdir("/proc") or {}) do
    local pid = tonumber(name)
    if pid and pid ~= me then
      local env = core.proc_environ(pid)
      if env and env:find(prefix, 1, true) then
        local marker
        local ok_home = false
        for entry in env:gmatch("[^%z]+") do
          if entry == home_var then ok_home = true end
          if entry:sub(1, #prefix) == prefix then marker = entry:sub(#"PM_APP_UID=" + 1) end
        end
        local st = core.proc_stat(pid)
        if ok_home and marker and st and st.state ~= "Z" then
          out[#out + 1] = { pid = pid, start = st.start, marker = marker }
        end
      end
    end
  end
  return out
end

return M
