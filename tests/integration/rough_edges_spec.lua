-- Rough edges of issue 15, item 16, each against a real daemon: pm
-- reloadLogs says which folder it could not reopen, a PM_HOME too long for
-- its socket is one line, an app errored when the daemon died is not run
-- again by the recovery, and an unterminated quote in args is refused.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

describe("rough edges", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm reloadLogs reports a log folder it could not reopen", function()
    local dir = H.home .. "/applogs"
    core.mkdir(dir, 493)
    H.start("/bin/sleep", "logged", "-o", dir .. "/out.log", "--", "1000")
    H.ok(H.pm("reloadLogs"))
    os.execute("rm -rf " .. H.shquote(dir))
    H.write(dir, "a file where the folder was")
    H.fails(H.pm("reloadLogs"), dir, "not a directory")
    -- the folder back: reopened again
    os.remove(dir)
    H.ok(H.pm("reloadLogs"))
    H.wait_for(function() return H.exists(dir .. "/out.log") end, 3000, "out.log made again")
  end)

  it("a PM_HOME too long for a unix socket is one line, not a traceback", function()
    local long = H.home .. "/" .. ("d"):rep(120)
    local r = H.sh(H.command("ping"), { env = { PM_HOME = long } })
    H.fails(r, "PM_HOME", "too long")
    assert.is_nil(r.err:find("traceback", 1, true))
    r = H.sh(H.command("daemon"), { env = { PM_HOME = long } })
    H.fails(r, "PM_HOME", "too long")
  end)

  it("an app errored when the daemon died is not run again by the recovery", function()
    local count = H.home .. "/starts"
    local script = H.script("crash.sh", "#!/bin/sh\necho x >> " .. H.shquote(count) .. "\nexit 3\n")
    H.ok(H.pm("start", script, "--name", "crasher", "--max-restarts", "2", "--min-uptime", "5000"))
    H.start("/bin/sleep", "fine", "--", "1000")
    H.wait_for(function() return H.status("crasher") == "errored" end, 10000, "crasher errored")
    -- the journal holds it
    H.wait_for(function()
      local list = util.decode(util.read_file(H.home .. "/journal.json") or "") or {}
      for _, e in ipairs(type(list) == "table" and list or {}) do
        if e.name == "crasher" and e.pm_procs and e.pm_procs[1] and e.pm_procs[1].status == "errored" then
          return true
        end
      end
    end, 5000, "the journal says errored")
    local starts = H.count_lines(count)
    local dpid = H.daemon_pid()
    core.kill(dpid, 9)
    H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon gone")
    H.ok(H.pm("ping"))
    H.wait_for(function() return H.status("fine") == "online" end, 5000, "fine back online")
    H.holds(function() return H.count_lines(count) == starts end, 1500, "crasher not started again")
    assert.equal("errored", H.status("crasher"))
    -- and a start by hand still runs it
    H.ok(H.pm("start", "crasher"))
    H.wait_for(function() return H.count_lines(count) > starts end, 5000, "crasher started by hand")
  end)

  it("refuses an unterminated quote in args", function()
    local r = H.pm("start", "/bin/echo", "--name", "quoted", "--", "a 'b c")
    if r.code == 0 then
      -- (the CLI passes each word as it is: the Lua API takes a string)
      local list, err = require("pm").start({ name = "quoted2", script = "/bin/echo", args = "a 'b c" })
      assert.is_nil(list, "started with an unterminated quote")
      assert.is_truthy(tostring(err):find("unterminated", 1, true), tostring(err))
    else
      H.fails(r, "unterminated")
    end
  end)
end)
