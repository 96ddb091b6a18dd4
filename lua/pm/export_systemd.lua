-- pm export --to systemd: a service unit per app (a template name@.service
-- with %i and a name.target over its instances when it has several), a
-- .socket unit from listen (the held sockets pm passes speak LISTEN_FDS,
-- as systemd's do), a .timer and its oneshot service from cron_restart.
local export = require "pm.export"
local util = require "pm.util"

local M = {}

-- attribute -> true (mapped) or why not (the rest: export.COMMON)
M.attrs = {
  instances = true, instance_var = true, env_file = true, namespace = "namespaces: no equivalent",
  autorestart = true, max_restarts = true, min_uptime = true, restart_delay = true,
  exp_backoff_restart_delay = true, stop_exit_codes = true, kill_timeout = true, kill_signal = true,
  max_memory_restart = true, cron_restart = true, wait_ready = true, listen_timeout = true,
  watchdog = true, listen = true, learned_listen = true, depends_on = true, uid = true, gid = true,
  user = true, out_file = true, error_file = true, disable_logs = true, kill_mode = true, treekill = true,
  autostart = true, port = true,
  log_file = "a combined log file: systemd writes stdout and stderr to one place each",
  health = "health checks: systemd has none (WatchdogSec= needs WATCHDOG=1 from the app)",
  increment_var = "a variable incremented per instance: a template's %i cannot be added to",
  exec_mode = "cluster mode (Node's shared listen): instances are separate processes (the socket unit "
    .. "shares the port with ReusePort=)",
}

-- systemd's quoting of one word of ExecStart= ("..." with \ and " escaped;
-- % and $ doubled: specifiers and variables are not expanded)
local function word(s)
  s = tostring(s):gsub("%%", "%%%%"):gsub("%$", "$$")
  if s ~= "" and not s:find('[%s"\'\\;]') then return s end
  return '"' .. s:gsub('\\', '\\\\'):gsub('"', '\\"'):gsub("\n", "\\n") .. '"'
end
M.word = word

