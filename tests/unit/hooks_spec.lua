-- Lua hooks: the sandbox, the limits (time, memory, C functions), the
-- results and the decisions. What could hang this process if pm's limits
-- failed runs in a child luajit under `timeout`, so such a test fails
-- instead of hanging the suite.
local hooks = require "pm.hooks"
local log = require "pm.log"

local SRC = os.getenv("PM_SRC") or "."

local temp_files = {}

-- Writes a hook file and returns its path.
local function write(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  temp_files[#temp_files + 1] = path
  return path
end

-- Loads a file that returns a hook; returns the hook and the file's path.
local function hook_of(text)
  local path = write(text)
  local chunk = assert(hooks.loadfile(path))
  local ok, fn = hooks.run(chunk)
  assert(ok, fn)
  return fn, path
end

-- The same for a hook body: `return function(...) <body> end`.
local function hook(body)
  return hook_of("return function(...)\n" .. body .. "\nend\n")
end

local CHILD = [=[
local src = os.getenv("PM_SRC") or "."
package.path = src .. "/lua/?.lua;" .. package.path
package.cpath = src .. "/lib/?.so;" .. package.cpath
local hooks = require "pm.hooks"
local core = require "pm.core"
local function hwm()
  for l in io.lines("/proc/self/status") do
    local v = l:match("^VmHWM:%s*(%d+)")
    if v then return tonumber(v) end
  end
  return 0
end
if os.getenv("HK_TIME_LIMIT") then hooks.TIME_LIMIT = tonumber(os.getenv("HK_TIME_LIMIT")) end
local chunk = assert(hooks.loadfile(arg[1]))
local fn = chunk
if os.getenv("HK_TOP") == nil then
  local ok
  ok, fn = hooks.run(chunk)
  assert(ok, fn)
end
collectgarbage()
local h0 = hwm()
local t0 = core.mono()
local r = { hooks.run(fn) }
local ms = core.mono() - t0
local mb = (hwm() - h0) / 1024
io.stdout:write(("ran=true\nok=%s\nms=%.3f\nmb=%.1f\n"):format(tostring(r[1]), ms, mb))
io.stdout:write("msg=", (tostring(r[2]):gsub("\n", " | ")), "\n")
io.stdout:flush()
-- normal Lua runs again: no count hook left, string.rep and patterns unbounded
local n = 0
for i = 1, 2e6 do n = n + i % 3 end
io.stdout:write(("hook_left=%s\nrep=%d\nfind=%s\nloop=%d\n"):format(tostring(debug.gethook() ~= nil),
  #string.rep("ab", 2 ^ 20), tostring(string.rep("a", 200000):find("b") == nil), n))
io.stdout:flush()
if os.getenv("HK_DECIDE") then
  t0 = core.mono()
  local d, err = hooks.decision(r[2])
  io.stdout:write(("decided=true\ndecide_ms=%.3f\ndecision=%s\n"):format(core.mono() - t0,
    tostring(d and d.action or err)))
end
]=]

--[[ Runs the hook of `text` (a file returning a function, or with opts.top
the file's top level itself) in a child luajit, killed after opts.timeout
seconds (5), with at most 3 GB of address space. Returns the fields it
printed: ran, ok, ms, mb (peak RSS growth during the call), msg, hook_left,
rep, find, loop, decided, decide_ms, decision. ]]
local function in_child(text, opts)
  opts = opts or {}
  local path = write(text)
  local script = write(CHILD)
  local env = "PM_SRC=" .. SRC
  if opts.time_limit then env = env .. " HK_TIME_LIMIT=" .. opts.time_limit end
  if opts.top then env = env .. " HK_TOP=1" end
  if opts.decide then env = env .. " HK_DECIDE=1" end
  local cmd = ("ulimit -v 3000000; %s timeout -s KILL %d luajit %s %s 2>&1"):format(env,
    opts.timeout or 5, script, path)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  local res = { raw = out }
  for k, v in out:gmatch("([%w_]+)=([^\n]*)") do
    if v == "true" then v = true elseif v == "false" then v = false elseif tonumber(v) then v = tonumber(v) end
    if res[k] == nil then res[k] = v end
  end
  return res
end

-- the child's hook was stopped, quickly, and the child went on normally
local function assert_cut_off(res, limit_ms)
  assert.is_true(res.ran, "the hook never returned (the child was killed after its timeout): " .. res.raw)
  assert.is_false(res.ok, "the hook was not stopped: " .. res.raw)
  assert.is_true(res.ms < (limit_ms or 500), ("stopped only after %s ms"):format(tostring(res.ms)))
  assert.is_false(res.hook_left, "a count hook was left behind")
  assert.equal(2 ^ 21, res.rep)
  assert.is_true(res.find)
end

local function body_file(body)
  return "return function(...)\n" .. body .. "\nend\n"
end

teardown(function()
  for _, p in ipairs(temp_files) do os.remove(p) end
end)

describe("hooks.loadfile", function()
  it("loads an ecosystem file whose hooks then run", function()
    local fn = hook_of([[
return { apps = { { name = "a", on_exit = function(proc, exit)
  if exit.code == 3 then return "stop" end
  return proc.name .. ":" .. exit.code
end } } }
]])
    assert.is_table(fn.apps)
    local on_exit = fn.apps[1].on_exit
    assert.same({ true, "stop" }, { hooks.run(on_exit, { name = "a" }, { code = 3 }) })
    assert.same({ true, "a:1" }, { hooks.run(on_exit, { name = "a" }, { code = 1 }) })
  end)

  it("gives file:line for a syntax error", function()
    local path = write("return {\n  apps = {\n    { name = 'x' script = 'y' },\n  }\n}\n")
    local chunk, err = hooks.loadfile(path)
    assert.is_nil(chunk)
    assert.truthy(err:find(path .. ":3:", 1, true), err)
  end)

  it("refuses a bytecode file", function()
    local path = write(string.dump(function() return { apps = {} } end))
    local chunk, err = hooks.loadfile(path)
    assert.is_nil(chunk)
    assert.is_string(err)
  end)

  it("runs the file's top level under the limits: an endless loop there is cut off", function()
    local res = in_child("local n = 0\nwhile true do n = n + 1 end\n", { top = true })
    assert_cut_off(res)
    assert.truthy(tostring(res.msg):find("cut off", 1, true), res.raw)
  end)
end)

describe("the hook sandbox", function()
  it("has no io, os.execute, require, load, loadstring, dofile, loadfile, debug, package", function()
    local fn = hook([[
return {
  io = type(io), require = type(require), loadstring = type(loadstring), load = type(load),
  dofile = type(dofile), loadfile = type(loadfile), debug = type(debug), package = type(package),
  jit = type(jit), collectgarbage = type(collectgarbage), getfenv = type(getfenv),
  setfenv = type(setfenv), module = type(module), newproxy = type(newproxy),
  execute = type(os.execute), exit = type(os.exit), remove = type(os.remove),
  rename = type(os.rename), tmpname = type(os.tmpname), popen = type(io and io.popen),
  dump = type(string.dump), G_io = type(_G.io), G_require = type(_G.require),
}]])
    local ok, seen = hooks.run(fn)
    assert.is_true(ok, seen)
    for k, v in pairs(seen) do
      assert.equal("nil", v, k .. " is reachable from a hook")
    end
  end)

  it("reaches no string function outside its list through a string's methods (no (\"\").dump)", function()
    local fn = hook([[
local names = ...
local seen = {}
for _, k in ipairs(names) do seen[k] = type(("")[k]) end
return seen
]])
    local names = {}
    for k in pairs(string) do names[#names + 1] = k end
    local ok, seen = hooks.run(fn, names)
    assert.is_true(ok, seen)
    local listed = { byte = true, char = true, find = true, format = true, gmatch = true, gsub = true,
      len = true, lower = true, match = true, rep = true, reverse = true, sub = true, upper = true }
    for _, k in ipairs(names) do
      if listed[k] then
        assert.equal("function", seen[k], k)
      else
        assert.equal("nil", seen[k], ('("").%s is reachable from a hook'):format(k))
      end
    end
    assert.is_not_nil(string.dump, "the daemon's own string table is whole")
  end)

  it("gives each file its own pm, whose actions wait for the file's top level to end", function()
    local calls = {}
    hooks.api.stop = function(target) calls[#calls + 1] = target; return true end
    hooks.api.list = function() return {} end
    local a = write("pm.stop = function() return 'replaced' end\nreturn function() return pm.stop('x') end\n")
    local b = write("local early = pcall(pm.stop, 'early')\n"
      .. "return function() return early, pm.stop('y'), #pm.list() end\n")
    finally(function() hooks.api.stop, hooks.api.list = nil, nil end)
    local ok_a, fa = hooks.run(assert(hooks.loadfile(a)))
    local ok_b, fb = hooks.run(assert(hooks.loadfile(b)))
    assert.is_true(ok_a, fa)
    assert.is_true(ok_b, fb)
    assert.same({ true, "replaced" }, { hooks.run(fa) })
    assert.same({ true, false, true, 0 }, { hooks.run(fb) })
    assert.same({ "y" }, calls)
  end)

  it("has os.time, os.date, os.getenv, string, table and math, working", function()
    local fn = hook([[
local t = {}
table.insert(t, string.format("%s-%d", string.upper("ab"), math.floor(2.7)))
table.insert(t, os.date("!%Y-%m-%d", 86400))
table.insert(t, type(os.time()))
table.insert(t, type(os.getenv("PATH")))
table.insert(t, ("x"):rep(3))
table.insert(t, tostring(math.max(1, 5)))
table.sort(t)
return table.concat(t, ","), type(pm), pcall(error, "plain")
]])
    local ok, joined, pm_type, pok, perr = hooks.run(fn)
    assert.is_true(ok, joined)
    assert.equal("1970-01-02,5,AB-2,number,string,xxx", joined)
    assert.equal("table", pm_type)
    assert.is_false(pok)
    assert.equal("plain", perr)
  end)

  it("gives pcall and xpcall that work for ordinary errors", function()
    local fn = hook([[
local a, b = pcall(function() error({ code = 7 }) end)
local c, d = xpcall(function() error("x", 0) end, function(e) return "handled " .. e end)
return a, b.code, c, d
]])
    assert.same({ true, false, 7, false, "handled x" }, { hooks.run(fn) })
  end)

  it("does not let a hook change the daemon's math library", function()
    local floor = math.floor
    finally(function() math.floor = floor end) -- luacheck: ignore 122
    local fn = hook("math.floor = function() return 42 end")
    hooks.run(fn)
    assert.equal(1, math.floor(1.5), "a hook replaced math.floor in the whole daemon")
  end)

  it("does not let a hook change the daemon's string library through getmetatable('')", function()
    local upper = string.upper
    finally(function() string.upper = upper end) -- luacheck: ignore 122
    local fn = hook([[
local mt = getmetatable("")
if type(mt) == "table" and type(mt.__index) == "table" then
  mt.__index.upper = function() return "pwned" end
end]])
    hooks.run(fn)
    assert.equal("A", ("a"):upper(), "a hook replaced string.upper in the whole daemon")
  end)
end)

describe("hooks.run", function()
  it("returns true and every result, nils included", function()
    local fn = hook("local a, b = ...\nreturn a + b, nil, 'c'")
    local r = { hooks.run(fn, 2, 3) }
    assert.equal(true, r[1])
    assert.equal(5, r[2])
    assert.is_nil(r[3])
    assert.equal("c", r[4])
    assert.equal(4, table.maxn(r))
  end)

  it("returns an error with file:line and a traceback", function()
    local fn, path = hook_of("return function()\n  local x = 1\n  error('boom ' .. x)\nend\n")
    local ok, err = hooks.run(fn)
    assert.is_false(ok)
    assert.truthy(err:find(path .. ":3: boom 1", 1, true), err)
    assert.truthy(err:find("traceback", 1, true), err)
  end)

  it("returns a runtime error (indexing nil) with file:line too", function()
    local fn, path = hook_of("return function(proc)\n  return proc.missing.field\nend\n")
    local ok, err = hooks.run(fn, {})
    assert.is_false(ok)
    assert.truthy(err:find(path .. ":2:", 1, true), err)
  end)

  it("turns an error value that is not a string into a message", function()
    local fn = hook("error({ code = 1 })")
    local ok, err = hooks.run(fn)
    assert.is_false(ok)
    assert.is_string(err)
  end)

  it("cuts off string.rep of a huge size at once, method form and separator included", function()
    for _, body in ipairs({ "return string.rep('x', 2^31)", "return ('x'):rep(2^31)",
      "return string.rep('x', 600000, 'y')", "local s = 'ab' return s:rep(1e9)" }) do
      local t0 = os.clock()
      local ok, err = hooks.run(hook(body))
      assert.is_false(ok, body)
      assert.truthy(err:find("cut off", 1, true), err)
      assert.truthy(err:find("string.rep", 1, true), err)
      assert.is_true(os.clock() - t0 < 0.1, body)
    end
    -- a small one is fine
    local ok, s = hooks.run(hook("return string.rep('ab', 1000, ',')"))
    assert.is_true(ok)
    assert.equal(2999, #s)
  end)

  it("cuts off a huge string fed to string.find, match, gmatch and gsub", function()
    for _, k in ipairs({ "find", "match", "gmatch", "gsub" }) do
      local body = ("local s = string.rep('a', 500000)\nreturn s:%s('b'%s)"):format(k,
        k == "gsub" and ", 'c'" or "")
      local ok, err = hooks.run(hook(body))
      assert.is_false(ok, k)
      assert.truthy(err:find("cut off", 1, true), err)
      assert.truthy(err:find("string." .. k, 1, true), err)
    end
  end)

  it("leaves string.rep and patterns unbounded outside hooks after a cut-off", function()
    assert.is_false((hooks.run(hook("return ('x'):rep(2^31)"))))
    assert.is_false((hooks.run(hook("return string.rep('a', 500000):find('b')"))))
    assert.is_nil(debug.gethook())
    assert.equal(4 * 2 ^ 20, #string.rep("ab", 2 ^ 21))
    assert.equal(3 * 2 ^ 20 - 2, #("x"):rep(2 ^ 20, "yy"))
    local big = string.rep("a", 300000) .. "b"
    assert.equal(300001, (big:find("b")))
    assert.equal(300001, #big:gsub("a", "c"))
    -- and a hook after that still works
    assert.same({ true, "ok" }, { hooks.run(hook("return 'ok'")) })
  end)

  it("cuts off an endless loop well under a second", function()
    local res = in_child(body_file("while true do end"))
    assert_cut_off(res)
    assert.truthy(tostring(res.msg):find("cut off", 1, true), res.raw)
  end)

  it("cuts off an endless loop inside the sandbox's pcall (pcall does not swallow it)", function()
    local res = in_child(body_file([[
local tries = 0
while true do
  tries = tries + 1
  pcall(function() while true do end end)
end]]))
    assert_cut_off(res)
    assert.truthy(tostring(res.msg):find("cut off", 1, true), res.raw)
  end)

  it("cuts off an endless loop inside xpcall, and one in xpcall's handler", function()
    local res = in_child(body_file([[
while true do
  xpcall(function() while true do end end, function(e) return e end)
end]]))
    assert_cut_off(res)
    assert.truthy(tostring(res.msg):find("cut off", 1, true), res.raw)
    res = in_child(body_file([[
while true do
  xpcall(function() error("x") end, function() while true do end end)
end]]))
    assert_cut_off(res)
  end)

  it("cuts off an endless loop in a callback called by C (gsub, sort)", function()
    assert_cut_off(in_child(body_file("return ('abc'):gsub('.', function() while true do end end)")))
    assert_cut_off(in_child(body_file(
      "local t = {3, 1, 2} table.sort(t, function(a, b) while true do end end) return t")))
  end)

  it("stops an error value whose __tostring loops forever", function()
    assert_cut_off(in_child(body_file(
      "error(setmetatable({}, { __tostring = function() while true do end end }))")))
  end)

  it("cuts off a pattern that backtracks without end on a small subject", function()
    -- 3000 bytes is under the subject limit; the pattern never ends in practice
    local res = in_child(body_file("return string.rep('a', 3000):find(string.rep('a*', 8) .. 'b')"),
      { timeout = 3 })
    assert_cut_off(res)
  end)

  it("stops a hook that grows a table without bound", function()
    local res = in_child(body_file("local t = {}\nlocal i = 0\nwhile true do i = i + 1; t[i] = { i } end"))
    assert_cut_off(res)
    assert.truthy(tostring(res.msg):find("cut off", 1, true), res.raw)
    assert.is_true(res.mb < 128, ("the hook took %s MB"):format(tostring(res.mb)))
  end)

  it("stops a hook that allocates without bound on its memory limit, not only its time", function()
    -- with plenty of time, the memory limit has to do it
    local res = in_child(body_file("local t = {}\nlocal i = 0\nwhile true do i = i + 1; t[i] = { i } end"),
      { time_limit = 4000, timeout = 10 })
    assert_cut_off(res, 4000)
    assert.truthy(tostring(res.msg):find("allocated over", 1, true), res.raw)
    assert.is_true(res.mb < 128, ("the hook took %s MB"):format(tostring(res.mb)))
  end)

  local big_allocs = {
    { "doubling a string with ..", "local s = string.rep('x', 2^20)\nfor i = 1, 6 do s = s .. s end\nreturn #s" },
    { "table.concat of many references to one string",
      "local s = string.rep('x', 2^20)\nlocal t = {}\nfor i = 1, 256 do t[i] = s end\nreturn #table.concat(t)" },
    { "string.format with many %s of one string",
      "local s = string.rep('x', 2^20)\nlocal t = {}\nfor i = 1, 128 do t[i] = s end\n" ..
      "return #string.format(string.rep('%s', 128), unpack(t))" },
    { "gsub with a big replacement on a small subject",
      "local r = string.rep('y', 2^20)\nreturn #string.rep('x', 96):gsub('.', r)" },
  }
  for _, case in ipairs(big_allocs) do
    it("stops a hook that allocates hundreds of MB in C: " .. case[1], function()
      local res = in_child(body_file(case[2]), { timeout = 20 })
      assert.is_true(res.ran, "the hook never returned: " .. res.raw)
      assert.is_false(res.ok, ("the hook ran to the end (%s ms, +%s MB): %s"):format(
        tostring(res.ms), tostring(res.mb), res.raw))
      assert.is_true(res.mb < 128, ("the hook took %s MB"):format(tostring(res.mb)))
      assert.is_true(res.ms < 500, ("stopped only after %s ms"):format(tostring(res.ms)))
    end)
  end
end)

describe("hooks.call", function()
  local saved
  before_each(function() saved = log.error end)
  after_each(function() log.error = saved end)

  it("returns the hook's results", function()
    assert.same({ "restart", 5 }, { hooks.call("on_exit of a", hook("return 'restart', 5")) })
  end)

  it("logs a failure with the hook's name and file:line, and returns nil, err", function()
    local logged
    log.error = function(fmt, ...) logged = fmt:format(...) end
    local fn, path = hook_of("return function()\n  error('kaput')\nend\n")
    local v, err = hooks.call("on_exit of worker", fn)
    assert.is_nil(v)
    assert.truthy(err:find(path .. ":2: kaput", 1, true), err)
    assert.truthy(logged, "nothing logged")
    assert.truthy(logged:find("on_exit of worker", 1, true), logged)
    assert.truthy(logged:find("built-in policy", 1, true), logged)
    assert.truthy(logged:find(path .. ":2: kaput", 1, true), logged)
  end)

  it("logs a cut-off and returns nil", function()
    local logged
    log.error = function(fmt, ...) logged = fmt:format(...) end
    local v, err = hooks.call("on_exit of w", hook("return ('x'):rep(2^31)"))
    assert.is_nil(v)
    assert.truthy(err:find("cut off", 1, true), err)
    assert.truthy(logged and logged:find("cut off", 1, true), tostring(logged))
  end)
end)

describe("hooks.decision", function()
  it("takes \"restart\" and \"stop\"", function()
    assert.same({ action = "restart", delay = 0 }, hooks.decision("restart"))
    assert.same({ action = "stop", delay = 0 }, hooks.decision("stop"))
  end)

  it("takes a number as a delay in ms before a restart", function()
    assert.same({ action = "restart", delay = 2500 }, hooks.decision(2500))
    assert.same({ action = "restart", delay = 0 }, hooks.decision(0))
  end)

  it("takes {action=, delay=}", function()
    assert.same({ action = "restart", delay = 5000 }, hooks.decision({ action = "restart", delay = 5000 }))
    assert.same({ action = "stop", delay = 0 }, hooks.decision({ action = "stop" }))
    assert.same({ action = "restart", delay = 0 }, hooks.decision({ action = "restart" }))
  end)

  it("gives nil and no error for nil: the built-in policy decides", function()
    local d, err = hooks.decision(nil)
    assert.is_nil(d)
    assert.is_nil(err)
  end)

  local invalid = {
    { "a word it does not know", "reboot" },
    { "true", true },
    { "false", false },
    { "a negative delay", -1 },
    { "NaN", 0 / 0 },
    { "an unknown action", { action = "explode" } },
    { "an empty table", {} },
    { "a negative delay in a table", { action = "restart", delay = -5 } },
    { "a NaN delay in a table", { action = "restart", delay = 0 / 0 } },
    { "a function", function() end },
  }
  for _, case in ipairs(invalid) do
    it("rejects " .. case[1] .. " with a message", function()
      local d, err = hooks.decision(case[2])
      assert.is_nil(d)
      assert.is_string(err)
      assert.is_true(#err > 0)
    end)
  end

  it("says what it expected", function()
    local _, err = hooks.decision("reboot")
    assert.truthy(err:find("reboot", 1, true), err)
    assert.truthy(err:find('"restart"', 1, true), err)
    assert.truthy(err:find('"stop"', 1, true), err)
  end)

  it("does not run a returned table's metamethods without the hook's limits", function()
    local res = in_child(body_file(
      "return setmetatable({}, { __index = function() while true do end end })"),
      { decide = true, timeout = 3 })
    assert.is_true(res.ran, res.raw)
    assert.is_true(res.decided, "hooks.decision never returned on a table with a looping __index: " .. res.raw)
    assert.is_true(res.decide_ms < 500, tostring(res.decide_ms))
  end)
end)
