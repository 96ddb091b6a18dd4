-- The journal's text (persist.journal_text, built from cached pieces) says
-- exactly what the snapshot tables it replaced said, and follows what
-- changes: a pid and its start time, a status, scale's instance count.
local persist = require "pm.persist"
local core = require "pm.core"
local util = require "pm.util"

local function as_tables(procs)
  return util.decode(persist.encode(persist.snapshot(procs, true)))
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
    assert.same(util.decode(persist.encode(persist.snapshot(procs))), t)
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