local function exec_line(argv)
  local out = {}
  for _, a in ipairs(argv) do out[#out + 1] = word(a) end
  return table.concat(out, " ")
end

-- Environment="K=V" (a value's % doubled: no specifier expansion)
local function env_assign(k, v)
  local s = (k .. "=" .. v):gsub("%%", "%%%%")
  return '"' .. s:gsub('\\', '\\\\'):gsub('"', '\\"'):gsub("\n", "\\n") .. '"'
end

local function templated(d) return (d.instances or 1) > 1 end

-- An app's name as a unit's name (systemd-escape's rule: what a unit name
-- cannot hold as \xNN)
function M.unit_name(name)
  local out = name:gsub("[^%w:_.-]", function(c) return ("\\x%02x"):format(c:byte()) end)
  return (out:gsub("^%.", "\\x2e"))
end
local unit_name = M.unit_name

-- a name in a Description= (% is a specifier there)
local function shown(name) return (name:gsub("%%", "%%%%")) end

-- A path written as the rest of a line (% doubled; a control character
-- would end the line: M.files refuses such an app first)
local function raw(s) return (tostring(s):gsub("%%", "%%%%")) end

-- The first attribute of d a unit cannot hold (a control character in it)
local function unwritable(d)
  for _, k in ipairs({ "out_file", "error_file", "cwd", "script", "user", "instance_var" }) do
    if type(d[k]) == "string" and d[k]:find("%c") then return k end
  end
  for _, spec in ipairs(d.listen or {}) do if spec:find("%c") then return "listen" end end
end

-- The units that stand for app d: what others After=/Requires=
local function units_of(d)
  if not templated(d) then return { unit_name(d.name) .. ".service" } end
  local out = {}
  for i = 0, d.instances - 1 do out[#out + 1] = ("%s@%d.service"):format(unit_name(d.name), i) end
  return out
end

-- ---- cron_restart -> OnCalendar= ----

local DOW = { [0] = "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }

-- a field's set -> "*" | "1,5..9" (DOW names for weekdays)
local function cal_field(set, lo, hi, names, width)
  local all = true
  for v = lo, hi do all = all and set[v] end
  if all then return "*" end
  local vals = {}
  for v = lo, hi do if set[v] then vals[#vals + 1] = v end end
  local out, i = {}, 1
  local function show(v) return names and names[v] or ("%0" .. width .. "d"):format(v) end
  while i <= #vals do
    local j = i
    while j < #vals and vals[j + 1] == vals[j] + 1 do j = j + 1 end
    if j - i >= 2 then
      out[#out + 1] = show(vals[i]) .. ".." .. show(vals[j])
    else
      for k = i, j do out[#out + 1] = show(vals[k]) end
    end
    i = j + 1
  end
  return table.concat(out, ",")
end

-- cron expression -> a list of OnCalendar= values (two when both the day
-- of month and the weekday are restricted: cron fires on either)
function M.calendar(expr)
  local spec, err = require("pm.cron").parse(expr)
  if not spec then return nil, err end
  local time = ("%s:%s:%s"):format(cal_field(spec[3], 0, 23, nil, 2), cal_field(spec[2], 0, 59, nil, 2),
    cal_field(spec[1], 0, 59, nil, 2))
  local month = cal_field(spec[5], 1, 12, nil, 2)
  local dom = cal_field(spec[4], 1, 31, nil, 2)
  local dow = cal_field(spec[6], 0, 6, DOW)
  local function cal(w, d) return ((w and w ~= "*") and (w .. " ") or "") .. ("*-%s-%s %s"):format(month, d, time) end
  if spec.dom_any or spec.dow_any then
    return { cal(spec.dow_any and nil or dow, spec.dom_any and "*" or dom) }
  end
  return { cal(nil, dom), cal(dow, "*") }
end

-- ---- the units ----

local function service(d, opts, head)
  local L = {}
  local function add(s) L[#L + 1] = s end
  local inst = templated(d)
  add(export.comment(head))
  add("[Unit]\n")
  add(("Description=%s (pm export%s)\n"):format(shown(d.name), inst and ", instance %i" or ""))
  local after, requires = { "network.target" }, {}
  if d.listen and not opts.keep_pm then
    local sock = unit_name(d.name) .. (inst and "@%i.socket" or ".socket")
    after[#after + 1] = sock
    requires[#requires + 1] = sock
  end
  for _, dep in ipairs(d.depends_on or {}) do
    for _, u in ipairs(units_of(opts.by_name[dep])) do
      after[#after + 1] = u
      requires[#requires + 1] = u
    end
  end
  add("After=" .. table.concat(after, " ") .. "\n")
  if #requires > 0 then add("Requires=" .. table.concat(requires, " ") .. "\n") end
  if inst then add(("PartOf=%s.target\n"):format(unit_name(d.name))) end
  -- PM2's max_restarts unstable restarts (each up less than min_uptime)
  -- -> so many starts within as many times min_uptime and the delay
  if d.autorestart ~= false and not opts.keep_pm then
    local per = (d.min_uptime or 1000) + math.max(d.restart_delay or 0, d.exp_backoff_restart_delay or 0)
    add(("StartLimitIntervalSec=%s\n"):format(export.duration(per * math.max(1, d.max_restarts))))
    add(("StartLimitBurst=%d\n"):format(math.max(1, d.max_restarts)))
  end
  add("\n[Service]\n")
  if d.wait_ready and not opts.keep_pm then
    add("# wait_ready: the app says READY=1 over sd_notify ($NOTIFY_SOCKET), as under pm;\n"
      .. "# pm's IPC message \"ready\" (process.send) does not reach systemd\n")
    add("Type=notify\nNotifyAccess=all\n")
    add(("TimeoutStartSec=%s\n"):format(export.duration(d.listen_timeout)))
  else
    add("Type=simple\n")
  end
  if opts.keep_pm then
    add("ExecStart=" .. exec_line(export.runtime_argv(d, opts, opts.file, opts.pm_bin)) .. "\n")
    -- each unit's pm runtime has a PM_HOME of its own
    local dir = "pm-" .. export.dns_name(d.name) .. (inst and "-%i" or "")
    add("RuntimeDirectory=" .. dir .. "\n")
    add("Environment=PM_HOME=/run/" .. dir .. "\n")
    -- pm runtime restarts the app; it ends 1 when the app is errored: again
    add("Restart=on-failure\nRestartSec=1s\n")
  else
    add("ExecStart=" .. exec_line(export.argv(d, opts.pm_bin)) .. "\n")
  end
  -- (a path as it is: WorkingDirectory= neither unquotes nor expands $)
  add("WorkingDirectory=" .. raw(d.cwd) .. "\n")
  if d.user or d.uid then
    add("User=" .. tostring(d.user or d.uid) .. "\n")
  elseif opts.caller_user then
    -- under a pm of a user's the app ran as that user: a system unit
    -- without User= would run it as root
    add("User=" .. raw(opts.caller_user) .. "\n")
  end
  if d.gid then add("Group=" .. tostring(d.gid) .. "\n") end
  if not opts.keep_pm then -- (pm runtime reads the file's)
    for _, kv in ipairs(export.env_list(d)) do add("Environment=" .. env_assign(kv[1], kv[2]) .. "\n") end
  end
  if inst and d.instance_var then
    -- (quoted as any assignment; %i is the one specifier meant)
    add("Environment=" .. env_assign(d.instance_var, ""):gsub('"$', '%%i"', 1) .. "\n")
  end
  if not opts.keep_pm then
    if d.autorestart == false then
      add("Restart=no\n")
    else
      add("Restart=always\n")
      add(("RestartSec=%s\n"):format(export.duration(d.exp_backoff_restart_delay > 0
        and d.exp_backoff_restart_delay or d.restart_delay)))
      if d.exp_backoff_restart_delay > 0 then
        -- PM2's backoff: x1.5 a restart, up to 15 s (systemd 254 and later)
        local steps = math.max(1, math.ceil(math.log(15000 / d.exp_backoff_restart_delay) / math.log(1.5)))
        add(("RestartSteps=%d\nRestartMaxDelaySec=15s\n"):format(steps))
      end
      if #(d.stop_exit_codes or {}) > 0 then
        local codes = {}
        for _, c in ipairs(d.stop_exit_codes) do codes[#codes + 1] = ("%d"):format(c) end
        add("RestartPreventExitStatus=" .. table.concat(codes, " ") .. "\n")
        add("SuccessExitStatus=" .. table.concat(codes, " ") .. "\n")
      end
    end
    if d.watchdog then add(("WatchdogSec=%s\n"):format(export.duration(d.watchdog))) end
    if d.max_memory_restart then add(("MemoryMax=%d\n"):format(d.max_memory_restart)) end
  end
  add("KillSignal=" .. export.stop_signal(d, opts) .. "\n")
  add(("TimeoutStopSec=%s\n"):format(export.duration(export.stop_time(d, opts))))
  if d.kill_mode == "process" or d.treekill == false then add("KillMode=process\n") end
  if not opts.keep_pm then
    if d.disable_logs then
      add("StandardOutput=null\nStandardError=null\n")
    else
      -- (systemd opens append: files as root, through links: one in a
      -- folder a user may change goes to the journal instead)
      for _, f in ipairs({ { "StandardOutput", d.out_file }, { "StandardError", d.error_file } }) do
        if f[2] and export.root_only(util.dirname(f[2])) then
          add(f[1] .. "=append:" .. raw(f[2]) .. "\n")
        elseif f[2] then
          add(("# %s: not append:%s, a folder a user may change (systemd opens it as root, "
            .. "through links)\n%s=journal\n"):format(f[1], raw(f[2]), f[1]))
        end
      end
    end
  end
  if d.autostart ~= false then
    add("\n[Install]\n")
    add(("WantedBy=%s\n"):format(inst and (unit_name(d.name) .. ".target") or "multi-user.target"))
  end
  return table.concat(L)
end

local function socket(d, head)
  local L = { export.comment(head), "[Unit]\n", ("Description=%s's listen sockets (pm export)\n"):format(shown(d.name)),
    "\n[Socket]\n" }
  local sockets = require "pm.sockets"
  local names = {}
  for i, spec in ipairs(d.listen) do
    local a = sockets.parse(spec)
    if a.kind == "tcp" then
      local host = a.host
      if host:find(":") then host = "[" .. host .. "]" end
      L[#L + 1] = ("ListenStream=%s\n"):format(host == "" and tostring(a.port) or (host .. ":" .. a.port))
      names[#names + 1] = sockets.fd_name(a.host, a.port)
    else
      L[#L + 1] = ("ListenStream=%s\n"):format(raw(util.absolute(a.path, d.cwd)))
      names[#names + 1] = "unix_" .. i
    end
  end
  -- pm's LISTEN_FDNAMES for one socket; several share the unit's name
  if #names == 1 then L[#L + 1] = "FileDescriptorName=" .. names[1] .. "\n" end
  if templated(d) then L[#L + 1] = "ReusePort=yes\n" end
  if d.autostart ~= false then L[#L + 1] = "\n[Install]\nWantedBy=sockets.target\n" end
  return table.concat(L)
end

function M.files(decls, opts, unmapped, warnings)
  local files = {}
  for _, d in ipairs(decls) do
    if d.wait_ready and not opts.keep_pm and warnings then
      warnings[#warnings + 1] = ("app '%s': wait_ready is Type=notify: the app must send READY=1 to "
        .. "$NOTIFY_SOCKET (sd_notify); PM2's process.send('ready') does not reach systemd (or --keep-pm)")
        :format(d.name)
    end
  end
  opts.by_name = {}
  for _, d in ipairs(decls) do opts.by_name[d.name] = d end
  for _, d in ipairs(decls) do
    local bad = unwritable(d)
    if bad then return nil, ("app '%s': %s holds a control character: a unit cannot hold it"):format(d.name, bad) end
    local head = export.head(opts, unmapped, { [d.name] = true })
    local base = unit_name(d.name) .. (templated(d) and "@" or "")
    files[#files + 1] = { name = base .. ".service", text = service(d, opts, head) }
    if templated(d) then
      local wants = {}
      for i = 0, d.instances - 1 do wants[#wants + 1] = ("%s@%d.service"):format(unit_name(d.name), i) end
      local t = { export.comment(head), "[Unit]\n", ("Description=%s: its %d instances (pm export)\n")
        :format(shown(d.name), d.instances), "Wants=" .. table.concat(wants, " ") .. "\n" }
      if d.autostart ~= false then t[#t + 1] = "\n[Install]\nWantedBy=multi-user.target\n" end
      files[#files + 1] = { name = unit_name(d.name) .. ".target", text = table.concat(t) }
    end
    if d.listen and not opts.keep_pm then
      files[#files + 1] = { name = base .. ".socket", text = socket(d, head) }
    end
    if d.cron_restart and not opts.keep_pm then
      local cal, err = M.calendar(d.cron_restart)
      if not cal then return nil, ("app '%s': %s"):format(d.name, err) end
      local t = { export.comment(head), "[Unit]\n", ("Description=%s: restarted at %s (pm export)\n")
        :format(shown(d.name), (d.cron_restart:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))), "\n[Timer]\n" }
      for _, c in ipairs(cal) do t[#t + 1] = "OnCalendar=" .. c .. "\n" end
      t[#t + 1] = ("Unit=%s-restart.service\n\n[Install]\nWantedBy=timers.target\n"):format(unit_name(d.name))
      files[#files + 1] = { name = unit_name(d.name) .. "-restart.timer", text = table.concat(t) }
      local targets = {}
      for _, u in ipairs(units_of(d)) do targets[#targets + 1] = u end
      files[#files + 1] = { name = unit_name(d.name) .. "-restart.service", text = table.concat({ export.comment(head),
        "[Unit]\n", ("Description=%s: the restart of cron_restart (pm export)\n"):format(shown(d.name)),
        "\n[Service]\nType=oneshot\n",
        "ExecStart=" .. exec_line({ opts.systemctl or "/bin/systemctl", "try-restart", unpack(targets) }) .. "\n" }) }
    end
  end
  return files
end

return M
