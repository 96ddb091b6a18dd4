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
      write(file, ("local c = require %q\n"
        .. "return { apps = { { name = 'x', script = '/bin/sleep', args = { '1000' } } } }\n")
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

  it("the worked example: ecosystem/ecosystem.lua and ecosystem.shared.lua share common.lua and demo.env", function()
    local ex = H.src .. "/ecosystem"
    ok(H.pm("start", ex .. "/ecosystem.lua", "-s", { env = { DEPLOY_TAG = "v42" } }))
    ok(H.pm("start", ex .. "/ecosystem.shared.lua", "-s", { env = { DEPLOY_TAG = "v43" } }))
    local list = H.jlist()
    assert.is_truthy(#list >= 4)
    for _, p in ipairs(list) do
      H.online(p, p.name)
      local env = p.pm2_env.env
      assert.equal("hello from pm", env.GREETING, p.name)
      assert.equal(p.name == "queue-worker" and "v43" or "v42", env.RELEASE, p.name)
      assert.equal(p.name == "web" and "debug" or "info", env.LOG_LEVEL, p.name)
    end
    local qw = H.proc("queue-worker").pm2_env.env
    assert.equal("jobs", qw.QUEUE)
    assert.equal("hello from pm (v43)", qw.BANNER)
    assert.equal(8000, H.proc("web").pm2_env.env.PORT) -- (given as a number)
  end)

  it("pm resurrect reads a file again for its hooks only when the modules it requires are trusted too", function()
    local user = require("pm.util").passwd("cloudsdk") or require("pm.util").passwd("nobody")
    if core.getuid() ~= 0 or not user then return pending("needs root and a user cloudsdk (or nobody)") end
    local dir = H.home .. "/conf"
    core.mkdir(dir, 493)
    write(dir .. "/common.lua", "return { hook = function() return 'stop' end }\n")
    local file = write(dir .. "/ecosystem.lua", [[
local c = require "common"
return { apps = { { name = "m", script = "/bin/sleep", args = { "1000" }, on_exit = c.hook } } }
]])
    ok(H.pm("start", file, "-s"))
    ok(H.pm("save"))
    ok(H.pm("kill"))
    -- the module is given to another user: it could have rewritten it since
    os.execute(("chown %d %s"):format(user.uid, H.shquote(dir .. "/common.lua")))
    ok(H.pm("resurrect"))
    H.online(H.proc("m"))
    H.wait_for(function() return H.pm_log():find("is not trusted", 1, true) end, 5000, "the warning")
    assert.is_truthy(H.pm_log():find("require 'common': " .. dir .. "/common.lua is not trusted", 1, true))
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
