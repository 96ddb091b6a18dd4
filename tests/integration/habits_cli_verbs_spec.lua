-- Issue 16, items 13, 14 and 15 (their CLI parts): mistakes said out loud
-- (`pm sendSignal` to a stopped app, a start that cannot exec leaves no
-- errored entry, `pm kill` with no daemon), help (`-n, --name <name>` on
-- one line; no hidden alias suggested), and the verbs PM2 users reach for:
-- `pm report`, `pm env <id>`, `pm id <name>`, `pm prettylist`,
-- `pm cleardump`.
local H = require "pmtest"
local util = require "pm.util"

local ok, fails, online = H.ok, H.fails, H.online

local APP_SH = H.fixtures .. "/cli_app.sh"

local function sleeper() return H.script("app.sh", "#!/bin/sh\necho hello\nexec sleep 1000\n") end

describe("mistakes said out loud", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm sendSignal SIGUSR1 <a stopped app> is an error, not 'sent'", function()
    ok(H.pm("start", sleeper(), "-s"))
    ok(H.pm("stop", "app", "-s"))
    local r = fails(H.pm("sendSignal", "SIGUSR1", "app"), "app", "stopped")
    assert.equal("", r.out)
    fails(H.pm("sendSignal", "SIGUSR1", "0"), "stopped")
    -- running: sent
    ok(H.pm("restart", "app", "-s"))
    ok(H.pm("sendSignal", "SIGCONT", "app"))
  end)

  it("pm start of a script that cannot be executed leaves no errored entry behind", function()
    local noexec = H.write(H.home .. "/noexec", "echo hi\n") -- no extension, mode 0644: exec fails
    fails(H.pm("start", noexec), "noexec", "Permission denied")
    assert.same({}, H.jlist())
    fails(H.pm("start", H.home .. "/missing.sh"), "not found")
    assert.same({}, H.jlist())
    -- the same mistake among apps that do start: only the mistake goes
    ok(H.pm("start", sleeper(), "-s"))
    fails(H.pm("start", noexec))
    assert.equal("app", H.names())
    -- the failed starts used no id: the next app takes 1
    ok(H.pm("start", sleeper(), "--name", "next", "-f", "-s"))
    assert.equal(1, H.proc("next").pm_id)
  end)

  it("pm kill with no daemon says so, exits 0, and starts none", function()
    local r = ok(H.pm("kill"))
    assert.equal("no daemon running\n", r.out)
    assert.is_nil(H.daemon_pid())
    assert.is_false(H.exists(H.home .. "/rpc.sock"))
  end)
end)

describe("help", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm help start pairs -n, --name <name> on one aligned line", function()
    local r = ok(H.pm("help", "start"))
    assert.is_truthy(r.out:find("\n   %-n, %-%-name <name> +app name\n"), r.out)
    assert.is_truthy(r.out:find("\n   %-i, %-%-instances <n> +"), r.out)
    -- a long-only option lines up with the long names of the pairs
    assert.is_truthy(r.out:find("\n       %-%-cwd <dir> +working directory\n"), r.out)
  end)

  it("PM2's other names work: -V, config (conf), create (init), dashboard and dash (monit)", function()
    assert.equal(util.VERSION .. "\n", ok(H.pm("-V")).out)
    ok(H.pm("set", "api.key", "v"))
    assert.equal(ok(H.pm("conf", "api.key")).out, ok(H.pm("config", "api.key")).out)
    local dir = H.home .. "/new"
    require("pm.core").mkdir(dir, 493)
    ok(H.pm("create", { cwd = dir }))
    assert.truthy(H.exists(dir .. "/ecosystem.lua"))
    for _, alias in ipairs({ "dashboard", "dash" }) do
      local r = ok(H.pm("help", alias))
      assert.truthy(r.out:find("pm monit", 1, true), r.out)
    end
  end)

  it("a mistyped verb is never answered with a hidden alias", function()
    for _, typo in ipairs({ "dumpp", "infoo", "shw", "descr", "dell" }) do
      local r = H.pm(typo)
      assert.equal(2, r.code)
      for _, hidden in ipairs({ "'dump'", "'info'", "'show'", "'desc'", "'del'" }) do
        assert.is_nil(r.err:find(hidden, 1, true), typo .. ": " .. r.err)
      end
    end
    assert.is_truthy(H.pm("delet").err:find("'delete'", 1, true))
  end)
