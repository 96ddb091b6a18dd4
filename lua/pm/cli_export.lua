-- The verbs that take apps off this host: pm export (a scheduler's own
-- files, pm.export) and pm deploy (PM2's deploy over ssh and git,
-- pm.deploy).
local core = require "pm.core"
local util = require "pm.util"
local cli = require "pm.cli"

local V = {}

-- The declarations of an ecosystem file, read here with the caller's
-- rights and environment -> decls | raises
local function file_decls(path, env)
  if path:match("%.c?js$") then
    error({ msg = path .. ": a .config.js file is read by node in the daemon: start it, then "
      .. "pm export <its apps' names> (or use its .lua, .json or .yaml twin)" }, 0)
  end
  local decls, err = require("pm.ecosystem").load(path, { env_name = env, environ = core.environ() })
  if not decls then error({ msg = err }, 0) end
  return decls
end

-- The declarations of running apps (a name, an id, a namespace, all)
local function running_decls(target)
  local conn = cli.check(cli.api()._conn())
  local list = cli.check(conn:call("declarations", { target = target }))
  if #list == 0 then error({ msg = "process or namespace not found: " .. target }, 0) end
  local decls = {}
  for _, d in ipairs(list) do
    for k, v in pairs(d) do if v == util.null then d[k] = nil end end
    decls[#decls + 1] = d
  end
  return require("pm.ecosystem").order(decls)
end

function V.export(args)
  local p = cli.parser("export")
  p:argument("what", "an ecosystem file, an app name or id, a namespace, or all")
  p:option("--to", "systemd, kubernetes (k8s), nomad or compose")
  p:option("--out", "write the files into this folder (default: print them)")
  p:option("--env", "the file's env_<name> section")
  p:option("--image", "the container image (kubernetes, compose)")
  p:flag("--keep-pm", "run each app under pm runtime inside the unit or container")
  local a = p:parse(args)
  if not a.to then error({ msg = "--to is required: systemd, kubernetes, nomad or compose", code = 2 }, 0) end
  local export = require "pm.export"
  local decls, file
  local st = core.stat(a.what)
  if st and st.type == "file" then
    file = util.absolute(a.what)
    decls = file_decls(file, a.env)
  else
    if a.env then error({ msg = "--env names a section of an ecosystem file: export the file", code = 2 }, 0) end
    decls = running_decls(a.what)
  end
  local files, unmapped, warnings = export.export(decls, { to = a.to, image = a.image, keep_pm = a.keep_pm,
    env = a.env, file = file, source = file or a.what, pm_bin = util.pm_binary(),
    caller_user = core.getuid() ~= 0 and (util.passwd(core.getuid()) or {}).name or nil })
  if not files then error({ msg = unmapped }, 0) end
  local out_real
  if a.out then
    -- files are replaced through a ".new" beside them, as root maybe: a
    -- folder (or a link on the way) another user can change is refused
    local err
    out_real, err = export.out_dir(a.out)
    if not out_real then error({ msg = "--out " .. a.out .. ": " .. tostring(err) }, 0) end
  end
  for _, w in ipairs(warnings) do io.stderr:write("pm export: warning: ", w, "\n") end
  for _, line in ipairs(export.unmapped_lines(unmapped)) do
    io.stderr:write("pm export: not mapped: ", line, "\n")
  end
  if a.out then
    for _, f in ipairs(files) do
      local path = a.out:gsub("/+$", "") .. "/" .. f.name
      -- (0600: an app's environment, its secrets, is in them)
      local wok, werr = util.write_atomic(out_real .. "/" .. f.name, f.text, { durable = false, mode = 384 })
      if not wok then error({ msg = path .. ": " .. tostring(werr) }, 0) end
      io.stdout:write(path, "\n")
    end
  else
    for i, f in ipairs(files) do
      if #files > 1 then io.stdout:write(i > 1 and "\n" or "", "# ---- ", f.name, " ----\n") end
      io.stdout:write(f.text)
    end
  end
  return 0
end

local DEPLOY_USAGE = "usage: pm deploy <file> <env> setup|update|ref <ref>|revert [n]|curr|prev|list|exec <cmd> "
  .. "[--force]"

-- pm deploy <file> <env> <command> [arg]: PM2's deploy (pm.deploy). The
-- command of exec is taken whole (its words, dashes included).
function V.deploy(args)
  local rest, force = {}, false
  for i, a in ipairs(args) do
    if a == "--force" or a == "-f" then
      force = true
    elseif (a == "-h" or a == "--help") and #rest < 3 then
      io.stdout:write(DEPLOY_USAGE, "\n")
      return 0
    else
      rest[#rest + 1] = a
      if #rest >= 3 and (rest[3] == "exec" or rest[3] == "run") then
        for j = i + 1, #args do rest[#rest + 1] = args[j] end
        break
      end
    end
  end
  local file, env, command = rest[1], rest[2], rest[3] or "update"
  if not file or not env then error({ msg = DEPLOY_USAGE, code = 2 }, 0) end
  local deploy = require "pm.deploy"
  if not deploy.COMMANDS[command] then
    error({ msg = ("unknown deploy command '%s' (%s)"):format(command, DEPLOY_USAGE:match("setup.*")), code = 2 }, 0)
  end
  local arg
  if command == "revert" then
    arg = rest[4] and tonumber(rest[4])
    if rest[4] and (not arg or arg < 1 or arg % 1 ~= 0) then
      error({ msg = "revert: a number of deploys (1 or more) expected", code = 2 }, 0)
    end
  elseif command == "ref" then
    if not rest[4] or rest[5] then
      error({ msg = "ref: a ref expected (pm deploy <file> <env> ref <ref>)", code = 2 }, 0)
    end
    arg = rest[4]
  elseif command == "exec" or command == "run" then
    if #rest < 4 then error({ msg = "exec: a command expected", code = 2 }, 0) end
    arg = table.concat({ unpack(rest, 4) }, " ")
  elseif rest[4] then
    error({ msg = ("%s takes no argument"):format(command), code = 2 }, 0)
  end
  local st = core.stat(file)
  if not st or st.type ~= "file" then error({ msg = "file not found: " .. file }, 0) end
  local cfg, err = deploy.config(util.absolute(file), env)
  if not cfg then error({ msg = err }, 0) end
  local ok, derr = deploy.run(cfg, command, arg, { force = force })
  if not ok then error({ msg = "deploy failed: " .. derr }, 0) end
  io.stdout:write("--> Success\n")
  return 0
end

return V
