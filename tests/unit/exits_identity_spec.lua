-- exits.signal_tree signals an app's process only while it is that
-- process: a pid whose start time is not the one noted (reaped by the
-- keeper, its exit not come yet, and the pid another process's since) is
-- left alone, as is a pid that is gone.
local core = require "pm.core"
local exits = require "pm.exits"

local function sleeper()
  local f = assert(io.popen("sleep 30 >/dev/null 2>&1 & echo $!"))
  local pid = tonumber(f:read("*l"))
  f:close()
  return pid
end

local function alive(pid)
  local st = core.proc_stat(pid)
  return st ~= nil and st.state ~= "Z"
end

local function gone(pid)
  local deadline = core.mono() + 5000
  while alive(pid) and core.mono() < deadline do core.sleep(10) end
  return not alive(pid)
end

describe("exits.signal_tree and a process's identity", function()
  it("leaves alone a pid of another start time, signals the process of the noted one", function()
    local pid = sleeper()
    finally(function() if alive(pid) then core.kill(pid, core.signals.SIGKILL) end end)
    local start = core.proc_stat(pid).start
    local p = { pid = pid, pgid = pid, decl = { kill_mode = "process" }, name = "x", pm_id = 1 }
    exits.note_start(p, start - 1) -- (the process taken over was another: its pid came back)
    assert.is_false(exits.ours(p))
    exits.signal_tree(p, core.signals.SIGKILL)
    core.sleep(50)
    assert.is_true(alive(pid), "a process that is not the app's was killed")
    exits.note_start(p, start)
    assert.is_true(exits.ours(p))
    exits.signal_tree(p, core.signals.SIGKILL)
    assert.is_true(gone(pid))
    assert.is_false(exits.ours(p))
  end)

  it("a late exit the keeper says is of another start time is not taken as the app's process's", function()
    local pid = sleeper()
    finally(function() if alive(pid) then core.kill(pid, core.signals.SIGKILL) end end)
    local start = core.proc_stat(pid).start
    local p = { pid = pid, pgid = pid, decl = { kill_mode = "process" }, name = "x", pm_id = 1, status = "online" }
    exits.note_start(p, start)
    local by_pid = require("pm.proc").by_pid
    by_pid[pid] = p
    finally(function() by_pid[pid] = nil end)
    exits.on_child(pid, 0, nil, start - 1) -- (an earlier process of that pid, reported late)
    assert.equal(p, by_pid[pid])
    assert.equal(pid, p.pid)
    assert.equal("online", p.status)
    assert.is_true(alive(pid))
  end)

  it("does nothing for a pid that is gone", function()
    local pid = sleeper()
    core.kill(pid, core.signals.SIGKILL)
    assert.is_true(gone(pid))
    local p = { pid = pid, pgid = pid, decl = {}, name = "x", pm_id = 1 }
    exits.signal_tree(p, core.signals.SIGTERM) -- (no error, nothing signalled)
    assert.is_false(exits.ours(p))
  end)
end)
