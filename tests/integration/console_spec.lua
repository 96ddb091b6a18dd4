-- pm console, pm monit and the CLI polish (issue 6) against a real daemon in
-- a temporary PM_HOME: the console fed a script on stdin, `pm -e` and
-- `pm run`, the console, `pm monit`, `pm list` under a real terminal (a tmux
-- server of our own, on its own socket), describe's recent events, help and
-- suggestions, `make install` into a DESTDIR and the bash completion.
local H = require "pmtest"
local util = require "pm.util"
local core = require "pm.core"

local APP = H.fixtures .. "/cs_app.sh"
local TMUX = "/usr/bin/tmux"
local sq = H.shquote

-- ---- helpers ----

local ok = H.ok

local function start_app(name)
  return H.online(H.start(APP, name, "-f", "-s"))
end

local function restarts(name)
  local p = H.proc(name)
  return p and p.pm2_env.restart_time
end

-- Finds each of the plain strings in order in s; fails naming the first missing.
local function in_order(s, ...)
  local pos = 1
  for _, want in ipairs({ ... }) do
    local a, b = s:find(want, pos, true)
    assert(a, ("expected [%s] (in order) in:\n%s"):format(want, s))
    pos = b + 1
  end
end

local function has(s, plain, what)
  assert(s:find(plain, 1, true), ("%s: expected [%s] in:\n%s"):format(what or "output", plain, s))
end

local function hasnt(s, plain, what)
  assert(not s:find(plain, 1, true), ("%s: did not expect [%s] in:\n%s"):format(what or "output", plain, s))
end

