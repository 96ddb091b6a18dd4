-- The Lua client under plain LuaJIT (`luajit script.lua`, as after `make
-- install`): the README's example runs as written (what the main chunk
-- leaves runs when it ends, as Node's loop after the main module), a
-- callback's error ends it with status 1, pm.wait returns it, a prefix
-- subscription says which event came, and a hook given to pm.start is
-- refused with a message that says where hooks go.
local H = require "pmtest"
local pm = require "pm"

local sq = H.shquote

-- plain luajit with the worktree's lua/ and lib/ first, as `make install` users
local function luajit(script, cwd)
  return H.sh("timeout 30 luajit " .. sq(script), { cwd = cwd, env = {
    LUA_PATH = H.src .. "/lua/?.lua;" .. H.src .. "/lua/?/init.lua;;",
    LUA_CPATH = H.src .. "/lib/?.so;;",
    PM_BIN = H.bin,
  } })
end

describe("lua client under plain luajit", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("runs the README's example as written: its callbacks run once the main chunk ends", function()
    local dir = H.home .. "/app"
    H.sh("mkdir -p " .. sq(dir))
    H.write(dir .. "/api.sh", "exec sleep 1000\n")
    -- (the README's block, the app a shell script instead of a Node one)
    H.write(dir .. "/readme.lua", [[
local pm = require "pm"

pm.connect(function(err)
  if err then print(err); os.exit(2) end
  pm.start({ script = "api.sh", name = "api" }, function(err, apps)
    pm.list(function(err, list)
      for _, p in ipairs(list) do print(p.name, p.pid, p.pm2_env.status) end
      pm.restart("api", function(err, procs) print("RESTARTED", err, #procs); pm.disconnect() end)
    end)
  end)
end)
]])
    local r = luajit(dir .. "/readme.lua", dir)
    assert.equal(0, r.code, r.out .. r.err)
    assert.truthy(r.out:match("api\t%d+\tonline"), r.out)
    assert.truthy(r.out:find("RESTARTED\tnil\t1", 1, true), r.out)
    local p = H.proc("api")
    assert.equal(1, p.pm2_env.restart_time)
  end)

  it("ends with status 1 and one line when a callback fails after the main chunk; pm.wait returns the error", function()
    H.write(H.home .. "/fail.lua", [[
local pm = require "pm"
pm.list(function() error("boom in a callback") end)
]])
    local r = luajit(H.home .. "/fail.lua")
    assert.equal(1, r.code, r.out .. r.err)
    assert.truthy(r.err:find("boom in a callback", 1, true), r.err)
    H.write(H.home .. "/waited.lua", [[
local pm = require "pm"
pm.list(function() error("boom while waiting") end)
local ok, err = pm.wait(200)
print("WAIT", ok, err)
print("AGAIN", pm.wait(50))
]])
    r = luajit(H.home .. "/waited.lua")
    assert.equal(0, r.code, r.out .. r.err)
    assert.truthy(r.out:find("WAIT\tnil\t[^\n]*boom while waiting"), r.out)
    assert.truthy(r.out:find("AGAIN\ttrue", 1, true), r.out) -- (only what failed meanwhile)
  end)

  it("gives a prefix subscription's handler the event's name after the packet", function()
    H.write(H.home .. "/both.sh", "echo to-out; echo to-err >&2; exec sleep 1000\n")
    H.write(H.home .. "/prefix.lua", [[
local pm = require "pm"
local bus = assert(pm.launchBus())
local seen = {}
assert(bus:on("log:*", function(packet, event)
  seen[#seen + 1] = event .. "=" .. tostring(packet.data):gsub("%s+$", "")
  if #seen == 2 then
    table.sort(seen)
    print("SEEN " .. table.concat(seen, " "))
    bus:close()
    pm.disconnect()
  end
end))
assert(pm.start({ script = arg[1], name = "both" }))
]])
    local r = H.sh(("timeout 30 luajit %s %s"):format(sq(H.home .. "/prefix.lua"), sq(H.home .. "/both.sh")), {
      env = { LUA_PATH = H.src .. "/lua/?.lua;" .. H.src .. "/lua/?/init.lua;;",
        LUA_CPATH = H.src .. "/lib/?.so;;", PM_BIN = H.bin } })
    assert.equal(0, r.code, r.out .. r.err)
    assert.truthy(r.out:find("SEEN log:err=to-err log:out=to-out", 1, true), r.out)
  end)

  it("gives no member for a JSON null: an exit packet's signal, a stopped app's exit_code", function()
    local bus = assert(pm.launchBus())
    local exits = {}
    assert(bus:on("process:event", function(p) if p.event == "exit" then exits[#exits + 1] = p end end))
    H.write(H.home .. "/ends.sh", "sleep 0.2; exit 0\n")
    assert(pm.start({ script = H.home .. "/ends.sh", name = "ends", autorestart = false }))
    H.pump(function() return #exits >= 1 end, 5000, "the exit event")
    assert.equal(0, exits[1].code)
    assert.is_nil(exits[1].signal)
    H.write(H.home .. "/killed.sh", "exec sleep 1000\n")
    assert(pm.start({ script = H.home .. "/killed.sh", name = "killed" }))
    assert(pm.stop("killed"))
    local d = pm.describe("killed")[1]
    assert.is_nil(d.pm2_env.exit_code) -- (a signal ended it: null in the JSON)
    assert.equal("SIGINT", d.pm2_env.exit_signal)
    bus:close()
  end)

  it("refuses a function in pm.start's options with a line that says where hooks go, and starts nothing", function()
    local res, err = pm.start({ name = "hooked", script = "/bin/sleep", args = "1000",
      on_exit = function() return "stop" end })
    assert.is_nil(res)
    assert.truthy(err:find("app hooked: on_exit is a function", 1, true), err)
    assert.truthy(err:find("ecosystem file", 1, true), err)
    assert.is_nil(err:find("\n", 1, true))
    assert.same({}, pm.describe("hooked"))
  end)
end)
