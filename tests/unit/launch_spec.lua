-- The pure parts of starting and describing a process, without a daemon:
-- the environment and argv a process gets (launch.lua) and its description
-- (describe.lua), from real declarations (app.normalize) and records
-- (proc.new, lifecycle.init).
local util = require "pm.util"
local appdecl = require "pm.app"
local proc = require "pm.proc"
local lifecycle = require "pm.lifecycle"
local launch = require "pm.launch"
local descr = require "pm.describe"

local function record(raw, environ, fields)
  local d = assert(appdecl.normalize(raw, { base = "/tmp", environ = environ or {} }))
  local p = proc.new({ pm_id = 7, instance = 0, name = d.name, decl = d, environ = environ or {},
    created_at = 1000, restart_time = 0, unstable_restarts = 0, prev_restart_delay = 0, pid = 0,
    uid_marker = "1-7-1000" })
  lifecycle.init(p, false)
  for k, v in pairs(fields or {}) do p[k] = v end
  return p
end

local function env_map(list)
  local t = {}
  for _, kv in ipairs(list) do
    local k, v = kv:match("^([^=]*)=(.*)$")
    assert.is_nil(t[k], "twice: " .. k)
    t[k] = v
  end
  return t
end

describe("a process's environment", function()
  before_each(function()
    proc.ctx.home = "/pm-home"
    proc.ctx.notify_path = nil
  end)

  it("is the caller's, the app's env over it, and pm's own names", function()
    local p = record({ name = "web", script = "/bin/sh", env = { PORT = 8080, A = "app" } },
      { A = "caller", PATH = "/bin", HOME = "/root" })
    local env = env_map(launch.env_of(p))
    assert.equal("app", env.A)
    assert.equal("8080", env.PORT)
    assert.equal("/bin", env.PATH)
    assert.equal("7", env.pm_id)
    assert.equal("web", env.name)
    assert.equal("0", env.NODE_APP_INSTANCE)
    assert.equal("/pm-home", env.PM_HOME)
    assert.equal("1-7-1000", env.PM_APP_UID)
    assert.is_nil(env.NOTIFY_SOCKET)
    assert.is_nil(env.LISTEN_FDS)
  end)

  it("filter_env drops the caller's names by prefix, true drops them all, env_remove some", function()
    local caller = { NPM_A = "1", NPM_B = "2", KEEP = "k", GONE = "g" }
    local env = env_map(launch.env_of(record({ name = "f", script = "/bin/sh", filter_env = { "NPM_" } }, caller)))
    assert.is_nil(env.NPM_A)
    assert.is_nil(env.NPM_B)
    assert.equal("k", env.KEEP)
    env = env_map(launch.env_of(record({ name = "f", script = "/bin/sh", filter_env = true,
      env = { MINE = "m" } }, caller)))
    assert.is_nil(env.KEEP)
    assert.equal("m", env.MINE)
  end)

  it("increment_var adds the instance number; instance_var names it", function()
    local p = record({ name = "i", script = "/bin/sh", instances = 3, env = { PORT = 9000 },
      increment_var = "PORT", instance_var = "INST" }, {}, { instance = 2 })
    local env = env_map(launch.env_of(p))
    assert.equal("9002", env.PORT)
    assert.equal("2", env.INST)
    assert.equal("2", env.NODE_APP_INSTANCE)
  end)

  it("says where the IPC channel, NOTIFY_SOCKET, the watchdog and held sockets are", function()
    proc.ctx.notify_path = "/pm-home/notify.sock"
    local p = record({ name = "s", script = "/bin/sh", watchdog = 2000 }, {},
      { channel_fd = 4, listen = { names = { "web", "admin" }, map = '{"80":3}' } })
    local env = env_map(launch.env_of(p))
    assert.equal("4", env.NODE_CHANNEL_FD)
    assert.equal("json", env.NODE_CHANNEL_SERIALIZATION_MODE)
    assert.equal("/pm-home/notify.sock", env.NOTIFY_SOCKET)
    assert.equal("2000000", env.WATCHDOG_USEC)
    assert.equal("2", env.LISTEN_FDS)
    assert.equal("web:admin", env.LISTEN_FDNAMES)
    assert.equal('{"80":3}', env.PM_LISTEN_MAP)
  end)

  it("is built again only when what it depends on changed (a crash loop reuses it)", function()
    local p = record({ name = "c", script = "/bin/sh" }, { X = "1" })
    local first = launch.env_of(p)
    assert.equal(first, launch.env_of(p))
    p.channel_fd = 3
    local second = launch.env_of(p)
    assert.are_not.equal(first, second)
    assert.equal("3", env_map(second).NODE_CHANNEL_FD)
  end)
end)

