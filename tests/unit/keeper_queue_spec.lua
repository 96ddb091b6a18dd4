-- The daemon's queue of what goes to the keeper (lua/pm/keeper.lua; review
-- of issue 17): what the keeper cannot take yet waits, and goes in packets
-- of at most 250 fds and 60 KB, each fd with its own "H" line.
local core = require "pm.core"

describe("the keeper's queue", function()
  it("a packet cut at its size keeps each fd with its own line", function()
    local keeper = require "pm.keeper"
    local fake = assert(core.dup(1)) -- (stands for the keeper's socket)
    core.setenv("PM_KEEPER_FD", tostring(fake))
    core.setenv("PM_KEEPER_LOCK", tostring(assert(core.dup(1))))
    keeper.from_env()
    local real, full, sent = core.sendmsg, true, {}
    finally(function()
      core.sendmsg = real
      keeper.gone()
    end)
    core.sendmsg = function(_, data, fds)
      if full then return nil, "again" end
      local n = 0
      for line in data:gmatch("[^\n]+") do
        local tag = line:match("^H %d+ (.*)$")
        if tag then
          n = n + 1
          sent[#sent + 1] = { tag = tag, id = fds and fds[n] and core.file_id(fds[n]) }
        end
      end
      assert.equal(n, fds and #fds or 0, "as many fds as H lines in a packet")
      return true
    end
    -- ~58 KB of lines without an fd, then 200 with one: the 60 KB cut
    -- falls on a line with an fd
    for i = 1, 6500 do keeper.release(100000 + i) end
    local ids, ends = {}, {}
    for k = 1, 200 do
      local r, w = assert(core.pipe())
      ends[#ends + 1], ends[#ends + 2] = r, w
      ids[("o %d 1"):format(k)] = core.file_id(r)
      keeper.hold(("o %d 1"):format(k), r)
    end
    finally(function() for _, fd in ipairs(ends) do core.close(fd) end end)
    full = false
    keeper.flush()
    assert.equal(200, #sent)
    for _, s in ipairs(sent) do assert.equal(ids[s.tag], s.id, "the fd of " .. s.tag) end
  end)
end)
