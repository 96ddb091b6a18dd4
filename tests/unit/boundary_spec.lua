-- The C/Lua boundary as plain luajit sees it through lib/pm/core.so: a Lua
-- error the core catches in a callback reaches core.on_error's function
-- (never that function's own errors), and the core takes no default of its
-- own for what Lua declares (retain).
local core = require "pm.core"
local app = require "pm.app"

local SRC = os.getenv("PM_SRC") or "."

-- Runs a Lua chunk under plain luajit with pm.core -> stdout, stderr
local function luajit(chunk)
  local dir = os.tmpname()
  os.remove(dir)
  assert(core.mkdir(dir, 448))
  local script, out, err = dir .. "/chunk.lua", dir .. "/out", dir .. "/err"
  local f = assert(io.open(script, "w"))
  f:write('package.cpath = "', SRC, '/lib/?.so;" .. package.cpath\n', chunk)
  f:close()
  os.execute(("luajit %s >%s 2>%s"):format(script, out, err))
  local function slurp(path)
    local h = io.open(path)
    local s = h and h:read("*a") or ""
    if h then h:close() end
    os.remove(path)
    return s
  end
  local o, e = slurp(out), slurp(err)
  os.remove(script)
  os.remove(dir)
  return o, e
end

-- Runs the loop until done() or ms pass.
local function run_until(done, ms)
  local guard = core.timer(ms, 0, function() end)
  local deadline = core.mono() + ms
  while not done() and core.mono() < deadline do core.run("once") end
  guard:close()
end

describe("core.on_error", function()
  after_each(function() core.on_error(nil) end)

  it("gets each error a callback raises, with its traceback, and the loop goes on", function()
    local got = {}
    core.on_error(function(msg) got[#got + 1] = msg end)
    local after = false
    core.timer(0, 0, function() error("raised in a timer") end)
    core.timer(0, 0, function() error({}) end)
    core.timer(5, 0, function() after = true end)
    run_until(function() return after end, 2000)
    assert.is_true(after, "a timer after the errors fired")
    assert.equal(2, #got)
    local text, other = got[1], got[2]
    if not text:find("raised in a timer", 1, true) then text, other = other, text end
    assert.matches("boundary_spec.lua:%d+: raised in a timer\n", text)
    assert.matches("stack traceback:", text, 1, true)
    assert.matches("(error object is not a string)", other, 1, true)
  end)

  it("takes a function or nil, nothing else", function()
    assert.has_error(function() core.on_error(42) end)
    assert.has_no_error(function() core.on_error(function() end) end)
    assert.has_no_error(function() core.on_error(nil) end)
  end)

  it("does not give the function its own errors, nor any raised while it runs: stderr gets them", function()
    local out, err = luajit([[
local core = require "pm.core"
local calls = 0
core.on_error(function(msg)
  calls = calls + 1
  print("fn got: " .. msg:match("^[^\n]*"))
  if msg:find("first", 1, true) then
    -- a callback that raises while fn runs: to stderr, not to fn
    local t = core.timer(0, 0, function() error("nested") end)
    while t:active() do core.run("once") end
  else
    error("fn fails too")
  end
end)
core.timer(0, 0, function() error("first") end)
core.timer(50, 0, function() error("second") end)
core.timer(100, 0, function() error("third") end)
core.timer(150, 0, function() core.on_error(nil) end)
core.timer(200, 0, function() error("fourth, with no fn") end)
core.run()
print("calls " .. calls)
]])
    assert.matches("fn got: [^\n]*: first\n", out)
    assert.matches("fn got: [^\n]*: second\n", out)
    assert.matches("fn got: [^\n]*: third\n", out)
    assert.matches("calls 3\n", out, 1, true)
    assert.is_nil(out:find("nested", 1, true))
    assert.matches(" pm: lua error: [^\n]*: nested\n", err)
    -- fn's own error, beside the error it was given
    assert.matches(" pm: lua error: [^\n]*: second\n", err)
    assert.matches(" pm: lua error in core.on_error's function: [^\n]*: fn fails too\n", err)
    assert.matches(" pm: lua error: [^\n]*: fourth, with no fn\n", err)
    assert.is_nil(err:find("lua error: [^\n]*: first"))
  end)
end)

describe("the core takes the log rotation's retain from Lua", function()
  it("refuses a rotated logfile without retain", function()
    local path = os.tmpname()
    local ok, err = pcall(core.logfile, path, { max_size = 1024 })
    assert.is_false(ok)
    assert.matches("retain", err)
    local file = assert(core.logfile(path, { max_size = 1024, retain = 2 }))
    file:close()
    file = assert(core.logfile(path)) -- not rotated: no retain needed
    file:close()
    os.remove(path)
  end)

  it("app declarations keep 30 rotated files unless told", function()
    assert.equal(30, assert(app.normalize({ script = "/bin/sh" })).retain)
    assert.equal(3, assert(app.normalize({ script = "/bin/sh", retain = 3 })).retain)
  end)
end)

describe("the time prefix of a log line (core.logpipe's time_format)", function()
  -- one line through a pipe into a file, prefixed by fmt -> the prefix
  local function prefix(fmt)
    local path = os.tmpname()
    local file = assert(core.logfile(path))
    local r, w = core.pipe()
    local ended = false
    core.logpipe(r, { files = { file }, time_format = fmt }, function() ended = true end)
    core.write(w, "line\n")
    core.close(w)
    run_until(function() return ended end, 2000)
    assert.is_true(core.log_drain(2000))
    file:close()
    local f = assert(io.open(path))
    local text = f:read("*a")
    f:close()
    os.remove(path)
    return assert(text:match("^(.*): line\n$"), text)
  end

  it("expands %L (ms) and %Q (+HH:MM) after strftime, and %% (strftime's own %%%%) to %", function()
    assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d [+-]%d%d:%d%d$",
      prefix("%Y-%m-%d %H:%M:%S.%L %%Q"))
    assert.matches("^%d%d%d %d%d%d$", prefix("%%L %L"))
    -- a literal % (the emitter writes %%%%): once, and a literal %L stays text
    assert.equal("[100%] %L", prefix("[100%%%%] %%%%L"))
  end)
end)