-- display width of a UTF-8 string (the table's rules are multi-byte)
local function width(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

-- The cells of a table row "│ a │ b │" -> { "a", "b" }
local function cells(row)
  local c = {}
  local pos = 1
  while true do
    local a, b = row:find("│", pos, true)
    if not a then break end
    if pos > 1 then c[#c + 1] = row:sub(pos, a - 1):match("^%s*(.-)%s*$") end
    pos = b + 1
  end
  return c
end

local count = H.count

-- ---- a terminal: a tmux server of our own (its own socket) ----

local term -- { sock, pid }
local seq = 0

local function tmux(args)
  local p = io.popen(TMUX .. " -L " .. term.sock .. " " .. args .. " 2>&1")
  local s = p:read("*a")
  p:close()
  return s
end

-- The pane as text, trailing blanks dropped (join: wrapped lines joined,
-- escapes: with the colours).
local function screen(escapes, join)
  local s = tmux("capture-pane -p" .. (join and " -J" or "") .. (escapes and " -e" or ""))
  local lines = {}
  for l in (s .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = (l:gsub("%s+$", "")) end
  while #lines > 0 and lines[#lines] == "" do lines[#lines] = nil end
  return table.concat(lines, "\n"), lines
end

-- Polls the pane until pred(text, lines) is truthy (a string: a plain
-- substring); on time-out fails showing the pane.
local function wait_screen(pred, ms, what)
  if type(pred) == "string" then
    local want = pred
    pred = function(s) return s:find(want, 1, true) end
    what = what or ("[" .. want .. "] on the screen")
  end
  local last = ""
  local okk, res = pcall(H.wait_for, function()
    local s, lines = screen()
    last = s
    return pred(s, lines) and s
  end, ms or 8000, what)
  if not okk then error(tostring(res) .. "\n--- the screen:\n" .. last .. "\n---", 2) end
  return res
end

-- The first line of s that ends with the pattern pat (an echoed ^C may
-- come before a marker).
local function find_line(s, pat)
  for l in (s .. "\n"):gmatch("([^\n]*)\n") do
    if l:match(pat .. "$") then return l end
  end
end

local function wait_line(pat, ms)
  return wait_screen(function(t) return find_line(t, pat) end, ms, "a line [" .. pat .. "]")
end

local function wait_last(line, ms)
  return wait_screen(function(_, lines) return lines[#lines] == line end, ms,
    "the last line to be [" .. line .. "]")
end

local function send(text) tmux("send-keys -l " .. sq(text)) end
local function key(...) tmux("send-keys " .. table.concat({ ... }, " ")) end

-- A tmux server with a bash in a w x h pane (PM_HOME of this test), cwd the source tree.
local function term_start(w, h)
  seq = seq + 1
  term = { sock = ("pm-console-spec-%d-%d"):format(core.getpid(), seq) }
  local shell = ("env PM_HOME=%s PM_BIN=%s PS1='$ ' HISTFILE=/dev/null bash --norc --noprofile")
    :format(sq(H.home), sq(H.bin))
  local out = tmux(("-f /dev/null new-session -d -x %d -y %d -c %s %s"):format(w, h, sq(H.src), sq(shell)))
  term.pid = tonumber(tmux("display-message -p '#{pid}'"):match("%d+"))
  assert(term.pid, "tmux server did not start: " .. out)
  wait_last("$")
end

local function term_stop()
  if not term then return end
  tmux("kill-server")
  if term.pid then
    pcall(H.wait_for, function() return not H.alive(term.pid) end, 3000)
    if H.alive(term.pid) then core.kill(term.pid, 9) end
  end
  os.remove(("/tmp/tmux-%d/%s"):format(core.getuid(), term.sock))
  term = nil
end

-- Types a shell command line in the pane and presses Enter.
local function run_in_pane(cmdline)
  send(cmdline)
  key("Enter")
end

local PM = sq(H.bin)

-- ---- the console fed a script ----

describe("pm console without a terminal", function()
  before_each(function()
    H.new_home()
    start_app("cs-app")
  end)
  after_each(function() H.cleanup() end)

  it("runs the chunks of a script on stdin: results printed, errors go on, exit 1, no prompt", function()
    -- (H.sh gives the command /dev/null on stdin: an inner shell holds our own redirection)
    local r = H.sh("sh -c " .. sq(PM .. " console < " .. sq(H.fixtures .. "/cs_script.txt")))
    local out = r.out
    assert.equal(1, r.code, "a chunk failed: exit 1; stdout: " .. out .. " stderr: " .. r.err)
    in_order(out,
      "42\n",
      '"a string"\n',
      '{\n  list = {\n    1,\n    2\n  },\n  name = "t",\n  nested = {\n    deep = true\n  }\n}\n',
      "self = <cycle", 'tag = "loop"',
      "│ id │ name", "│ cs-app │",            -- list()
      "┌",                                    -- restart "cs-app": the list again
      "memory = ",                           -- describe(0)[1].monit
      "┌",                                    -- pm.list()
      "loop\t1\n", "loop\t2\n", "loop\t3\n",
      "error: ", "deliberate failure",
      "error: ",                             -- local = 1
      '"still running"\n')
    assert.equal(3, count(out, "┌"), "three process tables (list, restart, pm.list): " .. out)
    assert.is_truthy(out:match("{\n  cpu = [%d.]+,\n  memory = %d+\n}"), "describe(0)[1].monit as a tree: " .. out)
    assert.equal(1, restarts("cs-app"), "restart \"cs-app\" restarted it once")
    hasnt(out, "pm>", "no prompt")
    hasnt(out, ">> ", "no continuation prompt")
    hasnt(out, "stack traceback", "errors print their message only")
    assert.equal("", r.err)
  end)

  it("exits 0 when every chunk ran, through a pipe too; an unfinished chunk at the end fails", function()
    local r = ok(H.pm("console", { stdin = "x = 20\nx * 2 + 2\nif x > 1 then\n  print('big')\nend\n" }))
    assert.equal("42\nbig\n", r.out)
    r = ok(H.sh("sh -c " .. sq("printf 'pm.list()[1].name\\n' | " .. PM .. " console")))
    assert.equal('"cs-app"\n', r.out)
    r = H.pm("console", { stdin = "1\nfor i = 1, 2 do\n" })
    assert.equal(1, r.code)
    assert.is_truthy(r.out:match("^1\nerror: [^\n]*<eof>"), "the unfinished chunk is an error: " .. r.out)
  end)

  it("runs bus handlers that call the API (on(\"process:event\", ...) listing the processes)", function()
    local r = H.pm("console", { stdin = table.concat({
      "n = 0",
      'on("process:event", function(e) n = n + #list() end)',
      'restart "cs-app"',
      "wait(300)",
      "n > 0",
    }, "\n") .. "\n" })
    assert.equal(0, r.code, ("exit %s (139: SIGSEGV, 135: SIGBUS), stdout: %s, stderr: %s"):format(
      tostring(r.code), r.out, r.err))
    assert.is_truthy(r.out:match("true\n$"), "the handler ran and listed: " .. r.out)
    assert.equal(1, restarts("cs-app"))
  end)

  it("pm -e, pm run and the console see the same environment (bare API, pm)", function()
    local file = H.fixtures .. "/cs_env.lua"
    local src = assert(util.read_file(file))
    local e = ok(H.pm("-e", src), "pm -e")
    local run = ok(H.pm("run", file), "pm run")
    local con = ok(H.pm("console", { stdin = src }), "pm console")
    assert.equal("ENV\tfunction\ttable\tfunction\ttrue\tfunction\t1\tcs-app\tcs-app\n", e.out)
    assert.equal(e.out, run.out)
    assert.equal(e.out, con.out)
    -- a failing one-liner: exit 1, the message on stderr
    local bad = H.pm("-e", "error('from -e')")
    assert.equal(1, bad.code)
    has(bad.err, "from -e")
  end)

  it("print keeps Lua's meaning: __tostring, NaN and infinities (JSON only for plain tables)", function()
    local r = ok(H.pm("-e", [[
print(setmetatable({ x = 1 }, { __tostring = function() return "Obj<1>" end }))
print({ 0/0, math.huge, -math.huge })
print({ a = 1 })]]), "pm -e")
    has(r.out, "Obj<1>\n")
    assert.truthy(r.out:find("{\n  %-?nan,\n  inf,\n  %-inf\n}\n"), r.out)
    has(r.out, '{"a":1}\n')
  end)
end)

-- ---- the console under a terminal ----

describe("pm console under a terminal (tmux)", function()
  before_each(function()
    H.new_home()
    start_app("tiny")
    term_start(120, 40)
  end)
  after_each(function()
    term_stop()
    H.cleanup()
  end)

  it("prompts, runs lines, completes API names, fields and process names, keeps history, Ctrl-C, Ctrl-D", function()
    run_in_pane(PM .. " console; echo CONSOLE-1-EXIT=$?")
    wait_last("pm>")
    has(screen(), "console", "banner")

    -- an API name: lis<Tab> -> list
    send("lis")
    wait_last("pm> lis")
    key("Tab")
    wait_last("pm> list")
    send("()")
    key("Enter")
    wait_screen(function(t) return t:find("│ id │", 1, true) and t:find("│ tiny │", 1, true) end, 5000,
      "list() printed as the table")
    wait_last("pm>")

    -- a field after a dot: describe(0)[1].mon<Tab> -> monit
    send("describe(0)[1].mon")
    wait_last("pm> describe(0)[1].mon")
    key("Tab")
    wait_last("pm> describe(0)[1].monit")
    key("Enter")
    wait_screen("memory =")
    wait_last("pm>")

    -- a method after a colon (its metatable's): b:cl<Tab> -> b:close
    send("b = launchBus()")
    key("Enter")
    wait_last("pm>")
    send("b:cl")
    wait_last("pm> b:cl")
    key("Tab")
    wait_last("pm> b:close")
    key("C-u")
    wait_last("pm>")

    -- a process name inside quotes: restart "ti<Tab> -> restart "tiny
    send('restart "ti')
    wait_last('pm> restart "ti')
    key("Tab")
    wait_last('pm> restart "tiny')
    send('"')
    key("Enter")
    H.wait_for(function() return restarts("tiny") == 1 end, 5000, "tiny restarted from the console")
    wait_last("pm>")

    -- a line runs; Up recalls it
    send("math.max(7,8)")
    key("Enter")
    wait_screen(function(_, lines) return lines[#lines - 1] == "8" and lines[#lines] == "pm>" end, 5000,
      "math.max(7,8) printed 8")
    key("Up")
    wait_last("pm> math.max(7,8)")
    key("C-u")
    wait_last("pm>")

    -- Ctrl-C drops a half-typed line and the console goes on
    send('"half" .. "typed"')
    wait_last('pm> "half" .. "typed"')
    key("C-c")
    wait_screen(function(t, lines) return t:find("^C", 1, true) and lines[#lines] == "pm>" end, 5000,
      "Ctrl-C: ^C and a new prompt")
    send('"after" .. "cancel"')
    key("Enter")
    wait_line('"aftercancel"')
    hasnt(screen(), '"halftyped"', "the cancelled line did not run")
    wait_last("pm>")

    -- Ctrl-D leaves: the shell goes on after it
    key("C-d")
    wait_line("CONSOLE%-1%-EXIT=0")
    wait_last("$")

    local hist = util.read_file(H.home .. "/console_history")
    assert.is_not_nil(hist, "$PM_HOME/console_history written")
    has(hist, "math.max(7,8)", "history file")
    has(hist, "list()", "history file")
    hasnt(hist, "halftyped", "history file")

    -- a new console recalls the lines of the previous one
    run_in_pane("clear; " .. PM .. " console; echo CONSOLE-2-EXIT=$?")
    wait_last("pm>")
    key("Up")
    wait_last('pm> "after" .. "cancel"')
    key("Up")
    wait_last("pm> math.max(7,8)")
    key("Enter")
    wait_screen(function(_, lines) return lines[#lines - 1] == "8" and lines[#lines] == "pm>" end, 5000,
      "the recalled line ran")
    key("C-d")
    wait_line("CONSOLE%-2%-EXIT=0")
  end)

  it("prints bus events above a half-typed line, which stays and runs on Enter", function()
    run_in_pane(PM .. " console; echo CONSOLE-EXIT=$?")
    wait_last("pm>")
    send('on("process:event", function(e) print("EV", e.event, e.process.name) end) and "subscribed"')
    key("Enter")
    wait_line('"subscribed"')
    wait_last("pm>")
    send('"typed" .. "text"')
    wait_last('pm> "typed" .. "text"')
    ok(H.pm("restart", "tiny", "-s"), "restart from outside")
    local s = wait_screen(function(t) return t:match("EV%s+online%s+tiny") end, 5000, "the online event printed")
    has(s, "EV", "events")
    assert.is_truthy(s:match("EV%s+restart%s+tiny"), "the restart event printed:\n" .. s)
    -- the typed text is still on the line being edited, below the events
    wait_last('pm> "typed" .. "text"')
    key("Enter")
    wait_screen(function(_, lines) return lines[#lines - 1] == '"typedtext"' and lines[#lines] == "pm>" end, 5000,
      "the typed line ran")
    key("C-d")
    wait_line("CONSOLE%-EXIT=0")
  end)
end)

-- ---- pm monit ----

describe("pm monit under a terminal (tmux)", function()
  local function row_re(name, status) return "%d+%s+" .. name .. "%s+" .. status end

  before_each(function()
    H.new_home()
    for _, n in ipairs({ "alpha", "beta", "gamma" }) do start_app(n) end
    term_start(120, 40)
    run_in_pane(PM .. " monit; echo MONIT-DONE=$?; "
      .. "stty -a | grep -qw -e -icanon -e -echo && r=RAW || r=SANE; echo TTY=$r")
    wait_screen(function(t)
      return t:find("pm monit", 1, true) and t:match(row_re("alpha", "online")) and t:match(row_re("beta", "online"))
        and t:match(row_re("gamma", "online"))
    end, 5000, "monit drawing the three apps")
  end)
  after_each(function()
    term_stop()
    H.cleanup()
  end)

  local function restored()
    local s = wait_line("MONIT%-DONE=%d+", 5000)
    assert(find_line(s, "MONIT%-DONE=0"), "monit's exit status 0:\n" .. s)
    s = wait_line("TTY=%u+", 5000)
    assert(find_line(s, "TTY=SANE"), "the tty modes (icanon, echo) restored:\n" .. s)
    hasnt(s, "pm monit  ", "no dashboard left on the screen")
    hasnt(s, "── ", "no dashboard left on the screen")
    has(s, "$ " .. PM .. " monit", "the shell's screen is back")
    assert.equal("0", (tmux("display-message -p '#{alternate_on}'"):gsub("%s", "")), "alternate screen left")
    assert.equal("1", (tmux("display-message -p '#{cursor_flag}'"):gsub("%s", "")), "cursor visible again")
  end

  it("draws apps and statuses, j/Down move the selection, q quits and restores the terminal", function()
    wait_screen("── alpha (id 0)")
    has(screen(), "3 app(s)")
    -- its details (its description, fetched for the selected app alone)
    wait_screen(function(t) return t:match("\n pid %d+   script /[^\n]+interpreter %S") end, 5000,
      "alpha's pid, script and interpreter")
    -- the selected app's last minute, from the daemon's history
    wait_screen(function(t) return t:match("\n cpu [▁▂▃▄▅▆▇█ ]+%s+[%d.]+%% max   mem [▁▂▃▄▅▆▇█ ]+") end, 5000,
      "the history line of alpha")
    send("j")
    wait_screen("── beta (id 1)")
    key("Down")
    wait_screen("── gamma (id 2)")
    send("k")
    wait_screen("── beta (id 1)")
    send("q")
    restored()
  end)

  it("r restarts the selected app once y confirms it (another key leaves it), and the dashboard goes on", function()
    send("j")
    wait_screen("── beta (id 1)")
    send("s")
    wait_screen("stop beta? y: yes")
    send("n")
    wait_screen("stop: left as it is")
    assert.equal("online", H.proc("beta").pm2_env.status)
    send("r")
    wait_screen("restart beta? y: yes")
    send("y")
    H.wait_for(function() return restarts("beta") == 1 end, 5000, "beta restarted by monit")
    assert.equal(0, restarts("alpha"))
    assert.equal(0, restarts("gamma"))
    -- the dashboard shows it done (or monit ended: then the shell shows the marker)
    local s = wait_screen(function(t)
      return find_line(t, "MONIT%-DONE=%d+")
        or (t:find("restart beta: done", 1, true) and t:match("%d+%s+beta%s+online[^\n]-%s1%s+%d+s\n"))
    end, 5000, "beta's row showing 1 restart and the message 'restart beta: done'")
    local ended = find_line(s, "MONIT%-DONE=%d+")
    assert(not ended, ("monit ended (%s; 135 is SIGBUS) when it restarted the selected app:\n%s"):format(
      tostring(ended), s))
    send("q")
    restored()
  end)

  it("Ctrl-C quits and restores the terminal", function()
    key("C-c")
    restored()
  end)
end)

-- ---- the CLI ----

describe("pm list, describe, help", function()
  before_each(function() H.new_home() end)
  after_each(function()
    term_stop()
    H.cleanup()
  end)

  it("pm list piped: every column, no escape codes; long operations quiet when piped", function()
    start_app("piped")
    local r = ok(H.pm("list"))
    hasnt(r.out, "\27", "escape codes in piped list")
    local header = r.out:match("\n(│ id[^\n]*)\n")
    assert.is_not_nil(header, r.out)
    assert.same({ "id", "name", "namespace", "version", "mode", "pid", "uptime", "↺", "status", "cpu", "mem",
      "user", "watching" }, cells(header))
    assert.is_truthy(r.out:find("│ piped │ default", 1, true), r.out)
    assert.is_truthy(r.out:match("│ online │"), r.out)
    local rr = ok(H.pm("restart", "all"))
    assert.equal("", rr.err, "no progress on a pipe")
    hasnt(rr.out, "\27", "escape codes in restart's table")
  end)

  it("pm list fits a narrow terminal, colours the status; --watch refreshes in place, Ctrl-C leaves", function()
    start_app("narrow-app")
    term_start(70, 30)
    run_in_pane(PM .. " list; echo LIST-DONE=$?")
    local s = wait_line("LIST%-DONE=0")
    local _, lines = screen(false, true)
    local n = 0
    for _, l in ipairs(lines) do
      if l:find("[│┌└├]") then
        n = n + 1
        assert.is_true(width(l) <= 70, ("a table line of %d columns in a 70-column terminal: [%s]"):format(width(l), l))
      end
    end
    assert.is_true(n >= 5, "the table is on the screen:\n" .. s)
    has(s, "narrow-app")
    has(s, "status")
    local colored = screen(true)
    assert.is_truthy(colored:find("\27%[[%d;]*32m *online"), "online in green on a terminal:\n" .. colored)

    tmux("resize-window -x 150 -y 30")
    run_in_pane("clear; " .. PM .. " list --watch; echo WATCH-DONE=$?")
    local function uptime()
      local t = screen()
      local head = t:match("\n(│ id [^\n]*)")
      local row = t:match("\n(│ 0 +│ narrow%-app[^\n]*)")
      if not (head and row) then return nil end
      local h, c = cells(head), cells(row)
      for i, name in ipairs(h) do
        if name == "uptime" then return c[i], t:match("(%d%d:%d%d:%d%d)\n") end
      end
      error("no uptime column: " .. head)
    end
    local first, stamp = H.wait_for(uptime, 5000, "list --watch drawing")
    local later = H.wait_for(function()
      local u, st = uptime()
      return u and u ~= first and st ~= stamp and u
    end, 5000, "list --watch refreshing (uptime " .. tostring(first) .. ")")
    assert.is_truthy(later:match("^%d+s$"), later)
    assert.equal(1, count(screen(), "│ id "), "refreshed in place: one table on the screen:\n" .. screen())
    assert(not find_line(screen(), "WATCH%-DONE=%d+"), "list --watch still runs")
    key("C-c")
    wait_line("WATCH%-DONE=0")
    wait_last("$")
  end)

  it("pm describe shows the recent events", function()
    start_app("described")
    ok(H.pm("restart", "described", "-s"))
    local r = ok(H.pm("describe", "described"))
    has(r.out, "── described (id 0)")
    local ev = r.out:match("\nrecent events:\n(.-)\n%S")
    assert.is_not_nil(ev, "a recent events section: " .. r.out)
    local seen = {}
    for name in ev:gmatch("%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d  (%a+)") do seen[#seen + 1] = name end
    local list = table.concat(seen, " ")
    assert.is_truthy(list:match("^start online .*exit.* restart.* start online$") or
      list:match("^start online .*restart.*exit.* start online$"), "events in order: " .. list)
  end)

  it("pm alone and pm help <verb> print usage; unknown verbs and flags suggest the closest", function()
    local r = H.pm()
    assert.equal(2, r.code, "pm alone: usage, and a usage error's exit (non-zero, as PM2's)")
    has(r.out, "usage: pm <verb>")
    has(r.out, "examples:")
    has(r.out, "  console ")
    has(r.out, "  monit ")
    r = ok(H.pm("help"))
    has(r.out, "usage: pm <verb>")
    r = ok(H.pm("help", "start"))
    has(r.out, "pm start")
    has(r.out, "--name")
    has(r.out, "--instances")
    r = ok(H.pm("--version"))
    assert.equal(util.VERSION .. "\n", r.out)
    r = H.pm("strat")
    assert.equal(2, r.code)
    has(r.err, "did you mean 'start'")
    r = H.pm("restrat", "all")
    assert.are_not.equal(0, r.code)
    has(r.err, "did you mean 'restart'")
    r = H.pm("start", "x", "--nmae", "a")
    assert.are_not.equal(0, r.code)
    has(r.err, "--nmae")
    has(r.err, "did you mean '--name'")
    r = H.pm("restart", "x", "--udpate-env")
    assert.are_not.equal(0, r.code)
    has(r.err, "did you mean '--update-env'")
    assert.is_nil(H.daemon_pid(), "usage errors do not start a daemon")
  end)
end)

-- ---- make install, the bash completion ----

describe("make install and the bash completion", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("installs bin/pm, the modules, core.so, term.so and the completion; plain luajit can require \"pm\"", function()
    local dest = H.home .. "/dest"
    local r = H.sh(("make install PREFIX=/usr/local DESTDIR=%s"):format(sq(dest)))
    ok(r, "make install")
    local pre = dest .. "/usr/local"
    local bin = pre .. "/bin/pm"
    assert.is_true(core.access(bin, "x"), "bin/pm installed executable")
    assert.equal(0, H.sh(("cmp %s %s"):format(sq(H.src .. "/bin/pm"), sq(bin))).code, "bin/pm as built")
    local p = io.popen("ls " .. sq(H.src .. "/lua/pm"))
    for f in p:lines() do
      if f:match("%.lua$") then
        assert.is_truthy(core.stat(pre .. "/share/lua/5.1/pm/" .. f), "installed module " .. f)
      end
    end
    p:close()
    assert.is_truthy(core.stat(pre .. "/lib/lua/5.1/pm/core.so"), "core.so installed")
    assert.is_truthy(core.stat(pre .. "/lib/lua/5.1/pm/term.so"), "term.so (console, monit) installed")
    local comp = pre .. "/share/bash-completion/completions/pm"
    assert.equal(util.read_file(H.src .. "/completion/pm.bash"), util.read_file(comp), "the completion installed")

    -- plain luajit, the installed tree only (PM_BIN unset: the daemon is the installed pm found on PATH)
    local lp = ("%s/share/lua/5.1/?.lua;%s/share/lua/5.1/?/init.lua;;"):format(pre, pre)
    local lcp = ("%s/lib/lua/5.1/?.so;;"):format(pre)
    r = H.sh(("env -u PM_BIN PATH=%s:\"$PATH\" LUA_PATH=%s LUA_CPATH=%s luajit %s %s"):format(
      sq(pre .. "/bin"), sq(lp), sq(lcp), sq(H.fixtures .. "/cs_installed.lua"), sq(APP)), { cwd = H.home })
    ok(r, "luajit cs_installed.lua")
    has(r.out, "MODULE\t" .. pre .. "/share/lua/5.1/pm/init.lua\n")
    has(r.out, "CORE\t" .. pre .. "/lib/lua/5.1/pm/core.so\n")
    assert.is_truthy(r.out:match("APP\tinst\tonline\t%d+\n"), r.out)
    local dpid = H.daemon_pid()
    assert.is_not_nil(dpid, "a daemon runs")
    assert.equal(core.realpath(bin), core.realpath("/proc/" .. dpid .. "/exe"), "the daemon is the installed pm")
    assert.equal("online", H.status("inst"))
  end)

  it("bash -n accepts completion/pm.bash; it offers verbs and app names", function()
    local comp = H.src .. "/completion/pm.bash"
    ok(H.sh("bash -n " .. sq(comp)), "bash -n")
    start_app("comp-one")
    start_app("comp-two")
    -- `pm` on PATH for the completion's `pm jlist`
    local wrap = H.home .. "/wrap"
    assert(core.mkdir(wrap, 493))
    os.execute(("ln -s %s %s"):format(sq(H.bin), sq(wrap .. "/pm")))
    local empty = H.home .. "/empty"
    assert(core.mkdir(empty, 493))
    local function complete(...)
      local words = {}
      for _, w in ipairs({ ... }) do words[#words + 1] = sq(w) end
      local r = ok(H.sh(("PATH=%s:\"$PATH\" bash --norc --noprofile %s %s %s"):format(sq(wrap),
        sq(H.fixtures .. "/cs_complete.sh"), sq(comp), table.concat(words, " ")), { cwd = empty }), "completion")
      local set, list = {}, {}
      for w in r.out:gmatch("[^\n]+") do set[w] = true; list[#list + 1] = w end
      table.sort(list)
      return set, table.concat(list, " ")
    end
    local set, all = complete("st")
    for _, v in ipairs({ "start", "stop", "status", "startup" }) do
      assert.is_true(set[v] == true, "pm st<Tab> offers " .. v .. ": " .. all)
    end
    assert.is_nil(set.restart, all)
    assert.is_nil(set.list, all)
    set, all = complete("stop", "")
    assert.is_true(set["comp-one"] == true and set["comp-two"] == true, "pm stop <Tab> offers the apps: " .. all)
    assert.is_true(set.all == true, all)
    all = select(2, complete("stop", "comp-t"))
    assert.equal("comp-two", all)
    all = select(2, complete("restart", "--up"))
    assert.equal("--update-env", all)
  end)
end)
