-- Issue 22, item 6: the bus and coroutines. bus:off and a new bus:on
-- inside a bus handler (the once/await pattern) never hang; bus:once;
-- pm.wait_for yields in a coroutine and blocks outside one;
-- process:event packets carry the pid.
local H = require "pmtest"
local util = require "pm.util"
local pm = require "pm"

local sq = H.shquote

-- plain luajit with the worktree's lua/ and lib/ first, as `make install` users
local function luajit(script, ...)
  local words = { "timeout", "20", "luajit", sq(script) }
  for _, a in ipairs({ ... }) do words[#words + 1] = sq(a) end
  return H.sh(table.concat(words, " "), { env = {
    LUA_PATH = H.src .. "/lua/?.lua;" .. H.src .. "/lua/?/init.lua;;",
    LUA_CPATH = H.src .. "/lib/?.so;;",
  } })
end

describe("lua client: the bus in handlers and coroutines", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("bus:off and a new bus:on inside a bus handler do not hang the client (once/await)", function()
    local app = H.script("lc_crasher.sh", "sleep 0.3\nexit 2\n")
    local r = luajit(H.fixtures .. "/lc_bus_await.lua", app)
    assert.are_not.equal(124, r.code, "the client hung (killed by timeout): " .. r.out .. r.err)
    assert.equal(0, r.code, r.out .. r.err)
    local seen = r.out:match("SEEN ([^\n]*)")
    assert.truthy(seen, r.out)
    -- the first handler saw exactly one event, the second the rest
    local first = select(2, seen:gsub("1:", ""))
    assert.equal(1, first, seen)
    assert.truthy(seen:find("2:", 1, true), seen)
  end)

  it("bus:once runs its handler for one event only", function()
    local bus = assert(pm.launchBus())
    local once, all = {}, {}
    assert(bus:once("process:event", function(p) once[#once + 1] = p.event end))
    assert(bus:on("process:event", function(p) all[#all + 1] = p.event end))
    H.api_start({ script = H.script("lc_once.sh", "exec sleep 1000\n"), name = "one" })
    assert(pm.restart("one"))
    H.pump(function() return #all >= 3 end, 8000, "three process events")
    assert.equal(1, #once)
    assert.equal(all[1], once[1])
    -- bad arguments: an error, nothing subscribed
    local ok, err = bus:once("process:event")
    assert.is_nil(ok)
    assert.truthy(err:find("a string and a function", 1, true))
  end)

  it("pm.wait_for yields in a coroutine and the loop resumes it with the packet and its pid", function()
    local got, gerr, done
    local co = coroutine.wrap(function()
      got, gerr = pm.wait_for("process:event", function(p)
        return p.process.name == "cw" and p.event == "online"
      end, 10000)
      done = true
    end)
    co() -- runs to its wait_for, which yields
    assert.is_nil(done)
    local p = H.api_start({ script = H.script("lc_cw.sh", "exec sleep 1000\n"), name = "cw" })
    H.pump(function() return done end, 10000, "the coroutine resumed by its event")
    assert.is_nil(gerr)
    assert.equal("online", got.event)
    assert.equal(p.pid, got.pid)
    assert.equal(p.pid, got.process.pid)

    -- a wait that times out resumes it with nil, err
    local res, terr
    done = false
    coroutine.wrap(function()
      res, terr = pm.wait_for("process:event", function() return false end, 100)
      done = true
    end)()
    H.pump(function() return done end, 5000, "the timed-out coroutine resumed")
    assert.is_nil(res)
    assert.truthy(terr:find("^timeout"), terr)
  end)

  it("pm.wait_for blocks outside a coroutine; an exit's packet carries the pid that ended", function()
    local s = H.script("lc_bw.sh", "sleep 0.5\nexit 3\n")
    local p = H.api_start({ script = s, name = "bw", autorestart = false })
    assert.truthy(p.pid and p.pid > 0)
    local d, err = pm.wait_for("process:event", function(e)
      return e.process.name == "bw" and e.event == "exit"
    end, 10000)
    assert.is_nil(err)
    assert.equal(p.pid, d.pid)
    assert.equal(3, d.code)
    -- arguments checked before anything runs
    local r, aerr = pm.wait_for(42)
    assert.is_nil(r)
    assert.truthy(aerr:find("event name", 1, true))
    r, aerr = pm.wait_for("x", "not a function")
    assert.is_nil(r)
    assert.truthy(aerr:find("predicate", 1, true))
  end)

  it("a start's online packet carries the pid jlist shows", function()
    -- process:event of a start: data.pid is the pid of the new process
    local bus = assert(pm.launchBus())
    local online
    assert(bus:on("process:event", function(e)
      if e.process.name == "pj" and e.event == "online" then online = e end
    end))
    H.api_start({ script = H.script("lc_pj.sh", "exec sleep 1000\n"), name = "pj" })
    H.pump(function() return online end, 8000, "online")
    local proc = H.proc("pj")
    assert.equal(proc.pid, online.pid)
    assert.is_not.equal(util.null, online.pid)
  end)
end)
