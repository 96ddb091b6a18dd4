-- Issue 21's review: what a Lua app without an IPC channel is told.
describe("pm.child without a channel", function()
  it("says how to get one (ipc = true), not only ipc = false", function()
    assert.is_nil(os.getenv("NODE_CHANNEL_FD"))
    package.loaded["pm.child"] = nil
    local child = require "pm.child"
    for _, call in ipairs({ function() return child.send(1) end, function() return child.on_message(print) end,
      function() return child.fd() end }) do
      local ok, err = call()
      assert.is_nil(ok)
      assert.truthy(tostring(err):find("declare the app with ipc = true", 1, true), tostring(err))
    end
    package.loaded["pm.child"] = nil
  end)
end)

-- Issue 21: what a take-over of 10,000 apps reads (the journal's entries)
-- is collected while their records are built, not after (its holes stayed
-- in the daemon's memory: 145 MB after the take-over, 115 after the start).
describe("recovery.tidy", function()
  it("collects once the heap grew by GROWTH_KB since its start or its last collection", function()
    local recovery = require "pm.recovery"
    local growth = recovery.GROWTH_KB
    collectgarbage("collect")
    collectgarbage("stop") -- (only tidy collects meanwhile)
    local ok, err = pcall(function()
      recovery.GROWTH_KB = 1024
      recovery.tidy(true)
      local probe = setmetatable({}, { __mode = "k" })
      probe[{}] = true -- (garbage from the start)
      local keep = {}
      for i = 1, 200 do keep[i] = string.rep("a", 100) .. i end -- (~30 KB: less than GROWTH_KB)
      recovery.tidy()
      assert.is_not_nil(next(probe), "collected before the heap grew by GROWTH_KB")
      for i = 1, 3000 do keep[i] = string.rep("b", 500) .. i end -- (~1.5 MB)
      recovery.tidy()
      assert.is_nil(next(probe), "not collected once the heap grew by GROWTH_KB")
      assert.equal(3000, #keep) -- (what grew it is still held)
    end)
    recovery.GROWTH_KB = growth
    collectgarbage("restart")
    assert(ok, err)
  end)
end)
