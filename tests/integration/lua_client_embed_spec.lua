-- Issue 22, item 7: pm's client embedded in a program with a loop of its
-- own. Plain luajit with lib/pm/core.so and lua/ (as `make install` users
-- run it) and Debian's lua-luv and lua-copas: a uv.spawn exit callback
-- still fires while the client is in use (pm's loop reaps no child of the
-- host); luv drives the client with pm.fd()/pm.step(), copas with
-- pm.step(); a Lua app under luv talks to pm with child.fd()/child.step().
local H = require "pmtest"
local pm = require "pm"

local sq = H.shquote

local function luajit(script, ...)
  local words = { "timeout", "30", "luajit", sq(script) }
  for _, a in ipairs({ ... }) do words[#words + 1] = sq(tostring(a)) end
  return H.sh(table.concat(words, " "), { env = {
    LUA_PATH = H.src .. "/lua/?.lua;" .. H.src .. "/lua/?/init.lua;;",
    LUA_CPATH = H.src .. "/lib/?.so;;",
  } })
end

describe("lua client embedded in another loop", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("a luv program's uv.spawn exit callback fires while it uses the client", function()
    local app = H.script("lc_lv.sh", "exec sleep 1000\n")
    local r = luajit(H.fixtures .. "/lc_luv_spawn.lua", app)
    assert.equal(0, r.code, r.out .. r.err)
    local code, calls = r.out:match("EXIT (%S+) CALLS (%d+)")
    assert.equal("7", code, "luv's exit callback did not run: " .. r.out .. r.err)
    assert.truthy(tonumber(calls) >= 5, r.out)
    assert.equal("online", H.status("lv"))
  end)

  it("a luv program drives the client with pm.fd() and pm.step(): a bus, a callback, a coroutine", function()
    local app = H.script("lc_dr.sh", "exec sleep 1000\n")
    local r = luajit(H.fixtures .. "/lc_luv_drive.lua", app)
    assert.equal(0, r.code, r.out .. r.err)
    local pid, n = r.out:match("ONLINE (%S+) CB (%S+)")
    local p = H.proc("dr")
    assert.truthy(p, r.out .. r.err)
    assert.equal(tostring(p.pid), pid, r.out .. r.err)
    assert.equal("1", n, r.out .. r.err)
  end)

  it("a copas server uses the client; copas.step and pm.step share the program's loop", function()
    local app = H.script("lc_cp.sh", "exec sleep 1000\n")
    local port = H.free_port()
    local r = luajit(H.fixtures .. "/lc_copas.lua", app, port)
    assert.equal(0, r.code, r.out .. r.err)
    local p = H.proc("cp")
    assert.truthy(p, r.out .. r.err)
    assert.equal("REPLY online " .. p.pid, r.out:match("REPLY [^\n]*"), r.out .. r.err)
    assert.equal("EVENT " .. p.pid, r.out:match("EVENT [^\n]*"), r.out .. r.err)
  end)

  it("a Lua app with a luv loop talks to pm through child.fd() and child.step()", function()
    local p = H.api_start({ script = H.fixtures .. "/lc_child_luv.lua", name = "cl", wait_ready = true })
    H.online(p)
    local bus = assert(pm.launchBus())
    local got = {}
    assert(bus:on("process:msg", function(packet) got[#got + 1] = packet end))
    assert(pm.sendDataToProcessId({ id = p.pm_id, type = "process:msg", data = { n = 42 }, topic = true }))
    H.pump(function() return #got >= 1 end, 8000, "the luv app's reply")
    assert.same({ n = 42 }, got[1].data.echo)
  end)

  it("pm.timeout says a queued callback is due now; pm.step runs it", function()
    local called = false
    assert(pm.list(function() called = true end))
    assert.is_false(called) -- (never inside the call)
    assert.equal(0, pm.timeout())
    assert(pm.step())
    assert.is_true(called)
  end)

  it("pm.step and pm.fd say what is wrong with their arguments", function()
    local ok, err = pm.step("soon")
    assert.is_nil(ok)
    assert.truthy(err:find("number of ms", 1, true))
    local fd = assert(pm.fd())
    assert.equal("number", type(fd))
    assert.equal(fd, pm.fd()) -- one descriptor for the process
  end)
end)
