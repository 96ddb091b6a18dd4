-- Issue 16, what the merge of its parts left: a bare `pm start` starts the
-- directory's ecosystem file (PM2's ecosystem.config.js), an app's PWD is
-- its cwd (PM2 sets it), a typo of two swapped letters names the verb.
local H = require "pmtest"
local core = require "pm.core"

local ok, fails = H.ok, H.fails

describe("PM2 habits", function()
  local dir
  before_each(function()
    H.new_home()
    dir = H.home .. "/proj"
    assert(core.mkdir(dir, 493))
  end)
  after_each(function() H.cleanup() end)

  it("a bare `pm start` starts ecosystem.config.js of the directory; with none, one line and no daemon", function()
    local r = fails(H.pm("start", { cwd = dir }), "no ecosystem")
    assert.equal(1, H.count(r.err, "\n"), r.err)
    assert.is_nil(H.daemon_pid(H.home), "no daemon started for nothing")
    H.write(dir .. "/ecosystem.config.js",
      "module.exports = { apps: [{ name: 'web', script: 'sleep', args: '300', interpreter: 'none' }] }\n")
    if not (core.access("/usr/bin/node", "x") or core.access("/usr/local/bin/node", "x")) then
      pending("node is not installed (a .config.js is read by node)")
      return
    end
    ok(H.pm("start", "-s", { cwd = dir }))
    H.online(H.proc("web"))
  end)

  it("an app's PWD is its cwd (not the caller's PWD); an env PWD of its own wins", function()
    local sub = dir .. "/sub"
    assert(core.mkdir(sub, 493))
    ok(H.pm("start", "sleep", "--name", "a", "--cwd", sub, "-s", "--", "300", { cwd = dir }))
    local p = H.online(H.proc("a"))
    local e = H.wait_for(function() return H.environ(p.pid) end, 5000, "a's environment")
    assert.equal(sub, e.PWD)
    local file = H.lua_eco('{ { name = "b", script = "sleep", args = { "300" }, env = { PWD = "/tmp" } } }')
    ok(H.pm("start", file, "-s"))
    p = H.online(H.proc("b"))
    e = H.wait_for(function() return H.environ(p.pid) end, 5000, "b's environment")
    assert.equal("/tmp", e.PWD)
  end)

  it("a typo of two swapped letters names the verb, never a hidden alias", function()
    local r = fails(H.pm("lsit"))
    assert.is_truthy(r.err:find("'list'", 1, true), r.err)
    r = fails(H.pm("strat"))
    assert.is_truthy(r.err:find("'start'", 1, true), r.err)
    r = fails(H.pm("stauts"))
    assert.is_truthy(r.err:find("'status'", 1, true), r.err)
  end)

  it("pm -e prints what the chunk returns (a failure's nil, err too, exit 1)", function()
    local r = ok(H.pm("-e", "return 1+1"))
    assert.equal("2\n", r.out)
    r = H.pm("-e", "return pm.stop('nosuch')")
    assert.equal(1, r.code)
    assert.is_truthy(r.out:find('nil, "process or namespace not found: nosuch"', 1, true), r.out)
    r = ok(H.pm("-e", "print('x')"))
    assert.equal("x\n", r.out)
  end)

  it("bus.on with the JavaScript's dot says so instead of subscribing to nothing", function()
    local r = fails(H.pm("-e", "local bus = pm.launchBus(); bus.on('process:msg', print)"))
    assert.is_truthy(r.err:find("bus:on(event, fn)", 1, true), r.err)
  end)

  it("pm describe shows the exec mode and what is watched (not a table's address)", function()
    ok(H.pm("start", "sleep", "--name", "w", "--watch", dir, "-s", "--", "300", { cwd = dir }))
    H.online(H.proc("w"))
    local r = ok(H.pm("describe", "w"))
    assert.is_falsy(r.out:find("table: 0x", 1, true), r.out)
    assert.is_truthy(r.out:find("exec mode%s+fork_mode"), r.out)
    assert.is_truthy(r.out:find("watch%s+" .. dir:gsub("%p", "%%%0")), r.out)
  end)

  it("pm logs: a line followed carries its app's log_date_format prefix, as in the file", function()
    local s = H.script("say.sh", "#!/bin/sh\nwhile :; do echo tick; sleep 0.1; done\n")
    ok(H.pm("start", s, "--name", "dated", "--log-date-format", "YYYY@MM", "-s"))
    local r = H.sh("timeout 3 " .. H.shquote(H.bin) .. " logs dated --lines 0 --out")
    local year = os.date("%Y@%m")
    local n = 0
    for line in r.out:gmatch("[^\n]+") do
      if line:find("tick", 1, true) then
        n = n + 1
        assert.is_truthy(line:find("|dated|" .. year .. ": tick", 1, true), line)
      end
    end
    assert.is_true(n > 0, "lines followed: " .. r.out)
  end)

  it("the console has every public function of the client bare", function()
    local r = ok(H.pm("console", { stdin = "return type(wait_for), type(step), type(fd), type(startOrReload)\n" }))
    assert.equal('"function", "function", "function", "function"\n', r.out)
  end)
end)
