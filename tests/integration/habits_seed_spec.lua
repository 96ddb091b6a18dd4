-- Issue 16 item 5: the seed's two examples (SEED-pm2-api.md), translated
-- line for line into Lua (tests/fixtures/seed_quickstart.lua, seed_call.lua),
-- run 20 times each with `pm run`, every run must work; callbacks run from
-- the event loop, never inside the call given them; `pm run` lives while a
-- callback is pending or a bus subscribed, and ends when nothing is.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local sq = H.shquote
local RUNS = 20

-- `pm run file` in cwd, in the background: -> a reader of its stdout
-- lines, a stop that ends it (SIGTERM through timeout(1), which also bounds
-- it to 30 s) and a finish that waits for its end; both return its exit
-- status (128 + N: signal N) and its stderr.
local function background(file, cwd)
  local cmd = ("exec 2>/dev/null; cd %s && PM_HOME=%s timeout 30 %s run %s 2>%s & echo $!; wait $!; echo \"exit=$?\"")
    :format(sq(cwd), sq(H.home), sq(H.bin), sq(file), sq(H.home .. "/.bg.err"))
  local p = assert(io.popen(cmd, "r"))
  local pid = tonumber(p:read("*l"))
  assert(pid, "the pid of timeout(1)")
  local bg = {}
  function bg.line() return p:read("*l") end
  function bg.finish()
    local code
    for l in p:lines() do code = tonumber(l:match("^exit=(%d+)$")) or code end
    p:close()
    return code, util.read_file(H.home .. "/.bg.err") or ""
  end
  function bg.stop()
    if H.alive(pid) then core.kill(pid, 15) end
    return bg.finish()
  end
  return bg
end