end)

describe("the verbs PM2 users reach for", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm env <id> lists the environment variables of the process", function()
    ok(H.pm("start", APP_SH, "--name", "api", "-s", { env = { GREETING = "hello there" } }))
    local r = ok(H.pm("env", "0"))
    assert.is_truthy(r.out:find("\nGREETING: hello there\n", 1, true), r.out)
    assert.is_truthy(r.out:find("\npm_id: 0\n", 1, true), r.out)
    fails(H.pm("env", "7"), "7")
  end)

  it("pm id <name> prints the ids of its processes as a JSON array", function()
    local s = sleeper()
    ok(H.pm("start", s, "--name", "other", "-s"))
    ok(H.pm("start", s, "--name", "api", "-i", "2", "-f", "-s"))
    assert.equal("[1,2]\n", ok(H.pm("id", "api")).out)
    assert.equal("[]\n", ok(H.pm("id", "nosuch")).out)
  end)

  it("pm prettylist prints the list in Node's util.inspect notation, as PM2's does", function()
    ok(H.pm("start", sleeper(), "-s"))
    local r = ok(H.pm("prettylist"))
    assert.is_truthy(r.out:find("^%[\n  {\n    name: 'app',\n"), r.out:sub(1, 200))
    assert.is_truthy(r.out:find("\n      args: [],\n", 1, true), r.out)
  end)

  it("pm cleardump empties the saved list: pm resurrect then starts nothing", function()
    ok(H.pm("start", sleeper(), "-s"))
    ok(H.pm("save"))
    assert.equal(1, #H.read_json(H.home .. "/dump.json"))
    ok(H.pm("cleardump"))
    assert.same({}, H.read_json(H.home .. "/dump.json"))
    ok(H.pm("delete", "all", "-s"))
    ok(H.pm("resurrect"))
    assert.same({}, H.jlist())
  end)

  it("pm report: versions, PM_HOME, the daemon, pm.log's and each errored app's last lines", function()
    local r = ok(H.pm("report"))
    assert.is_truthy(r.out:find("PM_HOME +" .. H.home:gsub("%p", "%%%0")), r.out)
    assert.is_truthy(r.out:find("daemon +not running"), r.out)
    assert.is_nil(H.daemon_pid(), "pm report starts no daemon")
    local crash = H.script("crash.sh", "#!/bin/sh\necho 'boom: no config' >&2\nexit 3\n")
    ok(H.pm("start", crash, "--max-restarts", "1", "--min-uptime", "5000", "-s"))
    ok(H.pm("start", sleeper(), "-s"))
    H.wait_for(function() return H.status("crash") == "errored" end, 5000, "crash errored")
    r = ok(H.pm("report"))
    assert.is_truthy(r.out:find("pm +" .. util.VERSION, 1), r.out)
    assert.is_truthy(r.out:find("daemon +running, pid " .. H.daemon_pid()), r.out)
    assert.is_truthy(r.out:find("daemon " .. H.daemon_pid() .. " ready", 1, true), "pm.log's lines: " .. r.out)
    assert.is_truthy(r.out:find("errored app crash", 1, true), r.out)
    assert.is_truthy(r.out:find("\nboom: no config\n", 1, true), r.out)
    assert.is_nil(r.out:find("errored app app", 1, true), "only errored apps' logs: " .. r.out)
    online(H.proc("app"))
  end)
end)

