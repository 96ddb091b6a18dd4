-- Issue 16 items 1, 6, 13 without a daemon: what app.normalize makes of
-- the default cwd and of a script with spaces, where a JSON error is
-- (line:column), how YAML scalars read (YAML 1.2, as js-yaml), and the
-- top-level keys a file may have.
local core = require "pm.core"
local util = require "pm.util"
local appdecl = require "pm.app"
local ecosystem = require "pm.ecosystem"

local TMP = (os.getenv("PM_SRC") or core.getcwd()) .. "/tests/tmp"

describe("app.normalize", function()
  it("refuses an attribute of any kind that holds what JSON cannot (a function, a NUL name), in one line", function()
    for _, bad in ipairs({ { f = function() end }, { ["\0pm:[]\0"] = 1 }, { deep = { io.stdout } } }) do
      local d, err = appdecl.normalize({ script = "/bin/sleep", name = "odd", options = bad },
        { base = "/tmp", environ = {} })
      assert.is_nil(d)
      assert.matches("^app 'odd': attribute 'options' holds ", err)
      assert.is_nil(err:find("\n"))
    end
    assert(appdecl.normalize({ script = "/bin/sleep", options = { a = { 1, "x", true }, b = util.null } },
      { base = "/tmp", environ = {} }))
  end)

  it("the default cwd is ctx.cwd (the caller's), else base; never the script's folder", function()
    local d = assert(appdecl.normalize({ script = "/bin/sleep" }, { base = "/usr", cwd = "/tmp", environ = {} }))
    assert.equal("/tmp", d.cwd)
    d = assert(appdecl.normalize({ script = "/bin/sleep" }, { base = "/usr", environ = {} }))
    assert.equal("/usr", d.cwd)
    d = assert(appdecl.normalize({ script = "/bin/sleep", cwd = "lib" },
      { base = "/usr", cwd = "/tmp", environ = {} }))
    assert.equal("/usr/lib", d.cwd, "a relative cwd is relative to base")
  end)

  it("a script with spaces is bash -c LINE, named after it; arguments follow as \"$@\"", function()
    local env = { PATH = os.getenv("PATH") }
    local d = assert(appdecl.normalize({ script = "npm run start" }, { base = "/tmp", environ = env }))
    assert.equal("bash", util.basename(d.script))
    assert.same({ "-c", "npm run start" }, d.args)
    assert.equal("npm run start", d.name)
    assert.equal("none", d.interpreter)
    d = assert(appdecl.normalize({ script = " echo x ", name = "e", args = { "a b" } },
      { base = "/tmp", environ = env }))
    assert.same({ "-c", ' echo x  "$@"', "e", "a b" }, d.args)
    -- normalized again (a resurrect), it stays what it is
    local again = assert(appdecl.normalize({ script = d.script, args = d.args, name = d.name, cwd = d.cwd },
      { base = d.cwd, environ = env }))
    assert.same(d.args, again.args)
    assert.equal(d.script, again.script)
  end)
end)

describe("ecosystem files", function()
  it("a JSON error's position is line:column, its tokens named", function()
    local text = '{\n  "apps": [\n    { "a": 1, }\n  ]\n}'
    local _, err = util.decode(text)
    assert.equal("3:15: Expected object key string but found '}'", ecosystem.json_error(text, err))
    _, err = util.decode("")
    assert.equal("1:1: Expected value but found the end of the file", ecosystem.json_error("", err))
  end)

  it("YAML scalars read as YAML 1.2 (js-yaml, PM2): yes and on are strings, ~ is null", function()
    if not pcall(require, "lyaml") then pending("lua-yaml is not installed") return end
    core.mkdir(TMP, 493)
    local path = TMP .. "/unit-eco-" .. core.getpid() .. ".yml"
    local f = assert(io.open(path, "w"))
    f:write("apps:\n  - name: y\n    script: /bin/sleep\n    env: { A: yes, B: on, C: 42, D: 1.5, E: ~, "
      .. "F: true, G: 0x1f, H: '007', I: 010 }\n")
    f:close()
    local res, err = ecosystem.read(path)
    os.remove(path)
    assert(res, err)
    local env = res.apps[1].env
    assert.equal("yes", env.A)
    assert.equal("on", env.B)
    assert.equal(42, env.C)
    assert.equal(1.5, env.D)
    assert.equal("null", env.E) -- (a PM2 file's env null is the text, as under PM2)
    assert.equal(true, env.F)
    assert.equal(31, env.G)
    assert.equal("007", env.H)
    assert.equal(10, env.I)
  end)

  it("top-level keys: apps, hooks, deploy; anything else names the closest", function()
    assert(ecosystem.shape("f", { apps = {}, deploy = { production = {} } }))
    local _, err = ecosystem.shape("f", { apps = {}, hoooks = {} })
    assert.equal("f: unknown top-level key 'hoooks' - did you mean 'hooks'? (a file declares apps, hooks)", err)
    _, err = ecosystem.shape("f", { { script = "x" }, extra = 1 })
    assert.is_truthy(err:find("unknown top-level key 'extra'", 1, true))
    _, err = ecosystem.shape("f", { apps = {}, hooks = 3 })
    assert.equal("f: hooks must be a table of functions", err)
  end)

  it("--env NAME no app declares names the sections the apps have", function()
    -- (owner false: a root's file, as M.read decides before it reads one)
    local res = { apps = { { name = "a", script = "/bin/sleep", env_production = { X = "1" } } }, owner = false }
    local _, err = ecosystem.check("f.lua", res, { env_name = "prod", environ = {} })
    assert.equal("f.lua: --env prod: no app declares env_prod (the file has env_production)", err)
    assert(ecosystem.check("f.lua", res, { env_name = "production", environ = {} }))
  end)
end)
