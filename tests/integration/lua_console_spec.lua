-- Issue 22 item 9: the console as a Lua developer uses it: help() and
-- help(restart) from the reference (doc/lua.md), `_`, top-level locals
-- kept across lines, a table error printed as a table, multi-line history
-- kept with its newlines, pm -e printing what it returns; pm help lua.
local H = require "pmtest"
local core = require "pm.core"

local sq = H.shquote
local TMUX = "/usr/bin/tmux"

local function console(lines)
  local r = H.pm("console", { stdin = table.concat(lines, "\n") .. "\n" })
  return r
end

describe("the console's help, _, locals and errors (fed a script)", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("help(restart) prints the reference's entry: signature, context, returns, errors", function()
    local r = console({ "help(restart)" })
    assert.equal(0, r.code, r.err)
    assert.truthy(r.out:find("pm.restart(target [, opts] [, cb])    [client]\n- context: client, console\n"
      .. "- returns: `procs`", 1, true), r.out)
    assert.truthy(r.out:find('- errors: `nil, "process or namespace not found: <target>"`', 1, true), r.out)
    -- the same text pm help lua gives (one reference, no second copy)
    local h = H.ok(H.pm("help", "lua", "pm.restart"))
    assert.truthy(h.out:find("pm.restart(target [, opts] [, cb])    [client]", 1, true), h.out)
    assert.truthy(h.out:find("pm.restart(target)    [hook]", 1, true), "the hook's pm.restart too:\n" .. h.out)
  end)

  it("help() lists every section; help of a bus method, a name, a function that is not pm's", function()
    -- (each call's output between markers: a failure says which call
    -- printed what)
    local calls = { "help()", 'help "bus:on"', "help(pm.wait)", "help(function() end)", 'help "nosuch"' }
    local lines = {}
    for i, c in ipairs(calls) do
      lines[#lines + 1] = c
      lines[#lines + 1] = ('print("<<%d>>")'):format(i)
    end
    local r = console(lines)
    assert.equal(0, r.code, r.err)
    local got, from = {}, 1
    for i = 1, #calls do
      local s, e = r.out:find(("<<%d>>\n"):format(i), from, true)
      assert.truthy(s, ("no marker after call %d (%s) in:\n%s\nstderr:\n%s"):format(i, calls[i], r.out, r.err))
      got[i] = r.out:sub(from, s - 1)
      from = e + 1
    end
    local function has(i, want)
      assert.truthy(got[i]:find(want, 1, true), ("%s printed, without %q:\n%s\nstderr:\n%s")
        :format(calls[i], want, got[i], r.err))
    end
    for _, want in ipairs({ "Client API: require \"pm\"", "pm.wait([ms] [, cb])", "The bus: pm.launchBus()",
      "child.send(value)", "Hooks: pm inside the daemon", "pm.read(path)", "help([fn | name])" }) do
      has(1, want)
    end
    has(2, "bus:on(event, fn)    [bus]")
    has(3, "pm.wait([ms] [, cb])    [client]\n- context:")
    has(4, "no entry for this function (not one of pm's) in the Lua reference")
    has(5, "no entry for nosuch in the Lua reference")
  end)

  it("_ is the last result; a top-level local is there on the next line, a function's stays local", function()
    local r = console({
      "1 + 1",
      "_ * 10",
      "local x, y = 40, 2",
      "x + y",
      "local z",
      "z == nil",
      "local function twice(n) local inner = n return 2 * inner end",
      "twice(x)",
      "inner",
      "for i = 1, 2 do local loop = i end",
      "loop",
    })
    assert.equal(0, r.code, r.err)
    assert.equal("2\n20\n42\ntrue\n80\nnil\nnil\n", r.out)
  end)

  it("an error that is a table is printed as a table", function()
    local r = console({ 'error({ code = 7, why = "bad" })', '"after"' })
    assert.equal(1, r.code)
    assert.equal('error: {\n  code = 7,\n  why = "bad"\n}\n"after"\n', r.out)
    -- pm -e and pm run: the same, on one line (their errors are one line)
    r = H.pm("-e", 'error({ code = 7, list = { 1, "a\\nb" } })')
    assert.equal(1, r.code)
    assert.equal('pm: error: { code = 7, list = { 1, "a\\nb" } }\n', r.err)
  end)

  it("pm -e 'return 1+1' prints 2", function()
    local r = H.ok(H.pm("-e", "return 1+1"))
    assert.equal("2\n", r.out)
  end)
end)

describe("pm help lua", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("prints the index, an entry, and says when there is none", function()
    local r = H.ok(H.pm("help", "lua"))
    assert.truthy(r.out:find("pm.restart(target [, opts] [, cb])", 1, true), r.out)
    assert.truthy(r.out:find("child.on_message(fn)", 1, true), r.out)
    r = H.ok(H.pm("help", "lua", "child.send"))
    assert.truthy(r.out:find("^child.send%(value%)    %[child%]\n%- context: child\n"), r.out)
    r = H.pm("help", "lua", "nosuch")
    assert.equal(2, r.code)
    assert.equal("pm: no entry for 'nosuch' in the Lua reference (pm help lua lists them)\n", r.err)
  end)
end)

-- ---- a terminal: a tmux server of our own (its own socket) ----

local term

local function tmux(args)
  local p = io.popen(TMUX .. " -L " .. term .. " " .. args .. " 2>&1")
  local s = p:read("*a")
  p:close()
  return s
end

local function screen() return tmux("capture-pane -p") end

local function wait_screen(plain, what)
  local last = ""
  local ok, err = pcall(H.wait_for, function()
    last = screen()
    if type(plain) == "function" then return plain(last) end
    return last:find(plain, 1, true)
  end, 8000, what or plain)
  if not ok then error(tostring(err) .. "\n--- the screen:\n" .. last .. "\n---", 2) end
end

local function term_start()
  term = ("pm-lua-console-%d"):format(core.getpid())
  local shell = ("env PM_HOME=%s PS1='$ ' HISTFILE=/dev/null bash --norc --noprofile"):format(sq(H.home))
  tmux(("-f /dev/null new-session -d -x 160 -y 40 -c %s %s"):format(sq(H.src), sq(shell)))
end

local function type_line(s)
  tmux("send-keys -l " .. sq(s))
  tmux("send-keys Enter")
end

local function term_stop()
  if not term then return end
  local pid = tonumber(tmux("display-message -p '#{pid}'"):match("%d+"))
  tmux("kill-server")
  if pid then
    pcall(H.wait_for, function() return not H.alive(pid) end, 3000)
    if H.alive(pid) then core.kill(pid, 9) end
  end
  os.remove(("/tmp/tmux-%d/%s"):format(core.getuid(), term))
  term = nil
end

describe("the console under a terminal", function()
  before_each(function() H.new_home() end)
  after_each(function()
    term_stop()
    H.cleanup()
  end)

  it("help(restart) shows restart's entry; the banner says help is there", function()
    term_start()
    type_line(sq(H.bin) .. " console")
    wait_screen("help(restart)", "the banner naming help")
    wait_screen("pm>", "the prompt")
    type_line("help(restart)")
    wait_screen("- errors: `nil, \"process or namespace not found: <target>\"`", "restart's errors")
    local s = screen()
    assert.truthy(s:find("pm.restart(target [, opts] [, cb])    [client]", 1, true), s)
    assert.truthy(s:find("- context: client, console", 1, true), s)
    assert.truthy(s:find("- returns: `procs`", 1, true), s)
    tmux("send-keys C-d")
    wait_screen("pm> ^D", "the console left")
  end)

  it("a chunk of several lines is one history entry with its newlines, in the file and recalled", function()
    term_start()
    type_line(sq(H.bin) .. " console")
    wait_screen("pm>", "the prompt")
    -- joined with spaces instead, the comment would swallow the 7
    type_line("t = { -- a comment")
    wait_screen(">>", "the continuation prompt")
    type_line("7 }")
    type_line('"t1=" .. t[1]')
    wait_screen('"t1=7"', "the chunk ran")
    tmux("send-keys C-d")
    H.wait_for(function()
      local f = io.open(H.home .. "/console_history")
      if not f then return false end
      local text = f:read("*a")
      f:close()
      return text:find("comment", 1, true) ~= nil
    end, 8000, "the history file written")
    -- a new console: up twice recalls the chunk of two lines, whole
    type_line(sq(H.bin) .. " console")
    wait_screen(function(t)
      local _, n = t:gsub("Ctrl%-D leaves", "")
      return n >= 2 and t:find("pm>%s*$")
    end, "a second console's prompt")
    type_line("t == nil")
    wait_screen("true", "t is not there yet")
    tmux("send-keys Up")
    tmux("send-keys Up")
    tmux("send-keys Up")
    tmux("send-keys Enter")
    type_line('"again=" .. t[1]')
    wait_screen('"again=7"', "the recalled chunk defined t with its 7")
    tmux("send-keys C-d")
  end)
end)
