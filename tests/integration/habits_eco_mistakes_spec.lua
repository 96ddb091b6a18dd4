-- Issue 16 item 13 (its ecosystem part): mistakes said out loud, each as
-- one line, nothing started. --env on a plain script, --env NAME when the
-- file has another section, a misspelt top-level key, a JavaScript
-- function in a .config.js, a JSON error's line:column.
local H = require "pmtest"
local core = require "pm.core"

local ok, fails, write = H.ok, H.fails, H.write

local NODE = core.access("/usr/bin/node", "x") or core.access("/usr/local/bin/node", "x")

describe("mistakes with ecosystem files", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm start app.sh --env production: no ecosystem file, refused, nothing started", function()
    H.script("app.sh", "#!/bin/sh\nexec sleep 1000\n")
    fails(H.pm("start", "app.sh", "--env", "production", { cwd = H.home }),
      "--env production", "'app.sh' is not an ecosystem file")
    assert.equal(0, #H.jlist())
    -- nor on a known name
    ok(H.pm("start", "app.sh", "-s", { cwd = H.home }))
    local pid = H.proc("app").pid
    fails(H.pm("start", "app", "--env", "production"), "not an ecosystem file")
    assert.equal(pid, H.proc("app").pid)
  end)

  it("--env prod when the file has env_production names what it has", function()
    local file = H.lua_eco([[{
      { name = "a", script = "/bin/sleep", args = { "1000" }, env_production = { X = "1" }, env_staging = { X = "2" } },
    }]])
    fails(H.pm("start", file, "--env", "prod"), "--env prod", "env_prod",
      "the file has env_production, env_staging")
    assert.equal(0, #H.jlist())
    ok(H.pm("start", file, "--env", "production", "-s"))
    fails(H.pm("restart", file, "--env", "prod"), "env_production")
    assert.equal(0, H.proc("a").pm2_env.restart_time)
  end)

  it("an unknown top-level key: did you mean hooks?", function()
    local file = H.write(H.home .. "/ecosystem.config.lua", [[
return {
  apps = { { name = "a", script = "/bin/sleep", args = { "1000" } } },
  hoooks = { on_exit = function() return "stop" end },
}
]])
    fails(H.pm("start", file), "unknown top-level key 'hoooks'", "did you mean 'hooks'?")
    write(H.home .. "/ecosystem.json", '{ "apps": [ { "name": "a", "script": "/bin/sleep" } ], "ap": 1 }')
    fails(H.pm("start", H.home .. "/ecosystem.json"), "unknown top-level key 'ap'", "did you mean 'apps'?")
    assert.equal(0, #H.jlist())
  end)

  it("a JavaScript function in a .config.js: hooks are Lua, said instead of dropped", function()
    if not NODE then pending("node is not installed") return end
    write(H.home .. "/ecosystem.config.js", [[
module.exports = {
  apps: [{
    name: "api", script: "/bin/sleep", args: ["1000"],
    on_exit: function (proc, exit) { return "stop" },
  }],
}
]])
    fails(H.pm("start", "ecosystem.config.js", { cwd = H.home }),
      "app 'api': on_exit is a JavaScript function", "Lua", "ecosystem.lua")
    assert.equal(0, #H.jlist())
  end)

  it("a .config.js error gives line:column", function()
    if not NODE then pending("node is not installed") return end
    write(H.home .. "/ecosystem.config.js", "module.exports = {\n  apps: [{ name: 'a' script: 'x' }],\n}\n")
    fails(H.pm("start", "ecosystem.config.js", { cwd = H.home }),
      H.home .. "/ecosystem.config.js:2:22: SyntaxError")
  end)

  it("a JSON error gives line:column", function()
    write(H.home .. "/ecosystem.json",
      '{\n  "apps": [\n    { "name": "a", "script": "/bin/sleep", }\n  ]\n  "x": 1\n}\n')
    ok(H.pm("ping"))
    -- without node, the JSON parser's own position
    fails(H.pm("start", "ecosystem.json", { cwd = H.home, env = { PATH = "/nonexistent-pm-path" } }),
      H.home .. "/ecosystem.json:3:44: ")
    if NODE then
      -- with node, read as PM2 does (the trailing comma passes), the missing comma is found
      fails(H.pm("start", "ecosystem.json", { cwd = H.home }), H.home .. "/ecosystem.json:5:3: SyntaxError")
    end
    assert.equal(0, #H.jlist())
  end)
end)
