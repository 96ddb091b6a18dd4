-- What is durable (issue 15, items 7 and 8): a full disk never empties
-- journal.json or dump.json (the old file stays, the caller gets the
-- error, the daemon keeps trying and warns), a daemon that cannot read its
-- journal falls back to the previous one and kills nothing it cannot
-- account for, and a stop or delete that was answered survives a SIGKILL
-- of the daemon that answered it.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local APP = H.fixtures .. "/ep_app.sh" -- reports, then `exec sleep`: one process

local ok, fails, contains, names, by_name, online = H.ok, H.fails, H.contains, H.names, H.by_name, H.online

local strays = {}
local function stray(pid) strays[#strays + 1] = pid end
local function kill_strays()
  for _, pid in ipairs(strays) do
    if H.alive(pid) then core.kill(pid, 9) end
  end
  strays = {}
end

local function start(name, ...)
  return online(H.start(APP, name, "-f", "-s", ...))
end

local decode_file = H.read_json

local function kill9_daemon()
  local dpid = H.daemon_pid()
  H.crash_daemon(dpid)
  H.wait_for(function() return not H.alive(dpid) end, 5000, "the daemon gone")
  return dpid
end

-- ---- item 8: an answered change is on disk ----

describe("an acknowledged change", function()
  before_each(function() H.new_home() end)
  after_each(function() kill_strays(); H.cleanup() end)

  it("pm delete, then SIGKILL of the daemon at once: the deleted app stays deleted", function()
    for round = 1, 4 do
      local v = start("victim" .. round)
      start("keeper" .. round)
      stray(v.pid)
      ok(H.pm("delete", "victim" .. round, "-s"))
      kill9_daemon()
      ok(H.pm("ping"))
      local a = by_name()
      assert.is_nil(a["victim" .. round], "round " .. round .. ": victim came back: " .. names())
      online(a["keeper" .. round])
    end
  end)

  it("pm stop, then SIGKILL of the daemon at once: the stopped app stays stopped", function()
    for round = 1, 4 do
      local s = start("stopme" .. round)
      stray(s.pid)
      ok(H.pm("stop", "stopme" .. round, "-s"))
      kill9_daemon()
      ok(H.pm("ping"))
      local p = H.proc("stopme" .. round)
      assert.is_truthy(p, "stopme" .. round .. " is known")
      assert.equal("stopped", p.pm2_env.status, "round " .. round)
      assert.equal(0, p.pid)
    end
  end)

  it("several targets of one command: sent at once, acknowledged together, SIGKILL after keeps every change",
    function()
    local apps = {}
    for i = 1, 40 do apps[i] = { name = "m" .. i, script = "/bin/sleep", args = "1000", interpreter = "none" } end
    ok(H.pm("start", H.write(H.home .. "/many.json", util.encode({ apps = apps })), "-s"))
    local names_of = {}
    for i = 1, 40 do names_of[i] = "m" .. i end
    local function writes()
      local c = H.connect()
      c:send('{"jsonrpc":"2.0","id":1,"method":"metrics"}\n')
      local r = c:reply(1, 5000)
      c:close()
      return r.result.daemon.journal_writes
    end
    ok(H.pm("stop", unpack(names_of, 1, 30)))
    local before = writes()
    -- the deletes of 20 stopped apps: one write, or a few (not one each)
    local r = H.pm("delete", "nosuch", "m11", unpack(names_of, 11, 30)) -- (m11 twice: deleted once, no error)
    assert.equal(1, r.code)
    assert.truthy(r.err:find("process or namespace not found: nosuch", 1, true), r.err)
    assert.is_nil(r.err:find("m11", 1, true), r.err)
    local used = writes() - before
    assert(used < 10, ("%d journal writes for 20 deletes sent at once"):format(used))
    kill9_daemon()
    ok(H.pm("ping"))
    local a = by_name()
    for i = 1, 40 do
      if i > 10 and i <= 30 then
        assert.is_nil(a["m" .. i], "m" .. i .. " came back")
      elseif i <= 10 then
        assert.equal("stopped", a["m" .. i].pm2_env.status)
      else
        online(a["m" .. i])
      end
    end
  end)

  it("pm start and pm restart of a stopped app, then SIGKILL at once: it runs again", function()
    for round, verb in ipairs({ "start", "restart", "start" }) do
      start("again" .. round)
      ok(H.pm("stop", "again" .. round, "-s"))
      ok(H.pm(verb, "again" .. round, "-s"))
      stray(online(H.proc("again" .. round)).pid)
      kill9_daemon()
      ok(H.pm("ping"))
      -- (the journal said stopped: the next daemon stopped it for good)
      online(H.proc("again" .. round), verb .. " (round " .. round .. ")")
    end
  end)

  it("pm start of a new app, then SIGKILL at once: the app is back, once", function()
    for round = 1, 3 do
      local r = ok(H.pm("start", APP, "--name", "fresh" .. round, "-s"))
      assert.equal(0, r.code)
      local first = H.proc("fresh" .. round)
      if first then stray(first.pid) end
      kill9_daemon()
      ok(H.pm("ping"))
      local a = by_name()
      online(a["fresh" .. round])
    end
  end)
end)

-- ---- item 7: a full disk ----

local function can_mount()
  return core.getuid() == 0
end

describe("on a full disk (a 2 MB tmpfs as PM_HOME)", function()
  local mnt, outdir
  before_each(function()
    H.new_home()
    mnt = nil
    outdir = H.home .. ".out"
    core.mkdir(outdir, 448)
    H.cmd_dir = outdir -- the commands' output is not on the full disk
  end)
  after_each(function()
    kill_strays()
    local home = H.home
    if home then
      pcall(H.stop_daemon, home)
      for _, pid in ipairs(H.processes_of_home(home)) do
        if pid ~= core.getpid() then core.kill(pid, 9) end
      end
    end
    if mnt then os.execute("umount " .. H.shquote(mnt) .. " 2>/dev/null || umount -l " .. H.shquote(mnt)) end
    H.cmd_dir = nil
    H.cleanup(home)
    os.execute("rm -rf " .. H.shquote(outdir))
  end)

  -- mounts a 2 MB tmpfs on H.home (0700, root's); false when not permitted
  local function mount()
    if not can_mount() then return false end
    local r = H.sh("mount -t tmpfs -o size=2m,mode=0700 tmpfs " .. H.shquote(H.home))
    if r.code ~= 0 then return false, r.err end
    mnt = H.home
    return true
  end

  local function fill()
    H.sh("dd if=/dev/zero of=" .. H.shquote(H.home .. "/fill") .. " bs=16k 2>/dev/null")
    -- (a shell of its own: H.sh puts PM_HOME=... before the command, which
    -- a `for` cannot follow)
    H.sh("sh -c " .. H.shquote("for i in $(seq 1 200); do echo x > " .. H.shquote(H.home)
      .. "/fill.$i 2>/dev/null || break; done"))
  end
  local function unfill() H.sh("rm -f " .. H.shquote(H.home) .. "/fill*") end

  it("pm save fails with the reason and keeps the good dump.json; the journal keeps its last good state",
    function()
      local mounted, why = mount()
      if not mounted then
        print("SKIPPED (item 7): cannot mount a tmpfs here: " .. tostring(why or "not root"))
        return pending("needs root and mount (a 2 MB tmpfs)")
      end
      local a1, a2 = start("full1"), start("full2")
      stray(a1.pid)
      stray(a2.pid)
      ok(H.pm("save"))
      local good_dump = util.read_file(H.home .. "/dump.json")
      assert.equal("full1,full2", table.concat((function()
        local t = {}
        for _, e in ipairs(decode_file(H.home .. "/dump.json")) do t[#t + 1] = e.name end
        table.sort(t)
        return t
      end)(), ","))
      fill()
      local r = fails(H.pm("save"))
      assert.is_truthy(r.err:find("dump.json", 1, true), "the reason: " .. r.err)
      assert.is_truthy(r.err:lower():find("space", 1, true), "the reason names the full disk: " .. r.err)
      assert.is_true(good_dump == util.read_file(H.home .. "/dump.json"), "dump.json is the good one still: "
        .. tostring(util.read_file(H.home .. "/dump.json")):sub(1, 80))

      -- a change the journal cannot hold: the caller hears it, ping and list warn
      local journal_before = util.read_file(H.home .. "/journal.json")
      assert.is_truthy(journal_before and #journal_before > 0)
      local s = H.pm("stop", "full2", "-s")
      assert.are_not.equal(0, s.code, "pm stop cannot be durable: " .. s.out .. s.err)
      assert.is_truthy(s.err:find("journal", 1, true), s.err)
      assert.equal(journal_before, util.read_file(H.home .. "/journal.json"), "the journal is the last good one")
      local p = ok(H.pm("ping"))
      assert.is_truthy((p.out .. p.err):find("not saved", 1, true), "ping warns: " .. p.out .. p.err)
      local l = ok(H.pm("list"))
      assert.is_truthy(l.err:find("not saved", 1, true), "list warns: " .. l.err)

      -- the daemon dies now: the next one restores from the good journal and kills nothing it cannot
      -- account for
      kill9_daemon()
      unfill()
      ok(H.pm("ping"))
      local b = by_name()
      assert.equal("full1,full2", names())
      online(b.full1)
      stray(b.full1.pid)
      if b.full2.pid > 0 then stray(b.full2.pid) end
    end)

  it("the daemon keeps trying: once there is room the journal holds the change and the warning goes",
    function()
      local mounted, why = mount()
      if not mounted then
        print("SKIPPED (item 7): cannot mount a tmpfs here: " .. tostring(why or "not root"))
        return pending("needs root and mount (a 2 MB tmpfs)")
      end
      local a1 = start("retry1")
      stray(a1.pid)
      start("retry2")
      fill()
      H.pm("delete", "retry2", "-s")
      H.holds(function() return contains(H.home .. "/journal.json", "retry2") end, 300,
        "the old journal stays while the disk is full")
      local w = ok(H.pm("ping"))
      assert.is_truthy(w.err:find("not saved", 1, true), "ping warns: " .. w.out .. w.err)
      unfill()
      H.wait_for(function()
        local j = decode_file(H.home .. "/journal.json")
        if type(j) ~= "table" then return false end
        for _, e in ipairs(j) do
          if e.name == "retry2" then return false end
        end
        return true
      end, 5000, "the journal without retry2")
      local p = ok(H.pm("ping"))
      assert.is_falsy((p.out .. p.err):find("not saved", 1, true), p.out .. p.err)
      local l = ok(H.pm("list"))
      assert.is_falsy(l.err:find("not saved", 1, true), l.err)
    end)
end)

describe("a journal the next daemon cannot read", function()
  before_each(function() H.new_home() end)
  after_each(function() kill_strays(); H.cleanup() end)

  it("the previous journal is used; with none readable, nothing is killed", function()
    local a = start("kept1")
    start("kept2")
    stray(a.pid)
    -- a second write, so that there is a previous journal
    ok(H.pm("stop", "kept2", "-s"))
    ok(H.pm("start", "kept2", "-s"))
    local b = by_name()
    stray(b.kept2.pid)
    local function both_online(path)
      local j = decode_file(path)
      if type(j) ~= "table" then return false end
      local n = 0
      for _, e in ipairs(j) do
        for _, rec in ipairs(e.pm_procs or {}) do
          if rec.status == "online" and rec.pid and rec.pid > 0 then n = n + 1 end
        end
      end
      return n == 2
    end
    H.wait_for(function() return both_online(H.home .. "/journal.json") end, 5000, "the journal")
    ok(H.pm("reset", "kept1", "-s")) -- one more write: the previous journal has both online
    H.wait_for(function() return both_online(H.home .. "/journal.json.bak") end, 5000,
      "the previous journal kept as journal.json.bak")
    kill9_daemon()
    H.write(H.home .. "/journal.json", "") -- a 0-byte journal
    ok(H.pm("ping"))
    assert.equal("kept1,kept2", names())
    local c = by_name()
    online(c.kept1)
    online(c.kept2)
    stray(c.kept1.pid)
    stray(c.kept2.pid)

    -- neither readable: the old processes are left alone, and pm.log says so
    kill9_daemon()
    H.write(H.home .. "/journal.json", "")
    os.remove(H.home .. "/journal.json.bak")
    ok(H.pm("ping"))
    assert.is_true(H.alive(c.kept1.pid), "a process the daemon cannot account for is not killed")
    assert.is_true(H.alive(c.kept2.pid), "a process the daemon cannot account for is not killed")
    assert.is_truthy(contains(H.home .. "/pm.log", "left running"), "pm.log says what it left")
  end)
end)

describe("journal.json and dump.json", function()
  before_each(function() H.new_home() end)
  after_each(function() kill_strays(); H.cleanup() end)

  it("are 0600", function()
    local a = start("mode1")
    stray(a.pid)
    ok(H.pm("save"))
    ok(H.pm("save"))
    H.wait_for(function() return core.stat(H.home .. "/journal.json") end, 5000, "journal.json")
    assert.equal(384, core.stat(H.home .. "/journal.json").mode)
    assert.equal(384, core.stat(H.home .. "/dump.json").mode)
    assert.equal(384, core.stat(H.home .. "/dump.json.bak").mode)
  end)
end)
