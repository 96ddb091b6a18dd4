-- What an ecosystem file reads (lua/pm/ecosystem.lua): env_file lists in
-- order, "-" optional, env over them; the sandbox's os.getenv, require and
-- read-only helpers (lua/pm/hooks.lua) without a daemon.
local core = require "pm.core"
local util = require "pm.util"
local ecosystem = require "pm.ecosystem"

local TMP = (os.getenv("PM_SRC") or core.getcwd()) .. "/tests/tmp"

local function tmpdir()
  core.mkdir(TMP, 493)
  local p = io.popen("mktemp -d " .. TMP .. "/cfg.XXXXXX")
  local d = p:read("*l")
  p:close()
  return d
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

describe("env_file", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("later files over earlier ones, env over both, '-' optional, paths made absolute", function()
    write(dir .. "/a.env", "A=1\nB=1\n")
    write(dir .. "/b.env", "B=2\nC=2\n")
    local raw = { name = "x", env_file = { "a.env", "-missing.env", "b.env" }, env = { C = "env", D = false } }
    assert.is_true(ecosystem.apply_env_file(raw, dir))
    assert.same({ A = "1", B = "2", C = "env", D = false }, raw.env)
    assert.same({ dir .. "/a.env", "-" .. dir .. "/missing.env", dir .. "/b.env" }, raw.env_file)
  end)

  it("a missing file, a bad line, a bad value are errors", function()
    local ok, err = ecosystem.apply_env_file({ env_file = "nope.env" }, dir)
    assert.is_nil(ok)
    assert.equal("env_file " .. dir .. "/nope.env: no such file", err)
    write(dir .. "/bad.env", "A=1\n=2\n")
    ok, err = ecosystem.apply_env_file({ envFile = "bad.env" }, dir)
    assert.is_nil(ok)
    assert.equal(dir .. "/bad.env:2: not a variable name before '=' (letters, digits, _ . -)", err)
    ok, err = ecosystem.apply_env_file({ env_file = { 3 } }, dir)
    assert.is_nil(ok)
    assert.equal("env_file must be a path or a list of paths", err)
    ok = ecosystem.apply_env_file({ env_file = util.null }, dir)
    assert.is_true(ok)
  end)
end)

describe("an ecosystem.lua's sandbox", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("os.getenv is the given environment's only; require and pm.* read beside the file", function()
    core.mkdir(dir .. "/lib", 493)
    write(dir .. "/lib/m.lua", "return { v = os.getenv('ONLY') }\n")
    write(dir .. "/d.json", '{"n": 2}')
    local file = write(dir .. "/ecosystem.lua", [[
local m = require "lib.m"
return { { name = "x", script = "/bin/sleep",
  env = { V = m.v, HOME_SEEN = tostring(os.getenv("HOME")), N = pm.json("d.json").n } } }
]])
    local decls = assert(ecosystem.load(file, { environ = { ONLY = "yes" } }))
    assert.equal("yes", decls[1].env.V)
    assert.equal("nil", decls[1].env.HOME_SEEN) -- (the daemon's HOME is not the caller's)
    assert.equal("2", decls[1].env.N)
  end)
end)
