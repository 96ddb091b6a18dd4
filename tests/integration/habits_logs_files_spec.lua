-- Issue 16 item 14 (its log parts): apps of the same name in two
-- namespaces write separate log files (the first keeps PM2's names, the
-- others' are in PM_HOME/logs/<namespace>/); with merge_logs
-- every line says which instance wrote it (after a --time stamp: " [id]";
-- JSON lines: process_id), and `pm logs` shows it with that instance's id.
local H = require "pmtest"
local util = require "pm.util"
local pm = require "pm"

local function lines_of(s)
  local t = {}
  for l in (s or ""):gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

local function wait_contains(path, text)
  return H.wait_for(function()
    local s = util.read_file(path)
    return s and s:find(text, 1, true) and s
  end, 5000, ("%q in %s"):format(text, path))
end

-- A script that says its words on stdout and stays
local function sayer(file, words)
  return H.script(file, "#!/bin/sh\necho " .. words .. "\nexec sleep 1000\n")
end

describe("log files of namespaces and merged instances (issue 16 item 14)", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("pm start --namespace a / b of the same name: separate files; the first keeps PM2's names", function()
    H.start(sayer("a.sh", "from-a"), "api", "--namespace", "nsa")
    H.start(sayer("b.sh", "from-b"), "api", "--namespace", "nsb")
    H.start(sayer("c.sh", "from-default"), "api")
    H.start(sayer("d.sh", "from-alone"), "solo", "--namespace", "nsa")
    local logs = H.home .. "/logs/"
    wait_contains(logs .. "api-out.log", "from-a")
    wait_contains(logs .. "nsb/api-out.log", "from-b")
    wait_contains(logs .. "default/api-out.log", "from-default")
    wait_contains(logs .. "solo-out.log", "from-alone") -- (DESIGN's name: no other app is called so)
    assert.equal("from-a\n", util.read_file(logs .. "api-out.log"))
    assert.equal("from-b\n", util.read_file(logs .. "nsb/api-out.log"))
    assert.equal("from-default\n", util.read_file(logs .. "default/api-out.log"))
    for _, p in ipairs(H.jlist()) do
      local ns = p.pm2_env.namespace
      local dir = (ns == "nsa") and logs or logs .. ns .. "/"
      assert.equal(dir .. p.name .. "-out.log", p.pm2_env.pm_out_log_path)
      assert.equal(dir .. p.name .. "-error.log", p.pm2_env.pm_err_log_path)
    end
    local got = lines_of(H.ok(H.pm("logs", "nsb", "--nostream")).out)
    assert.equal(1, #got, table.concat(got, "\n"))
    assert.truthy(got[1]:match("|api|from%-b$"), got[1])
    -- the first one gone, the plain names are free for the next app declared
    H.ok(H.pm("delete", "nsa"))
    H.start(sayer("e.sh", "from-e"), "api", "--namespace", "nse")
    wait_contains(logs .. "api-out.log", "from-e")
  end)

  it("pm start -i 2 --merge-logs --time: each line carries the id of the instance that wrote it", function()
    local s = H.script("inst.sh", "#!/bin/sh\necho \"hello from $NODE_APP_INSTANCE\"\n"
      .. "echo \"oops from $NODE_APP_INSTANCE\" >&2\nexec sleep 1000\n")
    H.ok(H.pm("start", s, "--name", "mm", "-i", "2", "--merge-logs", "--time"))
    local path = H.home .. "/logs/mm-out.log"
    wait_contains(path, "hello from 0")
    wait_contains(path, "hello from 1")
    local ids = {}
    for _, p in ipairs(H.jlist()) do ids[p.pm2_env.NODE_APP_INSTANCE or p.pm2_env.env.NODE_APP_INSTANCE] = p.pm_id end
    assert.truthy(ids[0] and ids[1], "two instances")
    -- in the file: the time, then the writer's id
    for _, l in ipairs(lines_of(util.read_file(path))) do
      local id, k = l:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d %[(%d+)%]: hello from (%d)$")
      assert.truthy(id, l)
      assert.equal(ids[tonumber(k)], tonumber(id), l)
    end
    -- pm logs: the writer's id before each line
    for _, l in ipairs(lines_of(H.ok(H.pm("logs", "mm", "--nostream")).out)) do
      local id, k = l:match("^(%d+)|mm|.* (%d)$")
      assert.truthy(id, l)
      assert.equal(ids[tonumber(k)], tonumber(id), l)
    end
    -- --json: its process_id
    local n = 0
    for _, l in ipairs(lines_of(H.ok(H.pm("logs", "mm", "--nostream", "--json")).out)) do
      local o = util.decode(l)
      local k = tonumber(o.message:match("(%d)$"))
      assert.equal(ids[k], o.process_id, l)
      n = n + 1
    end
    assert.equal(4, n)
    -- one instance: its own lines only
    local got = lines_of(H.ok(H.pm("logs", tostring(ids[1]), "--nostream")).out)
    assert.equal(2, #got, table.concat(got, "\n"))
    for _, l in ipairs(got) do assert.truthy(l:match("^" .. ids[1] .. "|mm|.* 1$"), l) end
  end)

  it("merge_logs with log_type json: pm logs shows each line with its writer's id", function()
    local s = H.script("inst.sh", "#!/bin/sh\necho \"hello from $NODE_APP_INSTANCE\"\nexec sleep 1000\n")
    H.lua_eco(('{ { name = "mj", script = %q, instances = 2, merge_logs = true, log_type = "json" } }'):format(s))
    H.ok(H.pm("start", "ecosystem.config.lua", { cwd = H.home }))
    local path = H.home .. "/logs/mj-out.log"
    wait_contains(path, "hello from 0")
    wait_contains(path, "hello from 1")
    local ids = {}
    for _, l in ipairs(lines_of(util.read_file(path))) do
      local o = util.decode(l)
      ids[tonumber(o.message:match("(%d)$"))] = o.process_id
    end
    assert.are_not.equal(ids[0], ids[1])
    local got = lines_of(H.ok(H.pm("logs", "mj", "--nostream", "--raw")).out)
    assert.equal(2, #got)
    got = lines_of(H.ok(H.pm("logs", "mj", "--nostream")).out)
    assert.equal(2, #got)
    for _, l in ipairs(got) do
      local id = tonumber(l:match("^(%d+)|mj|"))
      local k = tonumber(l:match("hello from (%d)"))
      assert.equal(ids[k], id, l)
    end
  end)
end)
