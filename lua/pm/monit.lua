-- pm monit: a live dashboard in the terminal (ncurses). Every app with its
-- status, CPU and memory bars, restarts and uptime; the selected app's
-- details and the tail of its logs. Keys: up/down (or j/k) select, r
-- restart, s stop, S start, l reload, q (or Ctrl-C) quit. The screen
-- (scr_*) comes from pm.term (lib/pm/term.so for bin/pm).
-- What a row and the details say is view.lua's; here, where they go.
local core = require "pm.core"
local util = require "pm.util"
local view = require "pm.view"

local M = {}

function M.main()
  local pm = require "pm"
  local ok, err = pm.connect()
  if not ok then
    io.stderr:write("pm: ", tostring(err), "\n")
    return 1
  end
  if not (core.isatty(0) and core.isatty(1)) then
    io.stderr:write("pm: monit needs a terminal\n")
    return 1
  end
  local tty, terr = require("pm.term").load("monit")
  if not tty then
    pm.disconnect()
    io.stderr:write(terr, "\n")
    return 1
  end
  local list = {}
  local selected = 1
  local logs = {}      -- pm_id -> recent lines
  local message = ""
  local quit = false
  local dirty = true
  local total_mem = tonumber(((io.open("/proc/meminfo") or { read = function() return "" end }):read("*a") or "")
    :match("MemTotal:%s*(%d+)")) or 0
  total_mem = total_mem * 1024

  local tail_loaded = {} -- pm_id -> true: its log file's tail was read
  local function add_log(id, line, which)
    if not tail_loaded[id] then return end -- (its file has it when it is selected)
    local l = logs[id] or {}
    logs[id] = l
    l[#l + 1] = { line = line, err = which == "err" }
    while #l > 200 do table.remove(l, 1) end
    dirty = true
  end

  -- the rows: what they show (thousands of apps' whole descriptions every
  -- second were megabytes); the selected app described whole
  local ROW_FIELDS = { "pm_id", "name", "monit", "pm2_env.status", "pm2_env.restart_time", "pm2_env.pm_uptime" }
  local hist   -- the selected app's last minute (the daemon's history)
  local detail -- the selected app's description
  local conn = pm._conn()
  local function refresh_detail()
    local p = list[selected]
    local d = p and conn:call("describe", { target = p.pm_id })
    detail = type(d) == "table" and d[1] and d[1].pm_id == p.pm_id and d[1] or nil
    local h = p and conn:call("history", { target = p.pm_id, span = 60 })
    hist = type(h) == "table" and h[1] and h[1].pm_id == p.pm_id and h[1] or nil
    dirty = true
  end
  -- the rows every second, every ceil(apps/2000) s up to 5 for thousands
  -- (a list of 9,500 is 70 ms of the daemon's time)
  local last = -math.huge
  local function gap() return math.min(5, math.max(1, math.ceil(#list / 2000))) * 1000 end
  local function refresh()
    last = core.mono()
    local res = conn:call("list", { fields = ROW_FIELDS })
    if type(res) == "table" then list = res end
    if selected > #list then selected = math.max(1, #list) end
    refresh_detail()
  end
  local function tick() if core.mono() - last >= gap() - 100 then refresh() end end
  -- events come in bursts (restart all): one refresh a tenth of a second,
  -- or a gap's tenth for thousands of apps
  local soon
  local function refresh_soon()
    if soon then return end
    local wait = math.max(100, last + gap() / 10 - core.mono())
    soon = core.timer(wait, 0, function() soon = nil; refresh() end)
  end
  -- a new selection: its details at once
  local function select(i)
    if i == selected then return end
    selected = i
    dirty = true
    refresh_detail()
  end

  local bus = pm.launchBus()
  if bus then
    bus:on("log:out", function(p)
      for line in tostring(p.data):gmatch("([^\n]*)\n?") do
        if line ~= "" then add_log(p.process.pm_id, line, "out") end
      end
    end)
    bus:on("log:err", function(p)
      for line in tostring(p.data):gmatch("([^\n]*)\n?") do
        if line ~= "" then add_log(p.process.pm_id, line, "err") end
      end
    end)
    bus:on("process:event", function(p)
      if p.event == "exit" or p.event == "online" or p.event == "restart overlimit" then
        add_log(p.process.pm_id, ("[pm] %s%s"):format(p.event,
          p.code and p.code ~= util.null and (" code " .. tostring(p.code)) or ""), "out")
      end
      refresh_soon()
    end)
  end

  local function draw()
    dirty = false
    local rows, cols = tty.scr_size()
    tty.scr_clear()
    tty.scr_put(0, 0, (" pm monit  %d app(s)   ↑↓ select  r restart  s stop  S start  l reload  q quit")
      :format(#list) .. string.rep(" ", cols), "reverse")
    local barw = math.max(5, math.min(20, math.floor((cols - 60) / 2)))
    tty.scr_put(1, 0, view.monit_head(barw), "bold")
    local list_rows = math.max(3, math.min(#list, math.floor((rows - 2) / 2)))
    local first = math.max(1, math.min(selected - list_rows + 1, #list - list_rows + 1))
    local now = core.now()
    for i = first, math.min(#list, first + list_rows - 1) do
      local p = list[i]
      local y = 2 + i - first
      local row = view.monit_row(p, barw, total_mem, now)
      if i == selected then
        tty.scr_put(y, 0, row .. string.rep(" ", math.max(0, cols - #row)), "select")
      else
        tty.scr_put(y, 0, row)
        tty.scr_put(y, view.MONIT_STATUS_COL, view.monit_status(p))
      end
    end
    local y = 3 + list_rows
    local p = list[selected]
    if p then
      local title, first_line, second_line = view.monit_details(detail and detail.pm_id == p.pm_id and detail or p)
      tty.scr_put(y, 0, title .. string.rep("─", cols), "cyan")
      tty.scr_put(y + 1, 1, first_line)
      tty.scr_put(y + 2, 1, second_line)
      if hist and hist.pm_id == p.pm_id then
        tty.scr_put(y + 3, 1, view.monit_history(hist, math.max(10, math.min(60, math.floor((cols - 40) / 2)))))
      end
      y = y + 1
      local l = logs[p.pm_id] or {}
      local space = rows - (y + 4)
      tty.scr_put(y + 3, 0, ("── logs " .. string.rep("─", cols)), "cyan")
      local start = math.max(1, #l - space + 1)
      for i = start, #l do
        tty.scr_put(y + 4 + i - start, 1, l[i].line, l[i].err and "red" or nil)
      end
    else
      tty.scr_put(y, 1, "no app: start one with pm start")
    end
    if message ~= "" then tty.scr_put(rows - 1, 0, message .. string.rep(" ", cols), "reverse") end
    tty.scr_refresh()
  end

  local function act(what)
    local p = list[selected]
    if not p then return end
    message = ("%s %s..."):format(what, p.name)
    draw()
    local fn = ({ restart = pm.restart, stop = pm.stop, start = pm.start, reload = pm.reload })[what]
    local _, aerr = fn(p.pm_id)
    message = aerr and ("%s %s: %s"):format(what, p.name, aerr) or ("%s %s: done"):format(what, p.name)
    refresh()
  end

  -- an action asks first: "y" does it, any other key leaves it (one key
  -- pressed by mistake stopped a production app)
  local asked
  local ACTS = { r = "restart", s = "stop", S = "start", l = "reload" }
  local function on_key()
    while true do
      local k = tty.scr_key()
      if not k then break end
      if asked and k ~= "resize" then
        local what = asked
        asked = nil
        if k == "y" or k == "Y" then act(what) else message = what .. ": left as it is"; dirty = true end
      elseif k == "q" or k == "Q" or k == "\3" then quit = true
      elseif k == "up" or k == "k" then select(math.max(1, selected - 1))
      elseif k == "down" or k == "j" then select(math.min(#list, selected + 1))
      elseif ACTS[k] and list[selected] then
        asked = ACTS[k]
        message = ("%s %s? y: yes, any other key: no"):format(asked, list[selected].name)
        dirty = true
      elseif k == "resize" then dirty = true
      end
    end
  end

  local function load_tail()
    local p = list[selected]
    if not p or tail_loaded[p.pm_id] or not (detail and detail.pm_id == p.pm_id) then return end
    tail_loaded[p.pm_id] = true
    local path = detail.pm2_env and detail.pm2_env.pm_out_log_path
    local f = path and io.open(path)
    if not f then return end
    local size = f:seek("end")
    f:seek("set", math.max(0, size - 8192))
    local lines = {}
    for line in f:read("*a"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
    f:close()
    local l = {}
    for i = math.max(1, #lines - 50), #lines do l[#l + 1] = { line = lines[i] } end
    -- (what the bus brought meanwhile is in the file too)
    logs[p.pm_id] = l
  end

  local ran, rerr = pcall(function()
    tty.scr_start()
    refresh()
    local keys = core.watch_read(0, on_key)
    local ticker = core.timer(1000, 1000, tick)
    local sig = core.signal(core.signals.SIGINT, function() quit = true end)
    local term = core.signal(core.signals.SIGTERM, function() quit = true end)
    while not quit do
      load_tail()
      if dirty then draw() end
      core.run("once")
    end
    keys:close(); ticker:close(); sig:close(); term:close()
    if soon then soon:close() end
  end)
  tty.scr_stop()
  if bus then bus:close() end
  pm.disconnect()
  if not ran then
    io.stderr:write("pm: monit: ", tostring(rerr), "\n")
    return 1
  end
  return 0
end

return M
