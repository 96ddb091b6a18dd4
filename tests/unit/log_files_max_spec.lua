-- Issue 21: the log writer keeps at most core.log_files_max files open
-- (it opens a file when it writes to it, closes the one used longest ago),
-- a file nobody writes to holds no fd, and no line is lost or split when
-- files are closed and opened again between writes.
local core = require "pm.core"

local function run_until(done, ms)
  local guard = core.timer(ms, 0, function() end)
  local deadline = core.mono() + ms
  while not done() and core.mono() < deadline do core.run("once") end
  guard:close()
end

-- The fds of this process open on files under dir
local function open_under(dir)
  local p = io.popen("ls -l /proc/" .. core.getpid() .. "/fd")
  local n = 0
  for line in p:lines() do
    if line:find(" -> " .. dir .. "/", 1, true) then n = n + 1 end
  end
  p:close()
  return n
end

describe("the log writer's open files (core.log_files_max)", function()
  local dir, saved
  before_each(function()
    local p = io.popen("mktemp -d")
    dir = p:read("*l")
    p:close()
    saved = core.log_files_max()
  end)
  after_each(function()
    core.log_files_max(saved)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("keeps at most the cap open, and every line of every file arrives whole and in order", function()
    local max = core.log_files_max(3)
    assert.equal(3, max)
    local files, writers, ended = {}, {}, 0
    for i = 1, 8 do
      files[i] = assert(core.logfile(("%s/app%d.log"):format(dir, i)))
      local r, w = core.pipe()
      writers[i] = w
      core.logpipe(r, { files = { files[i] } }, function() ended = ended + 1 end)
    end
    -- made, not written to: no fd held for them
    assert.equal(0, open_under(dir))
    for round = 1, 50 do
      for i = 1, 8 do core.write(writers[i], ("app %d line %d\n"):format(i, round)) end
      run_until(function() return false end, 2)
      assert.is_true(core.log_drain(2000))
      local _, open = core.log_files_max()
      assert.is_true(open <= 3, open .. " open")
      assert.is_true(open_under(dir) <= 3, "fds on the files: " .. open_under(dir))
    end
    for i = 1, 8 do core.close(writers[i]) end
    run_until(function() return ended == 8 end, 2000)
    assert.is_true(core.log_drain(2000))
    for i = 1, 8 do files[i]:close() end
    for i = 1, 8 do
      local f = assert(io.open(("%s/app%d.log"):format(dir, i)))
      local text = f:read("*a")
      f:close()
      local want = {}
      for round = 1, 50 do want[round] = ("app %d line %d\n"):format(i, round) end
      assert.equal(table.concat(want), text)
    end
  end)

  it("says its cap and how many are open; a cap below 1 is 1", function()
    assert.equal(1, (core.log_files_max(0)))
    assert.equal(1, (core.log_files_max(-5)))
    local max, open = core.log_files_max(10)
    assert.equal(10, max)
    assert.equal("number", type(open))
  end)
end)