describe("PM2's list words and its module installer", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm ps, pm ls --sort name:desc, pm ls -m and --no-color; a bad --sort is one line", function()
    for _, n in ipairs({ "beta", "alpha", "gamma" }) do
      ok(H.pm("start", "/bin/sleep", "--name", n, "-s", "--", "1000"))
    end
    local function order(text, names)
      local at = {}
      for _, n in ipairs(names) do at[#at + 1] = assert(text:find(n, 1, true), n .. " in " .. text) end
      for i = 2, #at do assert.is_true(at[i - 1] < at[i], text) end
    end
    order(ok(H.pm("ps")).out, { "beta", "alpha", "gamma" })
    order(ok(H.pm("ls", "--sort", "name:desc")).out, { "gamma", "beta", "alpha" })
    order(ok(H.pm("ls", "--sort", "name")).out, { "alpha", "beta", "gamma" })
    local m = ok(H.pm("ls", "-m")).out
    order(m, { "+--- beta", "+--- alpha", "+--- gamma" })
    assert.truthy(m:find("\nstatus : online\n", 1, true), m)
    local plain = ok(H.pm("ls", "--no-color")).out
    assert.is_nil(plain:find("\27", 1, true))
    fails(H.pm("ls", "--sort", "color"), "--sort", "color")
  end)

  it("pm install pm2-logrotate says it is built in (exit 0); another module: one line, exit 1", function()
    local r = ok(H.pm("install", "pm2-logrotate"))
    assert.truthy(r.out:find("built into pm", 1, true), r.out)
    fails(H.pm("install", "pm2-server-monit"), "pm2-server-monit", "no PM2 modules")
  end)
end)

describe("pm trigger (PM2's, with @pm2/io's actions)", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("calls an action each instance registered and prints each answer; an unknown action is one line", function()
    local core = require "pm.core"
    if not (core.access("/usr/bin/node", "x") or core.access("/usr/local/bin/node", "x")) then
      return pending("needs node")
    end
    -- what @pm2/io's io.action('km', fn) sends and answers, by hand
    local app = H.script("act.js", [[
process.send({ type: 'axm:action', data: { action_name: 'km', opts: false, arity: 1 } });
process.on('message', (m) => {
  const name = typeof m === 'string' ? m : m && m.msg;
  if (name !== 'km') return;
  process.send({ type: 'axm:reply', data: { return: { pid: process.pid, opts: m.opts || null }, action_name: 'km' } });
});
setInterval(() => {}, 1000);
]], "644")
    ok(H.pm("start", app, "-i", "2", "-s"))
    local procs = H.named("act")
    H.wait_for(function()
      local r = H.pm("trigger", "act", "km")
      return r.code == 0 and r.out:find("2 processes received", 1, true)
    end, 15000, "the action registered by both instances")
    local r = ok(H.pm("trigger", "act", "km", "10"))
    assert.truthy(r.out:find("2 processes received the action km", 1, true), r.out)
    for _, p in ipairs(procs) do
      assert.truthy(r.out:find(("[act:%d:default]={\"pid\":%d,\"opts\":\"10\"}"):format(p.pm_id, p.pid), 1, true)
        or r.out:find(("[act:%d:default]={\"opts\":\"10\",\"pid\":%d}"):format(p.pm_id, p.pid), 1, true), r.out)
    end
    -- the Lua API: the answers by pm_id
    local lua = ok(H.pm("-e", "local a = assert(pm.trigger('act', 'km', 'lua')); "
      .. "return #a, a[1].process.pm_id, a[1].data.opts, a[2].data.pid"))
    assert.equal(('2, %d, "lua", %d\n'):format(procs[1].pm_id, procs[2].pid), lua.out)
    -- PM2's pm2_env.axm_actions and node_args
    local e = H.proc("act").pm2_env
    assert.same({ { action_name = "km" } }, e.axm_actions)
    assert.same({}, e.node_args)
    fails(H.pm("trigger", "act", "nope"), "no process of act has the action nope")
    fails(H.pm("trigger", "ghost", "km"), "ghost")
  end)
end)
