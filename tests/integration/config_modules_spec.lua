-- Issue 20, item 2: `require "common"` in an ecosystem.lua: Lua files
-- beside the file (and in its subfolders), loaded into the same sandbox
-- with the same limits, source only, once per evaluation; an error in a
-- module names the module's file and line.
local H = require "pmtest"
local core = require "pm.core"

local ok, fails, write = H.ok, H.fails, H.write

local function names()
  local t = {}
  for _, p in ipairs(H.jlist()) do t[#t + 1] = p.name end
  table.sort(t)
  return table.concat(t, ",")
end

describe("require in an ecosystem file", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("a module shared by two ecosystem files (and one of a subfolder), loaded once per evaluation", function()
    local dir = H.home .. "/conf"
    core.mkdir(dir, 493)
    core.mkdir(dir .. "/lib", 493)
    write(dir .. "/common.lua", [[
local loads = (loads_seen or 0) + 1
loads_seen = loads
local M = { region = "eu-" .. require("lib.names").suffix, loads = function() return loads_seen end }
function M.sleeper(name, extra)
  local a = { name = name, script = "/bin/sleep", args = { "1000" }, env = { REGION = M.region } }
  for k, v in pairs(extra or {}) do a.env[k] = v end
  return a
end
return M
]])
    write(dir .. "/lib/names.lua", 'return { suffix = "west" }\n')
    write(dir .. "/api.config.lua", [[
local common = require "common"
local again = require "common"
assert(common == again, "a second require gives the same module")
return { apps = { common.sleeper("api", { LOADS = tostring(common.loads()) }) } }
]])
    write(dir .. "/worker.config.lua", [[
local common = require "common"
return { apps = { common.sleeper("worker", { LOADS = tostring(common.loads()) }) } }
]])
    ok(H.pm("start", dir .. "/api.config.lua", "-s"))
    ok(H.pm("start", dir .. "/worker.config.lua", "-s"))
    assert.equal("api,worker", names())
    for _, n in ipairs({ "api", "worker" }) do
      local env = H.proc(n).pm2_env.env
      assert.equal("eu-west", env.REGION)
      assert.equal("1", env.LOADS) -- once per evaluation, a fresh sandbox each time
    end
  end)

  it("an error in a module names the module's file and line; nothing starts", function()
    write(H.home .. "/common.lua", "local M = {}\n\nerror('no region configured')\nreturn M\n")
    local file = write(H.home .. "/ecosystem.lua", [[
local c = require "common"
return { apps = { { name = "x", script = "/bin/sleep", args = { "1000" } } } }
]])
    fails(H.pm("start", file, "-s"), H.home .. "/common.lua:3: no region configured")
    write(H.home .. "/common.lua", "local M = {\n  x = ,\n}\nreturn M\n")
    fails(H.pm("start", file, "-s"), H.home .. "/common.lua:2:")
    assert.equal("", names())
  end)

  it("refuses bytecode, modules outside the file's folder, C modules and loops", function()
    local file = H.home .. "/ecosystem.lua"
    local function eco(req)
      write(file, ("local c = require %q\nreturn { apps = { { name = 'x', script = '/bin/sleep', args = { '1000' } } } }\n")
        :format(req))
    end
    -- bytecode: string.dump is not in the sandbox; made here, with luajit -b
    write(H.home .. "/src.lua", "return {}\n")
    local r = H.sh("luajit -b " .. H.shquote(H.home .. "/src.lua") .. " " .. H.shquote(H.home .. "/bc.lua"))
    if r.code == 0 then
      eco("bc")
      fails(H.pm("start", file, "-s"), "bytecode")
    end
    eco("../etc/passwd")
    fails(H.pm("start", file, "-s"), "a module of the file's folder expected")
    eco("/etc/passwd")
    fails(H.pm("start", file, "-s"), "a module of the file's folder expected")
    -- a link that leads out of the folder
    local outside = H.home .. "/../" .. H.home:match("[^/]+$") .. "-outside.lua"
    write(outside, "return {}\n")
    os.execute("ln -s " .. H.shquote(outside) .. " " .. H.shquote(H.home .. "/out.lua"))
    eco("out")
    local r2 = H.pm("start", file, "-s")
    os.remove(outside)
    fails(r2, "leads outside the file's folder")
    eco("cjson")
    fails(H.pm("start", file, "-s"), "require 'cjson': no cjson.lua")
    write(H.home .. "/loop.lua", "return require 'loop'\n")
    eco("loop")
    fails(H.pm("start", file, "-s"), "a loop")
    assert.equal("", names())
  end)

  it("a module runs under the file's limits: an endless loop in it is cut off", function()
    write(H.home .. "/spin.lua", "while true do end\n")
    local file = write(H.home .. "/ecosystem.lua", [[
require "spin"
return { apps = { { name = "x", script = "/bin/sleep", args = { "1000" } } } }
]])
    fails(H.pm("start", file, "-s"), "cut off")
    ok(H.pm("ping"))
  end)
end)
