-- The journal's text (persist.journal_text, built from cached pieces) says
-- exactly what the snapshot tables it replaced said, and follows what
-- changes: a pid and its start time, a status, scale's instance count.
local persist = require "pm.persist"
local core = require "pm.core"
local util = require "pm.util"
local lifecycle = require "pm.lifecycle"
local cgroup = require "pm.cgroup"
local appdecl = require "pm.app"

-- (the tables the journal and dump.json were once encoded from: what
-- their text must still say) The app declarations of the procs, one entry per declaration (its
-- instances under pm_procs), with what is needed to bring them back.
-- shared: the callers' environments are written once each, in a first
-- entry { pm_environs = {...} }, and apps name theirs by pm_environ_ref
-- (the journal, rewritten often); otherwise each app carries its own.
local function snapshot(procs, shared)
  local entries, by_decl = {}, {}
  local environs, env_index = {}, {}
  for _, p in ipairs(procs) do
    local e = by_decl[p.decl]
    if not e then
      e = {}
      for k, v in appdecl.members(p.decl) do
        if type(v) ~= "function" then e[k] = v end
      end
      e.args = util.array(p.decl.args)
      e.interpreter_args = p.decl.interpreter_args and util.array(p.decl.interpreter_args) -- (nil: unset)
      e.stop_exit_codes = util.array(p.decl.stop_exit_codes)
      e.pm_origin_file = p.origin and p.origin.path or nil
      e.pm_origin_env = p.origin and p.origin.env or nil
      if shared and p.environ then
        local ref = env_index[p.environ]
        if not ref then
          environs[#environs + 1] = p.environ
          ref = #environs
          env_index[p.environ] = ref
        end
        e.pm_environ_ref = ref
      else
        e.pm_environ = p.environ
      end
      e.pm_procs = {}
      by_decl[p.decl] = e
      entries[#entries + 1] = e
    end
    local st = p.pid and p.pid > 0 and core.proc_stat(p.pid)
    e.pm_procs[#e.pm_procs + 1] = {
      pm_id = p.pm_id, status = lifecycle.saved_status(p),
      restart_time = p.restart_time, created_at = p.created_at,
      pid = p.pid, start = st and st.start or nil, marker = p.uid_marker, cgroup = cgroup.group(p),
      hook_state = p.hook_state_text, ipc_asked = p.ipc_asked or nil,
    }
  end
  if shared then table.insert(entries, 1, { pm_environs = util.array(environs) }) end
  return entries
end

local function encode(entries) return util.encode(util.array(entries)) end

local function as_tables(procs)
  return util.decode(encode(snapshot(procs, true)))
end

local function as_text(procs)
  local text = persist.journal_text(procs)
  local v = util.decode(text)
  assert.is_table(v, text)
  return v
end

describe("the journal's text", function()
  local shared = { PATH = "/usr/bin:/bin", HOME = "/root", LANG = "C.UTF-8" }
  local other = { PATH = "/bin" }
  local web = { name = "web", script = "/srv/web.js", interpreter = "node", instances = 2,
    args = { "--port", "3000" }, env = { NODE_ENV = "production" }, min_uptime = 1000,
    exec_mode = "cluster_mode", on_exit = function() end }
  local worker = { name = "worker", script = "/srv/w.py", interpreter = "python3", instances = 1,
    args = {}, stop_exit_codes = { 0, 3 }, autorestart = false }
  local origin = { path = "/srv/ecosystem.lua", env = "production" }
  local procs

  before_each(function()
    procs = {
      { decl = web, environ = shared, origin = origin, pm_id = 0, status = "online", restart_time = 3,
        created_at = 1764000000123.5, pid = core.getpid(), uid_marker = "9-0-1764000000123" },
      { decl = web, environ = shared, origin = origin, pm_id = 1, status = "launching", restart_time = 0,
        created_at = 1764000000124, pid = 0, uid_marker = "9-1-1764000000124" },
      { decl = worker, environ = other, pm_id = 7, status = "errored", restart_time = 16,
        created_at = 1764000000200, pid = 0, manual_stop = true, uid_marker = "9-7-1764000000200" },
    }
  end)

  it("decodes to what the snapshot encodes", function()
    local t = as_text(procs)
    assert.same(as_tables(procs), t)
    -- one environment per distinct table, named by reference
    assert.equal(2, #t[1].pm_environs)
    assert.equal(1, t[2].pm_environ_ref)
    assert.equal(2, t[3].pm_environ_ref)
    assert.equal(2, #t[2].pm_procs)
    assert.equal((core.proc_stat(core.getpid())).start, t[2].pm_procs[1].start)
    assert.equal("stopped", t[3].pm_procs[1].status) -- stopped by hand
    assert.equal(1764000000123.5, t[2].pm_procs[1].created_at)
  end)

  it("as dump.json: each entry carries its environment, as the snapshot's tables do", function()
    local text = persist.journal_text(procs, "\n", true)
    assert.equal("\n", text:sub(-1))
    local t = util.decode(text)
    assert.same(util.decode(encode(snapshot(procs))), t)
    assert.equal(2, #t) -- (no first entry of environments)
    assert.same(shared, t[1].pm_environ)
    assert.same(other, t[2].pm_environ)
    assert.is_nil(t[1].pm_environ_ref)
    assert.equal("[]\n", persist.journal_text({}, "\n", true))
  end)

  it("reads back through read_journal as the snapshot does", function()
    local home = os.tmpname()
    os.remove(home)
    assert(util.mkdir_p(home))
    assert(util.write_atomic(home .. "/journal.json", persist.journal_text(procs) .. "\n"))
    local list = assert(persist.read_journal(home))
    assert.equal(2, #list)
    assert.equal("web", list[1].name)
    assert.same(shared, list[1].pm_environ)
    assert.same(other, list[2].pm_environ)
    os.remove(home .. "/journal.json")
    os.remove(home)
  end)

  it("follows a new pid, a new status and a scaled instance count", function()
    as_text(procs) -- fills the caches
    procs[1].pid, procs[1].status = 0, "stopped"
    procs[2].pid, procs[2].status = core.getpid(), "online"
    web.instances = 3
    local t = as_text(procs)
    assert.same(as_tables(procs), t)
    assert.equal(3, t[2].instances)
    assert.is_nil(t[2].pm_procs[1].start)
    assert.is_number(t[2].pm_procs[2].start)
    web.instances = 2
  end)

  it("is an environment list alone when no app is declared", function()
    assert.same({ { pm_environs = {} } }, util.decode(persist.journal_text({})))
  end)
end)
