-- `pm logs` on a terminal: what an app wrote cannot drive the reader's
-- terminal (OSC 52 writes its clipboard, OSC 0 its title, CR and cursor
-- moves paint over the screen); colours pass, and a pipe gets the bytes.
local H = require "pmtest"

local ok = H.ok

-- `pm logs NAME --nostream --out` under script(1): a terminal; its output
-- is what the terminal got (checked: nothing that drives it)
local function on_terminal(name)
  local r = ok(H.sh("script -qec " .. H.shquote(H.command("logs", name, "--nostream", "--out", "--lines", "5"))
    .. " /dev/null"))
  assert.is_nil(r.out:find("\27]", 1, true), r.out)
  return r
end

describe("pm logs on a terminal", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("shows control characters an app wrote as \\xNN, keeps its colours, and gives a pipe the bytes", function()
    local script = H.script("esc.sh", [[
printf 'title \033]0;owned\007 clip \033]52;c;ZWNobyBwd25lZA==\007 end\n'
printf '\033[31mred\033[0m paint\rover\n'
exec sleep 1000
]])
    ok(H.pm("start", script, "--name", "esc", "-s"))
    H.wait_for(function() return H.contains(H.out_log("esc"), "over") end, 5000, "the lines in the log")
    local r = on_terminal("esc")
    assert.is_nil(r.out:find("\7", 1, true), r.out)
    assert.truthy(r.out:find("\\x1b]52;c;ZWNobyBwd25lZA==\\x07", 1, true), r.out)
    assert.truthy(r.out:find("paint\\x0dover", 1, true), r.out)
    assert.truthy(r.out:find("\27[31mred\27[0m", 1, true), r.out)
    -- to a pipe: the bytes as they are
    r = ok(H.pm("logs", "esc", "--nostream", "--out", "--raw", "--lines", "5"))
    assert.truthy(r.out:find("\27]52;c;ZWNobyBwd25lZA==\7", 1, true), r.out)
  end)

  it("shows a log file's path in the header the same way, and a lone C1 byte as U+FFFD", function()
    local script = H.script("c1.sh", "printf 'eight-bit \\233[2J csi\\n'\nexec sleep 1000\n")
    local out = H.home .. "/o\27]0;T\7.log"
    ok(H.pm("start", script, "--name", "c1", "-o", out, "-s"))
    H.wait_for(function() return H.contains(out, "csi") end, 5000, "the line in the log")
    local r = on_terminal("c1")
    assert.is_nil(r.out:find("\155", 1, true), r.out)
    assert.truthy(r.out:find("o\\x1b]0;T\\x07.log", 1, true), r.out)
    assert.truthy(r.out:find("eight-bit \239\191\189[2J csi", 1, true), r.out)
  end)
end)
