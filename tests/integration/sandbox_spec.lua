-- The hook sandbox as an attacker tries it (issue 15, items 6 and 14): an
-- ecosystem file's top level cannot act (a file refused afterwards has
-- changed nothing), a file's pm is its own (what it does to it reaches no
-- other file's hooks), and what hooks log is bounded: a hook call writes
-- at most hooks.LOG_LIMIT bytes to pm.log, and pm.log is rotated
-- (PM_LOG_MAX_SIZE, 3 files kept) with the daemon's stderr on the new one.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local ok, fails = H.ok, H.fails

local SLEEPER = "#!/bin/sh\nexec sleep 600\n"

local function eco(name, text)
  return H.write(H.home .. "/" .. name, text)
end

describe("an ecosystem file's top level", function()
  before_each(function()
    H.new_home()
    H.script("sleeper.sh", SLEEPER)
  end)
  after_each(function() H.cleanup() end)

  local function keep_running()
    local path = eco("ecosystem.keep.lua", [[
return { apps = { { name = "keep", script = "sleeper.sh" }, { name = "keep2", script = "sleeper.sh" } } }
]])
    ok(H.pm("start", path, "-s"))
    H.online(H.proc("keep"))
    H.online(H.proc("keep2"))
  end

  local function untouched()
    local before = { keep = H.proc("keep").pid, keep2 = H.proc("keep2").pid }
    -- an action queued by the file would run within a turn of the loop
    H.holds(function()
      local a = H.by_name()
      return a.keep.pm2_env.status == "online" and a.keep.pid == before.keep
        and a.keep2.pm2_env.status == "online" and a.keep2.pid == before.keep2
    end, 600, "keep and keep2 still online, same pids")
  end

  it("cannot stop apps and then be refused: pm.stop('all') then error() changes nothing", function()
    keep_running()
    local path = eco("ecosystem.bad.lua", [[
pm.stop("all")
pm.restart("keep2")
error("refused after acting")
]])
    fails(H.pm("start", path), path)
    untouched()
  end)

  it("cannot act at all: pm.stop at the top level refuses the file with one line", function()
    keep_running()
    local path = eco("ecosystem.act.lua", [[
pm.stop("keep")
return { apps = { { name = "fresh", script = "sleeper.sh" } } }
]])
    fails(H.pm("start", path), path .. ":1:", "pm.stop cannot be called while an ecosystem file loads")
    assert.is_nil(H.proc("fresh"))
    untouched()
  end)

  it("changes only its own pm: pm.stop replaced in one file, another file's hook still stops", function()
    local a = eco("ecosystem.a.lua", [[
pm.stop = function() return true end
pm.restart = function() return true end
return { apps = { { name = "a1", script = "sleeper.sh" } } }
]])
    ok(H.pm("start", a, "-s"))
    H.script("trig.sh", "#!/bin/sh\nsleep 0.3\nexit 3\n")
    local b = eco("ecosystem.b.lua", [[
return { apps = {
  { name = "tgt", script = "sleeper.sh" },
  { name = "trig", script = "trig.sh", on_exit = function(proc, exit)
      pm.stop("tgt")
      return "stop"
    end },
} }
]])
    ok(H.pm("start", b, "-s"))
    H.wait_for(function() return H.status("trig") == "stopped" end, 5000, "trig stopped by its hook")
    H.wait_for(function() return H.status("tgt") == "stopped" end, 3000,
      "tgt stopped by trig's hook (file a replaced pm.stop)")
    H.online(H.proc("a1"))
  end)
end)

describe("what hooks log", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  local MAX = 256 * 1024 -- PM_LOG_MAX_SIZE given to the daemon

  local function size(path)
    local st = core.stat(path)
    return st and st.size
  end

  it("is bounded per hook call, and pm.log is rotated (3 kept, stderr on the new one)", function()
    H.script("crash.sh", "#!/bin/sh\nexit 1\n")
    local path = eco("ecosystem.lua", [[
return { apps = { { name = "noisy", script = "crash.sh",
  on_exit = function(proc, exit)
    print(("x"):rep(1e6))
    pm.log(("y"):rep(1e6))
    return 10
  end, max_restarts = 100000 } } }
]])
    ok(H.pm("start", path, { env = { PM_LOG_MAX_SIZE = tostring(MAX) } }))
    local log = H.home .. "/pm.log"
    -- a hook call may write 16 KB (and a line saying what it did not)
    local bound = MAX + 20 * 1024
    local function sizes_ok()
      for _, f in ipairs({ log, log .. ".1", log .. ".2", log .. ".3" }) do
        local n = size(f)
        if n and n > bound then
          H.stop_daemon()
          error(("%s grew to %d bytes (at most %d)"):format(f, n, bound))
        end
      end
      return true
    end
    H.wait_for(function() return sizes_ok() and size(log .. ".3") end, 20000, "pm.log rotated 3 times")
    sizes_ok()
    assert.is_nil(size(log .. ".4"), "at most 3 rotated files are kept")
    local text = util.read_file(log .. ".1")
    assert.is_truthy(text:find("more bytes not logged (at most 16384 a hook call)", 1, true), text:sub(1, 300))
    -- the daemon's stderr is the new pm.log (what the core writes lands there too)
    local dpid = H.daemon_pid()
    H.wait_for(function()
      local p = io.popen("readlink /proc/" .. dpid .. "/fd/2")
      local target = p:read("*l")
      p:close()
      return target == log
    end, 2000, "the daemon's fd 2 pointing at " .. log)
    H.wait_for(function() return (size(log) or 0) > 0 end, 3000, "lines in the new pm.log")
    ok(H.pm("stop", "noisy"))
  end)

  it("an error a hook raises is cut to the same bound", function()
    H.script("crash.sh", "#!/bin/sh\nexit 1\n")
    local path = eco("ecosystem.lua", [[
return { apps = { { name = "raiser", script = "crash.sh", restart_delay = 10, max_restarts = 5,
  on_exit = function() error(("e"):rep(1e6)) end } } }
]])
    ok(H.pm("start", path))
    H.wait_for(function() return H.status("raiser") == "errored" end, 10000, "raiser errored")
    local text = H.pm_log()
    local _, n = text:gsub("hook on_exit of raiser failed, the built%-in policy decides: [^\n]*eeee %[cut%]\n", "")
    assert.is_true(n >= 5, n .. " cut errors in pm.log")
    assert.is_true(#text < 6 * 20 * 1024, ("pm.log holds %d bytes"):format(#text))
  end)
end)
