-- Rough edges of issue 15, item 16, without a daemon: what an app
-- declaration may say (port, args, log_date_format), what a request's id
-- becomes in a reply (rpc.utf8_clean), and how a start that cannot get its
-- pipes or channel says why (once).
local core = require "pm.core"
local util = require "pm.util"
local appdecl = require "pm.app"
local rpc = require "pm.rpc"
local proc = require "pm.proc"
local lifecycle = require "pm.lifecycle"
local launch = require "pm.launch"

local function decl(extra)
  local raw = { name = "edge", script = "/bin/sh" }
  for k, v in pairs(extra) do raw[k] = v end
  return appdecl.normalize(raw, { base = "/tmp", environ = {} })
end

describe("an app's port", function()
  it("is a whole number from 1 to 65535", function()
    for _, bad in ipairs({ {}, 0 / 0, 1 / 0, 0, -1, 65536, 80.5, "http", true }) do
      local d, err = decl({ port = bad })
      assert.is_nil(d, "port " .. tostring(bad) .. " accepted")
      assert.is_truthy(err:find("port must be a whole number from 1 to 65535", 1, true), err)
      assert.is_nil(err:find("0x", 1, true), err)
    end
    for _, good in ipairs({ 1, 8080, "8080", 65535 }) do
      local d = assert(decl({ port = good }))
      assert.equal(tostring(tonumber(good)), d.env.PORT)
    end
    assert.is_nil(assert(decl({ port = util.null })).env.PORT)
  end)
end)

describe("args given as one string", function()
  it("are split like a shell's words, and an unterminated quote is refused", function()
    assert.same({ "a", "b c", "d" }, appdecl.split_args([[a 'b c' "d"]]))
    for _, bad in ipairs({ "a 'b c", 'x "', "'" }) do
      local list, err = appdecl.split_args(bad)
      assert.is_nil(list, bad)
      assert.is_truthy(err:find("unterminated", 1, true))
      local d, derr = decl({ args = bad })
      assert.is_nil(d)
      assert.is_truthy(derr:find("args: unterminated", 1, true), derr)
      d, derr = decl({ interpreter_args = bad })
      assert.is_nil(d)
      assert.is_truthy(derr:find("interpreter_args: unterminated", 1, true), derr)
    end
  end)
end)

describe("log_date_format", function()
  it("is refused when what it gives is too long for a log line's prefix", function()
    assert(decl({ log_date_format = "YYYY-MM-DD HH:mm:ss.SSS Z" }))
    assert.equal(30, appdecl.date_width("YYYY-MM-DD HH:mm:ss.SSS Z"))
    local d, err = decl({ log_date_format = ("YYYY-MM-DD "):rep(12) })
    assert.is_nil(d)
    assert.is_truthy(err:find("log_date_format gives 132 characters: at most 100", 1, true), err)
    assert.is_nil(decl({ log_date_format = ("Z "):rep(20) })) -- 20 x "+HH:MM "
    assert.equal(37, appdecl.date_width("dddd, MMMM D YYYY h:mm a"))
  end)

  it("takes dayjs's tokens as PM2 does, in log files and in pm logs --timestamp", function()
    local view, applogs = require "pm.view", require "pm.applogs"
    local ms = os.time({ year = 2026, month = 12, day = 7, hour = 18, min = 5, sec = 6 }) * 1000 + 45
    for fmt, want in pairs({
      ["MMM DD HH:mm:ss"] = "Dec 07 18:05:06",
      ["D/M/YYYY H:m:s"] = "7/12/2026 18:5:6",
      ["dddd, MMMM D YYYY h:mm a"] = "Monday, December 7 2026 6:05 pm",
      ["ddd hh A"] = "Mon 06 PM",
      ["[Date:] YYYY [at] SSS 100%"] = "Date: 2026 at 045 100%",
    }) do
      assert.equal(want, view.moment(fmt, ms))
    end
    assert.equal("%A, %B %-d %Y %-I:%M %P", applogs.time_format("dddd, MMMM D YYYY h:mm a"))
    assert.equal("Date: %Y.%L%%Q 100%%%%", applogs.time_format("[Date:] YYYY.SSSZ 100%"))
  end)
end)

describe("a reply's id and message", function()
  it("keep valid UTF-8 and have every invalid byte replaced by U+FFFD", function()
    local R = "\239\191\189"
    assert.equal("plain", rpc.utf8_clean("plain"))
    assert.equal("é€😀", rpc.utf8_clean("é€😀"))
    assert.equal("a" .. R .. "b", rpc.utf8_clean("a\255b"))
    assert.equal(R .. R, rpc.utf8_clean("\192\175")) -- overlong
    assert.equal("x" .. R .. R .. R, rpc.utf8_clean("x\237\160\128")) -- a surrogate
    assert.equal(R .. R, rpc.utf8_clean("\226\130")) -- cut short
    assert.equal(R, rpc.utf8_clean("\244\144\128\128"):sub(1, 3)) -- over U+10FFFF
  end)
end)

describe("a start without fds", function()
  local saved_pipe, saved_pair = core.pipe, core.socketpair
  after_each(function()
    core.pipe, core.socketpair = saved_pipe, saved_pair
  end)

  local function record(extra)
    proc.ctx.home = "/pm-home"
    local d = assert(decl(extra or {}))
    local p = proc.new({ pm_id = 9, instance = 0, name = d.name, decl = d, environ = {},
      created_at = 1000, restart_time = 0, unstable_restarts = 0, prev_restart_delay = 0, pid = 0,
      uid_marker = "1-9-1000" })
    lifecycle.init(p, false)
    return p
  end

  -- (issue 21: said with the arithmetic, the channel counted when it has one)
  local function limit_line(needs)
    return ("the daemon's fd limit (%d) is reached: each app needs %d; raise LimitNOFILE (or ulimit -n)")
      :format(math.floor(core.nofile()), needs)
  end

  it("says socketpair once", function()
    core.socketpair = function() return nil, "socketpair: Too many open files" end
    local p = record({ ipc = true })
    local ok, err = launch.launch(p)
    assert.is_nil(ok)
    assert.equal(limit_line(3), err)
    assert.equal("errored", p.status)
  end)

  it("says pipe once", function()
    core.pipe = function() return nil, "pipe: Too many open files" end
    local p = record()
    local ok, err = launch.launch(p)
    assert.is_nil(ok)
    assert.equal(limit_line(2), err)
  end)

  it("says the second pipe's error, not the first pipe's fd, when only the second fails", function()
    local n = 0
    core.pipe = function(...)
      n = n + 1
      if n == 2 then return nil, "pipe: Too many open files" end
      return saved_pipe(...)
    end
    local p = record()
    local ok, err = launch.launch(p)
    assert.is_nil(ok)
    assert.equal(limit_line(2), err)
  end)
end)
