-- Issue 16 item 15 (its ecosystem part): `pm init` / `pm ecosystem` write a
-- commented starter ecosystem.lua in the current directory (never over an
-- existing file); `--json` writes PM2's shape as JSON. Both start as they
-- are once the script they name exists.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local ok, fails = H.ok, H.fails

local NODE = core.access("/usr/bin/node", "x") or core.access("/usr/local/bin/node", "x")

local function env_of(pid)
  return H.wait_for(function()
    local e = H.environ(pid)
    return e and e.PM_APP_UID and e
  end, 5000, "the environment of " .. tostring(pid))
end

describe("pm init", function()
  local dir
  before_each(function()
    H.new_home()
    dir = H.home .. "/proj"
    assert(core.mkdir(dir, 493))
  end)
  after_each(function() H.cleanup() end)

  it("writes a commented ecosystem.lua here that starts as it is (--env production too)", function()
    local r = ok(H.pm("init", { cwd = dir }))
    assert.is_truthy(r.out:find(dir .. "/ecosystem.lua", 1, true), r.out)
    local text = assert(util.read_file(dir .. "/ecosystem.lua"))
    assert.is_truthy(text:find("^%-%- "), "it opens with a comment")
    assert.is_truthy(text:find("env_production", 1, true))
    assert.is_truthy(text:find("-- hooks = {", 1, true), "hooks shown, commented out")
    assert(loadstring(text, "ecosystem.lua"), "valid Lua")
    if not NODE then pending("node is not installed (the starter names app.js)") return end
    H.write(dir .. "/app.js", "setInterval(() => {}, 1000)\n")
    ok(H.pm("start", "ecosystem.lua", "--env", "production", "-s", { cwd = dir }))
    local p = H.online(H.proc("app"))
    assert.equal("production", env_of(p.pid).NODE_ENV)
    assert.equal(dir, p.pm2_env.pm_cwd)
  end)

  it("refuses to overwrite a file, which stays as it was", function()
    H.write(dir .. "/ecosystem.lua", "-- mine\n")
    fails(H.pm("init", { cwd = dir }), "exists", "does not overwrite")
    assert.equal("-- mine\n", util.read_file(dir .. "/ecosystem.lua"))
    fails(H.pm("ecosystem", { cwd = dir }), "exists")
    assert.equal("-- mine\n", util.read_file(dir .. "/ecosystem.lua"))
  end)

  it("pm ecosystem --json writes PM2's shape (apps of name and script) as ecosystem.json", function()
    ok(H.pm("ecosystem", "--json", { cwd = dir }))
    local v = assert(H.read_json(dir .. "/ecosystem.json"))
    assert.equal("table", type(v.apps))
    assert.equal("app", v.apps[1].name)
    assert.equal("app.js", v.apps[1].script)
    fails(H.pm("init", "--json", { cwd = dir }), "exists")
    ok(H.pm("init", "simple", { cwd = dir }))
    assert.is_truthy(core.stat(dir .. "/ecosystem.lua"))
    if not NODE then return end
    H.write(dir .. "/app.js", "setInterval(() => {}, 1000)\n")
    ok(H.pm("start", "ecosystem.json", "-s", { cwd = dir }))
    H.online(H.proc("app"))
  end)
end)
