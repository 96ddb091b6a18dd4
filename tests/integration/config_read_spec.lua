-- Issue 20, item 4: read-only helpers in an ecosystem.lua, relative to its
-- folder: pm.read (text, size-limited), pm.json, pm.dotenv, pm.hostname,
-- pm.cpus; nothing that writes or runs. What a file reads is read with
-- the rights of the user who asked (a daemon of that user's: its own), and
-- in a folder another user can change, with that user's: no link there
-- reaches a file of root's.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"

local ok, fails, write = H.ok, H.fails, H.write
local q = H.shquote

local USER = util.passwd("cloudsdk") or util.passwd("nobody")

local function env_of(name)
  local p = H.online(H.proc(name))
  return H.wait_for(function()
    local e = H.environ(p.pid)
    return e and e.PM_APP_UID and e
  end, 5000, "the environment of " .. name)
end

local function have(cmd) return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == 0 end

describe("pm.read, pm.json, pm.dotenv, pm.hostname, pm.cpus", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("read data beside the file (relative to its folder, from any cwd)", function()
    core.mkdir(H.home .. "/conf", 493)
    write(H.home .. "/conf/settings.json", '{ "port": 8123, "replicas": [1, 2], "name": "api" }\n')
    write(H.home .. "/conf/secrets.env", "export API_KEY='k-123 # kept'\n# comment\nDEBUG=0\n")
    write(H.home .. "/conf/banner.txt", "hello\nthere\n")
    local file = write(H.home .. "/conf/ecosystem.lua", [[
local s = pm.json("settings.json")
local sec = pm.dotenv("secrets.env")
return { apps = { { name = s.name, script = "/bin/sleep", args = { "1000" },
  env = { PORT = s.port, N = #s.replicas, KEY = sec.API_KEY, DEBUG = sec.DEBUG,
    BANNER = pm.read("banner.txt"), HOST = pm.hostname(), CPUS = pm.cpus(),
    TYPES = type(pm.cpus()) .. type(pm.hostname()) } } } }
]])
    ok(H.pm("start", file, "-s", { cwd = "/" }))
    local env = env_of("api")
    assert.equal("8123", env.PORT)
    assert.equal("2", env.N)
    assert.equal("k-123 # kept", env.KEY)
    assert.equal("0", env.DEBUG)
    assert.equal("hello\nthere\n", env.BANNER)
    assert.equal(util.read_file("/proc/sys/kernel/hostname"):match("^%s*(.-)%s*$"), env.HOST)
    assert.is_truthy(tonumber(env.CPUS) >= 1)
    assert.equal("numberstring", env.TYPES)
  end)

  it("bad data says the file and where; nothing that writes or runs is there", function()
    write(H.home .. "/bad.json", '{ "a": 1,\n  "b": }\n')
    write(H.home .. "/bad.env", "OK=1\nnot a line\n")
    local file = H.home .. "/ecosystem.lua"
    local function eco(expr)
      write(file, ("local v = %s\nreturn { apps = { { name = 'x', script = '/bin/sleep', args = { '1000' } } } }\n")
        :format(expr))
    end
    eco('pm.json("bad.json")')
    fails(H.pm("start", file, "-s"), H.home .. "/bad.json:2:")
    eco('pm.dotenv("bad.env")')
    fails(H.pm("start", file, "-s"), H.home .. "/bad.env:2: ")
    eco('pm.read("nope.txt")')
    fails(H.pm("start", file, "-s"), "pm.read: " .. H.home .. "/nope.txt: no such file")
    eco('pm.read("/dev/zero")')
    fails(H.pm("start", file, "-s"), "not a regular file")
    os.execute("mkfifo " .. q(H.home .. "/fifo"))
    eco('pm.read("fifo")')
    fails(H.pm("start", file, "-s"), "not a regular file")
    -- size-limited
    local f = io.open(H.home .. "/big.txt", "w")
    f:write(string.rep("x", 1024 * 1024 + 1))
    f:close()
    eco('pm.read("big.txt")')
    fails(H.pm("start", file, "-s"), "over 1024 KB")
    -- nothing writes, runs or loads code another way
    for _, expr in ipairs({ "io.open('/tmp/x', 'w')", "os.execute('true')", "os.remove('x')",
      "dofile('x')", "loadstring('return 1')", "pm.write('x', 'y')", "os.exit(1)" }) do
      eco(expr)
      local r = H.pm("start", file, "-s")
      assert.are_not.equal(0, r.code, expr)
      assert.is_truthy(r.err:find("nil value", 1, true), expr .. ": " .. r.err)
    end
    ok(H.pm("ping"))
    assert.equal(0, #H.jlist())
  end)

  it("only while the file loads: a hook cannot read files later", function()
    write(H.home .. "/data.txt", "x\n")
    local file = write(H.home .. "/ecosystem.lua", [[
return { apps = { { name = "h", script = "/bin/sh", args = { "-c", "exit 3" }, autorestart = true,
  on_exit = function()
    local okr, err = pcall(pm.read, "data.txt")
    pm.log("HOOK-READ " .. tostring(okr) .. " " .. tostring(err))
    return "stop"
  end } } }
]])
    ok(H.pm("start", file, "-s"))
    H.wait_for(function() return H.pm_log():find("HOOK-READ", 1, true) end, 5000, "the hook")
    assert.is_truthy(H.pm_log():find("HOOK-READ false", 1, true))
    assert.is_truthy(H.pm_log():find("works while an ecosystem file loads", 1, true))
  end)

  it("a daemon of a user's: pm.read of a file that user may not read is refused, through a link too", function()
    if core.getuid() ~= 0 or not USER or not have("setpriv") then
      return pending("needs root, setpriv and a user cloudsdk (or nobody)")
    end
    local secret = write(H.home .. "/secret.txt", "TOP SECRET\n")
    os.execute("chmod 0600 " .. q(secret))
    os.execute("chmod 0711 " .. q(H.home))
    local uh = H.home .. "/user-home"
    os.execute(("mkdir -m 0755 %s && chown %d:%d %s"):format(q(uh), USER.uid, USER.gid, q(uh)))
    local pmhome = uh .. "/pm"
    local runas = ("setpriv --reuid=%d --regid=%d --clear-groups"):format(USER.uid, USER.gid)
    local function as_user(cmd)
      return H.sh(("%s sh -c %s"):format(runas, q(cmd)), { env = { PM_HOME = pmhome } })
    end
    local function pm(...)
      local words = { "PM_HOME=" .. q(pmhome), runas, q(H.bin) }
      for _, a in ipairs({ ... }) do words[#words + 1] = q(a) end
      return H.sh(table.concat(words, " "))
    end
    ok(as_user("mkdir -p " .. q(uh .. "/eco") .. " && echo mine > " .. q(uh .. "/eco/mine.txt")
      .. " && ln -s " .. q(secret) .. " " .. q(uh .. "/eco/link.txt")))
    local file = uh .. "/eco/ecosystem.lua"
    ok(as_user("cat > " .. q(file) .. [[ <<'EOF'
return { apps = { { name = "reader", script = "/bin/sleep", args = { "1000" },
  env = { GOT = pm.read(os.getenv("WHAT")) } } } }
EOF]]))
    local ok1, err = pcall(function()
      ok(pm("ping"))
      local r = H.sh(runas .. " " .. H.command("start", file, "-s"), { env = { PM_HOME = pmhome, WHAT = secret } })
      fails(r, "Permission denied")
      assert.is_nil((r.out .. r.err):find("TOP SECRET", 1, true))
      r = H.sh(runas .. " " .. H.command("start", file, "-s"), { env = { PM_HOME = pmhome, WHAT = "link.txt" } })
      fails(r, "Permission denied")
      r = H.sh(runas .. " " .. H.command("start", file, "-s"), { env = { PM_HOME = pmhome, WHAT = "mine.txt" } })
      ok(r)
      local listed = pm("jlist").out
      assert.is_truthy(listed:find('"GOT":"mine\\n"', 1, true), listed)
      assert.is_nil(listed:find("TOP SECRET", 1, true))
    end)
    H.stop_daemon(pmhome)
    core.chmod(H.home, 448)
    assert(ok1, err)
  end)

  it("a root's file naming a link in a user's folder: read with that user's rights (never the root file it names)",
    function()
    if core.getuid() ~= 0 or not USER then return pending("needs root and a user cloudsdk (or nobody)") end
    local p = io.popen("mktemp -d /tmp/pm-config-read.XXXXXX")
    local top = p:read("*l")
    p:close()
    os.execute("chmod 0711 " .. q(top))
    finally(function() os.execute("rm -rf " .. q(top)) end)
    local secret = write(top .. "/secret.env", "DB_PASSWORD=rootsecret\n")
    os.execute("chmod 0600 " .. q(secret))
    local dir = top .. "/tenant"
    core.mkdir(dir, 493)
    os.execute("ln -s " .. q(secret) .. " " .. q(dir .. "/app.env"))
    os.execute(("chown -R -h %d:%d %s"):format(USER.uid, USER.gid, q(dir)))
    -- the ecosystem file is root's, in root's folder; only the env file's
    -- folder is the user's
    local file = write(top .. "/ecosystem.lua", ('return { apps = { { name = "u", script = "/bin/sleep", '
      .. 'args = { "1000" }, env_file = %q } } }\n'):format(dir .. "/app.env"))
    local r = fails(H.pm("start", file, "-s"), "refused")
    assert.is_nil((r.out .. r.err):find("rootsecret", 1, true))
    assert.same({}, H.jlist())
  end)

  it("an ecosystem file that is a FIFO (or no regular file) is refused; the daemon answers on", function()
    local fifo = H.home .. "/ecosystem.lua"
    assert.equal(0, H.sh("mkfifo " .. q(fifo)).code)
    ok(H.pm("ping"))
    local pm = require "pm"
    local res, err = pm.reload(fifo)
    assert.is_nil(res)
    assert.truthy(tostring(err):find("not a regular file", 1, true), tostring(err))
    pm.disconnect()
    ok(H.pm("ping"))
  end)

  it("a root daemon reads in a folder another user can change with that user's rights", function()
    if core.getuid() ~= 0 or not USER then return pending("needs root and a user cloudsdk (or nobody)") end
    -- (not in PM_HOME: the daemon keeps it 0700)
    local p = io.popen("mktemp -d /tmp/pm-config-read.XXXXXX")
    local top = p:read("*l")
    p:close()
    os.execute("chmod 0711 " .. q(top))
    finally(function() os.execute("rm -rf " .. q(top)) end)
    local secret = write(top .. "/secret.txt", "TOP SECRET\n")
    os.execute("chmod 0600 " .. q(secret))
    local dir = top .. "/tenant"
    core.mkdir(dir, 493)
    write(dir .. "/mine.env", "MINE=1\n")
    os.execute("ln -s " .. q(secret) .. " " .. q(dir .. "/link.env"))
    -- (the file is the user's word: it sees the user's environment, not the
    -- caller's; what it reads is named in it)
    local file = dir .. "/ecosystem.lua"
    local function reads(what)
      write(file, ('return { apps = { { name = "t", script = "/bin/sleep", args = { "1000" }, '
        .. 'env = { GOT = pm.read(%q) } } } }\n'):format(what))
      os.execute(("chown -R -h %d:%d %s"):format(USER.uid, USER.gid, q(dir)))
    end
    reads("link.env")
    local r = fails(H.pm("start", file, "-s"), "a symbolic link, refused")
    assert.is_nil((r.out .. r.err):find("TOP SECRET", 1, true))
    reads(secret)
    r = fails(H.pm("start", file, "-s"), "Permission denied")
    assert.is_truthy(r.err:find("read as " .. USER.name, 1, true), r.err)
    -- the same for an env_file
    local eco = 'return { apps = { { name = "t", script = "/bin/sleep", args = { "1000" }, env_file = %q } } }\n'
    write(file, eco:format("link.env"))
    fails(H.pm("start", file, "-s"), "a symbolic link, refused")
    write(file, eco:format("mine.env"))
    ok(H.pm("start", file, "-s"))
    assert.equal("1", env_of("t").MINE)

    -- a .config.js there: node reads as that user, in the caller's cwd
    -- when the user may enter it (PM2's process.cwd()), else the file's folder
    if not (core.access("/usr/bin/node", "x") or core.access("/usr/local/bin/node", "x")) then return end
    local js = dir .. "/app.config.js"
    local function js_reads(what)
      write(js, ([[
const fs = require('fs');
let got;
try { got = fs.readFileSync(%q, 'utf8'); } catch (e) { got = e.code; }
module.exports = { apps: [{ name: "js", script: "/bin/sleep", args: ["1000"], cwd: "/tmp",
  env: { GOT: got, UID: String(process.getuid()), CWD: process.cwd(), SEEN: process.env.ROOT_ONLY || "none" } }] };
]]):format(what))
      os.execute(("chown -h %d:%d %s"):format(USER.uid, USER.gid, q(js)))
    end
    js_reads(secret)
    ok(H.pm("start", js, "-s", { env = { ROOT_ONLY = "caller-secret" }, cwd = H.home }))
    local e = H.proc("js").pm2_env.env
    assert.equal("EACCES", e.GOT)
    assert.equal(tostring(USER.uid), e.UID)
    assert.equal(dir, e.CWD)
    assert.equal("none", e.SEEN) -- (node's process.env is the user's login environment)
    js_reads(dir .. "/mine.env")
    ok(H.pm("start", js, "-s", { cwd = "/tmp" }))
    e = H.proc("js").pm2_env.env
    assert.equal("MINE=1\n", e.GOT)
    assert.equal("/tmp", e.CWD)
    -- (the file is the user's: its app runs as that user)
    assert.equal(USER.name, H.proc("js").pm2_env.username)
  end)
end)