describe("a process's command line", function()
  it("runs the script itself with interpreter none, or the interpreter with its args first", function()
    local d = record({ name = "n", script = "/bin/sh", interpreter = "none", args = { "-c", "true" } }).decl
    local file, argv = launch.command(d)
    assert.equal("/bin/sh", file)
    assert.same({ "/bin/sh", "-c", "true" }, argv)
    d = record({ name = "py", script = "/bin/sh", interpreter = "/usr/bin/python3",
      interpreter_args = { "-u" }, args = { "a b" } }).decl
    file, argv = launch.command(d)
    assert.equal("/usr/bin/python3", file)
    assert.same({ "/usr/bin/python3", "-u", "/bin/sh", "a b" }, argv)
  end)

  it("runs a Node app in cluster mode with the preload that maps listen(port)", function()
    proc.ctx.cluster_preload = "/pm-home/cluster-preload.js"
    local d = record({ name = "cl", script = "/bin/sh", interpreter = "/usr/bin/node",
      exec_mode = "cluster_mode" }).decl
    local _, argv = launch.command(d)
    assert.same({ "/usr/bin/node", "-r", "/pm-home/cluster-preload.js", "/bin/sh" }, argv)
    proc.ctx.cluster_preload = nil
  end)
end)

describe("a description", function()
  it("is DESIGN §5's JSON: name, pid, pm_id, monit and pm2_env with the declaration", function()
    proc.ctx.home = "/pm-home"
    local p = record({ name = "d", script = "/bin/sh", env = { K = "v" } }, { PATH = "/bin" })
    launch.env_of(p)
    local list = util.decode(util.raw_text(descr.describe_list({ p }, false, true)))
    assert.equal(1, #list)
    local q = list[1]
    assert.equal("d", q.name)
    assert.equal(0, q.pid)
    assert.equal(7, q.pm_id)
    assert.same({ memory = 0, cpu = 0 }, q.monit)
    local e = q.pm2_env
    assert.equal("stopped", e.status)
    assert.equal("/bin/sh", e.pm_exec_path)
    assert.equal("/pm-home/logs/d-out.log", e.pm_out_log_path)
    assert.equal("/pm-home/logs/d-error.log", e.pm_err_log_path)
    assert.equal(0, e.restart_time)
    assert.equal("v", e.env.K)
    assert.equal("/bin", e.env.PATH)
    assert.equal(1000, e.created_at)
  end)

  it("brief leaves the environment out; \"table\" is only the process table's fields", function()
    local p = record({ name = "b", script = "/bin/sh", env = { K = "v" } })
    local q = util.decode(util.raw_text(descr.describe_list({ p }, true, true)))[1]
    assert.is_nil(q.pm2_env.env)
    assert.equal("/bin/sh", q.pm2_env.pm_exec_path)
    q = util.decode(util.raw_text(descr.describe_list({ p }, "table", true)))[1]
    assert.is_nil(q.pm2_env.pm_exec_path)
    assert.equal("stopped", q.pm2_env.status)
    assert.equal("default", q.pm2_env.namespace)
  end)

  it("is cut to the fields a client names, in its order; a name that is no field is refused", function()
    local p = record({ name = "sel", script = "/bin/sh", instances = 1, env = { K = "v" } })
    local sel = assert(descr.selection({ "pm_id", "name", "pm2_env.status", "pm2_env.instances",
      "pm2_env.pm_exec_path", "pm2_env.on_exit", "pm2_env.nothing_such" }))
    local text = util.raw_text(descr.describe_list({ p }, sel, true))
    assert.equal('[{"pm_id":7,"name":"sel","pm2_env":{"status":"stopped","instances":1,'
      .. '"pm_exec_path":"\\/bin\\/sh"}}]', text)
    assert.equal('[{"monit":{"memory":0,"cpu":0}}]',
      util.raw_text(descr.describe_list({ p }, assert(descr.selection({ "monit" })), true)))
    assert.equal('[{"pid":0,"pm2_env":{}}]', util.raw_text(descr.describe_list({ p },
      assert(descr.selection({ "pid", "pm2_env.unknown" })), true)))
    for _, bad in ipairs({ {}, { "pm2_env.env" }, { "pm2_env.events" }, { "pm2_env" }, { "envs" },
      { 1 }, "name", { "pm2_env.a.b" } }) do
      local sel2, err = descr.selection(bad)
      assert.is_nil(sel2)
      assert.is_string(err)
    end
  end)

  it("\"table\" is the same selection as its fields named", function()
    local p = record({ name = "t", script = "/bin/sh", watch = true })
    assert.equal(util.raw_text(descr.describe_list({ p }, "table", true)),
      util.raw_text(descr.describe_list({ p }, assert(descr.selection(descr.TABLE_FIELDS)), true)))
  end)

  it("carries the changes an ecosystem file made, when the caller gives them", function()
    local p = record({ name = "ch", script = "/bin/sh" })
    local q = util.decode(util.raw_text(descr.describe_list({ p }, true, true, { [p] = { "env.PORT" } })))[1]
    assert.same({ "env.PORT" }, q.pm2_env.changes)
    q = util.decode(util.raw_text(descr.describe_list({ p }, true, true)))[1]
    assert.is_nil(q.pm2_env.changes)
  end)
end)
