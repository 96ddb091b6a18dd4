-- Persistence (issue 4) against a real daemon in a temporary PM_HOME:
-- pm save / resurrect (dump.json, dump.json.bak), the journal that brings
-- every app back exactly once after the daemon is killed with SIGKILL, pm
-- startup / unstartup, pm update, and pm runtime in the foreground.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local APP = H.fixtures .. "/ep_app.sh"   -- reports, then `exec sleep`: one process
local EXIT = H.fixtures .. "/ep_exit.sh" -- exits with EP_CODE on SIGUSR1

-- ---- helpers ----

local write = H.write

local ok, fails, contains, names, by_name, online = H.ok, H.fails, H.contains, H.names, H.by_name, H.online

local function start(name, ...)
  return online(H.start(APP, name, "-f", "-s", ...))
end

local decode_file = H.read_json

local function entry_names(list)
  local t = {}
  for _, e in ipairs(list or {}) do t[#t + 1] = tostring(e.name) end
  table.sort(t)
  return table.concat(t, ",")
end

-- Live (not zombie) processes whose environment says they are the app
-- `name` of this PM_HOME.
local function processes_of(name)
  local found = {}
  for _, pid in ipairs(H.processes_of_home(H.home)) do
    if (H.environ(pid) or {}).name == name then found[#found + 1] = pid end
  end
  return found
end

local strays = {} -- processes a test started itself, killed by pid after it
local function stray(pid) strays[#strays + 1] = pid end
local function kill_strays()
  for _, pid in ipairs(strays) do
    if H.alive(pid) then core.kill(pid, 9) end
  end
  strays = {}
end

local function cleanup()
  kill_strays()
  H.cleanup()
end

-- ---- save and resurrect ----

describe("pm save", function()
  before_each(function() H.new_home() end)
  after_each(cleanup)

  it("writes dump.json, a JSON array of the apps; a second save keeps the first as dump.json.bak", function()
    start("s1")
    local r = ok(H.pm("save"))
    assert.is_truthy(r.out:find("dump.json", 1, true), r.out)
    local dump = H.home .. "/dump.json"
    local first = util.read_file(dump)
    assert.is_not_nil(first, "dump.json written")
    local list = util.decode(first)
    assert.equal("table", type(list))
    assert.equal(1, #list, "a JSON array of one app")
    assert.equal("s1", list[1].name)
    assert.equal(APP, list[1].script)
    assert.is_nil(util.read_file(dump .. ".bak"), "no .bak after the first save")

    start("s2")
    ok(H.pm("save"))
    assert.equal("s1,s2", entry_names(decode_file(dump)))
    assert.equal(first, util.read_file(dump .. ".bak"), "the first dump became dump.json.bak")
    assert.is_nil(util.read_file(dump .. ".new"), "no temp file left")
  end)

  it("refuses to save no app without --force, and accepts it with --force", function()
    local dump = H.home .. "/dump.json"
    fails(H.pm("save"), "--force")
    assert.is_nil(util.read_file(dump))

    start("s1")
    ok(H.pm("save"))
    ok(H.pm("delete", "all", "-s"))
    fails(H.pm("save"), "--force")
    assert.equal("s1", entry_names(decode_file(dump)), "the refused save left dump.json alone")

    ok(H.pm("save", "--force"))
    local list = decode_file(dump)
    assert.equal("table", type(list))
    assert.equal(0, #list)
    assert.equal("s1", entry_names(decode_file(dump .. ".bak")))
  end)
end)

describe("pm resurrect", function()
  before_each(function() H.new_home() end)
  after_each(cleanup)

  it("brings the apps back after pm delete all; a second resurrect adds nothing", function()
    ok(H.pm("start", APP, "--name", "r1", "-s", "--", "x", "y z", { env = { EP_V = "saved" } }))
    start("r2")
    start("r3", "-i", "2")
    local old = H.jlist()
    ok(H.pm("save"))
    ok(H.pm("delete", "all", "-s"))
    assert.equal(0, #H.jlist())
    for _, p in ipairs(old) do assert.is_false(H.alive(p.pid)) end
    local seen = #(util.read_file(H.home .. "/logs/r1-out.log") or "")

    ok(H.pm("resurrect"))
    local list = H.jlist()
    assert.equal("r1,r2,r3,r3", names(list))
    for _, p in ipairs(list) do online(p) end
    local a = by_name(list)
    assert.same({ "x", "y z" }, a.r1.pm2_env.args)
    assert.equal(2, a.r3.pm2_env.instances)
    -- r1 runs with its args and the environment it was started with
    local log = H.wait_for(function()
      local s = (util.read_file(H.home .. "/logs/r1-out.log") or ""):sub(seen + 1)
      return s:find("ready", 1, true) and s
    end, 5000, "r1's report")
    assert.is_truthy(log:find("arg=y z\n", 1, true), log)
    assert.is_truthy(log:find("EP_V=saved\n", 1, true), log)

    local pids = {}
    for _, p in ipairs(list) do pids[p.pm_id] = p.pid end
    ok(H.pm("resurrect"))
    local again = H.jlist()
    assert.equal("r1,r2,r3,r3", names(again), "names that run are left alone: no duplicates")
    for _, p in ipairs(again) do
      assert.equal(pids[p.pm_id], p.pid, p.name .. " was not restarted")
      assert.equal(0, p.pm2_env.restart_time)
    end
  end)

  it("brings apps saved as stopped back stopped", function()
    start("up")
    local down = start("down")
    ok(H.pm("stop", "down", "-s"))
    ok(H.pm("save"))
    ok(H.pm("delete", "all", "-s"))
    ok(H.pm("resurrect"))
    local a = by_name()
    assert.equal("down,up", names())
    online(a.up)
    assert.equal("stopped", a.down.pm2_env.status)
    assert.equal(0, a.down.pid)
    assert.is_false(H.alive(down.pid))
    assert.equal(0, #processes_of("down"), "nothing of down runs")
    ok(H.pm("start", "down", "-s"))
    online(H.proc("down"))
  end)

  it("falls back to dump.json.bak when dump.json is corrupt, with a warning in pm.log", function()
    start("c1")
    ok(H.pm("save"))
    start("c2")
    ok(H.pm("save"))
    write(H.home .. "/dump.json", '[{"name": "c1", "script": ')
    ok(H.pm("delete", "all", "-s"))
    ok(H.pm("resurrect"))
    assert.equal("c1", names(), "the apps of dump.json.bak")
    online(H.proc("c1"))
    H.wait_for(function() return contains(H.home .. "/pm.log", "dump.json.bak") end, 3000,
      "a warning about dump.json.bak in pm.log")

    write(H.home .. "/dump.json.bak", "not json either")
    ok(H.pm("delete", "all", "-s"))
    fails(H.pm("resurrect"))
    assert.equal(0, #H.jlist())
  end)

  it("says what it cannot bring back (exit 1, one line naming it), starts the others, and keeps it saved",
    function()
    local gone = H.script("gone.sh", "#!/bin/sh\nexec sleep 1000\n")
    ok(H.pm("start", gone, "--name", "g", "-s"))
    start("keep")
    ok(H.pm("save"))
    ok(H.pm("delete", "all", "-s"))
    os.remove(gone)
    local r = H.pm("resurrect")
    assert.equal(1, r.code, r.out .. r.err)
    assert.is_truthy(r.err:match("^pm: 1 app not resurrected %(dump.json keeps it until the next pm save%): "
      .. "[^\n]*'g'[^\n]*script not found[^\n]*\n$"), r.err)
    assert.is_truthy(r.out:find("keep", 1, true), "the table of what runs: " .. r.out)
    assert.equal("keep", names())
    online(H.proc("keep"))
    assert.is_truthy(contains(H.home .. "/dump.json", '"name":"g"'), "g still saved")
  end)

  it("gives an app of an ecosystem file its on_exit hook back", function()
    local path = write(H.home .. "/ecosystem.hook.lua", ([[
return { apps = {
  { name = "hooked", script = %q,
    on_exit = function(proc, exit) if exit.code == 3 then return "stop" end end },
  { name = "plain", script = %q },
} }
]]):format(EXIT, EXIT))
    ok(H.pm("start", path, "-s"))
    ok(H.pm("save"))
    ok(H.pm("delete", "all", "-s"))
    ok(H.pm("resurrect"))
    local a = by_name()
    online(a.hooked)
    online(a.plain)
    local function ready(name)
      H.wait_for(function() return contains(H.home .. "/logs/" .. name .. "-out.log", "ready") end, 5000,
        name .. " ready")
    end
    ready("hooked")
    ready("plain")
    assert.equal(a.hooked.pm2_env.origin, path)

    -- without a hook, exit code 3 is restarted
    ok(H.pm("sendSignal", "SIGUSR1", "plain"))
    H.wait_for(function()
      local p = H.proc("plain")
      return p.pm2_env.restart_time == 1 and p.pm2_env.status == "online" and p.pid ~= a.plain.pid
    end, 5000, "plain restarted")
    -- with it, the hook stops the app
    ok(H.pm("sendSignal", "SIGUSR1", "hooked"))
    H.wait_for(function() return H.proc("hooked").pm2_env.status ~= "online" end, 5000, "hooked exited")
    local p = H.proc("hooked")
    assert.equal("stopped", p.pm2_env.status, "the on_exit hook said stop")
    assert.equal(3, p.pm2_env.exit_code)
    assert.equal(0, p.pm2_env.restart_time)
  end)
end)

-- ---- crashes of the daemon ----

describe("after the daemon is killed with SIGKILL", function()
  before_each(function() H.new_home() end)
  after_each(cleanup)

  local function journal_says(want)
    return H.wait_for(function()
      local list = decode_file(H.home .. "/journal.json")
      if type(list) ~= "table" then return nil end
      local st = {}
      for _, e in ipairs(list) do
        for _, rec in ipairs(e.pm_procs or {}) do st[e.name] = rec.status end
      end
      for n, s in pairs(want) do
        if st[n] ~= s then return nil end
      end
      return list
    end, 5000, "the journal")
  end

  it("the next pm list shows every app once, each with one live process; the old ones are gone", function()
    local k1, k2, k3 = start("k1"), start("k2"), start("k3")
    ok(H.pm("stop", "k3", "-s"))
    journal_says({ k1 = "online", k2 = "online", k3 = "stopped" })
    local dpid = H.daemon_pid()
    stray(k1.pid)
    stray(k2.pid)
    H.crash_daemon(dpid)
    H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon gone")
    assert.is_true(H.alive(k1.pid) and H.alive(k2.pid), "the apps outlived their daemon (the case to handle)")

    local r = ok(H.pm("list"))
    for _, n in ipairs({ "k1", "k2", "k3" }) do
      local _, count = r.out:gsub("│ " .. n .. " ", "")
      assert.equal(1, count, n .. " once in the table: " .. r.out)
    end
    local newd = H.daemon_pid()
    assert.are_not.equal(dpid, newd)
    local list = H.jlist()
    assert.equal("k1,k2,k3", names(list))
    local a = by_name(list)
    for _, old in ipairs({ k1, k2 }) do
      local p = online(a[old.name])
      assert.are_not.equal(old.pid, p.pid)
      assert.is_false(H.alive(old.pid), "the old process of " .. old.name .. " is gone")
      assert.same({ p.pid }, processes_of(old.name), "one live process of " .. old.name)
    end
    assert.equal("stopped", a.k3.pm2_env.status)
    assert.equal(0, a.k3.pid)
    assert.same({}, processes_of("k3"))
    assert.is_false(H.alive(k3.pid))
    assert.is_truthy(contains(H.home .. "/pm.log", "previous daemon"), "pm.log tells about the recovery")

    -- and the restored set is journaled again: another SIGKILL, the same result
    journal_says({ k1 = "online", k2 = "online", k3 = "stopped" })
    local b = by_name()
    stray(b.k1.pid)
    stray(b.k2.pid)
    H.crash_daemon(newd)
    H.wait_for(function() return not H.alive(newd) end, 5000, "the second daemon gone")
    ok(H.pm("ping"))
    local c = by_name()
    assert.equal("k1,k2,k3", names())
    for _, n in ipairs({ "k1", "k2" }) do
      online(c[n])
      assert.is_false(H.alive(b[n].pid))
      assert.same({ c[n].pid }, processes_of(n))
    end
    assert.equal("stopped", c.k3.pm2_env.status)
  end)

  it("a journal entry whose pid is now an unrelated process does not get it killed", function()
    -- two processes that are not pm's: one with the right start time and a
    -- wrong marker, one with the marker and a wrong start time
    local function sleeper(marker)
      local r = ok(H.sh(("sh -c 'PM_APP_UID=%s exec sleep 300 </dev/null >/dev/null 2>&1 & echo $!'"):format(marker)))
      local pid = tonumber(r.out:match("%d+"))
      stray(pid)
      local st = H.wait_for(function()
        local s = core.proc_stat(pid)
        local env = util.read_file("/proc/" .. pid .. "/environ")
        return s and env and env:find("PM_APP_UID=" .. marker, 1, true) and s
      end, 3000, "the sleep running")
      return pid, st.start
    end
    local p1, start1 = sleeper("other-marker")
    local p2, start2 = sleeper("the-marker")
    write(H.home .. "/journal.json", util.encode({
      { name = "victim1", script = APP, pm_procs = {
        { pm_id = 0, status = "online", pid = p1, start = start1, marker = "the-marker-of-victim1" } } },
      { name = "victim2", script = APP, pm_procs = {
        { pm_id = 1, status = "online", pid = p2, start = start2 + 1, marker = "the-marker" } } },
    }) .. "\n")
    ok(H.pm("ping"))
    assert.is_true(H.alive(p1), "the sleep with another marker is alive")
    assert.is_true(H.alive(p2), "the sleep with another start time is alive")
    local a = by_name()
    assert.equal("victim1,victim2", names())
    online(a.victim1)
    online(a.victim2)
    assert.are_not.equal(p1, a.victim1.pid)
    assert.are_not.equal(p2, a.victim2.pid)
    core.sleep(100) -- a kill sent by mistake would have landed by now
    assert.is_true(H.alive(p1))
    assert.is_true(H.alive(p2))
  end)

  it("a clean pm kill removes journal.json", function()
    start("j1")
    H.wait_for(function() return contains(H.home .. "/journal.json", "j1") end, 5000, "journal.json")
    ok(H.pm("kill"))
    assert.is_nil(util.read_file(H.home .. "/journal.json"))
    assert.is_nil(util.read_file(H.home .. "/pm.pid"))
    -- so the next daemon restores nothing
    ok(H.pm("ping"))
    assert.equal(0, #H.jlist())
  end)
end)

-- ---- boot, update ----

describe("pm startup and unstartup", function()
  before_each(function() H.new_home() end)
  after_each(cleanup)

  it("print a systemd unit that runs the daemon and resurrects", function()
    for _, args in ipairs({ { "startup" }, { "startup", "systemd" } }) do
      local r = ok(H.pm(unpack(args)))
      assert.is_truthy(r.out:find("\nExecStart=" .. H.bin .. " daemon", 1, true), r.out)
      assert.is_truthy(r.out:find("\nEnvironment=PM_HOME=" .. H.home .. "\n", 1, true), r.out)
      assert.is_truthy(r.out:find("\nExecStartPost=-" .. H.bin .. " resurrect\n", 1, true), r.out)
      assert.is_truthy(r.out:find("[Service]", 1, true) and r.out:find("[Install]", 1, true), r.out)
    end
    fails(H.pm("startup", "upstart"))
  end)

  it("--install writes the unit where PM_SYSTEMD_DIR says, unstartup removes it", function()
    local dir = H.home .. "/units"
    local env = { env = { PM_SYSTEMD_DIR = dir } }
    local r = ok(H.pm("startup", "systemd", "--install", env))
    local unit = H.wait_for(function()
      local p = io.popen("ls " .. H.shquote(dir) .. " 2>/dev/null")
      local f = p:read("*l")
      p:close()
      return f
    end, 1000, "a unit in " .. dir)
    assert.is_truthy(unit:match("%.service$"), unit)
    assert.is_truthy(r.out:find(dir .. "/" .. unit, 1, true), "says where it wrote: " .. r.out)
    local text = util.read_file(dir .. "/" .. unit)
    assert.is_truthy(text:find("\nExecStart=" .. H.bin .. " daemon", 1, true), text)
    assert.is_truthy(text:find("\nExecStartPost=-" .. H.bin .. " resurrect\n", 1, true), text)
    assert.is_truthy(text:find("\nEnvironment=PM_HOME=" .. H.home .. "\n", 1, true), text)

    ok(H.pm("unstartup", env))
    assert.is_nil(core.stat(dir .. "/" .. unit), "the unit is removed")
    fails(H.pm("unstartup", env))
  end)

  it("takes the line PM2 prints for root: pm startup ubuntu -u USER --hp HOME [--service-name NAME]", function()
    if core.getuid() ~= 0 then
      pending("needs root: a system unit of another user")
      return
    end
    local pw = assert(util.passwd("nobody"))
    local dir = H.home .. "/units"
    local env = { env = { PM_SYSTEMD_DIR = dir } }
    local r = ok(H.pm("startup", "ubuntu", "-u", "nobody", "--hp", "/srv/www"))
    assert.is_truthy(r.out:find("\nUser=" .. pw.name .. "\n", 1, true), r.out)
    assert.is_truthy(r.out:find("\nEnvironment=PM_HOME=/srv/www/.pm\n", 1, true), r.out)
    assert.is_truthy(r.out:find("pm-" .. pw.name .. ".service", 1, true), r.out)
    ok(H.pm("startup", "systemd", "-u", "nobody", "--hp", "/srv/www", "--service-name", "web-pm", "--install", env))
    local text = assert(util.read_file(dir .. "/web-pm.service"))
    assert.is_truthy(text:find("\nUser=" .. pw.name .. "\n", 1, true), text)
    ok(H.pm("unstartup", "systemd", "--service-name", "web-pm", env))
    assert.is_nil(core.stat(dir .. "/web-pm.service"))
    fails(H.pm("startup", "systemd", "-u", "no-such-user-pm"), "unknown user")
    fails(H.pm("unstartup", "systemd", "-u", "no-such-user-pm"), "unknown user")
    -- what --hp says goes into the unit's lines: one path, nothing more
    fails(H.pm("startup", "systemd", "-u", "nobody", "--hp", "/srv/a b\nExecStartPre=/bin/touch /tmp/x"),
      "an absolute path")
    fails(H.pm("startup", "systemd", "-u", "nobody", "--hp", "rel/%h"), "an absolute path")
    assert.is_truthy(r.out:find("\nEnvironment=PATH=/usr/local/bin:/usr/bin:/bin\n", 1, true), r.out)
    assert.is_truthy(r.out:find("pm startup systemd -u nobody --hp /srv/www --install", 1, true), r.out)
    fails(H.pm("startup", "launchd"), "systemd units only")
  end)
end)

describe("pm update", function()
  before_each(function() H.new_home() end)
  after_each(cleanup)

  it("keeps the apps (same names and pids, running; stopped ones stopped) under a new daemon", function()
    start("u1")
    start("u2", "-i", "2")
    start("u3")
    ok(H.pm("stop", "u3", "-s"))
    local before = H.jlist()
    local d1 = H.daemon_pid()
    local r = ok(H.pm("update"))
    assert.is_truthy(r.out:find("updated", 1, true), r.out)
    local d2 = H.daemon_pid()
    assert.is_not_nil(d2)
    assert.are_not.equal(d1, d2)
    assert.is_false(H.alive(d1), "the old daemon is gone")
    assert.is_true(H.alive(d2))
    local list = H.jlist()
    assert.equal("u1,u2,u2,u3", names(list))
    local a = by_name(list)
    online(a.u1)
    for _, p in ipairs(list) do
      if p.name == "u2" then online(p) end
    end
    assert.equal("stopped", a.u3.pm2_env.status)
    -- the keeper hands them over: the same processes
    for i, p in ipairs(before) do assert.equal(p.pid, list[i].pid, p.name .. " kept its process") end
    assert.is_truthy(r.out:find("3 apps kept", 1, true), r.out)
    assert.equal(1, #processes_of("u1"))
    assert.equal(2, #processes_of("u2"))
  end)

  it("with no daemon and nothing saved starts one and says so (exit 0)", function()
    local r = ok(H.pm("update"))
    assert.is_truthy(r.out:find("started (none ran)", 1, true), r.out)
    assert.equal("", r.err)
    assert.is_not_nil(H.daemon_pid())
  end)
end)

-- ---- pm runtime ----

describe("pm runtime", function()
  local dir
  before_each(function() dir = H.new_home() end)
  after_each(cleanup)

  -- Starts `pm runtime file` in the background (timeout as a guard); its
  -- stdout, stderr and exit code go to rt.out, rt.err and rt.rc.
  local function runtime(file)
    local wrapper = H.script("rt.sh", ([[
#!/bin/sh
( timeout -k 5 25 %s runtime %s >%s/rt.out 2>%s/rt.err; echo $? >%s/rt.rc ) </dev/null >/dev/null 2>&1 &
]]):format(H.shquote(H.bin), H.shquote(file), H.shquote(dir), H.shquote(dir), H.shquote(dir)))
    ok(H.sh(H.shquote(wrapper)))
    -- its pid, or nil when it already ended (a crash loop can be that quick)
    local pid = H.wait_for(function()
      return H.daemon_pid() or (util.read_file(dir .. "/rt.rc") and -1)
    end, 5000, "the runtime's pm.pid")
    return pid > 0 and pid or nil
  end

  local function rc()
    return H.wait_for(function()
      local s = util.read_file(dir .. "/rt.rc")
      return s and tonumber(s:match("%d+"))
    end, 15000, "pm runtime to exit")
  end

  it("writes 'name| line' for the apps' output, and a SIGTERM stops the apps and exits 0", function()
    local path = write(dir .. "/ecosystem.rt.lua", ([[
return { apps = {
  { name = "rtapp", script = %q, args = "one" },
  { name = "rt2", script = %q },
} }
]]):format(APP, APP))
    local pid = runtime(path)
    H.wait_for(function()
      return contains(dir .. "/rt.out", "rtapp| ready\n") and contains(dir .. "/rt.out", "rt2| ready\n")
    end, 5000, "the apps' output on pm runtime's stdout")
    assert.is_truthy(contains(dir .. "/rt.out", "rtapp| arg=one\n"))
    H.wait_for(function() return contains(dir .. "/rt.err", "rtapp| to stderr\n") end, 5000,
      "the apps' stderr on pm runtime's stderr")
    local list = H.jlist()
    assert.equal("rt2,rtapp", names(list))
    for _, p in ipairs(list) do online(p) end

    assert.truthy(pid, "pm runtime still runs")
    core.kill(pid, core.signals.SIGTERM)
    assert.equal(0, rc(), "exit 0 after SIGTERM; stderr: " .. tostring(util.read_file(dir .. "/rt.err")))
    assert.is_false(H.alive(pid))
    for _, p in ipairs(list) do assert.is_false(H.alive(p.pid), p.name .. " stopped") end
  end)

  it("exits non-zero when an app crash-loops to errored", function()
    local path = write(dir .. "/ecosystem.crash.lua", ([[
return { apps = {
  { name = "crasher", script = %q, env = { EP_SLEEP = "0", EP_CODE = "1" },
    max_restarts = 2, min_uptime = 1000 },
  { name = "steady", script = %q },
} }
]]):format(EXIT, APP))
    local pid = runtime(path)
    local code = rc()
    assert.are_not.equal(0, code, "pm runtime exits non-zero")
    assert.is_true(code ~= 124 and code ~= 137, "pm runtime ended by itself, not by the timeout guard")
    assert.is_false(H.alive(pid))
    assert.is_truthy(contains(dir .. "/rt.out", "crasher| ready"))
  end)

  it("exits non-zero with the error on stderr for a bad file, starting nothing", function()
    local path = write(dir .. "/ecosystem.bad.lua", ([[
return { apps = {
  { name = "good", script = %q },
  { name = "bad", script = %q, max_restarts = "many" },
} }
]]):format(APP, APP))
    local r = H.sh(("timeout -k 5 15 %s runtime %s"):format(H.shquote(H.bin), H.shquote(path)))
    assert.are_not.equal(0, r.code)
    assert.is_true(r.code ~= 124 and r.code ~= 137, "ended by itself, not by the timeout guard")
    assert.is_truthy(r.err:find("max_restarts", 1, true), r.err)
    assert.is_nil(util.read_file(H.home .. "/logs/good-out.log"), "good never ran")
  end)

  it("refuses to run (non-zero) when a daemon already runs for PM_HOME", function()
    local path = write(dir .. "/ecosystem.rt.lua", ([[
return { apps = { { name = "rtapp", script = %q } } }
]]):format(APP))
    ok(H.pm("ping"))
    local r = H.sh(("timeout -k 5 15 %s runtime %s"):format(H.shquote(H.bin), H.shquote(path)))
    assert.is_true(r.code ~= 124 and r.code ~= 137, "ended by itself, not by the timeout guard")
    assert.is_nil(H.proc("rtapp"), "nothing started in the running daemon")
    assert.are_not.equal(0, r.code, "pm runtime ran nothing and should not exit 0; stderr: " .. r.err)
  end)
end)
