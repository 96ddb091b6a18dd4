-- Issue 16 items 4, 10, 11 and part of 13, as a PM2 user types them:
-- pm.start(id) and monit's S; the console shows a failure's nil, err;
-- pm.restart(name, { updateEnv = true, env = {...} }) applies the
-- attributes; pm.wait(ms) waits; pm -e / pm run errors on one line.
local H = require "pmtest"
local core = require "pm.core"

local sq = H.shquote
local TMUX = "/usr/bin/tmux"

local function app_script()
  -- prints its X and Y at each start, then stays up
  return H.script("envapp.sh", "#!/bin/sh\necho \"X=$X Y=$Y\"\nexec sleep 1000\n")
end

describe("pm.start with an id (item 4)", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm.start(id) starts a known app by id; an unknown id is an error naming it", function()
    H.start(app_script(), "alpha")
    H.start(app_script(), "beta")
    H.ok(H.pm("stop", "beta"))
    assert.equal("stopped", H.status("beta"))
    local id = H.proc("beta").pm_id
    assert.equal(1, id)
    local r = H.ok(H.pm("-e", ("local list, err = pm.start(%d) print(err, #list, list[1].name, list[1].pm2_env.status)")
      :format(id)))
    assert.equal("nil\t1\tbeta\tonline\n", r.out)
    H.online(H.proc("beta"))
    assert.equal(0, H.proc("alpha").pm2_env.restart_time, "alpha untouched")
    r = H.ok(H.pm("-e", "print(pm.start(33))"))
    assert.equal("nil\tprocess or namespace not found: 33\n", r.out)
    -- what monit's S does: pm.start(p.pm_id), p from pm.list()
    H.ok(H.pm("stop", "alpha"))
    r = H.ok(H.pm("-e", [[
      for _, p in ipairs(pm.list()) do
        if p.name == "alpha" then print(select(2, pm.start(p.pm_id))) end
      end
    ]]))
    assert.equal("nil\n", r.out)
    H.online(H.proc("alpha"))
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

-- A bash in a 120x30 pane (PM_HOME of this test) running cmdline.
local function term_run(cmdline)
  term = ("pm-habits-api-%d"):format(core.getpid())
  local shell = ("env PM_HOME=%s PS1='$ ' HISTFILE=/dev/null bash --norc --noprofile"):format(sq(H.home))
  tmux(("-f /dev/null new-session -d -x 120 -y 30 -c %s %s"):format(sq(H.src), sq(shell)))
  tmux("send-keys -l " .. sq(cmdline))
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

describe("pm monit's S (item 4)", function()
  before_each(function() H.new_home() end)
  after_each(function()
    term_stop()
    H.cleanup()
  end)

  it("S starts the selected stopped app", function()
    H.start(app_script(), "alpha")
    H.ok(H.pm("stop", "alpha"))
    term_run(sq(H.bin) .. " monit")
    wait_screen("── alpha (id 0)", "monit showing alpha")
    assert.equal("stopped", H.status("alpha"))
    tmux("send-keys -l S")
    wait_screen("start alpha? y: yes", "monit asking first")
    tmux("send-keys -l y")
    wait_screen("start alpha: done", "monit saying the start is done")
    H.online(H.proc("alpha"))
    tmux("send-keys -l q")
  end)
end)

describe("the console shows failures (item 10)", function()
  before_each(function() H.new_home() end)
  after_each(function()
    term_stop()
    H.cleanup()
  end)

  it("shows a call that succeeds without a nil err after it (list(), restart)", function()
    H.start(app_script(), "alpha")
    local r = H.pm("console", { stdin = 'restart("alpha")\n#list()\n' })
    assert.equal(0, r.code, r.err)
    assert.is_nil(r.out:find("\nnil\n", 1, true) or r.out:find("^nil\n"), r.out)
    assert.truthy(r.out:find("\n1\n$") or r.out:find("^1\n$"), r.out)
  end)

  it("prints stop(\"nosuch\")'s nil, err and a chunk's nil, err; values on one line, tables below", function()
    H.start(app_script(), "alpha")
    local r = H.pm("console", { stdin = table.concat({
      'stop("nosuch")',
      'return nil, "boom"',
      '1, "two", nil',
      'pm.describe("alpha")[1].name, { a = 1 }',
      '"still here"',
    }, "\n") .. "\n" })
    assert.equal(0, r.code, r.err)
    assert.equal(table.concat({
      'nil, "process or namespace not found: nosuch"',
      'nil, "boom"',
      '1, "two", nil',
      '"alpha"',
      "{\n  a = 1\n}",
      '"still here"',
    }, "\n") .. "\n", r.out)
  end)

  it("under a terminal: stop(\"nosuch\") shows nil, err; a callback runs once the line is done", function()
    term_run(sq(H.bin) .. " console")
    wait_screen("pm>", "the prompt")
    tmux("send-keys -l " .. sq('stop("nosuch")'))
    tmux("send-keys Enter")
    wait_screen('nil, "process or namespace not found: nosuch"', "the failure shown")
    tmux("send-keys -l " .. sq('pm.ping(function(err, pong) print("CB", err, pong.msg) end) and "sent"'))
    tmux("send-keys Enter")
    wait_screen(function(t) return t:find("CB%s+nil%s+pong") end, "the callback's line")
    local s = screen()
    local cb = s:find("CB%s+nil%s+pong")
    assert(cb and s:find('"sent"', 1, true) < cb, "the result, then the callback's line:\n" .. s)
    tmux("send-keys C-d")
  end)
end)

describe("restart's options are app attributes; pm.wait(ms) (item 11)", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm.restart(name, { updateEnv = true, env = { X = 'new' } }) gives the app X=new, its other env kept", function()
    local script = app_script()
    H.ok(H.pm("-e", ("assert(pm.start({ script = %q, name = 'e', env = { X = 'old', Y = 'kept' } }))"):format(script)))
    H.wait_for(function() return H.contains(H.out_log("e"), "X=old Y=kept") end, 5000, "the first start's line")
    local r = H.ok(H.pm("-e", [[
      local list, err = pm.restart("e", { updateEnv = true, env = { X = "new" } })
      print(err, list[1].pm2_env.env.X, list[1].pm2_env.env.Y)
    ]]))
    assert.equal("nil\tnew\tkept\n", r.out)
    H.wait_for(function() return H.contains(H.out_log("e"), "X=new Y=kept") end, 5000, "the restarted app's X=new")
    assert.equal("new", H.environ(H.online(H.proc("e")).pid).X)
    -- other attributes too (camelCase as PM2 takes them), and the callback form
    r = H.ok(H.pm("-e", [[
      pm.restart("e", { maxMemoryRestart = "100M", kill_timeout = 500 }, function(err, list)
        print(err, list[1].pm2_env.max_memory_restart, list[1].pm2_env.kill_timeout, list[1].pm2_env.env.X)
      end)
    ]]))
    assert.equal("nil\t104857600\t500\tnew\n", r.out)
    -- a bad attribute: refused, nothing restarted
    local before = H.proc("e").pm2_env.restart_time
    r = H.ok(H.pm("-e", 'print(pm.restart("e", { max_restarts = "many" }))'))
    assert.truthy(r.out:match("^nil\tapp 'e': attribute 'max_restarts'"), r.out)
    assert.equal(before, H.proc("e").pm2_env.restart_time)
    -- reload takes them as well
    r = H.ok(H.pm("-e", 'local l, err = pm.reload("e", { env = { X = "reloaded" } }) print(err)'))
    assert.equal("nil\n", r.out)
    H.wait_for(function() return H.contains(H.out_log("e"), "X=reloaded Y=kept") end, 5000, "the reloaded app's X")
  end)

  it("pm.wait(ms) waits its ms with nothing subscribed; pm.wait() returns when nothing is left", function()
    local r = H.ok(H.pm("-e", [[
      local t0 = require("pm.core").mono()
      pm.wait()
      local t1 = require("pm.core").mono()
      pm.wait(300)
      local t2 = require("pm.core").mono()
      print(t1 - t0 < 300, t2 - t1 >= 300)
    ]]))
    assert.equal("true\ttrue\n", r.out)
  end)
end)

