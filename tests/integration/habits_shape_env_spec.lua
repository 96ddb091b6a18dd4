-- Issue 16, item 7: pm2_env as PM2 shapes it. The app's environment is
-- flattened into pm2_env (p.pm2_env.NODE_ENV), beside username, version
-- (the app's package.json, found as PM2 finds it) and node_version; a
-- process a signal ended has exit_code null and the signal; the JSON that
-- `pm jlist` and `pm describe --json` print has [] for every empty list.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local count = H.count

-- The raw text of `pm jlist` (one app started).
local function jlist_text()
  local r = H.ok(H.pm("jlist"), "pm jlist")
  return r.out
end

local SLEEPER = "#!/bin/sh\nexec sleep 1000\n"

describe("pm2_env as PM2 shapes it", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm jlist: the app's environment is flattened into pm2_env, pm's own fields win", function()
    H.script("web.sh", SLEEPER)
    H.lua_eco([[{ { name = "web", script = "web.sh",
      env = { NODE_ENV = "production", PORT = "3000", status = "env-status",
              instances = "9", watch = "env-watch" } } }]])
    H.ok(H.pm("start", H.home .. "/ecosystem.config.lua"))
    local p = H.online(H.proc("web"))
    local e = p.pm2_env
    -- p.pm2_env.NODE_ENV, as code ported from PM2 reads it
    assert.equal("production", e.NODE_ENV)
    assert.equal("3000", e.PORT)
    assert.equal("production", e.env.NODE_ENV)
    -- the whole environment, as PM2's (the caller's PATH too)
    assert.equal(e.env.PATH, e.PATH)
    assert.equal(H.home, e.PM_HOME)
    -- pm's fields win over the variables of the same name pm sets
    assert.equal(0, e.pm_id)
    assert.equal("web", e.name)
    assert.equal(0, e.NODE_APP_INSTANCE)
    assert.equal("online", e.status)
    -- an attribute is the declaration's, never a variable's (pm2_env says
    -- what governs the app): the variable stays in env
    assert.equal(1, e.instances)
    assert.equal(false, e.watch)
    assert.equal("9", e.env.instances)
    assert.equal("env-status", e.env.status)
    -- and no member is written twice
    local text = jlist_text()
    assert.equal(2, count(text, '"NODE_ENV":'), text)
    assert.equal(3, count(text, '"pm_id":'), text) -- the description's, pm2_env's, env's
    assert.equal(2, count(text, '"status":'), text) -- pm2_env's, env's
    assert.equal(2, count(text, '"instances":'), text)
  end)

  it("a PM2 file's env false or null is the text, as Node's spawn writes it; a Lua file's false removes", function()
    H.script("web.sh", SLEEPER)
    H.write(H.home .. "/ecosystem.json", [[{ "apps": [{ "name": "j", "script": "web.sh",
      "env": { "USE_CACHE": false, "NUL": null, "ON": true }, "env_production": { "P": false } }] }]])
    H.ok(H.pm("start", H.home .. "/ecosystem.json", "--env", "production", { cwd = H.home }))
    H.lua_eco([[{ { name = "l", script = "web.sh", env = { USE_CACHE = false, X = "1" } } }]])
    H.ok(H.pm("start", H.home .. "/ecosystem.config.lua", { cwd = H.home, env = { USE_CACHE = "inherited" } }))
    local ej = H.wait_for(function() return H.environ(H.online(H.proc("j")).pid) end, 3000, "j's environment")
    assert.equal("false", ej.USE_CACHE)
    assert.equal("null", ej.NUL)
    assert.equal("true", ej.ON)
    assert.equal("false", ej.P)
    local el = H.wait_for(function() return H.environ(H.online(H.proc("l")).pid) end, 3000, "l's environment")
    assert.is_nil(el.USE_CACHE)
    assert.equal("1", el.X)
  end)

  it("a selection of fields reads the flattened environment too (pm list's fields stay the declaration's)", function()
    H.script("sel.sh", SLEEPER)
    H.lua_eco([[{ { name = "sel", script = "sel.sh", env = { NODE_ENV = "staging", watch = "w" } } }]])
    H.ok(H.pm("start", H.home .. "/ecosystem.config.lua"))
    H.online(H.proc("sel"))
    local conn = assert(require("pm")._conn())
    local list = assert(conn:call("list", { fields = { "name", "pm2_env.NODE_ENV", "pm2_env.watch",
      "pm2_env.username", "pm2_env.version" } }))
    assert.equal("staging", list[1].pm2_env.NODE_ENV)
    assert.equal(false, list[1].pm2_env.watch)
    assert.equal((util.passwd(core.getuid()) or {}).name, list[1].pm2_env.username)
    assert.equal("N/A", list[1].pm2_env.version)
    require("pm").disconnect()
  end)

  it("username, version from the app's package.json (found upward from the script), N/A without one", function()
    local dir = H.home .. "/srv"
    core.mkdir(dir, 493)
    core.mkdir(dir .. "/bin", 493)
    H.write(dir .. "/package.json", '{ "name": "srv", "version": "2.4.1" }\n')
    H.script("srv/bin/run.sh", SLEEPER)
    H.script("plain.sh", SLEEPER)
    H.ok(H.pm("start", dir .. "/bin/run.sh", "--name", "srv"))
    H.ok(H.pm("start", H.home .. "/plain.sh", "--name", "plain"))
    local by = H.by_name()
    assert.equal("2.4.1", by.srv.pm2_env.version)
    assert.equal("N/A", by.plain.pm2_env.version)
    local me = (util.passwd(core.getuid()) or {}).name
    assert.is_string(me)
    assert.equal(me, by.srv.pm2_env.username)
    assert.is_nil(by.srv.pm2_env.node_version) -- not a Node app
    -- a new version is read when the app starts again (a deploy)
    H.write(dir .. "/package.json", '{ "name": "srv", "version": "2.5.0" }\n')
    H.ok(H.pm("restart", "srv"))
    assert.equal("2.5.0", H.proc("srv").pm2_env.version)
  end)

  it("a package.json that is a FIFO or a link to a file the daemon alone reads never holds a description up", function()
    local dir = H.home .. "/f"
    core.mkdir(dir, 493)
    H.script("f/run.sh", SLEEPER)
    assert(os.execute("mkfifo " .. H.shquote(dir .. "/package.json")) == 0)
    H.ok(H.pm("start", dir .. "/run.sh", "--name", "fifo"))
    assert.equal("N/A", H.proc("fifo").pm2_env.version)
  end)

  it("an app of another user: username is that user's, its package.json is read as that user would", function()
    if core.getuid() ~= 0 then return pending("needs root: apps of another user") end
    local pw = assert(util.passwd("nobody"), "no user nobody")
    local open = io.popen("mktemp -d " .. H.shquote(H.src .. "/tests/tmp/open.XXXXXX")):read("*l")
    finally(function() os.execute("rm -rf " .. H.shquote(open)) end)
    core.chmod(open, 493)
    for _, sub in ipairs({ "own", "planted" }) do
      core.mkdir(open .. "/" .. sub, 493)
      H.write(open .. "/" .. sub .. "/run.sh", SLEEPER)
      core.chmod(open .. "/" .. sub .. "/run.sh", 493)
    end
    -- its own package.json; and a link to a file only root may read
    H.write(open .. "/own/package.json", '{ "version": "7.0.0" }')
    assert(os.execute(("chown %d %s"):format(pw.uid, H.shquote(open .. "/own/package.json"))) == 0)
    H.write(H.home .. "/secret.json", '{ "version": "root-only" }')
    core.chmod(H.home .. "/secret.json", 384)
    assert(os.execute("ln -s " .. H.shquote(H.home .. "/secret.json") .. " "
      .. H.shquote(open .. "/planted/package.json")) == 0)
    H.lua_eco(([[{
      { name = "own", script = %q, user = "nobody", cwd = %q },
      { name = "planted", script = %q, user = "nobody", cwd = %q },
    }]]):format(open .. "/own/run.sh", open, open .. "/planted/run.sh", open))
    H.ok(H.pm("start", H.home .. "/ecosystem.config.lua"))
    local by = H.by_name()
    assert.equal(pw.name, by.own.pm2_env.username)
    assert.equal("7.0.0", by.own.pm2_env.version)
    assert.equal("N/A", by.planted.pm2_env.version)
  end)

  it("node_version of a Node app: its interpreter's", function()
    local node = io.popen("command -v node 2>/dev/null"):read("*l")
    if not node or node == "" then return pending("node is not installed") end
    local want = io.popen("node --version"):read("*l"):gsub("^v", "")
    H.write(H.home .. "/package.json", '{ "name": "napp", "version": "0.3.0" }\n')
    H.write(H.home .. "/app.js", "setInterval(() => {}, 1000);\n")
    H.ok(H.pm("start", H.home .. "/app.js", "--name", "napp"))
    local p = H.wait_for(function()
      local x = H.proc("napp")
      return x and x.pm2_env.node_version and x
    end, 10000, "node_version in jlist")
    assert.equal(want, p.pm2_env.node_version)
    assert.equal("0.3.0", p.pm2_env.version)
  end)

  it("a process a signal ended: exit_code null and the signal", function()
    H.script("k.sh", SLEEPER)
    local p = H.online(H.start(H.home .. "/k.sh", "k", "--no-autorestart"))
    core.kill(p.pid, core.signals.SIGKILL)
    local q = H.wait_for(function()
      local x = H.proc("k")
      return x and x.pm2_env.status == "stopped" and x
    end, 5000, "k stopped")
    assert.equal(util.null, q.pm2_env.exit_code)
    assert.equal("SIGKILL", q.pm2_env.exit_signal)
    assert.truthy(jlist_text():find('"exit_code":null', 1, true))
    local d = H.ok(H.pm("describe", "k", "--json"))
    assert.truthy(d.out:find('"exit_code":null', 1, true), d.out)
  end)

  it("pm describe app --json: empty lists are [] as in jlist", function()
    H.script("l.sh", SLEEPER)
    H.lua_eco([[{ { name = "lists", script = "l.sh", ignore_watch = {}, depends_on = {} } }]])
    H.ok(H.pm("start", H.home .. "/ecosystem.config.lua"))
    H.online(H.proc("lists"))
    local d = H.ok(H.pm("describe", "lists", "--json")).out
    local j = jlist_text()
    for _, text in ipairs({ d, j }) do
      for _, k in ipairs({ "args", "interpreter_args", "stop_exit_codes", "ignore_watch", "depends_on" }) do
        assert.truthy(text:find('"' .. k .. '":[]', 1, true), k .. " should be [] in " .. text)
      end
      assert.falsy(text:find(':{}', 1, true) and text:find('"args":{}', 1, true), text)
    end
    assert.equal("[", d:sub(1, 1))
    -- the same description as jlist's (but for the sample of cpu and memory)
    local a, b = util.decode(d)[1], util.decode(j)[1]
    a.monit, b.monit = nil, nil
    assert.same(b, a)
  end)
end)
