-- Issue 22, item 8: the daemon binary a client embedded in another
-- program starts: PM_BIN, then `pm` on PATH, then the bin/pm of the prefix
-- pm.core was built for; never the host's own executable (a host named
-- nginx used to start itself as the daemon).
local H = require "pmtest"
local core = require "pm.core"
local pm = require "pm"

local sq = H.shquote

-- a host program that is not pm: luajit copied under another name
local function host(name)
  local dir = H.home .. "/hostbin"
  core.mkdir(dir, 493)
  local exe = dir .. "/" .. name
  H.ok(H.sh(("cp %s %s"):format(sq(core.realpath("/usr/bin/luajit") or "/usr/bin/luajit"), sq(exe))), "cp luajit")
  return exe
end

local function run_host(exe, path, ...)
  local extra = {}
  for _, a in ipairs({ ... }) do extra[#extra + 1] = sq(a) end
  return H.sh(("env -u PM_BIN PATH=%s LUA_PATH=%s LUA_CPATH=%s timeout 30 %s %s %s"):format(
    sq(path), sq(H.src .. "/lua/?.lua;" .. H.src .. "/lua/?/init.lua;;"), sq(H.src .. "/lib/?.so;;"),
    sq(exe), sq(H.fixtures .. "/lc_host.lua"), table.concat(extra, " ")))
end

local function daemon_exe()
  local dpid = H.daemon_pid(H.home)
  return dpid and H.alive(dpid) and core.realpath("/proc/" .. dpid .. "/exe")
end

describe("lua client: the daemon binary when embedded", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("a host named nginx starts pm from PATH, not itself", function()
    local exe = host("nginx")
    local pmdir = H.home .. "/pmbin"
    core.mkdir(pmdir, 493)
    H.ok(H.sh(("ln -s %s %s"):format(sq(H.bin), sq(pmdir .. "/pm"))), "ln")
    local r = run_host(exe, pmdir .. ":/usr/bin:/bin")
    assert.equal(0, r.code, r.out .. r.err)
    assert.equal("CONNECTED", r.out:match("^[^\n]*"), r.out .. r.err)
    assert.equal(core.realpath(H.bin), daemon_exe())
  end)

  it("the daemon a host started is its child: pm.killDaemon leaves no zombie (pm's loop reaps nothing else)", function()
    local exe = host("nginx")
    local r = H.sh(("env PM_BIN=%s LUA_PATH=%s LUA_CPATH=%s timeout 30 %s %s kill"):format(
      sq(H.bin), sq(H.src .. "/lua/?.lua;" .. H.src .. "/lua/?/init.lua;;"), sq(H.src .. "/lib/?.so;;"),
      sq(exe), sq(H.fixtures .. "/lc_host.lua")))
    assert.equal(0, r.code, r.out .. r.err)
    assert.equal("DAEMON gone", r.out:match("DAEMON [^\n]*"), r.out .. r.err)
  end)

  it("PM_BIN comes first", function()
    local exe = host("nvim")
    local r = H.sh(("env PM_BIN=%s PATH=/usr/bin:/bin LUA_PATH=%s LUA_CPATH=%s timeout 30 %s %s"):format(
      sq(H.bin), sq(H.src .. "/lua/?.lua;" .. H.src .. "/lua/?/init.lua;;"), sq(H.src .. "/lib/?.so;;"),
      sq(exe), sq(H.fixtures .. "/lc_host.lua")))
    assert.equal("CONNECTED", r.out:match("^[^\n]*"), r.out .. r.err)
    assert.equal(core.realpath(H.bin), daemon_exe())
  end)

  it("without PM_BIN nor pm on PATH: the built-in prefix's bin/pm, or an error saying where it looked", function()
    local exe = host("nginx")
    local r = run_host(exe, "/usr/bin:/bin")
    local prefixed = core.prefix .. "/bin/pm"
    if core.access(prefixed, "x") then
      assert.equal("CONNECTED", r.out:match("^[^\n]*"), r.out .. r.err)
      assert.equal(core.realpath(prefixed), daemon_exe())
    else
      assert.equal("ERR cannot start the pm daemon: cannot find the pm binary: set PM_BIN, or put pm on PATH (not in "
        .. prefixed .. " either)", r.out:match("^[^\n]*"), r.out .. r.err)
      assert.falsy(daemon_exe()) -- nothing started, least of all nginx
    end
  end)
end)
