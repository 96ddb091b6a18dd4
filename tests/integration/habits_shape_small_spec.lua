-- Issue 16, item 14 (its parts about ids, hooks and pm describe): pm_ids
-- start again at 0 once `pm delete all` left no app (PM2's rule: the table
-- is empty after a delete); on_stop runs when on_exit returned "stop";
-- `pm describe` shows the variables that differ from the daemon's
-- environment, all of them with --env.
local H = require "pmtest"

local SLEEPER = "#!/bin/sh\nexec sleep 1000\n"

local function id_of(name)
  local p = H.proc(name)
  return p and p.pm_id
end

describe("pm_ids after delete", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm delete all, then pm start: the new app is id 0", function()
    local s = H.script("s.sh", SLEEPER)
    H.ok(H.pm("start", s, "--name", "a"))
    H.ok(H.pm("start", s, "--name", "b"))
    assert.equal(1, id_of("b"))
    H.ok(H.pm("delete", "all"))
    H.ok(H.pm("start", s, "--name", "c"))
    assert.equal(0, id_of("c"))
  end)

  it("an id is not reused while any app is left (PM2's rule), and is once none is", function()
    local s = H.script("s.sh", SLEEPER)
    H.ok(H.pm("start", s, "--name", "a"))
    H.ok(H.pm("start", s, "--name", "b"))
    H.ok(H.pm("delete", "a"))
    H.ok(H.pm("start", s, "--name", "c"))
    assert.equal(2, id_of("c"))
    H.ok(H.pm("delete", "b"))
    H.ok(H.pm("delete", "c"))
    H.ok(H.pm("start", s, "--name", "d", "-i", "2"))
    local ids = {}
    for _, p in ipairs(H.jlist()) do ids[#ids + 1] = p.pm_id end
    table.sort(ids)
    assert.same({ 0, 1 }, ids)
  end)
end)

describe("on_stop", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("runs when on_exit returned \"stop\" (and {action = \"stop\"}), once per stop", function()
    H.script("ex.sh", "#!/bin/sh\nsleep 0.3\nexit 3\n")
    H.lua_eco([[{
  { name = "hs", script = "ex.sh",
    on_exit = function(proc, exit) return "stop" end,
    on_stop = function(proc) print("ON_STOP " .. proc.name .. " " .. proc.pm2_env.status) end },
  { name = "ht", script = "ex.sh",
    on_exit = function(proc, exit) return { action = "stop" } end,
    on_stop = function(proc) print("ON_STOP " .. proc.name .. " " .. proc.pm2_env.status) end },
  { name = "hr", script = "ex.sh", autorestart = false,
    on_stop = function(proc) print("ON_STOP " .. proc.name) end },
}]])
    H.ok(H.pm("start", H.home .. "/ecosystem.config.lua"))
    for _, n in ipairs({ "hs", "ht" }) do
      H.wait_for(function() return H.pm_log():find("ON_STOP " .. n .. " stopped", 1, true) end, 5000,
        "on_stop of " .. n .. " in pm.log:\n" .. H.pm_log())
      assert.equal("stopped", H.status(n))
    end
    H.wait_for(function() return H.status("hr") == "stopped" end, 5000, "hr stopped")
    -- a stop of a stopped app runs no hook again; the built-in policy's
    -- stop (autorestart off) is not a hook's decision: on_stop stays for stops
    H.ok(H.pm("stop", "hs"))
    local log = H.pm_log()
    assert.equal(1, H.count(log, "ON_STOP hs"), log)
    assert.falsy(log:find("ON_STOP hr", 1, true), log)
  end)
end)

describe("pm describe's environment", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  -- the env: rows of `pm describe`'s card -> name -> value
  local function env_rows(out)
    local rows, inside = {}, false
    for line in out:gmatch("[^\n]+") do
      if line == "env:" then
        inside = true
      elseif inside then
        local k, v = line:match("^  ([^=]+)=(.*)$")
        if not k then break end
        rows[k] = v
      end
    end
    return rows
  end

  it("shows the variables that differ from the daemon's environment; --env shows all", function()
    local s = H.script("s.sh", SLEEPER)
    -- the daemon starts with BOTH=1 in its environment
    H.ok(H.pm("ping", { env = { BOTH = "1" } }))
    -- the app from a shell that has BOTH=1 and ONLY_APP=2
    H.ok(H.pm("start", s, "--name", "e", { env = { BOTH = "1", ONLY_APP = "2" } }))
    H.online(H.proc("e"))
    -- pm describe from a shell that has neither
    local rows = env_rows(H.ok(H.pm("describe", "e")).out)
    assert.equal("2", rows.ONLY_APP)         -- the daemon does not have it
    assert.equal("0", rows.pm_id)            -- pm's own
    assert.equal("e", rows.name)
    assert.is_nil(rows.BOTH)                 -- as in the daemon's
    assert.is_nil(rows.PATH)
    assert.is_nil(rows.PM_HOME)
    local all = env_rows(H.ok(H.pm("describe", "e", "--env")).out)
    assert.equal("1", all.BOTH)
    assert.equal(os.getenv("PATH"), all.PATH)
    assert.equal("2", all.ONLY_APP)
  end)
end)
