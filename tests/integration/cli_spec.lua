-- The `pm` command line (DESIGN §3, §5, §6) against a real daemon in a
-- temporary PM_HOME: start (scripts, .lua apps, ecosystem files), the target
-- verbs, the tables and JSON it prints, and its failure exits.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local APP_SH = H.fixtures .. "/cli_app.sh"
local APP_LUA = H.fixtures .. "/cli_app.lua"

-- ---- helpers ----

local real, out_log = H.real, H.out_log

--[[ Waits until the app's out log holds a whole report of cli_app.sh or
cli_app.lua (it ends with "ready") and parses the last one:
{ argc, args = {...}, cwd, env = {...}, pid, runtime }. ]]
local function facts(name)
  local text = H.wait_for(function()
    local s = util.read_file(out_log(name))
    return s and s:find("ready\n", 1, true) and s
  end, 5000, "the report of " .. name .. " in " .. out_log(name))
  local f
  for line in text:gmatch("[^\n]+") do
    local k, v = line:match("^([%w_.]+)=(.*)$")
    if k == "argc" then
      f = { argc = tonumber(v), args = {}, env = {} }
    elseif k == "arg" then
      f.args[#f.args + 1] = v
    elseif k and k:match("^env%.") then
      f.env[k:sub(5)] = v
    elseif k then
      f[k] = v
    end
  end
  return f
end

local ok, fails, names, by_name = H.ok, H.fails, H.names, H.by_name

-- Starts cli_app.sh as `name` (a new app each time: -f) and returns its description.
local function start_app(name, ...)
  return H.online(H.start(APP_SH, name, "-f", "-s", ...))
end

local write = H.write

local function cmdline(pid)
  local s = util.read_file("/proc/" .. pid .. "/cmdline") or ""
  local argv = {}
  for a in s:gmatch("([^%z]*)%z") do argv[#argv + 1] = a end
  return argv
end

local function now_ms() return core.now() end

-- ---- specs ----

describe("pm start", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("runs a shell script under bash with the default name, args after --, logs and env", function()
    local r = ok(H.pm("start", APP_SH, "--", "a", "b c", "--flag"))
    assert.is_truthy(r.out:find("cli_app", 1, true), "the table should show the app: " .. r.out)
    local p = H.proc("cli_app")
    assert.is_not_nil(p, "default name: the basename without extension")
    assert.equal("online", p.pm2_env.status)
    assert.is_true(H.alive(p.pid))
    assert.equal("bash", p.pm2_env.exec_interpreter)
    assert.equal(APP_SH, p.pm2_env.pm_exec_path)
    assert.same({ "a", "b c", "--flag" }, p.pm2_env.args)
    assert.equal(H.home .. "/logs/cli_app-out.log", p.pm2_env.pm_out_log_path)
    assert.equal(H.home .. "/logs/cli_app-error.log", p.pm2_env.pm_err_log_path)

    local f = facts("cli_app")
    assert.equal(3, f.argc)
    assert.same({ "a", "b c", "--flag" }, f.args)
    assert.equal(tostring(p.pid), f.pid)
    assert.equal(real(p.pm2_env.pm_cwd), f.cwd)
    assert.equal(tostring(p.pm_id), f.env.pm_id)
    assert.equal("cli_app", f.env.name)
    assert.equal("0", f.env.NODE_APP_INSTANCE)
    assert.equal(H.home, f.env.PM_HOME)
  end)

  it("runs a .lua script under pm's own LuaJIT (pm run) with its args", function()
    ok(H.pm("start", APP_LUA, "-s", "--", "x", "y z"))
    local p = H.proc("cli_app")
    assert.is_not_nil(p, "default name of cli_app.lua")
    assert.equal("online", p.pm2_env.status)
    assert.equal("pm", p.pm2_env.exec_interpreter)
    assert.equal(APP_LUA, p.pm2_env.pm_exec_path)
    local f = facts("cli_app")
    assert.equal(tostring(p.pid), f.pid)
    assert.same({ "x", "y z" }, f.args)
    assert.is_truthy(f.runtime:match("^LuaJIT"), "runtime: " .. tostring(f.runtime))
    assert.equal(real(H.bin), real("/proc/" .. p.pid .. "/exe"))
    local argv = cmdline(p.pid)
    assert.equal("run", argv[2])
    assert.equal(APP_LUA, argv[3])
    assert.equal("cli_app", f.env.name)
    assert.equal(H.home, f.env.PM_HOME)
  end)

  it("takes --name and --cwd (absolute, or relative to the caller)", function()
    local wd = H.home .. "/wd"
    assert(core.mkdir(wd, 493))
    ok(H.pm("start", APP_SH, "--name", "web", "--cwd", wd, "-s"))
    local p = H.proc("web")
    assert.is_not_nil(p)
    assert.is_nil(H.proc("cli_app"))
    assert.equal(wd, p.pm2_env.pm_cwd)
    local f = facts("web")
    assert.equal(real(wd), f.cwd)
    assert.equal("web", f.env.name)

    ok(H.pm("start", APP_SH, "--name", "web2", "--cwd", "wd", "-f", "-s", { cwd = H.home }))
    local p2 = H.proc("web2")
    assert.equal(wd, p2.pm2_env.pm_cwd)
    assert.equal(real(wd), facts("web2").cwd)
  end)

  it("runs a file without extension with --interpreter bash", function()
    -- not executable: it can only run through the interpreter
    local path = H.script("plain", util.read_file(APP_SH), "644")
    ok(H.pm("start", path, "--interpreter", "bash", "-s", "--", "one"))
    local p = H.proc("plain")
    assert.is_not_nil(p, "default name of a file without extension")
    assert.equal("online", p.pm2_env.status)
    assert.equal("bash", p.pm2_env.exec_interpreter)
    local f = facts("plain")
    assert.same({ "one" }, f.args)
    assert.equal(tostring(p.pid), f.pid)
  end)

  it("executes the file itself with --interpreter none", function()
    local path = H.script("direct", util.read_file(APP_SH), "755")
    ok(H.pm("start", path, "--interpreter", "none", "-s", "--", "d1", "d2"))
    local p = H.proc("direct")
    assert.equal("online", p.pm2_env.status)
    assert.equal("none", p.pm2_env.exec_interpreter)
    local f = facts("direct")
    assert.same({ "d1", "d2" }, f.args)
    assert.equal(tostring(p.pid), f.pid)

    -- a file that cannot be executed does not start that way
    local noexec = H.script("noexec", util.read_file(APP_SH), "644")
    local r = H.pm("start", noexec, "--interpreter", "none", "-s")
    assert.are_not.equal(0, r.code)
    assert.is_truthy(r.err:find("noexec", 1, true), r.err)
    local q = H.proc("noexec")
    assert.is_true(q == nil or q.pm2_env.status ~= "online")
  end)

  it("starts the apps of an ecosystem.lua (name, script, args, cwd, env, interpreter)", function()
    assert(core.mkdir(H.home .. "/work", 493))
    H.script("plain", util.read_file(APP_SH), "644")
    write(H.home .. "/ecosystem.lua", ([[
return {
  apps = {
    { name = "eco-sh", script = %q, args = { "p", "q r" }, cwd = "work", env = { GREETING = "hi" } },
    { name = "eco-bash", script = "plain", interpreter = "bash", args = "one two", env = { GREETING = 42 } },
  },
}
]]):format(APP_SH))
    ok(H.pm("start", "ecosystem.lua", "-s", { cwd = H.home }))
    local list = H.jlist()
    assert.equal("eco-bash,eco-sh", names(list))
    local a = by_name(list)
    for _, p in pairs(a) do
      assert.equal("online", p.pm2_env.status)
      assert.is_true(H.alive(p.pid))
    end
    local f1 = facts("eco-sh")
    assert.same({ "p", "q r" }, f1.args)
    assert.equal(real(H.home .. "/work"), f1.cwd)
    assert.equal(H.home .. "/work", a["eco-sh"].pm2_env.pm_cwd)
    assert.equal("hi", f1.env.GREETING)
    assert.equal("eco-sh", f1.env.name)
    assert.equal("bash", a["eco-sh"].pm2_env.exec_interpreter)

    local f2 = facts("eco-bash")
    assert.same({ "one", "two" }, f2.args)
    assert.equal("42", f2.env.GREETING)
    assert.equal("bash", a["eco-bash"].pm2_env.exec_interpreter)
    assert.equal(H.home .. "/plain", a["eco-bash"].pm2_env.pm_exec_path)
    assert.are_not.equal(f1.env.pm_id, f2.env.pm_id)
  end)

  it("starts the apps of a PM2-style JSON file", function()
    assert(core.mkdir(H.home .. "/work", 493))
    local path = write(H.home .. "/apps.json", util.encode({ apps = {
      { name = "json-a", script = APP_SH, args = { "--port", "3000" }, cwd = "work", env = { GREETING = "yo" } },
      { name = "json-b", script = APP_LUA, args = "k" },
    } }))
    ok(H.pm("start", path, "-s"))
    local a = by_name(H.jlist())
    assert.equal("online", a["json-a"].pm2_env.status)
    assert.equal("online", a["json-b"].pm2_env.status)
    assert.equal("pm", a["json-b"].pm2_env.exec_interpreter)
    local fa = facts("json-a")
    assert.same({ "--port", "3000" }, fa.args)
    assert.equal("yo", fa.env.GREETING)
    assert.equal(real(H.home .. "/work"), fa.cwd)
    local fb = facts("json-b")
    assert.same({ "k" }, fb.args)
    assert.equal("json-b", fb.env.name)
  end)

  it("refuses a bad ecosystem file with file:line: and changes nothing that runs", function()
    local keeper = start_app("keeper")
    local path = H.home .. "/ecosystem.lua"

    write(path, ('return {\n  apps = {\n    { name = "bad", script = %q }\n    { name = "worse" },\n  },\n}\n')
      :format(APP_SH))
    local r = fails(H.pm("start", path))
    assert.is_truthy(r.err:find("pm: " .. path .. ":4:", 1, true), r.err)

    write(path, 'local x = 1\nerror("boom")\nreturn { apps = {} }\n')
    r = fails(H.pm("start", path))
    assert.is_truthy(r.err:find(path .. ":2:", 1, true), r.err)
    assert.is_truthy(r.err:find("boom", 1, true), r.err)

    -- the first app is fine, the second is not: neither starts
    write(path, ('return { apps = {\n  { name = "good", script = %q },\n'
      .. '  { name = "typo", script = %q, autorestrat = false },\n} }\n'):format(APP_SH, APP_SH))
    r = fails(H.pm("start", path))
    assert.is_truthy(r.err:find("autorestrat", 1, true), r.err)

    local json = write(H.home .. "/apps.json", '{"apps": [{"name": "j", "script": "x.sh",]}')
    r = fails(H.pm("start", json))
    assert.is_truthy(r.err:find(json, 1, true), r.err)

    local list = H.jlist()
    assert.equal("keeper", names(list))
    assert.equal(keeper.pid, list[1].pid)
    assert.equal("online", list[1].pm2_env.status)
    assert.equal(0, list[1].pm2_env.restart_time)
    assert.is_true(H.alive(keeper.pid))
  end)

  it("refuses a script that already runs unless -f", function()
    ok(H.pm("start", APP_SH, "-s"))
    local first = H.proc("cli_app")
    local r = fails(H.pm("start", APP_SH, "-s"), "-f")
    assert.equal("", r.out)
    local list = H.jlist()
    assert.equal(1, #list)
    assert.equal(first.pid, list[1].pid)
    assert.equal(0, list[1].pm2_env.restart_time)

    ok(H.pm("start", APP_SH, "-f", "-s"))
    list = H.jlist()
    assert.equal(2, #list)
    assert.are_not.equal(list[1].pid, list[2].pid)
    for _, p in ipairs(list) do
      assert.equal("online", p.pm2_env.status)
      assert.is_true(H.alive(p.pid))
    end
  end)

  it("refuses a script that already runs under a --name unless -f", function()
    ok(H.pm("start", APP_SH, "--name", "web", "-s"))
    local first = H.proc("web")
    fails(H.pm("start", APP_SH, "--name", "web", "-s"), "-f")
    local p = H.proc("web")
    assert.equal(first.pid, p.pid)
    assert.equal(0, p.pm2_env.restart_time)
    assert.is_true(H.alive(first.pid))
  end)

  it("starts a stopped app again by name and by id", function()
    local p = start_app("web")
    ok(H.pm("stop", "web", "-s"))
    assert.equal("stopped", H.status("web"))
    ok(H.pm("start", "web", "-s"))
    local q = H.proc("web")
    assert.equal("online", q.pm2_env.status)
    assert.is_true(H.alive(q.pid))
    assert.are_not.equal(p.pid, q.pid)

    ok(H.pm("stop", tostring(p.pm_id), "-s"))
    assert.equal("stopped", H.status("web"))
    assert.is_false(H.alive(q.pid))
    ok(H.pm("start", tostring(p.pm_id), "-s"))
    local s = H.proc("web")
    assert.equal("online", s.pm2_env.status)
    assert.is_true(H.alive(s.pid))
    assert.equal(1, #H.jlist(), "no new app was added")
    assert.equal(p.pm_id, s.pm_id)
  end)
end)

describe("pm stop, restart, delete, reset", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("stop by name, by id and all: status stopped, pid 0, the process gone", function()
    local a, b, c = start_app("a"), start_app("b"), start_app("c")
    local r = ok(H.pm("stop", "a"))
    assert.is_truthy(r.out:find("stopped", 1, true), r.out)
    local l = by_name(H.jlist())
    assert.equal("stopped", l.a.pm2_env.status)
    assert.equal(0, l.a.pid)
    assert.is_false(H.alive(a.pid))
    assert.equal("online", l.b.pm2_env.status)
    assert.equal(b.pid, l.b.pid)

    ok(H.pm("stop", tostring(b.pm_id), "-s"))
    l = by_name(H.jlist())
    assert.equal("stopped", l.b.pm2_env.status)
    assert.equal(0, l.b.pid)
    assert.is_false(H.alive(b.pid))
    assert.equal(c.pid, l.c.pid)

    ok(H.pm("start", "a", "-s"))
    local a2 = H.proc("a")
    ok(H.pm("stop", "all", "-s"))
    for _, p in ipairs(H.jlist()) do
      assert.equal("stopped", p.pm2_env.status)
      assert.equal(0, p.pid)
    end
    assert.is_false(H.alive(a2.pid))
    assert.is_false(H.alive(c.pid))
  end)

  it("restart by name, by id and all: a new pid and restart_time + 1", function()
    local a, b = start_app("a"), start_app("b")
    ok(H.pm("restart", "a", "-s"))
    local l = by_name(H.jlist())
    assert.equal("online", l.a.pm2_env.status)
    assert.are_not.equal(a.pid, l.a.pid)
    assert.is_true(H.alive(l.a.pid))
    assert.is_false(H.alive(a.pid))
    assert.equal(1, l.a.pm2_env.restart_time)
    assert.equal(b.pid, l.b.pid)
    assert.equal(0, l.b.pm2_env.restart_time)

    ok(H.pm("restart", tostring(b.pm_id), "-s"))
    local l2 = by_name(H.jlist())
    assert.are_not.equal(b.pid, l2.b.pid)
    assert.equal(1, l2.b.pm2_env.restart_time)
    assert.equal(l.a.pid, l2.a.pid)

    ok(H.pm("restart", "all", "-s"))
    local l3 = by_name(H.jlist())
    for _, n in ipairs({ "a", "b" }) do
      assert.equal("online", l3[n].pm2_env.status)
      assert.equal(2, l3[n].pm2_env.restart_time)
      assert.are_not.equal(l2[n].pid, l3[n].pid)
      assert.is_true(H.alive(l3[n].pid))
      assert.is_false(H.alive(l2[n].pid))
    end
  end)

  it("delete by name, by id and all: gone from jlist, the process gone", function()
    local a, b, c = start_app("a"), start_app("b"), start_app("c")
    ok(H.pm("delete", "a", "-s"))
    assert.equal("b,c", names(H.jlist()))
    assert.is_false(H.alive(a.pid))
    ok(H.pm("delete", tostring(b.pm_id), "-s"))
    assert.equal("c", names(H.jlist()))
    assert.is_false(H.alive(b.pid))
    assert.is_true(H.alive(c.pid))
    start_app("d")
    ok(H.pm("delete", "all", "-s"))
    local r = ok(H.pm("jlist"))
    assert.equal("[]", (r.out:gsub("%s+$", "")))
    assert.is_false(H.alive(c.pid))
  end)

  it("reset by name, by id and all zeroes restart_time", function()
    start_app("a")
    local b = start_app("b")
    ok(H.pm("restart", "all", "-s"))
    ok(H.pm("restart", "all", "-s"))
    local l = by_name(H.jlist())
    assert.equal(2, l.a.pm2_env.restart_time)
    assert.equal(2, l.b.pm2_env.restart_time)

    ok(H.pm("reset", "a", "-s"))
    l = by_name(H.jlist())
    assert.equal(0, l.a.pm2_env.restart_time)
    assert.equal(2, l.b.pm2_env.restart_time)
    assert.equal("online", l.a.pm2_env.status, "reset does not stop the app")

    ok(H.pm("reset", tostring(b.pm_id), "-s"))
    assert.equal(0, H.proc("b").pm2_env.restart_time)

    ok(H.pm("restart", "all", "-s"))
    ok(H.pm("reset", "all", "-s"))
    for _, p in ipairs(H.jlist()) do assert.equal(0, p.pm2_env.restart_time) end
  end)
end)

describe("pm list, jlist, describe, pid, ping", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("list, ls and status print a table of the apps, with no escape codes when piped", function()
    start_app("alpha")
    start_app("beta")
    ok(H.pm("stop", "beta", "-s"))
    for _, verb in ipairs({ "list", "ls", "status" }) do
      local r = ok(H.pm(verb), verb)
      assert.is_truthy(r.out:find("alpha", 1, true), verb .. ": " .. r.out)
      assert.is_truthy(r.out:find("beta", 1, true), verb .. ": " .. r.out)
      assert.is_truthy(r.out:find("online", 1, true), verb .. ": " .. r.out)
      assert.is_truthy(r.out:find("stopped", 1, true), verb .. ": " .. r.out)
      assert.is_truthy(r.out:find("│ name", 1, true), verb .. ": " .. r.out)
      assert.is_nil(r.out:find("\27", 1, true), verb .. " printed an escape code to a pipe")
    end
    -- on a terminal (util-linux `script` gives it one) the status is coloured:
    -- the check above is not true by construction
    if H.sh("command -v script").code == 0 then
      local r = H.sh("script -qec " .. H.shquote(H.shquote(H.bin) .. " ls") .. " /dev/null")
      assert.equal(0, r.code, r.err)
      assert.is_truthy(r.out:find("alpha", 1, true), r.out)
      assert.is_truthy(r.out:find("\27[32m", 1, true), "no colour on a tty: " .. r.out)
    end
  end)

  it("jlist prints [] with no apps", function()
    local r = ok(H.pm("jlist"))
    assert.equal("[]\n", r.out)
    assert.equal("", r.err)
  end)

  it("jlist prints the descriptions of DESIGN §5", function()
    local before = now_ms()
    ok(H.pm("start", APP_SH, "--name", "api", "-s"))
    ok(H.pm("start", APP_LUA, "--name", "worker", "-s", "--", "w1"))
    local r = ok(H.pm("jlist"))
    assert.is_truthy(r.out:match("^%["), r.out)
    assert.is_truthy(r.out:find('"args":[]', 1, true), "an empty args is a JSON array: " .. r.out)
    local list = assert(util.decode(r.out))
    assert.equal(2, #list)
    local a = by_name(list)
    for _, n in ipairs({ "api", "worker" }) do
      local p = a[n]
      local e = p.pm2_env
      assert.equal(n, p.name)
      assert.is_true(p.pid > 0)
      assert.is_true(H.alive(p.pid))
      assert.equal("number", type(p.pm_id))
      assert.equal("number", type(p.monit.memory))
      assert.is_true(p.monit.memory > 0, n .. ": monit.memory of a running app")
      assert.equal("number", type(p.monit.cpu))
      assert.is_true(p.monit.cpu >= 0)
      assert.equal(n, e.name)
      assert.equal(p.pm_id, e.pm_id)
      assert.equal("default", e.namespace)
      assert.equal("online", e.status)
      assert.equal("string", type(e.pm_cwd))
      assert.equal("string", type(e.pm_exec_path))
      assert.equal("string", type(e.exec_interpreter))
      assert.equal("table", type(e.args))
      assert.equal(1, e.instances)
      assert.equal(H.home .. "/logs/" .. n .. "-out.log", e.pm_out_log_path)
      assert.equal(H.home .. "/logs/" .. n .. "-error.log", e.pm_err_log_path)
      assert.equal(("%s/pids/%s-%d.pid"):format(H.home, n, p.pm_id), e.pm_pid_path)
      assert.equal(tostring(p.pid), (util.read_file(e.pm_pid_path) or ""):match("%d+"))
      assert.is_true(e.created_at >= before - 1000 and e.created_at <= now_ms() + 1000, "created_at in ms")
      assert.is_true(e.pm_uptime >= e.created_at and e.pm_uptime <= now_ms() + 1000, "pm_uptime in ms")
      assert.equal(0, e.restart_time)
      assert.equal(0, e.unstable_restarts)
      assert.equal(0, e.prev_restart_delay)
      assert.is_true(e.autorestart)
      assert.equal(0, e.NODE_APP_INSTANCE)
      assert.equal("table", type(e.env))
      assert.equal(n, e.env.name)
      assert.equal(tostring(p.pm_id), e.env.pm_id)
      assert.equal(H.home, e.env.PM_HOME)
    end
    assert.are_not.equal(a.api.pm_id, a.worker.pm_id)
    assert.equal(APP_SH, a.api.pm2_env.pm_exec_path)
    assert.equal("bash", a.api.pm2_env.exec_interpreter)
    assert.same({}, a.api.pm2_env.args)
    assert.equal(APP_LUA, a.worker.pm2_env.pm_exec_path)
    assert.equal("pm", a.worker.pm2_env.exec_interpreter)
    assert.same({ "w1" }, a.worker.pm2_env.args)
    assert.equal(H.src, a.api.pm2_env.pm_cwd, "the CLI's cwd (PM2)")

    ok(H.pm("stop", "api", "-s"))
    local p = H.proc("api")
    assert.equal(0, p.pid)
    assert.equal(0, p.monit.memory)
    assert.equal("stopped", p.pm2_env.status)
  end)

  it("describe prints a readable card, by name and by id, and fails for an unknown target", function()
    local p = start_app("api", "--", "--port", "3000")
    for _, t in ipairs({ "api", tostring(p.pm_id) }) do
      local r = ok(H.pm("describe", t), "describe " .. t)
      assert.is_truthy(r.out:find("api", 1, true), r.out)
      assert.is_truthy(r.out:match("status%s+online"), r.out)
      assert.is_truthy(r.out:match("pid%s+" .. p.pid), r.out)
      assert.is_truthy(r.out:find(APP_SH, 1, true), r.out)
      assert.is_truthy(r.out:find("--port 3000", 1, true), r.out)
      assert.is_truthy(r.out:find(out_log("api"), 1, true), r.out)
      assert.is_nil(r.out:find("\27", 1, true))
    end
    local r = fails(H.pm("describe", "nope"), "nope")
    assert.equal("", r.out)
  end)

  it("pid prints the live pid of an app", function()
    local p = start_app("api")
    local r = ok(H.pm("pid", "api"))
    assert.equal(p.pid .. "\n", r.out)
    assert.is_true(H.alive(tonumber(r.out)))
    fails(H.pm("pid", "nope"), "nope")
    -- with no name: every app's, in the list's order
    local q = start_app("worker")
    assert.equal(p.pid .. "\n" .. q.pid .. "\n", ok(H.pm("pid")).out)
  end)

  it("ping answers pong with the version", function()
    local r = ok(H.pm("ping"))
    local res = assert(util.decode(r.out))
    assert.equal("pong", res.msg)
    assert.equal(util.VERSION, res.version)
    local v = ok(H.pm("--version"))
    assert.equal(res.version .. "\n", v.out)
  end)
end)

describe("pm kill, --version, help", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("kill stops the daemon and its apps", function()
    local a, b = start_app("a"), start_app("b")
    local dpid = H.daemon_pid()
    assert.is_true(H.alive(dpid))
    ok(H.pm("kill"))
    H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon to exit")
    assert.is_false(H.alive(a.pid))
    assert.is_false(H.alive(b.pid))
    assert.is_nil(core.stat(H.home .. "/pm.pid"))
    assert.is_nil(core.stat(H.home .. "/rpc.sock"))
    -- and a kill with no daemon succeeds without starting one
    ok(H.pm("kill"))
    assert.is_nil(core.stat(H.home .. "/pm.pid"))
    assert.is_nil(core.stat(H.home .. "/rpc.sock"))
  end)

  it("kill with no daemon succeeds and starts none", function()
    ok(H.pm("kill"))
    assert.is_nil(core.stat(H.home .. "/pm.pid"))
    assert.is_nil(core.stat(H.home .. "/rpc.sock"))
  end)

  it("--version, help and pm alone print without a daemon", function()
    local v = ok(H.pm("--version"))
    assert.equal(util.VERSION .. "\n", v.out)
    for _, args in ipairs({ { "help" }, {} }) do
      -- (pm alone is a usage error, exit 2, as PM2's is non-zero)
      local r = H.pm(unpack(args))
      assert.equal(#args == 0 and 2 or 0, r.code, r.err)
      assert.is_truthy(r.out:find("usage", 1, true), r.out)
      for _, verb in ipairs({ "start", "stop", "restart", "delete", "jlist", "describe", "kill" }) do
        assert.is_truthy(r.out:find("\n  " .. verb .. " ", 1, true), verb .. " missing from the usage")
      end
    end
    local r = ok(H.pm("help", "start"))
    assert.is_truthy(r.out:find("--name", 1, true), r.out)
    assert.is_truthy(r.out:find("--interpreter", 1, true), r.out)
    assert.is_nil(core.stat(H.home .. "/pm.pid"), "these verbs start no daemon")
  end)
end)

describe("pm failure exits", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("an unknown target for stop, restart, delete, describe, reset: non-zero, one line", function()
    local p = start_app("api")
    for _, verb in ipairs({ "stop", "restart", "delete", "describe", "reset" }) do
      for _, t in ipairs({ "nope", "42" }) do
        local r = fails(H.pm(verb, t), t)
        assert.equal("", r.out, verb .. " printed on failure")
      end
    end
    local q = H.proc("api")
    assert.equal(p.pid, q.pid)
    assert.equal("online", q.pm2_env.status)
    assert.equal(0, q.pm2_env.restart_time)
  end)

  it("an unknown verb: non-zero with a suggestion", function()
    local r = fails(H.pm("stpo", "all"))
    assert.is_truthy(r.err:find("stpo", 1, true), r.err)
    assert.is_truthy(r.err:find("'stop'", 1, true), r.err)
    r = fails(H.pm("lsit"))
    assert.is_truthy(r.err:find("'list'", 1, true), r.err)
  end)

  it("a bad flag: non-zero, nothing started", function()
    local r = fails(H.pm("start", APP_SH, "--bogus"), "--bogus")
    assert.equal("", r.out)
    fails(H.pm("stop", "--bogus", "all"), "--bogus")
    fails(H.pm("start", APP_SH, "--restart-delay", "soon"), "restart-delay")
    fails(H.pm("start"))
    assert.equal(0, #H.jlist())
  end)

  it("start of a missing script: non-zero with a clear message", function()
    local r = fails(H.pm("start", "missing.sh"), "missing.sh")
    assert.is_truthy(r.err:find("not found", 1, true), r.err)
    r = fails(H.pm("start", H.home .. "/nowhere/app.lua"), H.home .. "/nowhere/app.lua")
    assert.is_truthy(r.err:find("not found", 1, true), r.err)
    fails(H.pm("start", H.home .. "/ecosystem.lua"), "not found")
    assert.equal(0, #H.jlist())
  end)
end)

describe("the first call", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("starts a daemon: pm.pid written, rpc.sock 0600, PM_HOME 0700", function()
    assert(core.chmod(H.home, 493)) -- 0755: the daemon must tighten it
    assert.is_nil(core.stat(H.home .. "/pm.pid"))
    local r = ok(H.pm("ls"))
    assert.is_truthy(r.out:find("│ name", 1, true), r.out)
    local dpid = H.daemon_pid()
    assert.is_not_nil(dpid, "pm.pid")
    assert.is_true(H.alive(dpid))
    local ping = assert(util.decode(ok(H.pm("ping")).out))
    assert.equal(dpid, ping.pid)
    local sock = assert(core.stat(H.home .. "/rpc.sock"))
    assert.equal("socket", sock.type)
    assert.equal(384, sock.mode) -- 0600
    assert.equal(448, core.stat(H.home).mode) -- 0700
    -- a second call talks to the same daemon
    ok(H.pm("jlist"))
    assert.equal(dpid, H.daemon_pid())
  end)

  it("creates a PM_HOME that does not exist, 0700", function()
    local nested = H.home .. "/fresh"
    local env = { env = { PM_HOME = nested } }
    finally(function() H.stop_daemon(nested) end)
    local r = ok(H.pm("start", APP_SH, "--name", "n", "-s", env))
    assert.equal("", r.err)
    assert.equal(448, core.stat(nested).mode)
    assert.equal(384, core.stat(nested .. "/rpc.sock").mode)
    assert.is_true(H.alive(H.daemon_pid(nested)))
    assert.is_nil(core.stat(H.home .. "/pm.pid"), "the daemon belongs to the nested home")
    local p = assert(util.decode(ok(H.pm("jlist", env)).out))[1]
    assert.equal("n", p.name)
    assert.equal(nested .. "/logs/n-out.log", p.pm2_env.pm_out_log_path)
    ok(H.pm("kill", env))
    H.wait_for(function() return not H.alive(p.pid) end, 5000, "the app to end")
  end)

  it("creates a PM_HOME whose parent does not exist either (as PM2 does)", function()
    local nested = H.home .. "/a/b/home"
    local env = { env = { PM_HOME = nested } }
    finally(function() H.stop_daemon(nested) end)
    ok(H.pm("ping", env))
    assert.equal(448, core.stat(nested).mode)
    assert.is_true(H.alive(H.daemon_pid(nested)))
  end)

  it("fails with one line when the daemon cannot be started (PM_HOME is a file)", function()
    local file = write(H.home .. "/not-a-dir", "")
    local r = fails(H.pm("ls", { env = { PM_HOME = file } }))
    assert.equal("", r.out)
  end)
end)
