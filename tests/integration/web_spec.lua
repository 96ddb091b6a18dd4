-- pm web (issue 18): the app pm-web that the daemon supervises, its HTTP
-- server (libmicrohttpd in pm's loop) as a client of rpc.sock, /metrics,
-- the token, the session cookie and CSRF, and bad input: oversized heads
-- and bodies, slow clients, paths out of the assets, forged cross-site
-- POSTs. Probes are tests/fixtures/web_probe.py (python3, in DEPS).
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local PROBE = H.fixtures .. "/web_probe.py"
local http = require "httpc"

-- python3 web_probe.py ... (the probes Lua cannot make: a source address)
local function probe(...)
  local r = H.sh("/usr/bin/python3 " .. H.command(...):gsub("^%S+", H.shquote(PROBE)))
  assert(r.code == 0, "web_probe.py " .. table.concat({ ... }, " ") .. ": " .. r.err)
  return assert(util.decode(r.out), "web_probe.py printed: " .. r.out)
end

-- "Name:value", ... -> { Name = value }
local function hdr(...)
  local t = {}
  for _, a in ipairs({ ... }) do
    local k, v = a:match("^([^:]+):(.*)$")
    t[k] = v
  end
  return t
end

-- GET and POST of path on the web's port; url: a path or base .. path
local port, base, token
local function GET(url, ...) return http.get(port, (url:gsub("^http://[^/]+", "")), hdr(...)) end
local function POST(url, body, ...) return http.post(port, (url:gsub("^http://[^/]+", "")), body, hdr(...)) end

local function start_web(env)
  port = H.free_port()
  base = "http://127.0.0.1:" .. port
  local r = H.ok(H.pm("web", "--listen", "127.0.0.1:" .. port, { env = env }), "pm web")
  token = r.out:match("%?token=(%x+)")
  assert(token, "pm web printed no URL with a token: " .. r.out)
  return r
end

local function login()
  local r = GET(base .. "/?token=" .. token)
  assert.equal(303, r.status)
  local sid = (r.headers["set-cookie"] or ""):match("pm_session=(%x+)")
  assert(sid, "no session cookie: " .. (r.headers["set-cookie"] or ""))
  local cookie = "pm_session=" .. sid
  local page = GET(base .. "/", "Cookie:" .. cookie)
  assert.equal(200, page.status)
  local csrf = page.body:match('<meta name="csrf" content="(%x+)">')
  assert(csrf, "no CSRF token in the page")
  return cookie, csrf, r
end

local function web_proc()
  return H.proc("pm-web")
end

describe("pm web", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup(H.home) end)

  it("declares pm-web (namespace pm), online, and prints its URL with the token of a 0600 file", function()
    local r = start_web()
    assert.matches("http://127%.0%.0%.1:" .. port .. "/%?token=" .. token, r.out)
    local p = web_proc()
    assert.equal("pm", p.pm2_env.namespace)
    assert.equal("online", p.pm2_env.status)
    local st = core.stat(H.home .. "/web.token")
    assert.equal(384, st.mode % 4096) -- 0600
    assert.equal(token, util.read_file(H.home .. "/web.token"):match("%x+"))
    -- listed as any app, and the daemon itself listens on no TCP port
    assert.truthy(H.ok(H.pm("list")).out:find("pm-web", 1, true))
    local dpid = H.daemon_pid(H.home)
    -- (the inodes of listening TCP sockets, and a process's fds that are one of them)
    local function listening(pid)
      local inodes = {}
      for _, f in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
        for line in (util.read_file(f) or ""):gmatch("[^\n]+") do
          local state, ino = line:match("^%s*%d+:%s+%S+%s+%S+%s+(%x%x)%s+%S+%s+%S+%s+%S+%s+%S+%s+%S+%s+(%d+)")
          if state == "0A" then inodes[ino] = true end
        end
      end
      local n = 0
      for ino in H.sh("ls -l /proc/" .. pid .. "/fd").out:gmatch("socket:%[(%d+)%]") do
        if inodes[ino] then n = n + 1 end
      end
      return n
    end
    assert.equal(0, listening(dpid))
    assert.equal(1, listening(p.pid))
    -- pm web again: the same settings keep the process, others replace it
    H.ok(H.pm("web", "--listen", "127.0.0.1:" .. port))
    assert.equal(p.pid, web_proc().pid)
    local port2 = H.free_port()
    local again = H.ok(H.pm("web", "--listen", "127.0.0.1:" .. port2))
    assert.truthy(again.out:find(":" .. port2 .. "/?token=" .. token, 1, true))
    assert.are_not.equal(p.pid, web_proc().pid)
    assert.equal(200, http.get(port2, "/metrics").status)
    assert.equal(1, #H.jlist())
    -- a bad address, a port in use: one line, and no pm-web left restarting
    H.fails(H.pm("web", "--listen", "nonsense"), "--listen nonsense: an address and port expected")
    local held_port = H.free_port()
    local held = assert(core.listen_tcp("127.0.0.1", tostring(held_port)))
    H.fails(H.pm("web", "--listen", "127.0.0.1:" .. held_port), "pm web could not start: ",
      "127.0.0.1:" .. held_port .. ": cannot listen: Address already in use")
    core.close(held)
    assert.is_nil(H.by_name(H.jlist())["pm-web"])
    H.ok(H.pm("web", "--listen", "127.0.0.1:" .. port2))
    -- pm web --off forgets it
    H.ok(H.pm("web", "--off"))
    assert.is_nil(H.by_name(H.jlist())["pm-web"])
  end)

  it("serves /metrics from loopback without a token, in Prometheus' text format (promtool)", function()
    H.ok(H.pm("start", "--name", "a", "--", "sleep", "1000"))
    start_web()
    local r = GET(base .. "/metrics")
    assert.equal(200, r.status)
    assert.matches("^text/plain; version=0%.0%.4", r.headers["content-type"])
    assert.matches('\npm2_up{id="%d+",name="a",namespace="default",instance="0",interpreter="none"} 1\n', r.body)
    for _, name in ipairs({ "pm2_cpu", "pm2_memory", "pm2_uptime", "pm2_restarts", "pm2_instances",
      "pm_ready", "pm_restarts_total", "pm_exits_total", "pm_bus_subscribers", "pm_daemon_memory_bytes",
      "pm_daemon_lua_heap_bytes", "pm_daemon_fds", "pm_daemon_requests_total" }) do
      assert.truthy(r.body:find("# TYPE " .. name .. " ", 1, true), name)
    end
    -- a restart is counted by its reason, an exit by its code or signal
    H.ok(H.pm("restart", "a"))
    H.wait_for(function()
      local m = GET(base .. "/metrics").body
      return m:find('pm_restarts_total{id="0",name="a",namespace="default",instance="0",interpreter="none",'
        .. 'reason="manual"} 1', 1, true) and m:find('pm_exits_total{id="0",name="a",namespace="default",'
        .. 'instance="0",interpreter="none",code="",signal="SIGINT"} 1', 1, true)
    end, 5000, "the restart and the exit counted")
    local f = io.open(H.home .. "/metrics.txt", "w")
    f:write(GET(base .. "/metrics").body)
    f:close()
    if os.execute("command -v promtool >/dev/null") ~= 0 then
      print("SKIPPED promtool check: promtool not installed (make deps installs the Debian package prometheus)")
      return
    end
    local c = H.sh("promtool check metrics < " .. H.shquote(H.home .. "/metrics.txt"))
    assert(c.code == 0, "promtool check metrics: " .. c.out .. c.err)
  end)

  it("asks a bearer token for /metrics from another address", function()
    port = H.free_port()
    local r = H.ok(H.pm("web", "--listen", "0.0.0.0:" .. port))
    token = r.out:match("%?token=(%x+)")
    -- this machine's own address that is not loopback, if it has one
    -- (the local addresses of /proc/net/fib_trie: "|-- a.b.c.d" then "/32 host LOCAL")
    local ip
    local prev
    for line in (util.read_file("/proc/net/fib_trie") or ""):gmatch("[^\n]+") do
      local a = line:match("|%-%- (%d+%.%d+%.%d+%.%d+)")
      if a then prev = a
      elseif line:find("host LOCAL", 1, true) and prev and not prev:match("^127%.") then ip = ip or prev end
    end
    if not ip then
      print("SKIPPED the non-loopback half: this machine has no address but loopback")
      return
    end
    local function from_ip(headers) return http.get(port, "/metrics", headers, { host = ip }) end
    assert.equal(401, from_ip().status)
    assert.equal(401, from_ip({ Authorization = "Bearer 00" .. token:sub(3) }).status)
    local ok = from_ip({ Authorization = "Bearer " .. token })
    assert.equal(200, ok.status)
    assert.truthy(ok.body:find("# TYPE pm2_up gauge", 1, true))
  end)

  it("gives the log pane the last lines each app wrote before the page opened (/api/tail)", function()
    H.ok(H.pm("start", "/bin/sh", "--name", "early", "--", "-c",
      "echo first line; echo an error >&2; sleep 600"))
    H.wait_for(function() return H.contains(H.home .. "/logs/early-error.log", "an error") end, 5000)
    start_web()
    assert.equal(401, GET(base .. "/api/tail").status)
    local cookie = login()
    local r = GET(base .. "/api/tail", "Cookie:" .. cookie)
    assert.equal(200, r.status, r.body)
    local by = {}
    for _, a in ipairs(util.decode(r.body)) do by[a.name] = a end
    assert.same({ "first line" }, by.early.out)
    assert.same({ "an error" }, by.early.err)
    -- the restricted connection may ask for lines, nothing else
    local c = H.connect()
    c:send('{"jsonrpc":"2.0","id":1,"method":"restrict","params":{"profile":"web"}}\n')
    assert.truthy(c:reply(1).result)
    c:send('{"jsonrpc":"2.0","id":2,"method":"tail","params":{"lines":1,"path":"/etc/shadow"}}\n')
    local refused = c:reply(2)
    assert.truthy(refused.error and refused.error.message:find("only target and lines", 1, true),
      util.encode(refused))
    c:send('{"jsonrpc":"2.0","id":3,"method":"tail","params":{"lines":-1}}\n')
    assert.truthy(c:reply(3).error)
    c:close()
  end)

  it("gives the dashboard only for the token, as an HttpOnly SameSite cookie, with a strict CSP", function()
    start_web()
    local refused = GET(base .. "/")
    assert.equal(401, refused.status)
    assert.falsy(refused.body:find("csrf", 1, true))
    assert.equal(403, GET(base .. "/?token=" .. ("0"):rep(#token)).status)
    assert.equal(401, GET(base .. "/api/list").status)
    assert.equal(401, GET(base .. "/events").status)
    local cookie, _, r = login()
    assert.matches("HttpOnly", (r.headers["set-cookie"] or ""))
    assert.matches("SameSite=Strict", (r.headers["set-cookie"] or ""))
    local page = GET(base .. "/", "Cookie:" .. cookie)
    local csp = page.headers["content-security-policy"]
    assert.matches("default%-src 'none'", csp)
    assert.matches("script%-src 'self';", csp)
    assert.falsy(csp:find("unsafe", 1, true))
    -- every asset the page names is served by pm, nothing from elsewhere
    for src in page.body:gmatch('[sh][rc][ce][f]?="([^"]+)"') do
      assert.matches("^/assets/[%w_-]+%.%w+$", src)
      assert.equal(200, GET(base .. src).status)
    end
    assert.falsy(page.body:find("http", 1, true))
    local list = GET(base .. "/api/list", "Cookie:" .. cookie)
    assert.equal(200, list.status)
    assert.equal("pm-web", util.decode(list.body)[1].name)
    -- the form login works too
    local f = POST(base .. "/login", "token=" .. token, "Content-Type:application/x-www-form-urlencoded")
    assert.equal(303, f.status)
  end)

  it("streams the process table and logs as Server-Sent Events", function()
    H.script("ticker.sh", "while :; do echo tick-$$; sleep 0.2; done\n")
    H.ok(H.pm("start", H.home .. "/ticker.sh", "--name", "t"))
    start_web()
    local cookie = login()
    local r = http.get(port, "/events", { Cookie = cookie }, { want = "event: procs", ms = 5000 })
    assert.equal(200, r.status)
    assert.equal("text/event-stream", r.headers["content-type"])
    assert.truthy(r.body:find("event: procs", 1, true))
    assert.truthy(r.body:find('"name":"t"', 1, true))
    local l = http.get(port, "/events", { Cookie = cookie }, { want = "tick-", ms = 5000 })
    assert.truthy(l.body:find("event: log\ndata: {", 1, true))
  end)

  it("bounds the live streams: one over the limit is refused, the others stream on", function()
    start_web({ PM_WEB_STREAMS = "2" })
    local cookie = login()
    local held = {}
    for i = 1, 2 do
      local fd = assert(core.connect_tcp("127.0.0.1", tostring(port)))
      held[i] = fd
      local req = "GET /events HTTP/1.1\r\nHost: x\r\nCookie: " .. cookie .. "\r\n\r\n"
      H.wait_for(function() return core.write(fd, req) end, 3000, "stream " .. i .. " asked for") -- (connected)
    end
    finally(function() for _, fd in ipairs(held) do core.close(fd) end end)
    H.wait_for(function()
      local r = http.get(port, "/events", { Cookie = cookie }, { want = "too many", ms = 2000 })
      return r.status == 503
    end, 5000, "a third stream refused")
    assert.equal(200, GET(base .. "/metrics").status)
  end)

  it("streams a process table larger than a stream's bound whole (thousands of apps)", function()
    -- (the bound lowered to 2 KB: 40 apps' rows are over it, as 9,500 apps'
    -- are over the 1 MB default)
    for i = 1, 40 do H.ok(H.pm("start", "--name", "app-" .. i, "--", "sleep", "1000")) end
    start_web({ PM_WEB_STREAM_PENDING = "2048" })
    local cookie = login()
    local r = http.get(port, "/events", { Cookie = cookie }, { want = '"name":"app-40"', ms = 5000 })
    local data = r.body:match("event: procs\ndata: (%b[])\n\n")
    assert(data, "no whole process table in " .. #r.body .. " bytes: " .. r.body:sub(1, 300))
    assert.is_true(#data > 2048)
    local names = {}
    for _, p in ipairs(util.decode(data)) do names[p.name] = true end
    for i = 1, 40 do assert.is_true(names["app-" .. i], "app-" .. i) end
  end)

  it("runs an action only for a POST with the session's CSRF token from its own origin", function()
    H.ok(H.pm("start", "--name", "a", "--", "sleep", "1000"))
    start_web()
    local cookie, csrf = login()
    local pid = H.proc("a").pid
    local body = '{"action":"restart","target":"a"}'
    -- a forged cross-site POST: the browser sends no SameSite=Strict cookie
    assert.equal(401, POST(base .. "/api/action", body, "Content-Type:application/json").status)
    -- with the cookie but without the CSRF token, or with a wrong one
    assert.equal(403, POST(base .. "/api/action", body, "Cookie:" .. cookie).status)
    assert.equal(403, POST(base .. "/api/action", body, "Cookie:" .. cookie,
      "X-CSRF-Token:" .. ("0"):rep(#csrf)).status)
    -- from another origin
    assert.equal(403, POST(base .. "/api/action", body, "Cookie:" .. cookie, "X-CSRF-Token:" .. csrf,
      "Origin:http://evil.example").status)
    -- a GET changes nothing
    assert.equal(405, GET(base .. "/api/action?action=restart&target=a", "Cookie:" .. cookie).status)
    assert.equal(pid, H.proc("a").pid)
    assert.equal(0, H.proc("a").pm2_env.restart_time)
    local ok = POST(base .. "/api/action", body, "Cookie:" .. cookie, "X-CSRF-Token:" .. csrf,
      "Origin:" .. base)
    assert.equal(200, ok.status)
    H.wait_for(function() local p = H.proc("a"); return p.pid ~= pid and p.pid ~= 0 end, 5000, "a restarted")
    assert.equal(1, H.proc("a").pm2_env.restart_time)
    local bad = POST(base .. "/api/action", '{"action":"rm -rf","target":"a"}', "Cookie:" .. cookie,
      "X-CSRF-Token:" .. csrf)
    assert.equal(400, bad.status)
    -- delete is not an action of the dashboard (nor of its connection)
    assert.equal(400, POST(base .. "/api/action", '{"action":"delete","target":"a"}', "Cookie:" .. cookie,
      "X-CSRF-Token:" .. csrf).status)
    -- scale, and an action the daemon refuses (its message comes back)
    assert.equal(200, POST(base .. "/api/action", '{"action":"scale","target":"a","instances":"2"}',
      "Cookie:" .. cookie, "X-CSRF-Token:" .. csrf).status)
    H.wait_for(function()
      local n = 0
      for _, p in ipairs(H.jlist()) do if p.name == "a" and p.pm2_env.status == "online" then n = n + 1 end end
      return n == 2
    end, 5000, "a scaled to 2")
    local unknown = POST(base .. "/api/action", '{"action":"restart","target":"nosuch"}', "Cookie:" .. cookie,
      "X-CSRF-Token:" .. csrf)
    assert.equal(409, unknown.status)
    assert.matches("nosuch", util.decode(unknown.body).error)
  end)

  it("is saved by pm save and comes back with pm resurrect", function()
    start_web()
    H.ok(H.pm("save"))
    H.ok(H.pm("kill"))
    H.ok(H.pm("resurrect"))
    local p = H.wait_for(function()
      local w = H.by_name(H.jlist())["pm-web"]
      return w and w.pm2_env.status == "online" and w
    end, 8000, "pm-web back online")
    assert.equal("pm", p.pm2_env.namespace)
    H.wait_for(function()
      local ok, r = pcall(GET, "/metrics")
      return ok and r.status == 200
    end, 5000, "/metrics served after pm resurrect")
  end)

  it("gives a browser its /favicon.ico without a session (a refusal's page names no icon)", function()
    start_web()
    local r = GET("/favicon.ico")
    assert.equal(200, r.status)
    assert.truthy(r.body:find("<svg", 1, true))
  end)

  it("answers HEAD as GET without the body: the icon, /metrics; the page asks for a session", function()
    start_web()
    local function HEAD(path) return http.request(port, "HEAD", path, { want = "", ms = 5000 }) end
    local r = HEAD("/favicon.ico")
    assert.equal(200, r.status)
    assert.truthy((r.headers["content-type"] or ""):find("svg", 1, true), r.headers["content-type"])
    assert.equal("", r.body)
    assert.equal(200, HEAD("/metrics").status)
    assert.equal(401, HEAD("/").status)
  end)

  it("keeps a connection alive for the next request", function()
    start_web()
    local r = http.request(port, "GET", "/", { raw = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "GET /assets/app.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want = "text/css" })
    assert.equal(200, r.status)
    assert.truthy(r.body:find("# TYPE pm2_up gauge", 1, true))
    -- (the second answer, on the same connection, after the first's body)
    assert.truthy(r.body:find("HTTP/1.1 200 OK\r\n", 1, true))
  end)

  it("refuses oversized heads and bodies, paths out of the assets; the daemon untouched", function()
    start_web()
    local dpid = H.daemon_pid(H.home)
    local wpid = web_proc().pid
    local big = http.get(port, "/metrics", { ["X-Big"] = ("a"):rep(64 * 1024) })
    assert.is_true(big.status == 431 or big.status == 413 or big.status == 0, "status " .. big.status)
    local cookie, csrf = login()
    local body = POST(base .. "/api/action", ("x"):rep(64 * 1024), "Cookie:" .. cookie,
      "X-CSRF-Token:" .. csrf)
    assert.equal(413, body.status)
    for _, path in ipairs({ "/assets/../web.token", "/assets/..%2f..%2fweb.token", "/assets/%2e%2e/web.token",
      "/assets/app.js/../../web.token", "/assets//etc/passwd", "/assets/.htaccess", "/../web.token" }) do
      local r = http.request(port, "GET", path, { raw = "GET " .. path .. " HTTP/1.1\r\nHost: x\r\n"
        .. "Cookie: " .. cookie .. "\r\nConnection: close\r\n\r\n" })
      assert(r.status == 404 or r.status == 400, path .. ": " .. r.status)
    end
    local g = GET(base .. "/assets/../web.token", "Cookie:" .. cookie)
    assert.falsy(g.body:find(token, 1, true))
    -- a bad request line
    local junk = http.request(port, "GET", "/", { raw = "\0\255 GARBAGE\r\n\r\n" })
    assert.is_true(junk.status == 400 or junk.status == 0)
    assert.equal(dpid, H.daemon_pid(H.home))
    assert.equal(wpid, web_proc().pid)
    assert.equal(200, GET(base .. "/metrics").status)
  end)

  it("closes slow clients (slowloris) and bounds the connections of one address", function()
    start_web({ PM_WEB_TIMEOUT = "2", PM_WEB_PER_IP = "4" })
    local dpid = H.daemon_pid(H.home)
    -- 6 connections from 127.0.0.2 send half a request head and stop
    local r = probe("slow", "127.0.0.1", tostring(port), "127.0.0.2", "6", "8")
    assert.equal(2, r.refused)  -- over the per-IP limit: closed at once
    assert.equal(4, r.closed)   -- the others once they are idle past the timeout
    assert.equal(0, r.open)
    -- meanwhile and after, others are served
    assert.equal(200, GET(base .. "/metrics").status)
    assert.equal(dpid, H.daemon_pid(H.home))
  end)

  it("is kept through a take-over (SIGKILL of the daemon): the same process serves the next daemon's apps", function()
    H.ok(H.pm("start", "--name", "a", "--", "sleep", "1000"))
    start_web()
    local cookie = login()
    local w = web_proc()
    local old = H.daemon_pid(H.home)
    core.kill(old, core.signals.SIGKILL)
    H.wait_for(function() return not H.alive(old) end, 5000, "the daemon's end")
    local pong = util.decode(H.ok(H.pm("ping")).out)
    assert.are_not.equal(old, pong.pid)
    -- the same web process, its session too, asks the next daemon
    H.wait_for(function()
      local okc, r = pcall(GET, base .. "/metrics")
      return okc and r.status == 200 and r.body:find('name="a"', 1, true)
    end, 10000, "/metrics from the next daemon")
    local r = http.get(port, "/events", { Cookie = cookie }, { want = '"name":"a"', ms = 5000 })
    assert.equal(200, r.status)
    assert.truthy(r.body:find("event: procs", 1, true), r.body)
    local again = web_proc()
    assert.equal(w.pid, again.pid)
    assert.equal(0, again.pm2_env.restart_time)
    assert.equal("online", again.pm2_env.status)
  end)

  it("is restarted by the daemon when its process is killed; the daemon's memory stays", function()
    start_web()
    local dpid = H.daemon_pid(H.home)
    local function rss_kb()
      return tonumber((util.read_file("/proc/" .. dpid .. "/status") or ""):match("VmRSS:%s*(%d+)"))
    end
    local p = web_proc()
    local before
    for round = 1, 4 do
      core.kill(p.pid, core.signals.SIGKILL)
      local old = p.pid
      p = H.wait_for(function()
        local w = web_proc()
        return w.pid ~= old and w.pid ~= 0 and w.pm2_env.status == "online" and w
      end, 8000, "pm-web restarted")
      -- (after a first round: what the daemon keeps for a restarted app is made)
      if round == 1 then before = rss_kb() end
    end
    assert.equal(4, p.pm2_env.restart_time)
    H.wait_for(function()
      local ok, r = pcall(GET, "/metrics")
      return ok and r.status == 200
    end, 5000, "/metrics served again")
    assert.equal(dpid, H.daemon_pid(H.home))
    local after = rss_kb()
    -- (under ASan freed memory waits in its quarantine: RSS says nothing)
    if os.getenv("PM_SANITIZED") then return end
    assert(after - before < 2048, ("the daemon grew from %d to %d KB over 3 restarts of pm-web"):format(before, after))
  end)
end)

describe("pm web's connection to the daemon", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup(H.home) end)

  local function call(c, id, method, params)
    c:send(util.encode({ jsonrpc = "2.0", id = id, method = method, params = params or {} }) .. "\n")
    return c:reply(id)
  end

  it("once restricted (profile web) may look and act on apps that exist, nothing else", function()
    H.ok(H.pm("start", "--name", "a", "--", "sleep", "1000"))
    local pid = H.proc("a").pid
    local c = H.connect()
    assert.equal(-32602, call(c, 1, "restrict", { profile = "nosuch" }).error.code)
    assert.is_true(call(c, 2, "restrict", { profile = "web" }).result)
    assert.equal("a", call(c, 3, "list").result[1].name)
    assert.is_table(call(c, 4, "metrics").result.apps)
    local refused = {
      { "start", { app = { name = "evil", script = "/bin/sh", args = { "-c", "id > /tmp/owned" } } } },
      { "start", { path = H.home .. "/eco.lua" } },
      { "restart", { target = "a", updateEnv = true, environ = { LD_PRELOAD = "/tmp/x.so" } } },
      { "reload", { target = "a", env = "production" } },
      { "delete", { target = "a" } },
      { "kill" }, { "killDaemon" }, { "save" }, { "resurrect" },
      { "sendSignalToProcessName", { signal = "SIGKILL", target = "a" } },
      { "sendDataToProcessId", { id = 0, packet = {} } },
      { "scale", { name = "a", instances = "2", environ = {} } },
    }
    for i, r in ipairs(refused) do
      local m = call(c, 10 + i, r[1], r[2])
      assert(m.error and m.error.message:find(r[1] .. ": ", 1, true), r[1] .. " was not refused: " .. util.encode(m))
    end
    -- a second restriction does not widen it
    assert.is_true(call(c, 50, "restrict", { profile = "web" }).result)
    assert.truthy(call(c, 51, "delete", { target = "a" }).error)
    assert.is_nil(H.by_name(H.jlist()).evil)
    assert.equal(pid, H.proc("a").pid)
    -- what the dashboard does is allowed
    assert.is_table(call(c, 60, "restart", { target = "a" }).result)
    H.wait_for(function() local p = H.proc("a"); return p.pid ~= pid and p.pid ~= 0 end, 5000, "a restarted")
    c:close()
  end)

  it("pm web --user: the web process gives up root for that user once it listens", function()
    local nobody = util.passwd("nobody")
    if core.getuid() ~= 0 or not nobody then
      print("SKIPPED: needs root and the user nobody")
      return
    end
    H.ok(H.pm("start", "--name", "a", "--", "sleep", "1000"))
    port = H.free_port()
    local r = H.ok(H.pm("web", "--listen", "127.0.0.1:" .. port, "--user", "nobody"))
    token = r.out:match("%?token=(%x+)")
    local w = web_proc()
    local status = util.read_file("/proc/" .. w.pid .. "/status")
    assert.matches("\nUid:%s+" .. nobody.uid .. "%s+" .. nobody.uid .. "%s+" .. nobody.uid .. "%s+" .. nobody.uid,
      status)
    assert.matches("\nGid:%s+" .. nobody.gid .. "%s+" .. nobody.gid .. "%s+" .. nobody.gid, status)
    assert.matches("\nGroups:%s*\n", status)
    assert.equal(200, GET("/metrics").status)
    local cookie, csrf = login()
    local pid = H.proc("a").pid
    assert.equal(200, POST("/api/action", '{"action":"restart","target":"a"}', "Cookie:" .. cookie,
      "X-CSRF-Token:" .. csrf).status)
    H.wait_for(function() local p = H.proc("a"); return p.pid ~= pid and p.pid ~= 0 end, 5000, "a restarted")
    H.fails(H.pm("web", "--user", "no-such-user-here"), "--user no-such-user-here: no such user")
  end)
end)

describe("history", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup(H.home) end)

  local function history(c, id, params)
    c:send(util.encode({ jsonrpc = "2.0", id = id, method = "history", params = params }) .. "\n")
    return c:reply(id)
  end

  it("samples an app every second once asked (RPC history), and pm describe shows the last hour", function()
    H.ok(H.pm("start", "--name", "a", "--", "sleep", "1000"))
    local c = H.connect()
    local bad = history(c, 1, { target = "a", span = 0 })
    assert.equal(-32602, bad.error.code)
    assert.equal(-32000, history(c, 2, { target = "nosuch", span = 10 }).error.code)
    local first = history(c, 3, { target = "a", span = 10 }).result[1]
    assert.equal("a", first.name)
    assert.equal(1, first.step)
    assert.equal(10, #first.cpu)
    local n = 4
    local h = H.wait_for(function()
      n = n + 1
      local r = history(c, n, { target = "a", span = 10 }).result[1]
      local got = 0
      for _, m in ipairs(r.memory) do if m and m > 0 then got = got + 1 end end
      return got >= 3 and r
    end, 8000, "3 samples of a")
    assert.equal(false, h.cpu[1]) -- (before the first ask: no sample)
    local m = history(c, 99, { target = "a", span = 3600 }).result[1]
    assert.equal(60, m.step)
    assert.equal(60, #m.memory)
    assert.is_true(m.memory[60] > 0)
    c:close()
    local d = H.ok(H.pm("describe", "a")).out
    assert.matches("history %(last hour, %d min%): cpu min [%d.]+%% avg [%d.]+%% max [%d.]+%%, memory min %S+ avg", d)
  end)
end)
