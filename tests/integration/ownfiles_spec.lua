-- Files the daemon (root) opens on behalf of an app that runs as another
-- user, in that user's folder (issue 15, item 1): whatever the user does
-- there, at any moment, the daemon never writes, truncates, chowns, renames
-- or removes another file. Each attack of the review, with a root-owned
-- 0600 victim outside the folder that must stay byte-identical: a child of
-- the app that keeps linking out.log to the victim while the log rotates;
-- out.log replaced by a link before `pm reloadLogs`; app-pid linked to a
-- root file before `pm start` (and before the pid file is removed).
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local RUNAS = "setpriv --reuid=nobody --regid=nogroup --clear-groups"
local SECRET = "root's secret, never to be written by pm\n"

local function usable()
  if core.getuid() ~= 0 then return nil, "needs root: the daemon must run as root, the app as nobody" end
  if os.execute("command -v setpriv >/dev/null 2>&1 && id nobody >/dev/null 2>&1") ~= 0 then
    return nil, "needs setpriv and a nobody user"
  end
  return true
end

describe("files of an app of another user", function()
  local base, dir, victim
  before_each(function()
    H.new_home()
    local p = io.popen("mktemp -d /tmp/pm-ownfiles.XXXXXX")
    base = p:read("*l")
    p:close()
    os.execute("chmod 755 " .. H.shquote(base))
    dir = base .. "/app"
    core.mkdir(dir, 493)
    os.execute("chown nobody:nogroup " .. H.shquote(dir))
    victim = H.write(base .. "/victim", SECRET)
    core.chmod(victim, 384) -- 0600, root's
  end)
  after_each(function()
    H.cleanup()
    if base then os.execute("rm -rf " .. H.shquote(base)) end
  end)

  local function untouched()
    local st = core.stat(victim, true)
    return st and st.type == "file" and st.uid == 0 and util.read_file(victim) == SECRET
  end

  local function as_nobody(cmd)
    return H.sh(RUNAS .. " /bin/sh -c " .. H.shquote(cmd), { cwd = dir })
  end

  local function eco(app)
    local fields = {}
    for k, v in pairs(app) do
      fields[#fields + 1] = ("%s = %s"):format(k, type(v) == "table" and
        ("{ %s }"):format(table.concat((function()
          local t = {}
          for i, x in ipairs(v) do t[i] = ("%q"):format(x) end
          return t
        end)(), ", ")) or type(v) == "string" and ("%q"):format(v) or tostring(v))
    end
    return H.write(H.home .. "/eco.config.lua", "return { apps = { { " .. table.concat(fields, ", ") .. " } } }\n")
  end

  it("never writes the victim while a child of the app keeps linking out.log to it during rotation", function()
    local ok, why = usable()
    if not ok then pending(why); return end
    -- the app writes lines; its child swaps out.log for a link to the
    -- victim again and again (a link made aside, then renamed over), from
    -- when its first lines are in the file (the log is opened at its first
    -- write: what is raced is its reopening at each rotation)
    local script = H.write(base .. "/atk.pl", [[
$| = 1;
my $victim = shift;
if (fork() == 0) {
  select(undef, undef, undef, 0.01) until -s "out.log";
  while (1) { symlink($victim, "out.log.tmp"); rename("out.log.tmp", "out.log");
              select(undef, undef, undef, 0.0002); }
}
my $i = 0;
while (1) {
  printf("line %09d %s\n", $i++, "x" x 60) for 1 .. 20;
  select(undef, undef, undef, 0.002);
}
]])
    H.ok(H.pm("start", eco({ name = "atk", script = "/usr/bin/perl", args = { script, victim }, cwd = dir,
      user = "nobody", out_file = "out.log", error_file = "err.log", max_log_size = "4K", retain = 2,
      autorestart = false })), "pm start")
    H.wait_for(function() return H.exists(dir .. "/out.log.1") or H.exists(dir .. "/out.log.2") end, 5000,
      "a rotation")
    H.holds(untouched, 2500, "the victim is untouched")
    H.ok(H.pm("delete", "atk"), "pm delete")
    assert.is_true(untouched(), "the victim is untouched")
  end)

  it("does not follow out.log replaced by a link when root runs pm reloadLogs", function()
    local ok, why = usable()
    if not ok then pending(why); return end
    local script = H.write(base .. "/slow.sh", "i=0; while :; do i=$((i+1)); echo \"line $i\"; sleep 0.05; done\n")
    H.ok(H.pm("start", eco({ name = "slow", script = "/bin/sh", args = { script }, cwd = dir, user = "nobody",
      out_file = "out.log", error_file = "err.log" })), "pm start")
    H.wait_for(function() return H.contains(dir .. "/out.log", "line 2\n") end, 5000, "the app's lines in out.log")
    assert.equal(0, as_nobody("rm out.log && ln -s " .. H.shquote(victim) .. " out.log").code)
    H.ok(H.pm("reloadLogs"), "pm reloadLogs")
    H.holds(untouched, 1500, "the victim is untouched")
    assert.equal("link", core.stat(dir .. "/out.log", true).type, "the user's link is left as it is")
    H.wait_for(function() return H.pm_log():find("out.log cannot be written: a symbolic link", 1, true) end, 3000,
      "pm.log saying the log is refused")
    -- the user puts it right: the log comes back, saying what it missed
    assert.equal(0, as_nobody("rm out.log").code)
    H.ok(H.pm("reloadLogs"), "pm reloadLogs")
    H.wait_for(function() return H.contains(dir .. "/out.log", "dropped: a symbolic link, refused\n") end, 5000,
      "the drop said in out.log")
    assert.is_true(untouched(), "the victim is untouched")
  end)

  it("never writes, truncates or removes a root file app-pid is linked to", function()
    local ok, why = usable()
    if not ok then pending(why); return end
    assert.equal(0, as_nobody("ln -s " .. H.shquote(victim) .. " app-pid").code)
    local path = eco({ name = "pidapp", script = "/bin/sleep", args = { "1000" }, cwd = dir, user = "nobody",
      pid_file = "app-pid", out_file = "out.log", error_file = "err.log" })
    H.ok(H.pm("start", path), "pm start")
    H.online(H.proc("pidapp"))
    assert.is_true(untouched(), "the victim is untouched by pm start")
    assert.equal("link", core.stat(dir .. "/app-pid", true).type, "the link is left")
    assert.is_truthy(H.pm_log():find("pid file of pidapp not written: " .. dir .. "/app-pid: a symbolic link, refused",
      1, true), "pm.log says why: " .. H.pm_log())
    H.ok(H.pm("stop", "pidapp"), "pm stop")
    assert.is_true(untouched(), "the victim is untouched by pm stop")
    assert.equal("link", core.stat(dir .. "/app-pid", true).type, "the user's link is not removed")
    -- a pid file of its own: written as the user, removed on stop
    assert.equal(0, as_nobody("rm app-pid").code)
    H.ok(H.pm("start", "pidapp"), "pm start again")
    local p = H.online(H.proc("pidapp"))
    H.wait_for(function() return util.read_file(dir .. "/app-pid") == p.pid .. "\n" end, 3000, "the pid file")
    assert.equal(core.stat(dir).uid, core.stat(dir .. "/app-pid").uid, "the pid file is the user's")
    -- replaced by a link while the app runs: the removal leaves it
    assert.equal(0, as_nobody("rm app-pid && ln -s " .. H.shquote(victim) .. " app-pid").code)
    H.ok(H.pm("delete", "pidapp"), "pm delete")
    assert.is_true(untouched(), "the victim is untouched by pm delete")
  end)

  it("does not truncate the victim out.log is linked to on pm flush", function()
    local ok, why = usable()
    if not ok then pending(why); return end
    H.ok(H.pm("start", eco({ name = "fl", script = "/bin/sh", args = { "-c", "echo hello" }, cwd = dir,
      user = "nobody", out_file = "out.log", error_file = "err.log", autorestart = false })), "pm start")
    H.wait_for(function() return H.status("fl") == "stopped" end, 5000, "the app to end")
    H.wait_for(function() return H.contains(dir .. "/out.log", "hello\n") end, 5000, "the app's line")
    assert.equal(0, as_nobody("rm out.log && ln -s " .. H.shquote(victim) .. " out.log").code)
    H.pm("flush", "fl")
    assert.is_true(untouched(), "the victim is untouched by pm flush")
  end)

  it("still creates a log in a folder only root can change, and gives it to the user (a pid file stays root's)",
    function()
    local ok, why = usable()
    if not ok then pending(why); return end
    local rootdir = base .. "/rootlogs"
    core.mkdir(rootdir, 493)
    H.ok(H.pm("start", eco({ name = "inroot", script = "/bin/sh", args = { "-c", "echo hello; sleep 1000" }, cwd = dir,
      user = "nobody", out_file = rootdir .. "/out.log", error_file = rootdir .. "/err.log",
      pid_file = rootdir .. "/app-pid" })), "pm start")
    H.wait_for(function() return H.contains(rootdir .. "/out.log", "hello\n") end, 5000, "the app's line")
    local nobody = core.stat(dir).uid
    assert.equal(nobody, core.stat(rootdir .. "/out.log").uid, "the log is the user's")
    assert.equal(0, core.stat(rootdir .. "/app-pid").uid, "the pid file is root's")
    H.ok(H.pm("delete", "inroot"), "pm delete")
    assert.is_nil(core.stat(rootdir .. "/app-pid"), "the pid file is removed")
  end)

  it("never writes the victim while the user keeps linking app-pid to it during restarts", function()
    local ok, why = usable()
    if not ok then pending(why); return end
    local racer = H.write(base .. "/race.pl", [[
while (1) { symlink($ARGV[0], "app-pid.tmp"); rename("app-pid.tmp", "app-pid");
            select(undef, undef, undef, 0.0002); }
]])
    local r = H.sh(RUNAS .. " /usr/bin/perl " .. H.shquote(racer) .. " " .. H.shquote(victim)
      .. " >/dev/null 2>&1 & echo $!", { cwd = dir })
    local racer_pid = assert(tonumber(r.out:match("%d+")), "the racer's pid")
    local ok2, err = pcall(function()
      H.ok(H.pm("start", eco({ name = "pidrace", script = "/bin/sleep", args = { "1000" }, cwd = dir,
        user = "nobody", pid_file = "app-pid", out_file = "out.log", error_file = "err.log" })), "pm start")
      for _ = 1, 10 do
        H.ok(H.pm("restart", "pidrace"), "pm restart")
        assert.is_true(untouched(), "the victim is untouched")
      end
      H.ok(H.pm("delete", "pidrace"), "pm delete")
    end)
    core.kill(racer_pid, 9)
    assert(ok2, err)
    assert.is_true(untouched(), "the victim is untouched")
  end)

  it("root's pm logs and pm report never print what a link in the user's log folder names (nor wait on a FIFO)",
    function()
    local ok, why = usable()
    if not ok then pending(why); return end
    H.ok(H.pm("start", eco({ name = "leak", script = "/bin/sh", args = { "-c", "echo started; exit 3" },
      cwd = dir, user = "nobody", out_file = "out.log", error_file = "err.log", max_restarts = 1,
      min_uptime = 60000 })), "pm start")
    H.wait_for(function() return H.status("leak") == "errored" end, 10000, "leak errored")
    assert.equal(0, as_nobody("rm -f out.log err.log && ln -s " .. H.shquote(victim) .. " out.log && mkfifo err.log")
      .code)
    local r = H.ok(H.pm("logs", "leak", "--nostream", "--lines", "5"), "pm logs")
    assert.is_falsy(r.out:find("secret", 1, true), r.out)
    r = H.ok(H.pm("report"), "pm report")
    assert.is_falsy(r.out:find("secret", 1, true), r.out)
    assert.is_truthy(r.out:find("errored app leak", 1, true), r.out)
    -- a hard link to the victim (what a user makes where protected_hardlinks
    -- is off; made by root here): a regular file, but not the user's
    assert.equal(0, H.sh("rm -f " .. H.shquote(dir .. "/out.log") .. " && ln " .. H.shquote(victim) .. " "
      .. H.shquote(dir .. "/out.log")).code)
    r = H.ok(H.pm("logs", "leak", "--nostream", "--lines", "5"), "pm logs")
    assert.is_falsy(r.out:find("secret", 1, true), r.out)
  end)

  -- What the daemon runs for an app of another user runs as that user.
  local function nobody_id()
    local r = H.sh("id -u nobody")
    return tonumber(r.out:match("%d+"))
  end

  it("runs an app's health exec check as its user, in its folder, with its environment", function()
    local ok, why = usable()
    if not ok then pending(why); return end
    local check = H.write(dir .. "/check.sh", 'id -u > hc.txt; pwd >> hc.txt; echo "$STAGE" >> hc.txt\n')
    os.execute("chown nobody:nogroup " .. H.shquote(check))
    H.write(H.home .. "/eco.config.lua", ([[
return { apps = { { name = "hc", script = "/bin/sleep", args = "1000", cwd = %q, user = "nobody",
  env = { STAGE = "checked" }, health = { exec = "/bin/sh ./check.sh", interval = 200 } } } }
]]):format(dir))
    H.ok(H.pm("start", H.home .. "/eco.config.lua"), "pm start")
    local text = H.wait_for(function()
      local t = util.read_file(dir .. "/hc.txt")
      return t and t:find("\n.*\n.*\n") and t
    end, 5000, "the check's output")
    assert.equal(("%d\n%s\nchecked\n"):format(nobody_id(), dir), text)
  end)

  it("asks a Node app's interpreter its version as the app's user", function()
    local ok, why = usable()
    if not ok then pending(why); return end
    local node = H.write(dir .. "/node", '#!/bin/sh\nif [ "$1" = --version ]; then id -u > ' .. dir
      .. '/ver.txt; env > ' .. dir .. '/ver.env; echo v20.0.0; exit 0; fi\nexec sleep 1000\n')
    os.execute("chmod 755 " .. H.shquote(node) .. " && chown nobody:nogroup " .. H.shquote(node))
    H.write(dir .. "/app.js", "\n")
    H.ok(H.pm("start", eco({ name = "nv", script = dir .. "/app.js", interpreter = node, cwd = dir,
      user = "nobody" }), { env = { ROOT_SECRET = "topsecret" } }), "pm start")
    local uid = H.wait_for(function()
      H.pm("jlist")
      return tonumber((util.read_file(dir .. "/ver.txt") or ""):match("%d+"))
    end, 5000, "the interpreter asked its version")
    assert.equal(nobody_id(), uid)
    -- (nor the caller's environment, nor the daemon's)
    local env = H.wait_for(function() return util.read_file(dir .. "/ver.env") end, 3000, "its environment")
    assert.is_falsy(env:find("ROOT_SECRET", 1, true), env)
    assert.is_falsy(env:find("PM_HOME", 1, true), env)
  end)

  it("enters an app's folder as its user: a link to a folder only root may reach fails the start", function()
    local ok, why = usable()
    if not ok then pending(why); return end
    -- a 0755 folder inside a 0700 one of root's, a file in it
    local secret = base .. "/root-only"
    core.mkdir(secret, 448)
    core.mkdir(secret .. "/pub", 493)
    H.write(secret .. "/pub/data.txt", "TOPSECRET\n")
    assert.equal(0, as_nobody("ln -s " .. H.shquote(secret .. "/pub") .. " work").code)
    local script = H.write(base .. "/where.sh", "pwd > " .. dir .. "/where.txt; cat data.txt >> " .. dir
      .. "/where.txt; exec sleep 1000\n")
    local r = H.pm("start", eco({ name = "w", script = "/bin/sh", args = { script }, cwd = dir .. "/work",
      user = "nobody", autorestart = false }))
    H.holds(function() return not H.exists(dir .. "/where.txt") end, 1000, "the app never ran in root's folder")
    local p = H.proc("w")
    assert.are_not.equal("online", p and p.pm2_env.status, r.out .. r.err)
  end)
end)
