-- Ecosystem files (issue 4) against a real daemon in a temporary PM_HOME:
-- the worked examples of ecosystem/, every attribute's effect on the
-- process that runs, camelCase and PM2's aliases, --env and --only, the
-- file as a target, starting a file again, --update-env, the errors that
-- refuse a file whole (and leave what runs alone), .config.js through node,
-- and apps run as another user.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local APP = H.fixtures .. "/ep_app.sh"
local EXAMPLES = H.src .. "/ecosystem"

-- ---- helpers ----

local write, ok, fails, real, out_log, contains = H.write, H.ok, H.fails, H.real, H.out_log, H.contains
local names, by_name, online = H.names, H.by_name, H.online

-- Writes an ecosystem file into the home: APP in the text is the fixture.
local function eco(name, text)
  return write(H.home .. "/" .. name, (text:gsub("APP", ("%q"):format(APP))))
end

local function named(name, list)
  local out = {}
  for _, p in ipairs(list or H.jlist()) do
    if p.name == name then out[#out + 1] = p end
  end
  table.sort(out, function(a, b) return a.pm2_env.NODE_APP_INSTANCE < b.pm2_env.NODE_APP_INSTANCE end)
  return out
end

-- "name:pid:status" of every app, sorted: what runs, to compare before/after.
local function snapshot()
  local t = {}
  for _, p in ipairs(H.jlist()) do t[#t + 1] = ("%s:%d:%s"):format(p.name, p.pid, p.pm2_env.status) end
  table.sort(t)
  return table.concat(t, " ")
end

-- The environment of a live app process, as it sees it (/proc/<pid>/environ).
-- Waits until it is the app's own (it holds pm's PM_APP_UID, not the daemon's).
local function environ(pid)
  return H.wait_for(function()
    local env = H.environ(pid)
    return env and env.PM_APP_UID and env
  end, 5000, "the environment of pid " .. tostring(pid))
end

-- The last report of ep_app.sh in a log: { args = {...}, cwd, EP_V }.
local function facts(path, what)
  local text = H.wait_for(function()
    local s = util.read_file(path)
    return s and s:find("ready\n", 1, true) and s
  end, 5000, "the report of " .. (what or path) .. " in " .. path)
  local f
  for line in text:gmatch("[^\n]+") do
    local k, v = line:match("^([%w_]+)=(.*)$")
    if k == "argc" then f = { argc = tonumber(v), args = {} }
    elseif k == "arg" and f then f.args[#f.args + 1] = v
    elseif k and f then f[k] = v end
  end
  return f
end

local function cpus()
  local p = io.popen("getconf _NPROCESSORS_ONLN")
  local n = tonumber(p:read("*l"))
  p:close()
  return n
end

-- ---- the worked examples ----

describe("the worked examples of ecosystem/", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("ecosystem.lua: ticker, web and worker start online", function()
    ok(H.pm("start", EXAMPLES .. "/ecosystem.lua", "-s"))
    local list = H.jlist()
    assert.equal("ticker,web,worker", names(list))
    local a = by_name(list)
    for _, p in pairs(a) do online(p) end
    assert.equal(5, a.web.pm2_env.max_restarts)
    assert.equal(500, a.worker.pm2_env.restart_delay)
    assert.equal("pm", a.worker.pm2_env.exec_interpreter)
    assert.equal(8000, a.web.pm2_env.env.PORT) -- (a number given: shown as one, PM2's)
    assert.equal(EXAMPLES .. "/web.py", a.web.pm2_env.pm_exec_path)
    H.wait_for(function() return contains(out_log("ticker"), "tick 1") end, 5000, "the ticker's first line")
    H.wait_for(function() return contains(out_log("worker"), "job 1 done") end, 5000, "the worker's first line")
  end)

  it("ecosystem.env.lua: --env production gives PORT 8101 and MODE production; without it, 8100", function()
    ok(H.pm("start", EXAMPLES .. "/ecosystem.env.lua", "--env", "production", "-s"))
    local p = online(H.proc("web-env"))
    assert.equal(8101, p.pm2_env.env.PORT)
    assert.equal("production", p.pm2_env.env.MODE)
    local env = environ(p.pid)
    assert.equal("8101", env.PORT)
    assert.equal("production", env.MODE)

    -- the file again without --env: env alone applies to the app that runs
    ok(H.pm("start", EXAMPLES .. "/ecosystem.env.lua", "-s"))
    local q = online(H.proc("web-env"))
    assert.equal(8100, q.pm2_env.env.PORT)
    assert.equal("development", q.pm2_env.env.MODE)
    assert.equal(1, #H.jlist())
  end)

  it("ecosystem.instances.lua: 4 tickers, NODE_APP_INSTANCE 0..3, PORT 9000..9003", function()
    ok(H.pm("start", EXAMPLES .. "/ecosystem.instances.lua", "-s"))
    local list = named("tickers")
    assert.equal(4, #list)
    assert.equal(4, #H.jlist())
    local ids = {}
    for i, p in ipairs(list) do
      online(p)
      assert.equal(tostring(i - 1), p.pm2_env.env.NODE_APP_INSTANCE)
      assert.equal(9000 + i - 1, p.pm2_env.env.PORT)
      local env = environ(p.pid)
      assert.equal(tostring(i - 1), env.NODE_APP_INSTANCE)
      assert.equal(tostring(9000 + i - 1), env.PORT)
      assert.is_nil(ids[p.pm_id], "each instance has its own pm_id")
      ids[p.pm_id] = true
    end
    -- merge_logs: one file for the four
    assert.equal(H.home .. "/logs/tickers-out.log", list[4].pm2_env.pm_out_log_path)
  end)

  it("ecosystem.hooks.lua: job, flaky and ticker start; job's hook stops it on exit code 3", function()
    ok(H.pm("start", EXAMPLES .. "/ecosystem.hooks.lua", "-s"))
    local a = by_name()
    assert.equal(3, #H.jlist())
    for _, n in ipairs({ "job", "flaky", "ticker" }) do online(a[n], n) end
    H.wait_for(function() return H.status("job") == "stopped" end, 6000, "job stopped by its hook")
    local job = H.proc("job")
    assert.equal(3, job.pm2_env.exit_code)
    assert.equal(0, job.pm2_env.restart_time, "the hook stopped it: no restart")
  end)

  it("ecosystem.pm2.json: 2 instances, maxRestarts 5, minUptime 2000 (camelCase as PM2 writes it)", function()
    ok(H.pm("start", EXAMPLES .. "/ecosystem.pm2.json", "-s"))
    local list = named("pm2-style")
    assert.equal(2, #list)
    for _, p in ipairs(list) do
      online(p)
      assert.equal(5, p.pm2_env.max_restarts)
      assert.equal(2000, p.pm2_env.min_uptime)
      assert.equal(200, p.pm2_env.restart_delay)
      assert.is_true(p.pm2_env.merge_logs)
      assert.equal("development", p.pm2_env.env.NODE_ENV)
    end
    ok(H.pm("start", EXAMPLES .. "/ecosystem.pm2.json", "--env", "production", "-s"))
    list = named("pm2-style")
    assert.equal(2, #list)
    for _, p in ipairs(list) do
      online(p)
      assert.equal("production", environ(p.pid).NODE_ENV)
    end
  end)
end)

-- ---- attributes ----

describe("ecosystem attributes", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("name defaults to the script's basename, namespace to 'default'; a namespace is a target", function()
    local path = eco("ecosystem.ns.lua", [[
return {
  apps = {
    { script = APP },
    { name = "ns1", script = APP, namespace = "blue" },
    { name = "ns2", script = APP, namespace = "blue" },
  },
}
]])
    ok(H.pm("start", path, "-s"))
    local a = by_name()
    assert.equal("ep_app,ns1,ns2", names())
    online(a.ep_app)
    assert.equal("default", a.ep_app.pm2_env.namespace)
    assert.equal("blue", a.ns1.pm2_env.namespace)
    ok(H.pm("stop", "blue", "-s"))
    local b = by_name()
    assert.equal("stopped", b.ns1.pm2_env.status)
    assert.equal("stopped", b.ns2.pm2_env.status)
    assert.is_false(H.alive(a.ns1.pid))
    assert.is_false(H.alive(a.ns2.pid))
    online(b.ep_app)
    assert.equal(a.ep_app.pid, b.ep_app.pid, "the app of the default namespace is untouched")
    ok(H.pm("restart", "default", "-s"))
    local c = by_name()
    online(c.ep_app)
    assert.are_not.equal(a.ep_app.pid, c.ep_app.pid)
    assert.equal("stopped", c.ns1.pm2_env.status)
  end)

  it("args as a string (split like a shell) or a list; cwd and script relative to the file; "
    .. "the default cwd is the caller's (PM2)", function()
    assert(core.mkdir(H.home .. "/wd", 493))
    H.script("rel.sh", util.read_file(APP))
    local path = eco("ecosystem.args.lua", [[
return {
  { name = "argstr", script = APP, args = "a 'b c' --x=1", cwd = "wd" },
  { name = "arglist", script = APP, args = { "x y", 2 } },
  { name = "relscript", script = "rel.sh" },
}
]])
    ok(H.pm("start", path, "-s"))
    local a = by_name()
    for _, p in pairs(a) do online(p) end
    local f = facts(out_log("argstr"))
    assert.same({ "a", "b c", "--x=1" }, f.args)
    assert.same({ "a", "b c", "--x=1" }, a.argstr.pm2_env.args)
    assert.equal(real(H.home .. "/wd"), f.cwd)
    assert.equal(H.home .. "/wd", a.argstr.pm2_env.pm_cwd)
    local g = facts(out_log("arglist"))
    assert.same({ "x y", "2" }, g.args)
    assert.equal(real(H.src), g.cwd, "cwd defaults to the directory pm was run from")
    assert.equal(H.home .. "/rel.sh", a.relscript.pm2_env.pm_exec_path)
    assert.equal(real(H.src), facts(out_log("relscript")).cwd)
  end)

  it("instances 'max' is one per CPU, -1 is CPUs minus one", function()
    local path = eco("ecosystem.inst.lua", [[
return { apps = {
  { name = "imax", script = APP, instances = "max" },
  { name = "ineg", script = APP, instances = -1 },
} }
]])
    ok(H.pm("start", path, "-s"))
    local n = cpus()
    local list = H.jlist()
    assert.equal(n, #named("imax", list))
    assert.equal(math.max(1, n - 1), #named("ineg", list))
    for _, p in ipairs(list) do online(p) end
  end)

  it("env precedence: the caller's environment < env < env_<name> (--env); port sets PORT", function()
    local path = eco("ecosystem.envs.lua", [[
return { apps = {
  { name = "envs", script = APP,
    env = { EP_A = "env", EP_B = "env", EP_NUM = 42 },
    env_prod = { EP_B = "prod", EP_P = "only-prod" } },
  { name = "porty", script = APP, port = 3456 },
} }
]])
    ok(H.pm("start", path, "--env", "prod", "-s",
      { env = { EP_A = "caller", EP_B = "caller", EP_C = "caller" } }))
    local a = by_name()
    local env = environ(online(a.envs).pid)
    assert.equal("caller", env.EP_C)
    assert.equal("env", env.EP_A)
    assert.equal("prod", env.EP_B)
    assert.equal("only-prod", env.EP_P)
    assert.equal("42", env.EP_NUM)
    assert.equal("envs", env.name)
    assert.equal(tostring(a.envs.pm_id), env.pm_id)
    assert.equal("prod", a.envs.pm2_env.env.EP_B)
    assert.equal("3456", environ(online(a.porty).pid).PORT)
    assert.equal("3456", a.porty.pm2_env.env.PORT)
  end)

  it("an env key set to false (Lua) is removed, over env and from the caller's environment; JSON null is \"null\"",
    function()
    local path = eco("ecosystem.drop.lua", [[
return { apps = {
  { name = "drop", script = APP,
    env = { EP_E = "env", EP_DROP = false, EP_KEEP = "env" },
    env_prod = { EP_E = false } },
} }
]])
    local caller = { env = { EP_DROP = "caller", EP_KEEP = "caller" } }
    ok(H.pm("start", path, "--env", "prod", "-s", caller))
    local json = write(H.home .. "/drop.json", '{"apps": [{"name": "jdrop", "script": ' .. ("%q"):format(APP)
      .. ', "env": {"EP_DROP": null, "EP_KEEP": "json"}}]}')
    ok(H.pm("start", json, "-s", caller))
    local p = online(H.proc("drop"))
    local env = environ(p.pid)
    assert.equal("env", env.EP_KEEP)
    assert.is_nil(env.EP_E, "EP_E = false in env_prod removes env's EP_E")
    local j = online(H.proc("jdrop"))
    local jenv = environ(j.pid)
    assert.equal("json", jenv.EP_KEEP)
    assert.is_nil(env.EP_DROP, "Lua false: the caller's EP_DROP should be removed")
    -- (a PM2 file: the text, as Node's spawn writes it under PM2)
    assert.equal("null", jenv.EP_DROP)
    assert.is_nil(p.pm2_env.env.EP_DROP, "pm2_env.env should not hold EP_DROP")
  end)

  it("filter_env: true drops the caller's environment, a list drops the variables with those prefixes", function()
    local path = eco("ecosystem.filter.lua", [[
return { apps = {
  { name = "fall", script = APP, filter_env = true, env = { EP_MINE = "1" } },
  { name = "fpre", script = APP, filter_env = { "EP_F", "EP_G" } },
} }
]])
    ok(H.pm("start", path, "-s", { env = { EP_FOO = "1", EP_FBAR = "2", EP_GX = "3", EP_KEEP = "4" } }))
    local a = by_name()
    local all = environ(online(a.fall).pid)
    assert.is_nil(all.EP_KEEP)
    assert.is_nil(all.EP_FOO)
    assert.is_nil(all.PM_BIN, "nothing of the caller's environment")
    assert.equal("1", all.EP_MINE, "the file's env is still given")
    assert.equal("fall", all.name)
    assert.equal(tostring(a.fall.pm_id), all.pm_id)
    local pre = environ(online(a.fpre).pid)
    assert.is_nil(pre.EP_FOO)
    assert.is_nil(pre.EP_FBAR)
    assert.is_nil(pre.EP_GX)
    assert.equal("4", pre.EP_KEEP)
  end)

  it("increment_var grows per instance; instance_var names the instance variable", function()
    local path = eco("ecosystem.inc.lua", [[
return { apps = {
  { name = "inc", script = APP, instances = 3, env = { EP_PORT = 7000 },
    increment_var = "EP_PORT", instance_var = "EP_INST" },
} }
]])
    ok(H.pm("start", path, "-s"))
    local list = named("inc")
    assert.equal(3, #list)
    local seen = {}
    for _, p in ipairs(list) do
      local env = environ(online(p).pid)
      local i = tonumber(env.EP_INST)
      assert.is_not_nil(i, "EP_INST holds the instance number")
      assert.is_nil(seen[i])
      seen[i] = true
      assert.equal(tostring(7000 + i), env.EP_PORT)
      assert.equal(7000 + i, p.pm2_env.env.EP_PORT)
    end
    assert.is_true(seen[0] and seen[1] and seen[2])
  end)

  it("autostart false declares the app stopped; pid_file, out_file, error_file relative to cwd", function()
    assert(core.mkdir(H.home .. "/wd", 493))
    local path = eco("ecosystem.files.lua", [[
return { apps = {
  { name = "lazy", script = APP, autostart = false },
  { name = "files", script = APP, cwd = "wd", pid_file = "files.pid",
    out_file = "out/o.log", error_file = "out/e.log" },
} }
]])
    ok(H.pm("start", path, "-s"))
    local a = by_name()
    assert.is_not_nil(a.lazy, "declared")
    assert.equal("stopped", a.lazy.pm2_env.status)
    assert.equal(0, a.lazy.pid)
    assert.is_nil(util.read_file(out_log("lazy")), "it never ran")

    local p = online(a.files)
    local wd = H.home .. "/wd"
    -- (PM2's rule: NAME.pid is NAME-<pm_id>.pid)
    assert.equal(("%s/files-%d.pid"):format(wd, p.pm_id), p.pm2_env.pm_pid_path)
    assert.equal(tostring(p.pid), (util.read_file(p.pm2_env.pm_pid_path) or ""):match("%d+"))
    assert.equal(wd .. "/out/o.log", p.pm2_env.pm_out_log_path)
    assert.equal(wd .. "/out/e.log", p.pm2_env.pm_err_log_path)
    facts(wd .. "/out/o.log", "files")
    H.wait_for(function() return contains(wd .. "/out/e.log", "to stderr") end, 5000, "the error_file")

    ok(H.pm("start", "lazy", "-s"))
    online(H.proc("lazy"))
    facts(out_log("lazy"))
  end)

  it("takes PM2's camelCase keys and aliases", function()
    local path = eco("ecosystem.camel.lua", ([[
return { apps = {
  { name = "camel", script = APP, cwd = %q, maxRestarts = 7, minUptime = "3s", restartDelay = 250,
    killTimeout = 900, errorFile = "camel-e.log", outFile = "camel-o.log", instanceVar = "EP_IV",
    filterEnv = { "EP_Z" }, stopExitCodes = { 4 } },
  { name = "alias", script = APP, cwd = %q, output = "alias-o.log", error = "alias-e.log",
    log = "alias-all.log", exec_interpreter = "bash", node_args = "--norc", combine_logs = true },
} }
]]):format(H.home, H.home))
    ok(H.pm("start", path, "-s", { env = { EP_ZAP = "1" } }))
    local a = by_name()
    local c = online(a.camel).pm2_env
    assert.equal(7, c.max_restarts)
    assert.equal(3000, c.min_uptime)
    assert.equal(250, c.restart_delay)
    assert.equal(900, c.kill_timeout)
    assert.same({ 4 }, c.stop_exit_codes)
    assert.equal(H.home .. "/camel-e.log", c.pm_err_log_path)
    assert.equal(H.home .. "/camel-o.log", c.pm_out_log_path)
    local cenv = environ(a.camel.pid)
    assert.equal("0", cenv.EP_IV)
    assert.is_nil(cenv.EP_ZAP)
    facts(H.home .. "/camel-o.log", "camel")

    local l = online(a.alias).pm2_env
    assert.equal(H.home .. "/alias-o.log", l.pm_out_log_path)
    assert.equal(H.home .. "/alias-e.log", l.pm_err_log_path)
    assert.equal("bash", l.exec_interpreter)
    assert.same({ "--norc" }, l.interpreter_args)
    assert.is_true(l.merge_logs)
    facts(H.home .. "/alias-o.log", "alias")
    H.wait_for(function()
      return contains(H.home .. "/alias-all.log", "ready") and contains(H.home .. "/alias-all.log", "to stderr")
    end, 5000, "both streams in the log alias's file")
    H.wait_for(function() return contains(H.home .. "/alias-e.log", "to stderr") end, 5000, "the error alias")
  end)
end)

-- ---- the file as a whole ----

describe("an ecosystem file", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  local THREE = [[
return { apps = {
  { name = "a", script = APP }, { name = "b", script = APP }, { name = "c", script = APP },
} }
]]

  it("--only a,b starts a subset", function()
    local path = eco("ecosystem.only.lua", THREE)
    ok(H.pm("start", path, "--only", "a,b", "-s"))
    assert.equal("a,b", names())
    for _, p in ipairs(H.jlist()) do online(p) end
    ok(H.pm("start", path, "--only", "c", "-s"))
    assert.equal("a,b,c", names())
  end)

  it("stop, restart and delete take --only with the file as target", function()
    local path = eco("ecosystem.only.lua", THREE)
    ok(H.pm("start", path, "-s"))
    local before = by_name()
    ok(H.pm("stop", path, "--only", "a,b", "-s"))
    local a = by_name()
    assert.equal("stopped", a.a.pm2_env.status)
    assert.equal("stopped", a.b.pm2_env.status)
    assert.equal(before.c.pid, online(a.c).pid)
    ok(H.pm("restart", path, "--only", "a", "-s"))
    local b = by_name()
    online(b.a)
    assert.equal("stopped", b.b.pm2_env.status)
    assert.equal(before.c.pid, online(b.c).pid)
    ok(H.pm("delete", path, "--only", "b", "-s"))
    assert.equal("a,c", names())
  end)

  it("stop, restart and delete with the file as target act on its apps only", function()
    local path = eco("ecosystem.target.lua", [[
return { apps = { { name = "f1", script = APP }, { name = "f2", script = APP } } }
]])
    ok(H.pm("start", APP, "--name", "other", "-s"))
    ok(H.pm("start", path, "-s"))
    local before = by_name()
    local other = online(before.other).pid

    ok(H.pm("stop", path, "-s"))
    local a = by_name()
    assert.equal("stopped", a.f1.pm2_env.status)
    assert.equal("stopped", a.f2.pm2_env.status)
    assert.is_false(H.alive(before.f1.pid))
    assert.is_false(H.alive(before.f2.pid))
    assert.equal(other, online(a.other).pid)

    ok(H.pm("restart", path, "-s"))
    local b = by_name()
    online(b.f1)
    online(b.f2)
    assert.equal(other, online(b.other).pid)

    ok(H.pm("delete", path, "-s"))
    assert.equal("other", names())
    assert.is_false(H.alive(b.f1.pid))
    assert.is_false(H.alive(b.f2.pid))
    assert.equal(other, online(H.proc("other")).pid)
  end)

  it("started again after a change: the app gets the new env and pm start says what changed", function()
    local text = [[
return { apps = {
  { name = "chg", script = APP, env = { EP_V = "%s" } },
  { name = "same", script = APP },
} }
]]
    local path = eco("ecosystem.chg.lua", text:format("one"))
    ok(H.pm("start", path, "-s"))
    local first = online(H.proc("chg"))
    assert.equal("one", facts(out_log("chg")).EP_V)

    eco("ecosystem.chg.lua", text:format("two"))
    local r = ok(H.pm("start", path))
    assert.is_truthy(r.out:find("chg", 1, true) and r.out:find("env.EP_V", 1, true),
      "pm start should say env.EP_V of chg changed: " .. r.out)
    local p = online(H.proc("chg"))
    assert.are_not.equal(first.pid, p.pid)
    assert.equal("two", environ(p.pid).EP_V)
    assert.equal("two", p.pm2_env.env.EP_V)
    H.wait_for(function() return (facts(out_log("chg")) or {}).EP_V == "two" end, 5000, "the app saying EP_V=two")
    assert.equal(2, #H.jlist(), "no app was added")
  end)

  it("restart --update-env takes the caller's environment, a plain restart keeps the old one", function()
    ok(H.pm("ping"))
    ok(H.pm("start", APP, "--name", "upd", "-s", { env = { EP_U = "old" } }))
    local p = online(H.proc("upd"))
    assert.equal("old", environ(p.pid).EP_U)

    ok(H.pm("restart", "upd", "-s", { env = { EP_U = "new" } }))
    local q = online(H.proc("upd"))
    assert.are_not.equal(p.pid, q.pid)
    assert.equal("old", environ(q.pid).EP_U, "a plain restart keeps the old environment")

    ok(H.pm("restart", "upd", "--update-env", "-s", { env = { EP_U = "new" } }))
    local s = online(H.proc("upd"))
    assert.are_not.equal(q.pid, s.pid)
    assert.equal("new", environ(s.pid).EP_U, "--update-env takes the caller's")
  end)

  it("restart and reload --update-env: the caller's value beats the file's env_production (PM2's)", function()
    local file = H.write(H.home .. "/upd.config.lua", ([[
return { apps = { { name = "updf", script = %q, env = { EP_MODE = "dev", EP_KEEP = "k" },
  env_production = { EP_MODE = "production" } } } }
]]):format(APP))
    ok(H.pm("start", file, "--env", "production", "-s"))
    local p = online(H.proc("updf"))
    assert.equal("production", environ(p.pid).EP_MODE)
    ok(H.pm("restart", "updf", "--update-env", "-s", { env = { EP_MODE = "staging" } }))
    local q = online(H.proc("updf"))
    assert.equal("staging", environ(q.pid).EP_MODE)
    assert.equal("k", environ(q.pid).EP_KEEP, "what the caller does not have stays")
    ok(H.pm("reload", "updf", "--update-env", "-s", { env = { EP_MODE = "qa" } }))
    H.wait_for(function()
      local r = H.proc("updf")
      return r.pid ~= q.pid and r.pm2_env.status == "online" and environ(r.pid).EP_MODE == "qa" and r
    end, 8000, "the reload's process with the caller's EP_MODE")
  end)
end)

-- ---- errors ----

describe("a bad ecosystem file", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  -- "keep" runs from the file; each bad version changes keep's env and
  -- adds "fresh": neither may happen.
  local HEAD = [[
return { apps = {
  { name = "keep", script = APP, env = { EP_V = "two" } },
  { name = "fresh", script = APP },
]]
  local function setup()
    local path = eco("ecosystem.err.lua", [[
return { apps = { { name = "keep", script = APP, env = { EP_V = "one" } } } }
]])
    ok(H.pm("start", path, "-s"))
    online(H.proc("keep"))
    return path, snapshot()
  end
  local function untouched(before)
    assert.equal(before, snapshot(), "what runs is untouched")
    local keep = H.proc("keep")
    assert.is_true(H.alive(keep.pid))
    assert.equal(0, keep.pm2_env.restart_time)
    assert.equal("one", keep.pm2_env.env.EP_V)
    assert.is_nil(H.proc("fresh"))
    assert.is_nil(H.proc("bad"))
  end

  it("a syntax error: non-zero exit with file:line:", function()
    local path, before = setup()
    eco("ecosystem.err.lua", HEAD .. [[
  { name = "bad", script = APP, , },
} }
]])
    fails(H.pm("start", path), path .. ":4:")
    untouched(before)
  end)

  it("a runtime error: non-zero exit with file:line: and the message", function()
    local path, before = setup()
    eco("ecosystem.err.lua", "local t = nil\nlocal x = 1\nlocal y = t.field\n" .. HEAD .. "} }\n")
    fails(H.pm("start", path), path .. ":3:")
    untouched(before)
  end)

  it("an unknown attribute names the closest known one", function()
    local path, before = setup()
    eco("ecosystem.err.lua", HEAD .. [[
  { name = "bad", script = APP, max_restart = 3 },
} }
]])
    fails(H.pm("start", path), "max_restart'", "did you mean 'max_restarts'")
    untouched(before)
  end)

  it("values that once hung or crashed the daemon are refused with one line each", function()
    local path, before = setup()
    local cases = {
      { 'watchdog = 0/0', "'watchdog' must be a finite, non-negative duration" },
      { 'health = { exec = "true", interval = 0/0 }', "health.interval must be a positive number" },
      { 'health = { exec = "true", interval = 1e-9 }', "health.interval: at least 100 ms" },
      { 'health = { http = "http://db.internal:80/health" }',
        "health.http: db.internal is not an IP address nor localhost (the daemon looks up no names)" },
      { 'health = { tcp = "db:5432" }', "health.tcp: db is not an IP address nor localhost" },
      { 'max_restarts = 1/0', "'max_restarts' must be a finite number" },
      { 'filter_env = { 1 }', "filter_env must be true, a prefix or a list of prefixes" },
      { 'interpreter_args = { {} }', "'interpreter_args' must list strings, got a table" },
      { 'args = { { 1 } }', "'args' must list strings, got a table" },
      { 'instances = 0.5', "instances must be a whole number" },
      { 'cron_restart = "0 0 30 2 *"', "cron_restart '0 0 30 2 *' never fires" },
      { 'cwd = "/nonexistent-pm-dir"', "cwd is not a directory: /nonexistent-pm-dir" },
      { 'env = { A = function() end }', "A must be a string, a number or a boolean, got a function" },
      -- (a table is its JSON text, as in PM2; one JSON cannot hold is refused)
      { 'env = { A = { f = function() end } }', "A must be a string, a number or a boolean, got a table" },
      { 'env = { ["X=Y"] = "z" }', '"X=Y" is not a variable name' },
      { 'env = { A = setmetatable({ f = function() end }, { __tostring = function() while true do end end }) }',
        "A must be a string, a number or a boolean, got a table" },
    }
    for _, c in ipairs(cases) do
      eco("ecosystem.err.lua", HEAD .. ("  { name = \"bad\", script = APP, %s },\n} }\n"):format(c[1]))
      fails(H.pm("start", path), "'bad'", c[2])
    end
    eco("ecosystem.err.lua", HEAD .. '  { name = "bad\\1x", script = APP },\n} }\n')
    fails(H.pm("start", path), "no control character")
    eco("ecosystem.err.lua", HEAD .. ('  { name = "bad", script = %q },\n} }\n'):format(H.home))
    fails(H.pm("start", path), "'bad'", "script is a directory")
    -- a returned value whose metatable would loop: read as plain data
    eco("ecosystem.err.lua", "return setmetatable({}, { __index = function() while true do end end })\n")
    fails(H.pm("start", path), "no apps declared")
    local json = write(H.home .. "/bad.json", '{"apps": {"name": "bad", "script": "x"}}')
    fails(H.pm("start", json), "apps must be a list of apps")
    untouched(before)
    assert.equal(0, select(2, (util.read_file(H.home .. "/pm.log") or ""):gsub("lua error", "")))
  end)

  it("more listen sockets than a process can be given: refused, nothing started", function()
    local path, before = setup()
    local specs = {}
    for i = 1, 61 do specs[i] = ("%q"):format("tcp://127.0.0.1:" .. (47000 + i)) end
    eco("ecosystem.err.lua", HEAD .. ("  { name = \"many\", script = APP, listen = { %s } },\n} }\n")
      :format(table.concat(specs, ", ")))
    fails(H.pm("start", path), "'many'", "at most 60 listen sockets, not 61")
    untouched(before)
  end)

  it("a wrong type names the app, the attribute and the expected type", function()
    local path, before = setup()
    eco("ecosystem.err.lua", HEAD .. [[
  { name = "bad", script = APP, max_restarts = "many" },
} }
]])
    fails(H.pm("start", path), "'bad'", "'max_restarts'", "number")
    untouched(before)
    eco("ecosystem.err.lua", HEAD .. [[
  { name = "bad", script = APP, env = 3 },
} }
]])
    fails(H.pm("start", path), "'bad'", "'env'", "table")
    untouched(before)
    local json = write(H.home .. "/bad.json", util.encode({ apps = {
      { name = "fresh", script = APP }, { name = "bad", script = APP, minUptime = { 1 } } } }))
    fails(H.pm("start", json), "'bad'", "minUptime")
    untouched(before)
  end)

  it("an invalid cron_restart", function()
    local path, before = setup()
    eco("ecosystem.err.lua", HEAD .. [[
  { name = "bad", script = APP, cron_restart = "61 * * * *" },
} }
]])
    fails(H.pm("start", path), "'bad'", "61")
    untouched(before)
    eco("ecosystem.err.lua", HEAD .. [[
  { name = "bad", script = APP, cron_restart = "every day" },
} }
]])
    fails(H.pm("start", path), "'bad'")
    untouched(before)
  end)

  it("a file whose top level loops forever is cut off; the daemon still answers", function()
    local path, before = setup()
    eco("ecosystem.err.lua", "while true do end\n" .. HEAD .. "} }\n")
    local r = fails(H.pm("start", path))
    assert.is_truthy(r.err:find("cut off", 1, true) or r.err:find("ran over", 1, true), r.err)
    local ping = ok(H.pm("ping"))
    assert.is_truthy(ping.out:find("pong", 1, true))
    untouched(before)
  end)

  it("a file cut off says which file it was", function()
    local path, before = setup()
    eco("ecosystem.err.lua", "while true do end\n" .. HEAD .. "} }\n")
    fails(H.pm("start", path), path)
    untouched(before)
  end)
end)

-- ---- .config.js ----

describe("a .config.js file", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("loads through node (module.exports = { apps: [...] }) and is a target", function()
    local path = write(H.home .. "/ep.config.js", ([[
const extra = ["p", "q r"];
module.exports = {
  apps: [
    { name: "jsapp", script: %q, args: extra, env: { EP_V: "js" }, maxRestarts: 4 },
    { name: "jsother", script: %q },
  ],
};
]]):format(APP, APP))
    ok(H.pm("start", path, "-s"))
    local a = by_name()
    online(a.jsapp)
    online(a.jsother)
    assert.equal(4, a.jsapp.pm2_env.max_restarts)
    local f = facts(out_log("jsapp"))
    assert.same({ "p", "q r" }, f.args)
    assert.equal("js", f.EP_V)
    ok(H.pm("stop", path, "-s"))
    assert.equal("stopped", H.status("jsapp"))
    assert.equal("stopped", H.status("jsother"))
  end)

  it("with a syntax error gives a clear error and starts nothing", function()
    local path = write(H.home .. "/ep.config.js", "module.exports = { apps: [ { name: 'x', script: 'a.sh' }, ]\n")
    local r = fails(H.pm("start", path), path)
    assert.is_truthy(r.err:find("SyntaxError", 1, true), "the error says what node said: " .. r.err)
    assert.equal(0, #H.jlist())
  end)
end)

-- ---- another user ----

describe("user, uid and gid", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  local function ids_of(pid, which)
    local s = util.read_file("/proc/" .. pid .. "/status") or ""
    local a, b, c, d = s:match("\n" .. which .. ":%s+(%d+)%s+(%d+)%s+(%d+)%s+(%d+)")
    return { tonumber(a), tonumber(b), tonumber(c), tonumber(d) }
  end

  it("run the app as nobody, and its log files belong to nobody", function()
    assert.equal(0, core.getuid(), "this test runs as root")
    local nobody = tonumber((util.read_file("/etc/passwd") or ""):match("\nnobody:[^:]*:(%d+):"))
    local nogroup = tonumber((util.read_file("/etc/passwd") or ""):match("\nnobody:[^:]*:%d+:(%d+):"))
    assert.is_not_nil(nobody, "a nobody user")
    local path = eco("ecosystem.user.lua", ([[
return { apps = {
  { name = "asuser", script = APP, user = "nobody" },
  { name = "asuid", script = APP, uid = %d, gid = %d },
} }
]]):format(nobody, nogroup))
    ok(H.pm("start", path, "-s"))
    local a = by_name()
    for _, n in ipairs({ "asuser", "asuid" }) do
      local p = online(a[n])
      facts(out_log(n), n) -- it ran as nobody and wrote to its log
      assert.same({ nobody, nobody, nobody, nobody }, ids_of(p.pid, "Uid"))
      assert.same({ nogroup, nogroup, nogroup, nogroup }, ids_of(p.pid, "Gid"))
      local groups = (util.read_file("/proc/" .. p.pid .. "/status") or ""):match("\nGroups:([^\n]*)")
      assert.is_falsy((" " .. (groups or "") .. " "):find("%s0%s"), "root's groups are dropped: " .. tostring(groups))
      for _, log in ipairs({ p.pm2_env.pm_out_log_path, p.pm2_env.pm_err_log_path }) do
        local st = core.stat(log)
        assert.is_not_nil(st, log)
        assert.equal(nobody, st.uid, log .. " belongs to nobody")
      end
    end
  end)
end)
