-- Issue 23 (PM2's e2e suite: cli/app-configuration.sh): pm set/unset/
-- multiset/get/conf, PM2's app configuration (module_conf.json): the keys
-- are kept in PM_HOME/module_conf.json (0600), an app named by a set restarts
-- with each key and its whole config (JSON under its name) in its
-- environment, kept across a daemon's stop and pm resurrect;
-- pm2-logrotate's keys map onto pm's log settings.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local ok, fails = H.ok, H.fails

local SLEEPER = "#!/bin/sh\nexec sleep 1000\n"

-- The environment of name's running process, once its pid is pid2 ~= old
local function env_after(name, old_pid)
  local p = H.wait_for(function()
    local q = H.proc(name)
    return q and q.pm2_env.status == "online" and q.pid ~= old_pid and q.pid > 0 and q
  end, 5000, name .. " online again")
  return H.environ(p.pid), p
end

describe("pm set (PM2's app configuration)", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("restarts the app with KEY=VALUE and its config as JSON under its name; prettylist shows them", function()
    ok(H.pm("unset", "echo")) -- (nothing to remove: no error, as in PM2)
    ok(H.pm("start", H.script("a.sh", SLEEPER), "--name", "echo", "-s"))
    local pid = H.proc("echo").pid
    local r = ok(H.pm("set", "echo.config_var", "false"))
    assert.truthy(r.out:find("pm set echo.config_var false", 1, true), r.out)
    local env, p = env_after("echo", pid)
    assert.equal("false", env.config_var)
    assert.equal('{"config_var":"false"}', env.echo)
    assert.equal(1, p.pm2_env.restart_time)
    assert.equal("false", p.pm2_env.env.config_var)
    local pretty = ok(H.pm("prettylist")).out
    assert.truthy(pretty:find("config_var: 'false'", 1, true), pretty)
    -- multiset: several keys, one restart
    ok(H.pm("multiset", "echo.a 1 echo.b \"two words\""))
    env, p = env_after("echo", p.pid)
    assert.equal("1", env.a)
    assert.equal("two words", env.b)
    assert.equal(2, p.pm2_env.restart_time)
    assert.same({ a = "1", b = "two words", config_var = "false" }, util.decode(env.echo))
    -- get / conf
    assert.equal("two words\n", ok(H.pm("get", "echo.b")).out)
    assert.equal("false\n", ok(H.pm("conf", "echo.config_var")).out)
    assert.truthy(ok(H.pm("get", "echo")).out:find("pm set echo.b 'two words'\n", 1, true))
    fails(H.pm("get", "echo.none"), "echo.none is not set")
    -- the store: 0600, its keys
    local st = core.stat(H.home .. "/module_conf.json")
    assert.equal(384, st.mode % 4096)
    assert.same({ a = "1", b = "two words", config_var = "false" }, H.read_json(H.home .. "/module_conf.json").echo)
    -- unset: gone from the store, the process keeps what it got until its next start
    ok(H.pm("unset", "echo.a"))
    assert.is_nil(H.read_json(H.home .. "/module_conf.json").echo.a)
    ok(H.pm("restart", "echo", "-s"))
    env = env_after("echo", p.pid)
    assert.is_nil(env.a)
    assert.equal("two words", env.b)
  end)

  it("keeps the configuration across the daemon's stop, pm resurrect and pm update", function()
    ok(H.pm("start", H.script("a.sh", SLEEPER), "--name", "api", "-s"))
    ok(H.pm("set", "api:port_hint", "8080"))
    ok(H.pm("save"))
    ok(H.pm("kill"))
    ok(H.pm("resurrect"))
    local p = H.wait_for(function()
      local q = H.proc("api")
      return q and q.pm2_env.status == "online" and q
    end, 5000, "api online")
    assert.equal("8080", H.environ(p.pid).port_hint)
    assert.equal("8080\n", ok(H.pm("get", "api.port_hint")).out)
    -- pm update: the new daemon reads the store too (a restart after it keeps the key)
    local before = H.daemon_pid()
    ok(H.pm("update"))
    H.wait_for(function() local d = H.daemon_pid(); return d and d ~= before end, 10000, "a new daemon")
    ok(H.pm("restart", "api", "-s"))
    assert.equal("8080", env_after("api", p.pid).port_hint)
  end)

  it("refuses bad keys and values with one line, changing nothing", function()
    ok(H.pm("set", "a.k", "v"))
    fails(H.pm("set", ".k", "1"), "the app name is empty")
    fails(H.pm("set", "a.", "1"), "the key is empty")
    fails(H.pm("set", "a.k=x", "1"), "'='")
    fails(H.pm("set", "a.k", ("x"):rep(5000)), "longer than 4096")
    fails(H.pm("multiset", "a.x 1 a.y"), "even number")
    fails(H.pm("set", "pm2-logrotate:max_size", "lots"), "a size")
    local pairs_ = {}
    for i = 1, 60 do pairs_[#pairs_ + 1] = ("b.k%d %d"):format(i, i) end
    ok(H.pm("multiset", table.concat(pairs_, " ")))
    fails(H.pm("multiset", "b.x1 1 b.x2 2 b.x3 3 b.x4 4 b.x5 5"), "more than 64 keys")
    local stored = H.read_json(H.home .. "/module_conf.json")
    assert.same({ k = "v" }, stored.a)
    assert.is_nil(stored.b.x1)
  end)

  it("a bare KEY (PM2's top-level value) is kept, no app's: get, unset", function()
    ok(H.pm("unset", "all"))
    assert.truthy(H.exists(H.home .. "/module_conf.json"))
    ok(H.pm("set", "key1", "val1"))
    assert.equal("val1", H.read_json(H.home .. "/module_conf.json").key1)
    assert.equal("val1\n", ok(H.pm("get", "key1")).out)
    assert.truthy(ok(H.pm("get")).out:find("pm set key1 val1\n", 1, true))
    ok(H.pm("unset", "key1"))
    assert.is_nil(H.read_json(H.home .. "/module_conf.json").key1)
  end)

  it("a broken module_conf.json is set aside (module_conf.json.broken) with a warning, the daemon starts", function()
    H.write(H.home .. "/module_conf.json", '{"echo": "not an object"')
    ok(H.pm("ping"))
    assert.equal("", ok(H.pm("get")).out)
    assert.truthy(H.exists(H.home .. "/module_conf.json.broken"))
    assert.truthy(H.pm_log():find("module_conf.json is not a JSON object", 1, true), H.pm_log())
    ok(H.pm("set", "echo.k", "v"))
    assert.same({ echo = { k = "v" } }, H.read_json(H.home .. "/module_conf.json"))
  end)

  it("reads PM2's module_conf.json: its text values kept, deeper objects left out with a warning", function()
    H.write(H.home .. "/module_conf.json", '{"api":{"k":"v","n":3,"deep":{"x":1}},"key1":"val1"}')
    ok(H.pm("ping"))
    assert.equal("v\n", ok(H.pm("get", "api.k")).out)
    assert.equal("3\n", ok(H.pm("get", "api.n")).out)
    assert.equal("val1\n", ok(H.pm("get", "key1")).out)
    assert.truthy(H.pm_log():find("module_conf.json: 1 values that are not text", 1, true), H.pm_log())
  end)

  it("an app named like a variable it has keeps that variable (the JSON under its name is left out)", function()
    ok(H.pm("start", H.script("a.sh", SLEEPER), "--name", "HOME", "-s"))
    local pid = H.proc("HOME").pid
    local home_before = H.environ(pid).HOME
    ok(H.pm("set", "HOME.k", "v"))
    local env = env_after("HOME", pid)
    assert.equal("v", env.k)
    assert.equal(home_before, env.HOME)
  end)

  it("pm2-logrotate:max_size and retain are the log settings of apps that set none; ignored keys say so", function()
    local r = ok(H.pm("set", "pm2-logrotate:dateFormat", "YYYY"))
    assert.truthy(r.err:find("notice: pm2-logrotate:dateFormat is stored but pm does not follow it", 1, true), r.err)
    ok(H.pm("set", "pm2-logrotate:max_size", "1K"))
    ok(H.pm("set", "pm2-logrotate:retain", "2"))
    -- (10 batches of about 1.3 KB: the log is rotated at a write's line
    -- boundary once it holds something, so each batch after the first rotates)
    ok(H.pm("start", H.script("w.sh", "#!/bin/sh\nb=0\nwhile [ $b -lt 10 ]; do i=0\n"
      .. "while [ $i -lt 40 ]; do echo line-$b-$i-xxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done\n"
      .. "b=$((b+1)); sleep 0.1; done\necho last-line\nexec sleep 1000\n"), "--name", "w", "-s"))
    H.wait_for(function() return H.contains(H.out_log("w"), "last-line") end, 10000, "the last line")
    assert.truthy(H.exists(H.home .. "/logs/w-out.log.2"), "rotated twice")
    assert.is_false(H.exists(H.home .. "/logs/w-out.log.3"), "retain 2")
    local st = core.stat(H.out_log("w"))
    assert.truthy(st.size <= 2 * 1400, "size " .. st.size)
  end)

  it("pm install pm2-logrotate turns it on with its defaults; set and uninstall reach running apps", function()
    ok(H.pm("start", H.script("r.sh", "#!/bin/sh\nwhile true; do echo line-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; "
      .. "sleep 0.005; done\n"), "--name", "r", "-s"))
    H.wait_for(function() return ((core.stat(H.out_log("r")) or {}).size or 0) > 0 end, 5000, "a line")
    local r = ok(H.pm("install", "pm2-logrotate"))
    assert.truthy(r.out:find("max_size 10M, retain 30", 1, true), r.out)
    local got = ok(H.pm("get", "pm2-logrotate:max_size"))
    assert.equal("10M", got.out:gsub("%s+$", ""))
    -- a setting reaches the running app's open file: no restart
    local pid = H.proc("r").pid
    ok(H.pm("set", "pm2-logrotate:max_size", "2K"))
    local function rotated()
      local n = 0
      for name in pairs(core.listdir(H.home .. "/logs") or {}) do
        if name:match("^r%-out__") then n = n + 1 end
      end
      return n
    end
    H.wait_for(function() return rotated() >= 2 end, 5000, "the running app's log rotated at 2K")
    assert.equal(pid, H.proc("r").pid)
    -- uninstalled: its rotation is off for the open file too
    ok(H.pm("uninstall", "pm2-logrotate"))
    local n = rotated()
    H.wait_for(function() return ((core.stat(H.out_log("r")) or {}).size or 0) > 6000 end, 5000, "the log grown")
    assert.is_true(rotated() <= n + 1, "no rotation after uninstall")
    assert.equal("", ok(H.pm("get", "pm2-logrotate")).out:gsub("%s+$", ""))
  end)
end)
