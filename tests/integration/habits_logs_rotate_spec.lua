-- Issue 16 item 15 (its log parts): time-based rotation (`log_rotate =
-- "daily" | "hourly" | <cron expression>`, seconds allowed as cron_restart's
-- six fields, which is how these tests rotate every second without waiting
-- a minute), `compress = true` gzips the rotated files (zlib, off the
-- daemon's loop and writer), `retain` bounds them compressed or not, no
-- line is lost or cut, and `pm logs` keeps following across rotations.
local H = require "pmtest"
local core = require "pm.core"
local util = require "pm.util"
local pm = require "pm"

local F = H.fixtures

local function lines_of(s)
  local t = {}
  for l in (s or ""):gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

-- The rotated files of logs/<stem>: { name, ... } sorted (oldest first)
local function rotated(stem)
  local out = {}
  for name in pairs(core.listdir(H.home .. "/logs") or {}) do
    if name:sub(1, #stem + 2) == stem .. "__" then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

local function gunzip(path)
  local r = H.sh("gzip -dc " .. H.shquote(path))
  assert.equal(0, r.code, path .. ": " .. r.err)
  return r.out
end

-- Asserts that ticks are "tick N" lines, each following the one before
local function consecutive(ticks, what)
  local prev
  for _, l in ipairs(ticks) do
    local k = tonumber(l:match("^tick (%d+)$"))
    assert.truthy(k, what .. ": not a whole line: " .. l)
    if prev then assert.equal(prev + 1, k, what .. ": a line lost or repeated") end
    prev = k
  end
end

describe("time-based log rotation (issue 16 item 15)", function()
  before_each(function() H.new_home() end)
  after_each(function()
    pm.disconnect()
    H.cleanup()
  end)

  it("log_rotate (every second) + compress: dated .gz files, at most retain, every line once and whole", function()
    H.lua_eco(('{ { name = "rot", script = %q, log_rotate = "* * * * * *", compress = true, retain = 3 } }')
      :format(F .. "/lb_ticker.sh"))
    H.ok(H.pm("start", "ecosystem.config.lua", { cwd = H.home }))
    local p = H.proc("rot")
    assert.equal("* * * * * *", p.pm2_env.log_rotate)
    assert.is_true(p.pm2_env.compress)
    -- more rotations than retain: the oldest go
    local seen = {}
    H.wait_for(function()
      for _, n in ipairs(rotated("rot-out")) do seen[n] = true end
      local k = 0
      for _ in pairs(seen) do k = k + 1 end
      return k >= 5
    end, 15000, "five rotations")
    H.ok(H.pm("stop", "rot"))
    -- once the compressor is done: only .gz, at most retain of them
    local files
    H.wait_for(function()
      files = rotated("rot-out")
      for _, n in ipairs(files) do
        if not n:match("%.gz$") then return false end
      end
      return true
    end, 5000, "every rotated file compressed")
    assert.is_true(#files >= 1 and #files <= 3, table.concat(files, " "))
    for _, n in ipairs(files) do
      assert.truthy(n:match("^rot%-out__%d%d%d%d%-%d%d%-%d%d_%d%d%-%d%d%-%d%d[_%d]*%.log%.gz$"), n)
    end
    -- the kept files then the live one: one run of consecutive whole lines
    local all = {}
    for _, n in ipairs(files) do
      for _, l in ipairs(lines_of(gunzip(H.home .. "/logs/" .. n))) do all[#all + 1] = l end
    end
    for _, l in ipairs(lines_of(util.read_file(H.home .. "/logs/rot-out.log"))) do all[#all + 1] = l end
    assert.is_true(#all >= 10, #all .. " lines")
    consecutive(all, "rotated and live files")
    -- an empty file is not rotated
    assert.same({}, rotated("rot-error"))
  end)

  -- The rotated files of app name kept (retain 3, compressed) and its live
  -- file follow each other, line by line, to its last line ("line 00100000")
  local function kept_to_the_end(name)
    local live = H.home .. "/logs/" .. name .. "-out.log"
    H.wait_for(function() return (util.read_file(live) or ""):find("line 00100000\n", 1, true) end, 20000,
      name .. "'s last line written")
    local files
    H.wait_for(function()
      files = rotated(name .. "-out")
      if #files > 3 then return false end
      for _, n in ipairs(files) do if not n:match("%.gz$") then return false end end
      return true
    end, 10000, "retain 3 compressed files")
    -- oldest first: by stamp, then by the number a second's later ones get
    local function key(n)
      local stamp, seq = n:match("__([%d_%-]+%-%d%d)_?(%d*)%.log")
      return stamp, tonumber(seq) or 0
    end
    table.sort(files, function(a, b)
      local sa, na = key(a)
      local sb, nb = key(b)
      if sa ~= sb then return sa < sb end
      return na < nb
    end)
    local text = {}
    for _, n in ipairs(files) do text[#text + 1] = gunzip(H.home .. "/logs/" .. n) end
    text[#text + 1] = util.read_file(live)
    local all = lines_of(table.concat(text))
    assert.truthy(#all > 0)
    local ticks = {}
    for i, l in ipairs(all) do ticks[i] = l:gsub("^line 0*", "tick ") end
    consecutive(ticks, name .. "'s kept files")
    assert.equal("line 00100000", all[#all])
  end

  it("many size rotations in one second (compress, retain 3): the newest rotated files are kept, "
    .. "every line after them in the live file", function()
    -- 100,000 numbered lines, 10 KB a file: about 150 rotations, many in a second
    local writer = H.script("seq.sh", "#!/bin/sh\nseq -f 'line %08g' 1 100000\nsleep 600\n")
    H.lua_eco(('{ { name = "many", script = %q, max_log_size = "10K", compress = true, retain = 3 } }')
      :format(writer))
    H.ok(H.pm("start", "ecosystem.config.lua", { cwd = H.home }))
    kept_to_the_end("many")
    H.ok(H.pm("delete", "many"))
  end)

  it("two apps rotating many times in the same second keep their newest files each "
    .. "(whatever their paths' hashes)", function()
    -- a second name whose path falls where the first one's does in a table
    -- of 64 (what pm kept the last name of a second in, by hash)
    local ffi = require "ffi"
    local function slot(name)
      local h = ffi.new("uint64_t", 1469598103934665603ULL)
      for c in (H.home .. "/logs/" .. name .. "-out.log"):gmatch(".") do
        h = bit.bxor(h, c:byte()) * 1099511628211ULL
      end
      return tonumber(h % 64)
    end
    local other
    for i = 1, 10000 do
      if slot("twb" .. i) == slot("twa") then other = "twb" .. i; break end
    end
    assert.truthy(other)
    local writer = H.script("seq.sh", "#!/bin/sh\nseq -f 'line %08g' 1 100000\nsleep 600\n")
    H.lua_eco(('{ { name = "twa", script = %q, max_log_size = "10K", compress = true, retain = 3 }, '
      .. '{ name = %q, script = %q, max_log_size = "10K", compress = true, retain = 3 } }')
      :format(writer, other, writer))
    H.ok(H.pm("start", "ecosystem.config.lua", { cwd = H.home }))
    kept_to_the_end("twa")
    kept_to_the_end(other)
    H.ok(H.pm("delete", "all"))
  end)

  it("a daemon started again in the same second keeps its own newest rotated files, not the last one's", function()
    -- run 1 rotates some 28 times in a second, run 2 (a new daemon, the
    -- same second) 3 times at most: none of run 2's is pruned (they took
    -- the numbers the pruning had freed, the oldest, and were pruned at
    -- once)
    local writer = H.script("seqrun.sh", "#!/bin/sh\nseq -f \"$1 %08g\" 1 $2\nsleep 600\n")
    local function eco(run, n)
      return H.write(H.home .. "/rr.json", util.encode({ apps = { { name = "rr", script = writer,
        args = { run, tostring(n) }, max_log_size = "10K", retain = 3, log_rotate = "0 0 0 * * *" } } }))
    end
    H.ok(H.pm("ping"))
    -- (just after a second begins: both runs in it)
    local now = core.now() % 1000
    core.sleep(1000 - now + 10)
    H.ok(H.pm("start", eco("RUNA", 20000)))
    local live = H.home .. "/logs/rr-out.log"
    H.wait_for(function() return (util.read_file(live) or ""):find("RUNA 00020000\n", 1, true) end, 5000, "run 1")
    H.ok(H.pm("kill"))
    H.ok(H.pm("start", eco("RUNB", 2000)))
    H.wait_for(function() return (util.read_file(live) or ""):find("RUNB 00002000\n", 1, true) end, 5000, "run 2")
    local text = {}
    for _, n in ipairs(rotated("rr-out")) do text[#text + 1] = util.read_file(H.home .. "/logs/" .. n) or "" end
    text[#text + 1] = util.read_file(live)
    local seen = {}
    for k in table.concat(text):gmatch("RUNB (%d+)\n") do seen[tonumber(k)] = true end
    for k = 1, 2000 do assert.truthy(seen[k], "run 2's line " .. k .. " is gone: its rotated files were pruned") end
    H.ok(H.pm("delete", "rr"))
  end)

  it("200 apps rotating together (compress): every app's rotated files are gzipped, at most retain", function()
    -- (the compressor's queue held 64 jobs: the rest stayed plain for good)
    H.lua_eco(('(function() local t = {} for i = 1, 200 do t[i] = { name = "r" .. i, script = %q, '
      .. 'log_rotate = "* * * * * *", compress = true, retain = 2 } end return t end)()')
      :format(F .. "/lb_ticker.sh"))
    H.ok(H.pm("start", "ecosystem.config.lua", { cwd = H.home }))
    H.wait_for(function() return #rotated("r200-out") + #rotated("r1-out") >= 4 end, 15000, "a few rotations")
    H.ok(H.pm("stop", "all"))
    local left
    pcall(H.wait_for, function()
      left = {}
      for i = 1, 200 do
        local files = rotated("r" .. i .. "-out")
        for _, n in ipairs(files) do if not n:match("%.gz$") then left[#left + 1] = n end end
        if #files > 2 then left[#left + 1] = ("r%d: %d files"):format(i, #files) end
      end
      return #left == 0
    end, 20000)
    assert.equal("", table.concat(left, " ", 1, math.min(#left, 4)), #left .. " not gzipped or past retain")
  end)

  it("compress gzips a rotated file left plain (a full queue, a daemon's end) at the stem's next rotation", function()
    local old = H.home .. "/logs/heal-out__2020-01-01_00-00-00.log"
    util.mkdir_p(H.home .. "/logs")
    H.write(old, "an old line\n")
    H.lua_eco(('{ { name = "heal", script = %q, log_rotate = "* * * * * *", compress = true, retain = 10 } }')
      :format(F .. "/lb_ticker.sh"))
    H.ok(H.pm("start", "ecosystem.config.lua", { cwd = H.home }))
    H.wait_for(function() return core.stat(old .. ".gz") and not core.stat(old) end, 10000, "the old file gzipped")
    assert.equal("an old line\n", gunzip(old .. ".gz"))
  end)

  it("compress leaves a sparse file named as a rotated one plain: holes a folder's user made cost nothing", function()
    local holes = H.home .. "/logs/sparse-out__2020-01-01_00-00-00.log"
    util.mkdir_p(H.home .. "/logs")
    H.ok(H.sh("truncate -s 4G " .. H.shquote(holes)))
    H.lua_eco(('{ { name = "sparse", script = %q, log_rotate = "* * * * * *", compress = true, retain = 10 } }')
      :format(F .. "/lb_ticker.sh"))
    H.ok(H.pm("start", "ecosystem.config.lua", { cwd = H.home }))
    -- its own rotated files are gzipped; the sparse one stays as it is
    H.wait_for(function()
      for _, n in ipairs(rotated("sparse-out")) do
        if n:match("%.gz$") then return true end
      end
    end, 10000, "a rotated file gzipped")
    assert.is_truthy(core.stat(holes))
    assert.is_nil(core.stat(holes .. ".gz"))
    assert.is_nil(core.stat(holes .. ".gz.tmp"))
  end)

  it("log_rotate without compress keeps plain dated files, at most retain", function()
    H.lua_eco(('{ { name = "plain", script = %q, log_rotate = "* * * * * *", retain = 2 } }')
      :format(F .. "/lb_ticker.sh"))
    H.ok(H.pm("start", "ecosystem.config.lua", { cwd = H.home }))
    local seen = {}
    H.wait_for(function()
      for _, n in ipairs(rotated("plain-out")) do seen[n] = true end
      local k = 0
      for _ in pairs(seen) do k = k + 1 end
      return k >= 4
    end, 15000, "four rotations")
    H.ok(H.pm("stop", "plain"))
    local files
    H.wait_for(function()
      files = rotated("plain-out")
      return #files <= 2
    end, 5000, "at most retain files")
    for _, n in ipairs(files) do
      assert.truthy(n:match("^plain%-out__[%d_%-]+%.log$"), n)
      consecutive(lines_of(util.read_file(H.home .. "/logs/" .. n)), n)
    end
  end)

  it("retain counts only the files it made: decoys in the folder are neither counted nor removed", function()
    -- what an app's user may put in its own log folder: a directory named
    -- like the newest rotated file, and names that sort after every stamp
    local logs = H.home .. "/logs"
    assert(core.mkdir(logs, 448))
    assert(core.mkdir(logs .. "/dec-out__2099-01-01_00-00-00.log", 448))
    H.write(logs .. "/dec-out__zzzz.log", "decoy\n")
    H.write(logs .. "/dec-out__2099-01-01_00-00-00.log.bak", "decoy\n")
    H.lua_eco(('{ { name = "dec", script = %q, log_rotate = "* * * * * *", retain = 2 } }')
      :format(F .. "/lb_ticker.sh"))
    H.ok(H.pm("start", "ecosystem.config.lua", { cwd = H.home }))
    local seen = {}
    H.wait_for(function()
      for _, n in ipairs(rotated("dec-out")) do
        if n:match("^dec%-out__20%d%d%-") and not n:match("^dec%-out__2099") then seen[n] = true end
      end
      local k = 0
      for _ in pairs(seen) do k = k + 1 end
      return k >= 4
    end, 15000, "four rotations")
    H.ok(H.pm("stop", "dec"))
    local real = {}
    H.wait_for(function()
      real = {}
      for _, n in ipairs(rotated("dec-out")) do
        if n:match("^dec%-out__20[0-8]%d%-") then real[#real + 1] = n end
      end
      return #real == 2
    end, 5000, "two real rotated files (retain = 2), the decoys not counted")
    assert.equal("dir", core.stat(logs .. "/dec-out__2099-01-01_00-00-00.log").type)
    assert.truthy(core.stat(logs .. "/dec-out__zzzz.log"))
    assert.truthy(core.stat(logs .. "/dec-out__2099-01-01_00-00-00.log.bak"))
  end)

  it("pm logs app (following) keeps following across rotations", function()
    H.lua_eco(('{ { name = "fol", script = %q, log_rotate = "* * * * * *", compress = true, retain = 5 } }')
      :format(F .. "/lb_ticker.sh"))
    H.ok(H.pm("start", "ecosystem.config.lua", { cwd = H.home }))
    H.wait_for(function() return #rotated("fol-out") >= 1 end, 5000, "a first rotation")
    local before = rotated("fol-out")
    local r = H.sh("timeout -s INT 3.5 " .. H.command("logs", "fol", "--lines", "0"))
    local after = rotated("fol-out")
    local got = {}
    for _, l in ipairs(lines_of(r.out)) do
      got[#got + 1] = assert(l:match("^%d+|fol|(.*)$"), l)
    end
    assert.is_true(#got >= 20, r.out .. r.err)
    consecutive(got, "followed lines")
    local new = 0
    local had = {}
    for _, n in ipairs(before) do had[n:gsub("%.gz$", "")] = true end
    for _, n in ipairs(after) do
      if not had[n:gsub("%.gz$", "")] then new = new + 1 end
    end
    assert.is_true(new >= 2, "rotations while following: " .. new)
  end)

  it("log_rotate 'daily' is accepted; a bad one is refused with one line", function()
    H.lua_eco(('{ { name = "dly", script = %q, log_rotate = "daily", compress = true } }'):format(F .. "/lb_ticker.sh"))
    H.ok(H.pm("start", "ecosystem.config.lua", { cwd = H.home }))
    assert.equal("daily", H.proc("dly").pm2_env.log_rotate)
    H.lua_eco(('{ { name = "bad", script = %q, log_rotate = "every day" } }'):format(F .. "/lb_ticker.sh"))
    H.fails(H.pm("start", "ecosystem.config.lua", { cwd = H.home }), "log_rotate")
    assert.is_nil(H.proc("bad"))
  end)
end)