describe("the seed's examples, translated line for line", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm2-control.js (start, list, restart, disconnect) works 20 runs of 20", function()
    for run = 1, RUNS do
      -- (the first run starts the daemon, as PM2's connect does)
      local r = H.pm("run", H.fixtures .. "/seed_quickstart.lua", { cwd = H.fixtures })
      assert.equal(0, r.code, ("run %d: exit %s, stderr: %s"):format(run, tostring(r.code), r.err))
      assert.equal("", r.err, "run " .. run)
      -- console.log(err, list): nil, then the list as JSON
      local list_text = r.out:match("^nil\t(.*)\n$")
      assert(list_text, ("run %d printed: %s"):format(run, r.out))
      local list = util.decode(list_text)
      assert.equal("table", type(list), "run " .. run)
      assert.equal(1, #list, "run " .. run)
      assert.equal("api", list[1].name)
      assert.equal("online", list[1].pm2_env.status)
      assert.equal(H.real(H.fixtures .. "/api.js"), H.real(list[1].pm2_env.pm_exec_path))
      -- the restart was done before the script ended (disconnect let it end)
      local p = H.proc("api")
      assert.equal(1, p.pm2_env.restart_time, "run " .. run .. ": api restarted once")
      assert.equal("online", p.pm2_env.status)
      H.ok(H.pm("delete", "api"), "delete api after run " .. run)
    end
  end)

  it("pm2-call.js (connect, sendDataToProcessId; launchBus) gets the app's reply 20 runs of 20", function()
    -- id 1 is the seed's pm2-app.js, which replies at once
    H.ok(H.pm("start", H.fixtures .. "/api.js"))
    H.online(H.start(H.fixtures .. "/lb_pm2-app.js", "pm2-app"))
    assert.equal(1, H.proc("pm2-app").pm_id)
    for run = 1, RUNS do
      local bg = background(H.fixtures .. "/seed_call.lua", H.fixtures)
      local line = bg.line()
      -- the script lives on (its bus is subscribed, as in Node): ended here
      local code, err = bg.stop()
      assert(line, ("run %d printed nothing (exit %s), stderr: %s"):format(run, tostring(code), err))
      local packet = util.decode(line)
      assert.equal("table", type(packet), "run " .. run .. ": " .. line)
      assert.is_true(packet.data.success, "run " .. run)
      assert.equal(1, packet.process.pm_id)
      assert.equal("pm2-app", packet.process.name)
      assert.equal("process:msg", packet.raw.type)
      assert.equal(128 + 15, code, ("run %d ended by itself: exit %s, stderr: %s"):format(run, tostring(code), err))
      assert.equal("", err, "run " .. run)
    end
  end)
end)

describe("callbacks of the Lua API", function()
  before_each(function()
    H.new_home()
    H.online(H.start(H.fixtures .. "/cs_app.sh", "app"))
  end)
  after_each(function() H.cleanup() end)

  it("run from the loop once the chunk is over, in order, never inside the call; return values stay", function()
    local r = H.ok(H.pm("-e", [[
      local seen = {}
      local res = pm.list(function(err, list) seen[#seen + 1] = "list:" .. tostring(err) .. ":" .. #list end)
      seen[#seen + 1] = "returned:" .. #res
      pm.ping(function(err, pong)
        seen[#seen + 1] = "ping:" .. pong.msg
        print(table.concat(seen, " "))
      end)
      seen[#seen + 1] = "end of chunk"
    ]]))
    assert.equal("returned:1 end of chunk list:nil:1 ping:pong\n", r.out)
  end)

  it("connect(cb) then launchBus(cb): the bus is subscribed before connect's callback runs", function()
    local r = H.ok(H.pm("-e", [[
      local seen = {}
      pm.connect(function(err) seen[#seen + 1] = "connect:" .. tostring(err) print(table.concat(seen, " ")) end)
      pm.launchBus(function(err, bus)
        seen[#seen + 1] = "bus:" .. tostring(err)
        bus:on("x", function() end)
        bus:close()
      end)
      seen[#seen + 1] = "chunk"
    ]]))
    assert.equal("chunk bus:nil connect:nil\n", r.out)
  end)

  it("pm run lives while a bus is subscribed and ends when the script closes it", function()
    local file = H.script("live.lua", [[
      local bus = pm.launchBus()
      bus:on("process:event", function(e)
        if e.event == "online" and e.process.name == "app" then
          print("online " .. e.process.name)
          bus:close()
        end
      end)
      print("subscribed")
    ]])
    local bg = background(file, H.src)
    assert.equal("subscribed", bg.line())
    -- the main chunk is over: the script still runs, and hears this restart
    H.ok(H.pm("restart", "app"))
    assert.equal("online app", bg.line())
    local code, err = bg.finish()
    assert.equal(0, code, err)
    assert.equal("", err)
  end)

  it("pm run waits for a pending callback, then ends; pm.disconnect() in it lets it end", function()
    local file = H.script("pending.lua", [[
      pm.restart("app", function(err, procs)
        print("restarted", err, procs[1].pm2_env.restart_time)
        pm.disconnect()
      end)
    ]])
    local r = H.ok(H.pm("run", file))
    assert.equal("restarted\tnil\t1\n", r.out)
  end)

  it("a callback's error is said on one line (the traceback with --verbose) and the run fails", function()
    local r = H.pm("-e", 'pm.ping(function() error("boom in a callback") end) print("chunk done")')
    assert.equal(1, r.code, r.err)
    assert.equal("chunk done\n", r.out)
    assert.equal("pm: error in a callback: (command line):1: boom in a callback\n", r.err)
    r = H.pm("--verbose", "-e", 'pm.ping(function() error("boom in a callback") end)')
    assert.equal(1, r.code, r.err)
    assert.truthy(r.err:find("boom in a callback", 1, true), r.err)
    assert.truthy(r.err:find("stack traceback", 1, true), r.err)
    -- a bus handler's error the same way
    local file = H.script("badhandler.lua", [[
      local bus = pm.launchBus()
      bus:on("process:event", function() error("handler failed") end)
      pm.restart("app")
    ]])
    r = H.pm("run", file)
    assert.equal(1, r.code, r.err)
    assert.truthy(r.err:match("^pm: error in a callback: bus handler of process:event: [^\n]*handler failed\n$"), r.err)
  end)
end)
