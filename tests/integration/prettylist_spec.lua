-- `pm prettylist` (issue 23): the process list as PM2's prettylist prints
-- it, Node's util.inspect notation in PM2's shape, so that what a script
-- greps in PM2's (`status: 'online'`, `restart_time: 0`, once per process)
-- it finds as many times in pm's.
local H = require "pmtest"

local ok, fails = H.ok, H.fails

local function sleeper(name)
  return H.script(name or "app.sh", "#!/bin/sh\nexec sleep 1000\n")
end

local function count(text, word)
  local _, n = text:gsub(word:gsub("%p", "%%%0"), "")
  return n
end

describe("pm prettylist", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("prints [] with no process, and refuses an argument", function()
    assert.equal("[]\n", ok(H.pm("prettylist")).out)
    fails(H.pm("prettylist", "extra"))
  end)

  it("shows the first 100 processes and counts the others, as util.inspect does", function()
    local apps = {}
    for i = 1, 103 do apps[i] = { name = "p" .. i, script = "/bin/sleep", args = "1000", interpreter = "none" } end
    H.write(H.home .. "/many.json", require("pm.util").encode({ apps = apps }))
    ok(H.pm("start", H.home .. "/many.json", "-s"))
    local out = ok(H.pm("prettylist")).out
    assert.equal(100, count(out, "\n    name: '"))
    assert.is_truthy(out:find("\n    name: 'p100',\n", 1, true))
    assert.is_nil(out:find("\n    name: 'p101',\n", 1, true))
    assert.is_truthy(out:find("\n  },\n  ... 3 more items\n]\n$"), out:sub(-80))
    -- the daemon's list of the first N (what prettylist asks for)
    local c = H.connect()
    c:send('{"jsonrpc":"2.0","id":1,"method":"list","params":{"limit":2,"fields":["name"]}}\n')
    local r = c:reply(1).result
    assert.same({ { name = "p1" }, { name = "p2" } }, r)
    for i, bad in ipairs({ -1, 1.5, '"7"' }) do
      c:send(('{"jsonrpc":"2.0","id":%d,"method":"list","params":{"limit":%s}}\n'):format(1 + i, bad))
      assert.equal(-32602, c:reply(1 + i).error.code)
    end
    c:close()
  end)

  it("prints the list in util.inspect notation: bare keys, single quotes, nested objects", function()
    ok(H.pm("start", sleeper(), "--name", "api", "-s"))
    local out = ok(H.pm("prettylist")).out
    assert.is_truthy(out:find("^%[\n  {\n    name: 'api',\n    pid: %d+,\n    pm_id: 0,\n"), out:sub(1, 200))
    assert.is_truthy(out:find("\n    monit: { memory: %d+, cpu: [%d.]+ },\n"), out)
    assert.is_truthy(out:find("\n    pm2_env: {\n", 1, true), out)
    assert.is_truthy(out:find("\n      status: 'online',\n", 1, true), out)
    assert.is_truthy(out:find("\n      restart_time: 0,\n", 1, true), out)
    assert.is_truthy(out:find("\n      args: [],\n", 1, true), out)
    assert.is_truthy(out:find("\n      env: {\n", 1, true), out)
    assert.is_truthy(out:find("\n]\n$"), out:sub(-40))
    assert.is_nil(out:find('"name":', 1, true))
  end)

  it("counts each PM2 field once per process however many events pm kept", function()
    ok(H.pm("start", sleeper(), "--name", "api", "-s"))
    ok(H.pm("start", sleeper("b.sh"), "--name", "b", "-s"))
    for _ = 1, 3 do ok(H.pm("restart", "api", "-s")) end
    H.wait_for(function()
      local p = H.proc("api")
      return p.pm2_env.status == "online" and p.pm2_env.restart_time == 3
    end, 5000, "api restarted 3 times and online")
    -- jlist keeps pm's event history (it holds "online" once per start)
    local events = H.proc("api").pm2_env.events
    assert.is_true(#events >= 4)
    local out = ok(H.pm("prettylist")).out
    assert.equal(2, count(out, "online"), out)
    assert.equal(1, count(out, "restart_time: 3"), out)
    assert.equal(1, count(out, "restart_time: 0"), out)
    assert.equal(2, count(out, "watch: false"), out)
    assert.equal(0, count(out, "events"), out)
    -- pm's own members are under one pm key of the process
    assert.is_truthy(out:find("\n    pm: { ready: 'start' }\n", 1, true), out)
  end)

  it("stopped processes say so; quotes and backslashes in values come out as Node writes them", function()
    ok(H.pm("start", sleeper(), "--name", "it's \\ \"x\"", "-s"))
    ok(H.pm("stop", "all", "-s"))
    local out = ok(H.pm("prettylist")).out
    assert.is_truthy(out:find("\n    name: `it's \\\\ \"x\"`,\n", 1, true), out)
    assert.equal(1, count(out, "status: 'stopped'"), out)
  end)
end)

describe("pm describe and pm list with what an app wrote", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("print its control characters as \\xNN, never as escape sequences (package.json, STATUS=, metrics)",
    function()
    local dir = H.home .. "/esc"
    os.execute("mkdir -p " .. H.shquote(dir))
    H.write(dir .. "/package.json", '{"version":"1.0\\u001b]0;TITLE\\u0007\\u001b[2J"}')
    local s = H.write(dir .. "/app.sh", "#!/bin/sh\n"
      .. "printf '%s\\n' '{\"type\":\"axm:monitor\",\"data\":{\"m\\u001b[2J\":{\"value\":\"v\\u009b31m\"}}}' "
      .. ">&$NODE_CHANNEL_FD\n"
      .. "printf 'STATUS=up\\033[31mRED' | socat - \"UNIX-SENDTO:$NOTIFY_SOCKET\"\n"
      .. "exec sleep 1000\n")
    os.execute("chmod +x " .. H.shquote(s))
    ok(H.pm("start", s, "--name", "esc", "--ipc", "-s"))
    H.wait_for(function()
      local e = H.proc("esc").pm2_env
      return next(e.axm_monitor) and type(e.notify) == "table" and e.notify.status
    end, 5000, "the metric and STATUS")
    local card = ok(H.pm("describe", "esc")).out
    local list = ok(H.pm("list")).out
    for what, text in pairs({ describe = card, list = list }) do
      assert.is_nil(text:find("[\27\7]") or text:find("\194\155", 1, true), what .. ": " .. text)
    end
    assert.truthy(card:find("1.0\\x1B]0;TITLE\\x07\\x1B[2J", 1, true), card)
    assert.truthy(card:find("m\\x1B[2J", 1, true), card)
    assert.truthy(card:find("v\\x9B31m", 1, true), card)
    assert.truthy(card:find("up\\x1B[31mRED", 1, true), card)
    assert.truthy(list:find("up\\x1B[31", 1, true), list)
    -- an env_file of the app's folder: pm env prints it the same way
    H.write(dir .. "/.env", "X=a\27[2Jb\n")
    ok(H.pm("start", "/bin/sleep", "--name", "envy", "--env-file", dir .. "/.env", "-s", "--", "1000"))
    local env = ok(H.pm("env", tostring(H.proc("envy").pm_id))).out
    assert.is_nil(env:find("\27", 1, true), env)
    assert.truthy(env:find("X: a\\x1B[2Jb", 1, true), env)
  end)
end)
