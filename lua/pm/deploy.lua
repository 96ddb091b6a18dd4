--[[ pm deploy: PM2's deploy section, over the system's ssh and git (no SSH
library). deploy.<env> = { user, host (a string or a list), port, key,
ssh_options (a string or a list: each is -o OPTION), ref, repo, path,
fetch ("fast": shallow), env, "pre-setup", "post-setup",
"pre-deploy-local", "pre-deploy", "post-deploy" }.

What a host holds is PM2's layout: PATH/source (the git clone, reset to
the ref deployed), PATH/current (a link to it: hooks run there),
PATH/shared/{logs,pids}, and PATH/.deploys (one commit a line, the last
deployed last: revert, prev and list read it). A host named localhost is
worked on here, without ssh (as PM2 does). Every value that is not a hook
goes to the shell quoted; hooks are shell commands by design. ]]
local core = require "pm.core"
local util = require "pm.util"

local M = {}

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.quote = q

M.COMMANDS = { setup = true, update = true, ref = true, revert = true, curr = true, current = true, prev = true,
  previous = true, list = true, exec = true, run = true }

local STRINGS = { "user", "repo", "path", "ref", "key", "fetch", "pre-setup", "post-setup", "pre-deploy-local",
  "pre-deploy", "post-deploy" }

-- A .config.js read by node, as pm's daemon reads one (ecosystem.read_js),
-- here in the caller's process: node's output through a pipe -> res | nil, err
local function read_js(file)
  local eco = require "pm.ecosystem"
  local saved = eco.capture
  eco.capture = function(argv, _, done)
    local errf = os.tmpname()
    local words = {}
    for _, a in ipairs(argv) do words[#words + 1] = q(a) end
    local p = io.popen(table.concat(words, " ") .. " 2>" .. q(errf) .. " </dev/null; echo \"pm-rc=$?\"")
    local out = p:read("*a")
    p:close()
    local err = util.read_file(errf) or ""
    os.remove(errf)
    local body, code = out:match("^(.-)pm%-rc=(%d+)\n$")
    done(tonumber(code), body, err)
  end
  local res, err
  local ok, perr = pcall(eco.read_js, file, core.environ(), function(r, e) res, err = r, e end)
  eco.capture = saved
  if not ok then return nil, file .. ": " .. tostring(perr) end
  return res, err
end

-- A file's deploy.<env>, checked -> cfg | nil, err
function M.config(file, env)
  local res, err
  -- (its commands run as the caller: root runs none of a user's file, as
  -- the daemon runs no app of it as root)
  local eco = require "pm.ecosystem"
  local owner, why = eco.file_owner(util.absolute(file))
  if owner or why then
    local pw = owner and util.passwd(owner)
    return nil, ("%s: refused: root runs no deploy command of a file %s (run pm deploy as that user)"):format(file,
      owner and ("only " .. (pw and pw.name or ("uid " .. owner)) .. " may change") or ("others may change: " .. why))
  end
  if file:match("%.c?js$") then -- (PM2's ecosystem.config.js)
    res, err = read_js(file)
  else
    res, err = require("pm.ecosystem").read(file, { environ = core.environ() })
  end
  if not res then return nil, err end
  local section = res.deploy
  if type(section) ~= "table" or type(section[env]) ~= "table" then
    local have = {}
    for k in pairs(type(section) == "table" and section or {}) do have[#have + 1] = tostring(k) end
    table.sort(have)
    return nil, ("%s: no deploy.%s (%s)"):format(file, env,
      #have > 0 and ("the file deploys to " .. table.concat(have, ", ")) or "the file has no deploy section")
  end
  local c = section[env]
  local cfg = {}
  local label = "deploy." .. env
  for _, k in ipairs(STRINGS) do
    local v = c[k]
    if v ~= nil then
      if type(v) ~= "string" then return nil, ("%s: %s.%s must be a string"):format(file, label, k) end
      cfg[k] = v
    end
  end
  for _, k in ipairs({ "repo", "path", "ref" }) do
    if not cfg[k] or cfg[k] == "" then return nil, ("%s: %s.%s is required"):format(file, label, k) end
  end
  -- git would take a leading '-' for an option (--upload-pack=CMD runs CMD)
  for _, k in ipairs({ "repo", "ref" }) do
    if cfg[k]:sub(1, 1) == "-" or cfg[k]:find("%c") then
      return nil, ("%s: %s.%s: bad value %s (no leading '-', no control character)"):format(file, label, k,
        util.encode(cfg[k]))
    end
  end
  if cfg.path:sub(1, 1) ~= "/" and cfg.path:sub(1, 2) ~= "~/" then
    return nil, ("%s: %s.path must be an absolute path (or ~/...), not %s"):format(file, label, cfg.path)
  end
  local hosts = c.host
  if type(hosts) == "string" then hosts = { hosts } end
  if type(hosts) ~= "table" or #hosts == 0 then
    return nil, ("%s: %s.host must be a host name or a list of them"):format(file, label)
  end
  for _, h in ipairs(hosts) do
    -- a name or an address, nothing else: ssh puts the host in commands of
    -- the user's ssh_config (%h in ProxyCommand), a shell reads it there
    if type(h) ~= "string" or not h:match("^[%w_:][%w._:-]*$") then
      return nil, ("%s: %s.host: bad host %s"):format(file, label, util.encode(tostring(h)))
    end
  end
  cfg.hosts = hosts
  if cfg.user and not cfg.user:match("^[%w_][%w._-]*%$?$") then
    return nil, ("%s: %s.user: bad user name %s"):format(file, label, util.encode(cfg.user))
  end
  if c.port ~= nil then
    local n = tonumber(c.port)
    if not n or n % 1 ~= 0 or n < 1 or n > 65535 then return nil, ("%s: %s.port must be a port"):format(file, label) end
    cfg.port = n
  end
  local opts = c.ssh_options
  if type(opts) == "string" then opts = { opts } end
  cfg.ssh_options = {}
  for _, o in ipairs(type(opts) == "table" and opts or {}) do
    if type(o) ~= "string" then return nil, ("%s: %s.ssh_options must be strings"):format(file, label) end
    cfg.ssh_options[#cfg.ssh_options + 1] = o
  end
  cfg.env = {}
  if c.env ~= nil then
    if type(c.env) ~= "table" then return nil, ("%s: %s.env must be a table"):format(file, label) end
    for k, v in pairs(c.env) do
      if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then
        return nil, ("%s: %s.env: %s is not a variable name"):format(file, label, tostring(k))
      end
      cfg.env[#cfg.env + 1] = { k:upper(), tostring(v) } -- (PM2 upper-cases the names)
    end
    table.sort(cfg.env, function(a, b) return a[1] < b[1] end)
  end
  cfg.forward_agent = c["forward-agent"] and true or nil
  cfg.needs_tty = c.needs_tty and true or nil
  -- PM2's default post-deploy: the file started or restarted with --env
  if not cfg["post-deploy"] then
    local name = file:sub(1, 1) == "/" and util.basename(file) or file
    cfg["post-deploy"] = ("pm startOrRestart %s --env %s"):format(q(name), q(env))
  end
  cfg.env_name = env
  return cfg
end

-- ---- running commands ----

-- os.execute's status -> exit code (128 + signal when killed)
local function code_of(status)
  if type(status) ~= "number" then return status and 0 or 1 end
  if status > 255 then return math.floor(status / 256) end
  if status > 0 then return 128 + status end
  return 0
end

M.out = io.stdout -- where steps and output are said (tests may replace it)

local function say(fmt, ...)
  M.out:write("--> ", fmt:format(...), "\n")
  M.out:flush()
end

-- The ssh argv for host (the remote command follows)
function M.ssh_argv(cfg, host)
  local argv = { "ssh" }
  for _, o in ipairs(cfg.ssh_options) do argv[#argv + 1] = "-o"; argv[#argv + 1] = o end
  if cfg.needs_tty then argv[#argv + 1] = "-t" end
  if cfg.forward_agent then argv[#argv + 1] = "-A" end
  if cfg.port then argv[#argv + 1] = "-p"; argv[#argv + 1] = tostring(cfg.port) end
  if cfg.key then
    argv[#argv + 1] = "-i"
    argv[#argv + 1] = (cfg.key:gsub("^~", os.getenv("HOME") or "~"))
  end
  argv[#argv + 1] = (cfg.user and (cfg.user .. "@") or "") .. host
  return argv
end

local function words(argv)
  local out = {}
  for _, a in ipairs(argv) do out[#out + 1] = q(a) end
  return table.concat(out, " ")
end

-- The shell line that runs script on host (here for localhost)
local function line_for(cfg, host, script)
  if host == "localhost" then return "/bin/sh -c " .. q(script) end
  local argv = M.ssh_argv(cfg, host)
  argv[#argv + 1] = script
  return words(argv)
end

-- Runs script on host, its output on ours -> exit code
local function run(cfg, host, script, input)
  local cmd = line_for(cfg, host, script)
  if input then cmd = cmd .. " < " .. q(input) end
  M.out:flush()
  return code_of(os.execute(cmd))
end

-- Runs script on host -> exit code, its output
local function capture(cfg, host, script)
  local p = io.popen(line_for(cfg, host, script) .. "; echo \"$?\"")
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.-)(%d+)\n$")
  return tonumber(code) or 1, body or out
end

-- A path on the host, quoted for its shell ("~/x": under the remote HOME)
local function path_of(cfg, sub)
  local p = cfg.path .. (sub and ("/" .. sub) or "")
  if p:sub(1, 2) == "~/" then return '"$HOME"/' .. q(p:sub(3)) end
  return q(p)
end
M.path_of = path_of

-- One step of a remote script: what failed is said on stderr, and the
-- script ends (each command runs as one ssh session: a connection costs)
local function guard(what, cmd)
  return ("{ %s\n} || { echo %s >&2; exit 1; }"):format(cmd, q("pm deploy: " .. what .. " failed"))
end

-- A hook of the section as a step: run in PATH/current with SHARED set
-- (post-deploy after the section's env exported); "" when not declared
local function hook_step(cfg, name)
  local cmd = cfg[name]
  if not cmd then return "" end
  if name == "post-deploy" and #cfg.env > 0 then
    local ex = {}
    for _, kv in ipairs(cfg.env) do ex[#ex + 1] = kv[1] .. "=" .. q(kv[2]) end
    cmd = "export " .. table.concat(ex, " ") .. " && " .. cmd
  end
  return ("echo %s\n"):format(q("--> " .. name .. ": " .. cfg[name]))
    .. guard(name, ("( cd %s && SHARED=%s && export SHARED && %s )"):format(path_of(cfg, "current"),
      path_of(cfg, "shared"), cmd)) .. "\n"
end

local function remote(cfg, host, what, script)
  local code = run(cfg, host, script)
  if code ~= 0 then return nil, ("%s failed (exit %d)"):format(what, code) end
  return true
end

-- ---- the commands, on one host ----

local C = {}

function C.setup(cfg, host)
  local pre = cfg["pre-setup"]
  if pre then
    say("pre-setup: %s", pre)
    local first = pre:match("^%s*(%S+)")
    local st = first and core.stat(first)
    local code
    if st and st.type == "file" then -- a local script, run there by bash
      code = host == "localhost" and code_of(os.execute("bash " .. q(first)))
        or run(cfg, host, "bash -s", first)
    else
      code = run(cfg, host, pre)
    end
    if code ~= 0 then return nil, ("pre-setup failed (exit %d)"):format(code) end
  end
  local branch = cfg.ref:gsub("^[^/]*/", "")
  say("cloning %s (%s)", cfg.repo, branch)
  local ok, err = remote(cfg, host, "setup", table.concat({
    guard("making the folders", ("mkdir -p %s %s %s"):format(path_of(cfg, "shared/logs"),
      path_of(cfg, "shared/pids"), path_of(cfg, "source"))),
    guard("git clone", ("git clone %s--branch %s -- %s %s"):format(cfg.fetch == "fast" and "--depth=5 " or "",
      q(branch), q(cfg.repo), path_of(cfg, "source"))),
    guard("linking current", ("ln -sfn %s %s"):format(path_of(cfg, "source"), path_of(cfg, "current"))),
    hook_step(cfg, "post-setup") }, "\n"))
  if not ok then return nil, err end
  say("setup done on %s", host)
  return true
end

-- Deploys ref (the section's by default) on host
function C.update(cfg, host, ref)
  ref = ref or cfg.ref
  say("deploying %s", ref)
  local pdl = cfg["pre-deploy-local"]
  if pdl then
    say("pre-deploy-local: %s", pdl)
    local code = code_of(os.execute("/bin/sh -c " .. q(pdl)))
    if code ~= 0 then return nil, ("pre-deploy-local failed (exit %d)"):format(code) end
  end
  local src = path_of(cfg, "source")
  local ok, err = remote(cfg, host, "update", table.concat({
    hook_step(cfg, "pre-deploy"),
    guard("git fetch", ("cd %s && git fetch %s--all --tags"):format(src, cfg.fetch == "fast" and "--depth=5 " or "")),
    guard("git reset", ("cd %s && git reset --hard %s --"):format(src, q(ref))),
    guard("linking current", ("ln -sfn %s %s"):format(src, path_of(cfg, "current"))),
    guard("the deploy log", ("cd %s && git rev-parse HEAD >> %s"):format(src, path_of(cfg, ".deploys"))),
    hook_step(cfg, "post-deploy") }, "\n"))
  if not ok then return nil, err end
  say("deployed %s on %s", ref, host)
  return true
end

-- The deploy log of host, oldest first -> list | nil, err
local function deploys(cfg, host)
  local code, out = capture(cfg, host, ("cat %s"):format(path_of(cfg, ".deploys")))
  if code ~= 0 then return nil, "no deploy log on " .. host .. " (nothing deployed yet)" end
  local list = {}
  for l in out:gmatch("[^\n]+") do
    local commit = l:match("^(%x+)")
    if commit then list[#list + 1] = commit end
  end
  return list
end

-- The nth deploy from the end (1: the last)
local function nth(cfg, host, n)
  local list, err = deploys(cfg, host)
  if not list then return nil, err end
  local c = list[#list - n + 1]
  if not c then return nil, ("%s has %d deploy(s): none %d back"):format(host, #list, n - 1) end
  return c
end

function C.revert(cfg, host, n)
  n = n or 1
  say("reverting %d deploy(s)", n)
  local commit, err = nth(cfg, host, n + 1)
  if not commit then return nil, err end
  return C.update(cfg, host, commit)
end

function C.curr(cfg, host)
  local code, out = capture(cfg, host, ("cd %s && git rev-parse --short HEAD"):format(path_of(cfg, "source")))
  if code ~= 0 then return nil, "no release on " .. host end
  M.out:write(out)
  return true
end

function C.prev(cfg, host)
  local commit, err = nth(cfg, host, 2)
  if not commit then return nil, err end
  M.out:write(commit, "\n")
  return true
end

function C.list(cfg, host)
  local list, err = deploys(cfg, host)
  if not list then return nil, err end
  for i = #list, 1, -1 do M.out:write(("%d\t%s\n"):format(#list - i, list[i])) end
  return true
end

function C.exec(cfg, host, cmd)
  local code = run(cfg, host, ("cd %s && %s"):format(path_of(cfg, "current"), cmd))
  if code ~= 0 then return nil, ("exec failed (exit %d)"):format(code) end
  return true
end

-- ref <ref>: that ref deployed instead of the section's (PM2's `ref`)
function C.ref(cfg, host, ref) return C.update(cfg, host, ref) end

C.current, C.previous, C.run = C.curr, C.prev, C.exec

-- Local changes not committed or not pushed: PM2 refuses to deploy them
-- (--force goes on)
function M.local_changes()
  if code_of(os.execute("git rev-parse --is-inside-work-tree >/dev/null 2>&1")) ~= 0 then return nil end
  if code_of(os.execute("git --no-pager diff --quiet --exit-code")) ~= 0 then
    return "commit or stash your changes before deploying (or --force)"
  end
  if code_of(os.execute("git --no-pager diff --cached --quiet --exit-code")) ~= 0 then
    return "commit your staged changes before deploying (or --force)"
  end
  -- commits the branch's upstream does not have: the host would get the
  -- old code (no upstream: nothing to say)
  local p = io.popen("git rev-list -n 1 '@{upstream}..' 2>/dev/null")
  local ahead = p and p:read("*a") or ""
  if p then p:close() end
  if ahead:match("%x") then return "push your changes before deploying (or --force)" end
end

-- Runs command (with arg) for each host of cfg in turn -> true | nil, err
function M.run(cfg, command, arg, opts)
  local fn = C[command]
  if not fn then return nil, "unknown deploy command " .. tostring(command) end
  if command == "ref" and (type(arg) ~= "string" or arg == "" or arg:sub(1, 1) == "-" or arg:find("%c")) then
    return nil, ("bad ref %s (no leading '-', no control character)"):format(util.encode(tostring(arg)))
  end
  if (command == "update" or command == "ref") and not (opts and opts.force) then
    local why = M.local_changes()
    if why then return nil, why end
  end
  say("deploying to %s", cfg.env_name)
  for _, host in ipairs(cfg.hosts) do
    say("on host %s", host)
    local ok, err = fn(cfg, host, arg)
    if not ok then return nil, ("%s: %s"):format(host, err) end
  end
  return true
end

return M
