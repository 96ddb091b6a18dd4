-- pm.log's rotation (lua/pm/log.lua): past MAX_SIZE, pm.log -> pm.log.1
-- (.1 -> .2, RETAIN kept) and the process's stderr (fds 1 and 2) is the new
-- pm.log. Runs in a child luajit whose stderr is the log, as the daemon's is.
local util = require "pm.util"

local SRC = os.getenv("PM_SRC") or "."

local CHILD = [=[
local src = os.getenv("PM_SRC") or "."
package.path = src .. "/lua/?.lua;" .. package.path
package.cpath = src .. "/lib/?.so;" .. package.cpath
local core = require "pm.core"
local log = require "pm.log"
local path = arg[1]
local fd = assert(core.open(path, "a", 384))
core.dup(fd, 2)
core.close(fd)
log.MAX_SIZE, log.RETAIN = 4096, 2
log.rotate_at(path)
for i = 1, 200 do log.info("line %03d %s", i, ("z"):rep(40)) end
io.stderr:write("raw write to fd 2\n") -- what C code writes goes to the current file too
]=]

describe("pm.log", function()
  local dir
  before_each(function()
    local p = io.popen("mktemp -d")
    dir = p:read("*l")
    p:close()
  end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("is rotated past its size, RETAIN files kept, stderr on the new file", function()
    local script = dir .. "/child.lua"
    local f = assert(io.open(script, "w"))
    f:write(CHILD)
    f:close()
    local path = dir .. "/pm.log"
    local rc = os.execute(("PM_SRC='%s' luajit '%s' '%s'"):format(SRC, script, path))
    assert.is_true(rc == 0 or rc == true, "the child failed: " .. tostring(rc))
    local cur, one, two = util.read_file(path), util.read_file(path .. ".1"), util.read_file(path .. ".2")
    assert.is_truthy(cur and one and two, "pm.log, pm.log.1 and pm.log.2")
    assert.is_nil(util.read_file(path .. ".3"), "only RETAIN (2) rotated files")
    for _, s in ipairs({ cur, one, two }) do assert.is_true(#s <= 4096 + 100, #s .. " bytes") end
    assert.is_truthy(cur:find("line 200 ", 1, true), "the last line is in pm.log")
    assert.is_truthy(cur:find("raw write to fd 2\n$"), "fd 2 writes to the new pm.log")
    assert.is_truthy(one:find("^%S+ info: line %d%d%d"), "whole lines in pm.log.1")
  end)
end)
