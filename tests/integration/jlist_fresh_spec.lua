-- Issue 21: an app's description is kept as JSON text between lists
-- (describe.body_json) and made again only when a value it is made of
-- differs. Each kind of change an app goes through is checked here to show
-- in the next pm jlist (and pm describe --json, and prettylist), the list
-- having been asked for before the change, so that a kept text would show.
local H = require "pmtest"
local util = require "pm.util"

local ok = H.ok

local function sleeper(name)
  return H.script(name or "app.sh", "#!/bin/sh\nexec sleep 1000\n")
end

-- The app's description in pm jlist, and the same in pm describe --json
local function both(name)
  local p = H.proc(name)
  local d = util.decode(ok(H.pm("describe", name, "--json")).out)
  return p, d and d[1]
end

describe("pm jlist after each kind of change (no description kept stale)", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("shows status, pid, restart_time, pm_uptime and monit through stop, start, restart and reset", function()
    ok(H.pm("start", sleeper(), "--name", "a", "-s"))
    local p0 = H.online(H.proc("a"))
    H.jlist()
    ok(H.pm("stop", "a"))
    local p1, d1 = both("a")
    assert.equal("stopped", p1.pm2_env.status)
    assert.equal("stopped", d1.pm2_env.status)
    assert.equal(0, p1.pid)
    assert.equal(0, p1.monit.memory)
    ok(H.pm("start", "a", "-s"))
    local p2 = H.online(H.proc("a"))
    assert.not_equal(p0.pid, p2.pid)
    assert.is_true(p2.monit.memory > 0)
    H.jlist()
    ok(H.pm("restart", "a", "-s"))
    local p3 = H.online(H.proc("a"))
    assert.equal(p2.pm2_env.restart_time + 1, p3.pm2_env.restart_time)
    assert.not_equal(p2.pid, p3.pid)
    assert.is_true(p3.pm2_env.pm_uptime >= p2.pm2_env.pm_uptime)
    ok(H.pm("reset", "a"))
    local p4, d4 = both("a")
    assert.equal(0, p4.pm2_env.restart_time)
    assert.equal(0, d4.pm2_env.restart_time)
  end)

  it("shows the environment of restart --update-env, flattened and in env, and of pm set", function()
    ok(H.pm("start", sleeper(), "--name", "e", "-s", { env = { FRESH_VAR = "one" } }))
    local p = H.online(H.proc("e"))
    assert.equal("one", p.pm2_env.env.FRESH_VAR)
    assert.equal("one", p.pm2_env.FRESH_VAR)
    ok(H.pm("restart", "e", "--update-env", "-s", { env = { FRESH_VAR = "two" } }))
    local p2, d2 = both("e")
    assert.equal("two", p2.pm2_env.env.FRESH_VAR)
    assert.equal("two", p2.pm2_env.FRESH_VAR)
    assert.equal("two", d2.pm2_env.env.FRESH_VAR)
    assert.equal("two", H.environ(H.online(p2).pid).FRESH_VAR)
    ok(H.pm("set", "e.config_var", "x1"))
    local p3 = H.wait_for(function()
      local q = H.proc("e")
      return q.pm2_env.status == "online" and q.pid ~= p2.pid and q.pid > 0 and q
    end, 5000, "e restarted by pm set")
    assert.equal("x1", p3.pm2_env.env.config_var)
    assert.equal("x1", p3.pm2_env.config_var)
    local pretty = ok(H.pm("prettylist")).out
    assert.truthy(pretty:find("config_var: 'x1'", 1, true), pretty)
  end)

  it("shows a crash's exit code, signal, restart count and events, and a failed start's error", function()
    local flag = H.home .. "/crash"
    local s = H.script("crash.sh", "#!/bin/sh\nif [ -f " .. H.shquote(flag) .. " ]; then exit 3; fi\nexec sleep 1000\n")
    ok(H.pm("start", s, "--name", "c", "-s"))
    local p = H.online(H.proc("c"))
    local events0 = #(p.pm2_env.events or {})
    H.jlist()
    H.write(flag, "")
    H.sh("kill -TERM " .. p.pid)
    local q = H.wait_for(function()
      local c = H.proc("c")
      return c.pm2_env.restart_time >= 2 and c.pm2_env.exit_code == 3 and c
    end, 10000, "c crashed with code 3, restarted")
    assert.is_true(#q.pm2_env.events > events0)
    -- a signal's end: exit_code null, exit_signal named
    os.remove(flag)
    local r = H.wait_for(function()
      local c = H.proc("c")
      return c.pm2_env.status == "online" and c.pid > 0 and H.alive(c.pid) and c
    end, 10000, "c online again")
    H.jlist()
    ok(H.pm("sendSignal", "SIGKILL", "c"))
    H.wait_for(function()
      local c = H.proc("c")
      return c.pm2_env.exit_signal == "SIGKILL" and c.pid ~= r.pid and c
    end, 10000, "c ended by SIGKILL")
    -- a start that fails: its error shows
    local bin = H.home .. "/gs"
    H.sh("cp /bin/sleep " .. H.shquote(bin))
    ok(H.pm("start", bin, "--name", "g", "--interpreter", "none", "-s", "--", "1000"))
    H.online(H.proc("g"))
    H.jlist()
    os.remove(bin)
    H.pm("restart", "g", "-s")
    local g = H.proc("g")
    assert.equal("errored", g.pm2_env.status)
    assert.truthy(tostring(g.pm2_env.error):find("No such file", 1, true), tostring(g.pm2_env.error))
  end)

  it("shows a rename, a scale and an ecosystem file's changed attributes", function()
    ok(H.pm("start", sleeper(), "--name", "old", "-s"))
    H.jlist()
    ok(H.pm("restart", "old", "--name", "new", "-s"))
    local p, d = both("new")
    assert.equal("new", p.name)
    assert.equal("new", p.pm2_env.name)
    assert.equal("new", d.pm2_env.name)
    assert.equal(H.home .. "/logs/new-out.log", p.pm2_env.pm_out_log_path)
    assert.is_nil(H.proc("old"))
    H.jlist()
    ok(H.pm("scale", "new", "3"))
    H.wait_for(function() return #H.jlist() == 3 end, 5000, "3 instances")
    for _, q in ipairs(H.jlist()) do assert.equal(3, q.pm2_env.instances) end
    ok(H.pm("scale", "new", "2"))
    H.wait_for(function() return #H.jlist() == 2 end, 5000, "2 instances")
    for _, q in ipairs(H.jlist()) do assert.equal(2, q.pm2_env.instances) end
    local eco = H.home .. "/eco.json"
    local function write(v)
      util.write_atomic(eco, util.encode({ apps = { { name = "x", script = "/bin/sleep", args = { "1000" },
        interpreter = "none", kill_timeout = v, env = { ECO_VAR = tostring(v) } } } }))
    end
    write(1111)
    ok(H.pm("start", eco, "-s"))
    assert.equal(1111, H.proc("x").pm2_env.kill_timeout)
    write(2222)
    ok(H.pm("startOrRestart", eco, "-s"))
    local x = H.online(H.proc("x"))
    assert.equal(2222, x.pm2_env.kill_timeout)
    assert.equal("2222", x.pm2_env.env.ECO_VAR)
    assert.equal("2222", x.pm2_env.ECO_VAR)
  end)

  it("shows @pm2/io metrics and sd_notify STATUS= as they change", function()
    local go = H.home .. "/go"
    local s = H.script("probe.sh", "#!/bin/sh\n"
      .. "printf '%s\\n' '{\"type\":\"axm:monitor\",\"data\":{\"p\":{\"value\":1}}}' >&$NODE_CHANNEL_FD\n"
      .. "printf 'STATUS=one' | socat - \"UNIX-SENDTO:$NOTIFY_SOCKET\"\n"
      .. "while [ ! -f " .. H.shquote(go) .. " ]; do sleep 0.05; done\n"
      .. "printf '%s\\n' '{\"type\":\"axm:monitor\",\"data\":{\"p\":{\"value\":2}}}' >&$NODE_CHANNEL_FD\n"
      .. "printf 'STATUS=two' | socat - \"UNIX-SENDTO:$NOTIFY_SOCKET\"\n"
      .. "exec sleep 1000\n")
    ok(H.pm("start", s, "--name", "pr", "--ipc", "-s"))
    H.wait_for(function()
      local p = H.proc("pr")
      local m, n = p.pm2_env.axm_monitor, p.pm2_env.notify
      return m.p and m.p.value == 1 and type(n) == "table" and n.status == "one"
    end, 5000, "the first metric and STATUS")
    H.jlist()
    H.write(go, "")
    local p = H.wait_for(function()
      local q = H.proc("pr")
      local m, n = q.pm2_env.axm_monitor, q.pm2_env.notify
      return m.p and m.p.value == 2 and type(n) == "table" and n.status == "two" and q
    end, 5000, "the second metric and STATUS")
    assert.equal(2, p.pm2_env.axm_monitor.p.value)
  end)
end)

describe("pm jlist's output", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("is the daemon's text whole, and a reader that goes away early ends it quietly (as cat)", function()
    local app = sleeper()
    local apps = {}
    for i = 1, 40 do apps[i] = { name = "b" .. i, script = app, env = { BLOB = string.rep("y", 5000) } } end
    ok(H.pm("start", H.script("many.json", util.encode({ apps = apps }), "644"), "-s"))
    local r = ok(H.pm("jlist"))
    assert.is_true(#r.out > 400000, "a reply of " .. #r.out .. " bytes")
    assert.equal("\n", r.out:sub(-1))
    assert.equal(40, #assert(util.decode(r.out)))
    local rc = H.home .. "/jlist.rc"
    local h = H.sh("sh -c " .. H.shquote("{ " .. H.command("jlist") .. "; echo $? >" .. H.shquote(rc)
      .. "; } | head -c 5"))
    assert.equal('[{"na', h.out)
    assert.equal("", h.err)
    assert.equal("0", (util.read_file(rc) or ""):match("%d+"))
  end)
end)
