-- Held listen sockets (sockets.lua) without a daemon: a socket is bound
-- once per address and kept while the app declares it; a port an instance
-- of a Node app in cluster mode asks for is bound for that app alone
-- (never one another app holds, a privileged one only for an app running
-- as root), kept by the app's name across new declarations, and written
-- into its declaration; exec_mode's PM2 default (app.lua).
local core = require "pm.core"
local sockets = require "pm.sockets"
local appdecl = require "pm.app"

-- A port nothing listens on (on any address)
local function free_port()
  for _ = 1, 200 do
    local port = 20000 + math.random(0, 29999)
    local fd = core.listen_tcp("::", tostring(port), nil, true)
    if fd then
      core.close(fd)
      return port
    end
  end
  error("no free port")
end

local n = 0
local function name()
  n = n + 1
  return ("unit-sockets-%d-%d"):format(core.getpid(), n)
end

describe("held sockets", function()
  local names = {}
  local function app(d)
    d.name = d.name or name()
    names[#names + 1] = sockets.key(d)
    return d
  end
  after_each(function()
    for _, nm in ipairs(names) do sockets.release(nm) end
    names = {}
  end)

  it("an address declared again is the same socket; one no longer declared is closed", function()
    local d = app({})
    local p1, p2 = free_port(), free_port()
    local a = assert(sockets.acquire(sockets.key(d), { "tcp://127.0.0.1:" .. p1, "tcp://127.0.0.1:" .. p2 }, "/tmp"))
    local b = assert(sockets.acquire(sockets.key(d), { "tcp://127.0.0.1:" .. p1 }, "/"))
    assert.equal(a[1].fd, b[1].fd)
    assert.equal(1, #b)
    -- (the second one's port is free again)
    local fd = assert(core.listen_tcp("127.0.0.1", tostring(p2)))
    core.close(fd)
  end)

  it("a port an instance asks for: bound for the app, the same socket at the next request", function()
    local d = app({ exec_mode = "cluster_mode" })
    local port = free_port()
    local s, spec = sockets.learn(d.name, d, "", port)
    assert.truthy(s, spec)
    assert.equal("tcp://:" .. port, spec)
    local again, none = sockets.learn(d.name, d, "::", port)
    assert.equal(s.fd, again.fd)
    assert.is_nil(none) -- (nothing new to remember)
    assert.is_true(sockets.remember(d))
    assert.same({ "tcp://:" .. port }, d.learned_listen)
    assert.is_false(sockets.remember(d))
    -- a new declaration of the app (no learned_listen) keeps the socket
    local d2 = { name = d.name, exec_mode = "cluster_mode" }
    assert.same({ "tcp://:" .. port }, sockets.learned_specs(d2))
    local socks = assert(sockets.acquire(sockets.key(d), sockets.learned_specs(d2), "/"))
    assert.equal(s.fd, socks[1].fd)
    assert(sockets.acquire(sockets.key(d), {}, "/")) -- declares nothing: what it learned stays
    assert.equal(s.fd, (sockets.learn(d.name, d2, "", port)).fd)
  end)

  it("a port another app holds is refused, saying which app", function()
    local a, b = app({}), app({})
    local port = free_port()
    assert(sockets.acquire(sockets.key(a), { "tcp://127.0.0.1:" .. port }, "/"))
    local s, err, code = sockets.learn(b.name, b, "", port)
    assert.is_nil(s)
    assert.equal(("port %d is held by pm for app '%s'"):format(port, a.name), err)
    assert.equal("EADDRINUSE", code)
  end)

  it("a port in use elsewhere: the bind's error", function()
    local d = app({})
    local port = free_port()
    local fd = assert(core.listen_tcp("127.0.0.1", tostring(port)))
    local s, err, code = sockets.learn(d.name, d, "127.0.0.1", port)
    core.close(fd)
    assert.is_nil(s)
    assert.truthy(err:find("in use", 1, true), err)
    assert.equal("EADDRINUSE", code)
  end)

  it("only numeric addresses, only ports 1-65535", function()
    local d = app({})
    for _, bad in ipairs({ { "localhost", 8080 }, { "127.0.0.1", 0 }, { "127.0.0.1", 70000 }, { {}, 8080 },
      { "1.2.3.4; rm", 8080 } }) do
      local s, err, code = sockets.learn(d.name, d, bad[1], bad[2])
      assert.is_nil(s)
      assert.equal("EINVAL", code, err)
    end
  end)

  it("a privileged port for an app of another user (daemon as root): refused", function()
    if core.getuid() ~= 0 then
      pending("the rule is a root daemon's")
      return
    end
    local d = app({ uid = 65534 })
    local s, err, code = sockets.learn(d.name, d, "127.0.0.1", 1000)
    assert.is_nil(s)
    assert.equal("EACCES", code)
    assert.truthy(err:find("privileged", 1, true), err)
    -- a saved declaration's learned port is not bound for it either
    d.learned_listen = { "tcp://:1000" }
    assert.same({}, sockets.learned_specs(d))
  end)

  it("two apps of one name in two namespaces hold sockets of their own", function()
    local a = app({ exec_mode = "cluster_mode", namespace = "tenant_a" })
    local b = app({ exec_mode = "cluster_mode", namespace = "tenant_b", name = a.name })
    local port = free_port()
    assert(sockets.learn(a.name, a, "", port))
    local s, err, code = sockets.learn(b.name, b, "", port)
    assert.is_nil(s)
    assert.equal("EADDRINUSE", code, err)
  end)

  it("an app declared again as another user loses what it learned as the first one", function()
    if core.getuid() ~= 0 then
      pending("users are a root daemon's")
      return
    end
    local d = app({ exec_mode = "cluster_mode" })
    local port = free_port()
    local s = assert(sockets.learn(d.name, d, "", port))
    local d2 = { name = d.name, exec_mode = "cluster_mode", uid = 65534, learned_listen = { "tcp://:" .. port } }
    local again = sockets.learn(d2.name, d2, "", port)
    assert.is_not.equal(s, again, "the socket bound for root is not handed to uid 65534")
    -- (the first socket was closed: a new one was bound for uid 65534)
    assert.truthy(again)
    -- a privileged port the root app learned is refused to the other user
    local low = app({ exec_mode = "cluster_mode" })
    local ok = sockets.learn(low.name, low, "127.0.0.1", 1001)
    if ok then
      local other = { name = low.name, exec_mode = "cluster_mode", uid = 65534 }
      local s2, err, code = sockets.learn(other.name, other, "127.0.0.1", 1001)
      assert.is_nil(s2)
      assert.equal("EACCES", code, err)
    end
  end)

  it("at most MAX_LEARNED ports per app", function()
    local d = app({})
    for _ = 1, sockets.MAX_LEARNED do assert(sockets.learn(d.name, d, "127.0.0.1", free_port())) end
    local s, err, code = sockets.learn(d.name, d, "127.0.0.1", free_port())
    assert.is_nil(s)
    assert.equal("EMFILE", code, err)
  end)
end)

describe("exec_mode (PM2's default)", function()
  local function mode(raw)
    local d = assert(appdecl.normalize(raw, { base = "/tmp", environ = {} }))
    return d.exec_mode
  end
  local js = os.tmpname() .. ".js"
  setup(function() io.open(js, "w"):close() end)
  teardown(function() os.remove(js) end)

  it("a Node script given instances (a number, max, 1): cluster; given none: fork", function()
    if not appdecl.find_in_path("node") then
      pending("no node")
      return
    end
    assert.equal("cluster_mode", mode({ script = js, instances = 4 }))
    assert.equal("cluster_mode", mode({ script = js, instances = "max" }))
    assert.equal("cluster_mode", mode({ script = js, instances = 1 }))
    assert.equal("fork_mode", mode({ script = js }))
    assert.equal("fork_mode", mode({ script = js, instances = 4, exec_mode = "fork" }))
  end)

  it("not Node, with instances: fork; cluster when asked", function()
    assert.equal("fork_mode", mode({ script = "/bin/sh", instances = 4 }))
    assert.equal("cluster_mode", mode({ script = "/bin/sh", instances = 4, exec_mode = "cluster" }))
  end)

  it("learned_listen holds TCP addresses only", function()
    local d, err = appdecl.normalize({ script = "/bin/sh", learned_listen = { "unix:/tmp/x.sock" } },
      { base = "/tmp", environ = {} })
    assert.is_nil(d)
    assert.truthy(err:find("TCP addresses only", 1, true), err)
  end)
end)

describe("a held socket's name in LISTEN_FDNAMES", function()
  it("holds no ':' (systemd's separator), for IPv6 hosts too", function()
    assert.equal("tcp_127.0.0.1_8080", sockets.fd_name("127.0.0.1", 8080))
    assert.equal("tcp___1_8080", sockets.fd_name("::1", 8080))
    assert.is_nil(sockets.fd_name("fe80::1", 80):find(":", 1, true))
  end)
end)
