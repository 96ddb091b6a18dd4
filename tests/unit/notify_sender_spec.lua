-- sd_notify: a datagram speaks for the app whose process (or a descendant
-- of it) sent it, and only when its sender is that app's user or root.
local readiness = require "pm.readiness"
local proc = require "pm.proc"

describe("an sd_notify datagram", function()
  local pid = 999991 -- (no such process: its record is found by pid first)
  local p
  before_each(function()
    p = { name = "n", pm_id = 1, decl = { uid = 1234 }, pid = pid }
    proc.by_pid[pid] = p
  end)
  after_each(function() proc.by_pid[pid] = nil end)

  it("is taken from the app's user or root", function()
    readiness.on_notify(pid, "STATUS=from its user", 1234)
    assert.equal("from its user", p.notify.status)
    readiness.on_notify(pid, "STATUS=from root", 0)
    assert.equal("from root", p.notify.status)
  end)

  it("is left when another user sent it (a pid that came back as someone else's)", function()
    readiness.on_notify(pid, "STATUS=spoofed", 4321)
    assert.is_nil(p.notify)
  end)
end)