describe("pm -e and pm run errors (item 13)", function()
  before_each(function() H.new_home() end)
  after_each(function() H.cleanup() end)

  it("pm -e 'error(\"x\")' prints one line and exits 1; --verbose shows the traceback", function()
    local r = H.fails(H.pm("-e", 'error("x")'), "x")
    assert.equal("pm: (command line):1: x\n", r.err)
    for _, argv in ipairs({ { "--verbose", "-e", 'error("x")' }, { "-e", "--verbose", 'error("x")' } }) do
      r = H.pm(unpack(argv))
      assert.equal(1, r.code)
      assert.truthy(r.err:match("^pm: %(command line%):1: x\nstack traceback:\n"),
        table.concat(argv, " ") .. ": " .. r.err)
    end
    -- a script of pm run: the same
    local file = H.script("bad.lua", 'print("before")\nlocal t = nil\nreturn t.field\n')
    r = H.fails(H.pm("run", file), "attempt to index")
    assert.equal("before\n", r.out)
    assert.truthy(r.err:match("^pm: [^\n]*bad%.lua:3: attempt to index"), r.err)
    r = H.pm("--verbose", "run", file)
    assert.equal(1, r.code)
    assert.truthy(r.err:find("stack traceback:", 1, true), r.err)
    -- an error value that is not a string
    r = H.fails(H.pm("-e", "error({ code = 7 })"))
    assert.equal("pm: error: { code = 7 }\n", r.err) -- (as the console prints it: issue 22)
  end)
end)
