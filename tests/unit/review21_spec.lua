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

-- Issue 21: a declaration holds the members that differ from their
-- defaults; the defaults come through its metatable.
describe("a declaration's defaults", function()
  local appdecl = require "pm.app"
  local function decl(raw)
    local d = assert(appdecl.normalize(raw, { base = "/tmp" }))
    return d
  end

  it("are read as before, not held: every member through app.members", function()
    local d = decl({ name = "a", script = "/bin/sleep", args = { "5" }, max_restarts = 3 })
    assert.equal(1600, d.kill_timeout)
    assert.equal(3, d.max_restarts)
    assert.is_true(d.autorestart)
    assert.equal(appdecl.NONE, d.env)
    assert.is_nil(rawget(d, "kill_timeout"))
    assert.is_nil(rawget(d, "env"))
    assert.equal(3, rawget(d, "max_restarts"))
    local all, n = {}, 0
    for k, v in appdecl.members(d) do
      assert.is_nil(all[k], k) -- (each once)
      all[k], n = v, n + 1
    end
    for k, v in pairs(appdecl.DEFAULTS) do
      if k ~= "max_restarts" and k ~= "args" then assert.equal(v, all[k], k) end
    end
    assert.equal(3, all.max_restarts)
    assert.equal("a", all.name)
    local own = 0
    for _ in pairs(d) do own = own + 1 end
    assert.is_true(own < n and own <= 8, own .. " of " .. n)
  end)

  it("are kept by app.copy, which may be changed; the declaration is not", function()
    local d = decl({ name = "b", script = "/bin/sleep", args = { "5" } })
    local c = appdecl.copy(d)
    c.instances = 4
    c.watch = true
    assert.equal(4, c.instances)
    assert.equal(1600, c.kill_timeout)
    assert.equal(1, d.instances)
    assert.is_false(d.watch)
    assert.equal(appdecl.NONE, c.env)
  end)

  it("are not added to a table normalize did not make", function()
    local t = { name = "c" }
    local seen = {}
    for k in appdecl.members(t) do seen[#seen + 1] = k end
    assert.same({ "name" }, seen)
  end)
end)

-- Issue 21: a sample of 10,000 apps makes no table each
describe("core.proc_usage", function()
  local core = require "pm.core"
  it("gives proc_tree's sums, as two numbers", function()
    local pid = core.getpid()
    local rss, ticks = core.proc_usage(pid)
    local tree = core.proc_tree(pid)
    assert.is_true(rss > 0 and ticks >= 0)
    assert.is_true(math.abs(rss - tree.rss) < 64 * 1024 * 1024, rss .. " " .. tree.rss)
    assert.is_true(ticks <= tree.ticks + 100)
    assert.same({ 0, 0 }, { core.proc_usage(2 ^ 22 + 12345) }) -- (no such pid)
  end)

  it("makes no garbage", function()
    local pid = core.getpid()
    core.proc_usage(pid)
    collectgarbage(); collectgarbage("stop")
    local before = collectgarbage("count")
    for _ = 1, 200 do core.proc_usage(pid) end
    local grew = collectgarbage("count") - before
    collectgarbage("restart")
    assert.is_true(grew < 4, grew .. " KB")
  end)
end)
