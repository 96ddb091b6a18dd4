-- The wire protocol spoken directly on $PM_HOME/rpc.sock (DESIGN §6):
-- JSON-RPC 2.0, one object per line; malformed, oversized and hostile input
-- gets errors and never takes the daemon down; other uids are refused.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local pump, connect = H.run_until, H.connect

-- One request line -> the reply message.
local function ask(c, line)
  c:send(line .. "\n")
  local m = c:next(3000)
  assert(m, "no reply to " .. line:sub(1, 80))
  return m
end

local function is_error(m, code, id)
  assert.equal("2.0", m.jsonrpc)
  assert.is_table(m.error, "an error expected, got " .. util.encode(m))
  assert.equal(code, m.error.code)
  assert.is_string(m.error.message)
  assert.is_truthy(#m.error.message > 0)
  assert.is_nil(m.error.message:find("\n"), "a one-line message expected")
  assert.is_nil(m.result)
  if id == nil then assert.equal(util.null, m.id) else assert.equal(id, m.id) end
end

local fd_count = H.fd_count

local PING = '{"jsonrpc":"2.0","id":%s,"method":"ping"}'

describe("the wire protocol", function()
  local home, dpid

  lazy_setup(function()
    home = H.new_home()
    local r = H.pm("ping")
    assert.equal(0, r.code, r.err)
    dpid = H.daemon_pid()
    assert.is_truthy(dpid and H.alive(dpid))
  end)

  lazy_teardown(function()
    H.home = home
    H.cleanup(home)
  end)

  it("answers ping with msg pong and the version", function()
    local c = connect()
    local m = ask(c, PING:format(1))
    assert.equal("2.0", m.jsonrpc)
    assert.equal(1, m.id)
    assert.is_nil(m.error)
    assert.equal("pong", m.result.msg)
    assert.equal(util.VERSION, m.result.version)
    -- string ids come back as they were
    m = ask(c, PING:format('"abc"'))
    assert.equal("abc", m.id)
    assert.equal("pong", m.result.msg)
    -- params null or {} are fine
    m = ask(c, '{"jsonrpc":"2.0","id":3,"method":"ping","params":null}')
    assert.equal("pong", m.result.msg)
    -- numbers come back as the same number, however large or fractional
    for _, id in ipairs({ "9007199254740993", "9223372036854775807", "1.5e300", "-0.1", "12345678901234567890" }) do
      m = ask(c, PING:format(id))
      assert.equal(util.decode(id), m.id, "id " .. id)
    end
    c:close()
  end)

  it("answers a list with no apps with [] on the wire", function()
    local c = connect()
    c:send('{"jsonrpc":"2.0","id":4,"method":"list","params":{}}\n')
    assert.is_truthy(c:next())
    assert.equal('{"jsonrpc":"2.0","id":4,"result":[]}', c.lines[1])
    c:close()
  end)

  it("answers garbage and invalid JSON with -32700 and goes on", function()
    local c = connect()
    is_error(ask(c, "hello, daemon"), -32700)
    is_error(ask(c, '{"jsonrpc":"2.0","id":1,"method":'), -32700)
    is_error(ask(c, "{'single': 'quotes'}"), -32700)
    is_error(ask(c, "\1\2\3\255\254 junk"), -32700)
    is_error(ask(c, '{"id": 1} trailing'), -32700)
    local m = ask(c, PING:format(2))
    assert.equal(2, m.id)
    assert.equal("pong", m.result.msg)
    c:close()
  end)

  it("answers an array or a non-object with -32600", function()
    local c = connect()
    is_error(ask(c, "[1,2,3]"), -32600)
    is_error(ask(c, "[" .. PING:format(1) .. "]"), -32600)
    is_error(ask(c, "42"), -32600)
    is_error(ask(c, '"ping"'), -32600)
    is_error(ask(c, "true"), -32600)
    is_error(ask(c, "null"), -32600)
    -- an id that is neither a string, a number nor null
    is_error(ask(c, '{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}'), -32600)
    assert.equal("pong", ask(c, PING:format(5)).result.msg)
    c:close()
  end)

  it("says batches are not supported, for a bare [] too", function()
    local c = connect()
    for _, line in ipairs({ "[]", " [ ] ", "[" .. PING:format(1) .. "]" }) do
      local m = ask(c, line)
      is_error(m, -32600)
      assert.is_truthy(m.error.message:find("batches", 1, true), line .. ": " .. m.error.message)
    end
    assert.equal("pong", ask(c, PING:format(2)).result.msg)
    c:close()
  end)

  it("replaces invalid UTF-8 in an id or a method, so that every reply is valid UTF-8 JSON", function()
    local function valid_utf8(s)
      local i = 1
      while i <= #s do
        local b = s:byte(i)
        local len = b < 0x80 and 1 or (b >= 0xc2 and b <= 0xdf) and 2 or (b >= 0xe0 and b <= 0xef) and 3
          or (b >= 0xf0 and b <= 0xf4) and 4 or nil
        if not len then return false end
        for k = 1, len - 1 do
          local x = s:byte(i + k)
          if not x or x < 0x80 or x > 0xbf then return false end
        end
        i = i + len
      end
      return true
    end
    local c = connect()
    local lines = {
      '{"jsonrpc":"2.0","id":"a\255b","method":"ping"}',
      '{"jsonrpc":"2.0","id":"\192\175","method":"ping"}',
      '{"jsonrpc":"2.0","id":"x\237\160\128","method":"noSuch\254"}',
      '{"jsonrpc":"2.0","id":"\226\130","method":"stop","params":{"target":"\255"}}',
    }
    for _, line in ipairs(lines) do
      c:send(line .. "\n")
      assert.is_truthy(c:next(3000), "no reply to " .. line)
      local raw = c.lines[#c.lines]
      assert.is_true(valid_utf8(raw), "not UTF-8: " .. raw)
      assert.is_table(util.decode(raw), raw)
    end
    assert.equal("a\239\191\189b", c.msgs[1].id)
    assert.equal("pong", c.msgs[1].result.msg)
    -- valid UTF-8 comes back as it was
    assert.equal("é€😀", ask(c, '{"jsonrpc":"2.0","id":"é€😀","method":"ping"}').id)
    c:close()
  end)

  it("answers every request of a peer that half-closes, a last one without newline too", function()
    if os.execute("command -v socat >/dev/null 2>&1") ~= 0 then
      pending("needs socat")
      return
    end
    H.ok(H.pm("start", "/bin/sleep", "--name", "halfclose", "--", "1000"))
    local cmd = "socat -t 10 - UNIX-CONNECT:" .. H.shquote(H.home .. "/rpc.sock")
    -- a request whose reply comes later (a restart), then one without newline
    local r = H.sh(cmd, { stdin = '{"jsonrpc":"2.0","id":1,"method":"restart","params":{"target":"halfclose"}}\n'
      .. PING:format(2) })
    local ids = {}
    for line in r.out:gmatch("[^\n]+") do
      local m = util.decode(line)
      assert.is_table(m, line)
      assert.is_nil(m.error, line)
      ids[#ids + 1] = m.id
    end
    table.sort(ids)
    assert.same({ 1, 2 }, ids)
    -- the daemon closed the connection once it had answered: socat ended
    -- long before its 10 s
    H.ok(H.pm("delete", "halfclose"))
  end)

  it("answers a request without a method, or with a non-string one, with -32600", function()
    local c = connect()
    is_error(ask(c, '{"jsonrpc":"2.0","id":7}'), -32600, 7)
    is_error(ask(c, '{"jsonrpc":"2.0","id":8,"method":42}'), -32600, 8)
    is_error(ask(c, '{"jsonrpc":"2.0","id":9,"method":null}'), -32600, 9)
    c:close()
  end)

  it("answers an unknown method with -32601", function()
    local c = connect()
    is_error(ask(c, '{"jsonrpc":"2.0","id":10,"method":"noSuchMethod"}'), -32601, 10)
    is_error(ask(c, '{"jsonrpc":"2.0","id":11,"method":"__index"}'), -32601, 11)
    is_error(ask(c, '{"jsonrpc":"2.0","id":12,"method":""}'), -32601, 12)
    c:close()
  end)

  it("answers bad params with -32602", function()
    local c = connect()
    is_error(ask(c, '{"jsonrpc":"2.0","id":13,"method":"stop","params":"api"}'), -32602, 13)
    is_error(ask(c, '{"jsonrpc":"2.0","id":14,"method":"ping","params":7}'), -32602, 14)
    is_error(ask(c, '{"jsonrpc":"2.0","id":15,"method":"stop","params":{}}'), -32602, 15)
    is_error(ask(c, '{"jsonrpc":"2.0","id":16,"method":"subscribe","params":{"events":[1,2]}}'), -32602, 16)
    c:close()
  end)

  it("answers a target of the wrong type with -32602, not with Lua internals", function()
    local c = connect()
    -- (a list of targets is one: [1] is the app of pm_id 1; a list holding
    -- a table is not)
    for i, t in ipairs({ "{}", "[{}]", "true" }) do
      local m = ask(c, ('{"jsonrpc":"2.0","id":%d,"method":"stop","params":{"target":%s}}'):format(i, t))
      assert.is_table(m.error, "an error expected for target " .. t)
      assert.is_nil(m.error.message:find("table: 0x", 1, true), "message: " .. m.error.message)
      is_error(m, -32602, i)
    end
    c:close()
  end)

  it("knows every method of DESIGN §6", function()
    local c = connect()
    local methods = { "ping", "start", "stop", "restart", "reload", "delete", "reset", "list",
      "describe", "scale", "save", "resurrect", "flush", "reloadLogs", "sendSignalToProcessName",
      "sendSignalToProcessId", "sendDataToProcessId", "unsubscribe" }
    -- (killDaemon and kill would end the daemon this file shares)
    local unknown = {}
    for i, m in ipairs(methods) do
      local reply = ask(c, ('{"jsonrpc":"2.0","id":%d,"method":"%s","params":{}}'):format(i, m))
      assert.equal(i, reply.id)
      if type(reply.error) == "table" and reply.error.code == -32601 then unknown[#unknown + 1] = m end
    end
    c:close()
    assert.same({}, unknown)
  end)

  it("answers an unknown target with -32000 and a message", function()
    local c = connect()
    for i, method in ipairs({ "stop", "restart", "delete", "reset" }) do
      local m = ask(c, ('{"jsonrpc":"2.0","id":%d,"method":"%s","params":{"target":"no-such-app"}}')
        :format(20 + i, method))
      is_error(m, -32000, 20 + i)
      assert.is_truthy(m.error.message:find("no-such-app", 1, true), m.error.message)
    end
    is_error(ask(c, '{"jsonrpc":"2.0","id":30,"method":"sendSignalToProcessId",'
      .. '"params":{"signal":"SIGUSR2","target":99}}'), -32000, 30)
    c:close()
  end)

  it("does not answer notifications (requests without an id)", function()
    local c = connect()
    -- each notification is followed by a request: its reply must come first
    local notes = {
      '{"jsonrpc":"2.0","method":"ping"}',
      '{"jsonrpc":"2.0","method":"noSuchMethod"}',
      '{"jsonrpc":"2.0","method":"stop","params":{"target":"no-such-app"}}',
      '{"jsonrpc":"2.0","method":"stop","params":"bad"}',
    }
    for i, n in ipairs(notes) do
      c:send(n .. "\n" .. PING:format(100 + i) .. "\n")
      local m = c:next(3000)
      assert.is_truthy(m, "no reply after " .. n)
      assert.equal(100 + i, m.id, "a reply to the notification " .. n .. ": " .. util.encode(m))
    end
    -- and nothing else arrives
    assert.is_nil(c:next(200))
    assert.equal(#notes, #c.msgs)
    c:close()
  end)

  it("takes a request split over several writes", function()
    local c = connect()
    c:send('{"jsonrpc":"2.0","id":4')
    assert.is_nil(c:next(150), "a reply to half a line")
    c:send('2,"meth')
    assert.is_nil(c:next(150), "a reply to half a line")
    c:send('od":"ping"}\n' .. PING:format(43) .. "\n")
    local m = c:next()
    assert.equal(42, m.id)
    assert.equal("pong", m.result.msg)
    assert.equal(43, c:next().id)
    c:close()
  end)

  it("answers a 10 MB line with an error, then goes on", function()
    local c = connect()
    local big = '{"jsonrpc":"2.0","id":50,"method":"ping","params":{"pad":"'
      .. string.rep("x", 10 * 1024 * 1024) .. '"}}\n'
    c:send(big .. PING:format(51) .. "\n")
    local m = c:next(10000)
    assert.is_truthy(m, "no reply to the 10 MB line")
    assert.is_table(m.error)
    assert.equal(-32600, m.error.code)
    local m2 = c:next(10000)
    assert.is_truthy(m2, "no reply after the 10 MB line")
    assert.equal(51, m2.id)
    assert.equal("pong", m2.result.msg)
    assert.is_false(c.closed)
    assert.is_nil(c:next(100))
    c:close()
    -- and another connection is served
    local c2 = connect()
    assert.equal("pong", ask(c2, PING:format(52)).result.msg)
    c2:close()
  end)

  it("survives binary junk followed by a close, and an unterminated line", function()
    math.randomseed(42)
    for _ = 1, 5 do
      local c = connect()
      local t = {}
      for i = 1, 65536 do t[i] = string.char(math.random(0, 255)) end
      c:send(table.concat(t))
      pump(function() return c.stream:pending() == 0 end, 2000)
      c:close()
    end
    local c = connect()
    c:send('{"jsonrpc":"2.0","id":60,"method":"ping"') -- no newline, then gone
    pump(function() return c.stream:pending() == 0 end, 2000)
    c:close()
    local c2 = connect()
    assert.equal("pong", ask(c2, PING:format(61)).result.msg)
    c2:close()
  end)

  it("serves many connections opened and closed, and leaks no fd", function()
    -- warm up, then the daemon's fd count as a baseline
    local w = connect()
    assert.equal("pong", ask(w, PING:format(1)).result.msg)
    w:close()
    local before
    H.wait_for(function()
      before = fd_count(dpid)
      return before > 0
    end, 2000)
    local open = {}
    for i = 1, 100 do
      local c = connect()
      open[#open + 1] = c
      if i % 3 == 0 then c:send(PING:format(i) .. "\n") end
    end
    -- all at once, then all of them answer
    for i = 3, 100, 3 do
      local c = open[i]
      local m = c:next(3000)
      assert.is_truthy(m, "connection " .. i .. " got no reply")
      assert.equal(i, m.id)
    end
    for _, c in ipairs(open) do c:close() end
    -- opened and closed one after the other, some with a request unread
    for i = 1, 200 do
      local c = connect()
      if i % 2 == 0 then c:send(PING:format(i) .. "\n") end
      c:close()
    end
    local c = connect()
    assert.equal("pong", ask(c, PING:format(999)).result.msg)
    c:close()
    local now = H.wait_for(function()
      local n = fd_count(dpid)
      return n <= before + 1 and n
    end, 5000, "the daemon's fds to come back to " .. before)
    assert.is_true(now <= before + 1)
  end)

  it("refuses a client with another uid", function()
    if core.getuid() ~= 0 then
      pending("needs root to run a client as another user")
      return
    end
    local runas
    if os.execute("command -v setpriv >/dev/null 2>&1") == 0 then
      runas = "setpriv --reuid=nobody --regid=nogroup --clear-groups"
    elseif os.execute("command -v runuser >/dev/null 2>&1") == 0 then
      runas = "runuser -u nobody --"
    end
    if not runas or os.execute("command -v socat >/dev/null 2>&1") ~= 0 then
      pending("needs setpriv or runuser, and socat")
      return
    end
    local sock = H.home .. "/rpc.sock"
    local cmd = runas .. " socat -t 2 - UNIX-CONNECT:" .. H.shquote(sock)
    -- PM_HOME is 0700: the other user does not even reach the socket
    local r = H.sh(cmd, { stdin = PING:format(1) .. "\n" })
    assert.are_not.equal(0, r.code)
    assert.is_nil(r.out:find("pong"))
    -- opened up, the socket is reached, and the daemon itself refuses, with
    -- one line that says why
    os.execute("chmod 0711 " .. H.shquote(H.home) .. " && chmod 0666 " .. H.shquote(sock))
    local ok, err = pcall(function()
      r = H.sh(cmd, { stdin = PING:format(2) .. "\n" })
      assert.is_nil(r.out:find("pong"), "the daemon answered uid nobody: " .. r.out)
      assert.is_truthy(r.out:match("^[^\n]+\n$"), "one line expected, got [" .. r.out .. "]")
      local m = util.decode(r.out)
      is_error(m, -32000)
      assert.is_truthy(m.error.message:find("refused", 1, true), m.error.message)
      assert.is_truthy(m.error.message:find("uid 65534", 1, true), m.error.message)
      assert.is_truthy((util.read_file(H.home .. "/pm.log") or ""):find("refused a client with uid"),
        "no refusal in pm.log")
    end)
    os.execute("chmod 0600 " .. H.shquote(sock))
    core.chmod(H.home, 448) -- 0700
    assert(ok, err)
    -- root is still served
    local c = connect()
    assert.equal("pong", ask(c, PING:format(3)).result.msg)
    c:close()
  end)

  it("still answers pm ping afterwards, with the same daemon", function()
    local r = H.pm("ping")
    assert.equal(0, r.code, r.err)
    local pong = util.decode(r.out)
    assert.equal("pong", pong.msg)
    assert.equal(dpid, H.daemon_pid())
    assert.equal(dpid, pong.pid)
    assert.is_true(H.alive(dpid))
    local log = util.read_file(H.home .. "/pm.log") or ""
    assert.is_nil(log:find("internal error"), "internal errors in pm.log")
    assert.is_nil(log:find("stack traceback"), "tracebacks in pm.log")
  end)
end)

describe("an app's bytes that are not UTF-8", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  local R = "\239\191\189"
  local function utf8(s) return core.utf8_clean(s) == s end

  it("show as U+FFFD in jlist and pm logs --json; the process and the journal keep the bytes", function()
    local script = H.write(H.home .. "/latin1.sh", "printf 'caf\\351 %s\\n' \"$1\"; sleep 1000\n")
    -- (a name must be UTF-8: its log files are named after it)
    local bad = H.pm("start", "/bin/sh", "--name", "l\2331", "--", script)
    assert.are_not.equal(0, bad.code)
    assert.truthy(bad.err:find("is UTF-8", 1, true), bad.err)
    H.ok(H.pm("start", "/bin/sh", "--name", "latin", "--", script, "d\233j\224", { env = { LATIN = "caf\233" } }))
    local r = H.ok(H.pm("jlist"))
    assert.is_true(utf8(r.out), "jlist is not UTF-8")
    local p = util.decode(r.out)[1]
    assert.equal("caf" .. R, p.pm2_env.LATIN)
    assert.equal("caf" .. R, p.pm2_env.env.LATIN)
    assert.equal("d" .. R .. "j" .. R, p.pm2_env.args[2])
    -- the process has the bytes it was given
    local e = H.wait_for(function() return H.environ(p.pid) end, 3000, "the environment")
    assert.equal("caf\233", e.LATIN)
    r = H.wait_for(function()
      local l = H.pm("logs", "0", "--json", "--nostream", "--lines", "5")
      return l.out:find("message", 1, true) and l
    end, 3000, "the app's line")
    assert.is_true(utf8(r.out), "pm logs --json is not UTF-8")
    assert.equal("caf" .. R .. " d" .. R .. "j" .. R, util.decode(r.out:match("[^\n]+")).message)
    -- a restart from the journal (the daemon killed) gives the same bytes again
    H.crash_daemon(H.daemon_pid())
    H.ok(H.pm("restart", "all"))
    local q = util.decode(H.ok(H.pm("jlist")).out)[1]
    e = H.wait_for(function() local x = H.environ(q.pid); return x and x.LATIN and x end, 3000, "the environment")
    assert.equal("caf\233", e.LATIN)
    local f = assert(io.open("/proc/" .. q.pid .. "/cmdline", "rb"))
    local argv = f:read("*a")
    f:close()
    assert.truthy(argv:find("\0d\233j\224\0", 1, true), argv)
  end)
end)
