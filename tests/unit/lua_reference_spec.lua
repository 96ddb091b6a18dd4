-- The Lua reference (doc/lua.md) against the code, as luv's docs coverage
-- check does it: every public function of the loaded modules has an entry,
-- every entry names a function that exists, every entry says its context,
-- returns and errors; the LuaLS stubs (doc/types/) declare every client
-- and child function. Functions are listed from the modules as they load
-- (require "pm", the bus's class, require "pm.child", the hook sandbox's
-- pm table that hooks.lua builds from the daemon's API, what an
-- ecosystem.lua sees while it loads, the console's environment), never
-- by reading their source.
local core = require "pm.core"
local ref = require "pm.reference"

local SRC = os.getenv("PM_SRC") or core.getcwd()
local TMP = SRC .. "/tests/tmp"

-- Methods of the bus that the client calls itself: not API.
local INTERNAL = { ["bus deliver"] = true, ["bus dispatch"] = true }

local function sorted_keys(t, pred)
  local list = {}
  for k, v in pairs(t) do
    if type(k) == "string" and (not pred or pred(k, v)) then list[#list + 1] = k end
  end
  table.sort(list)
  return list
end

local function public_fn(k, v) return type(v) == "function" and k:sub(1, 1) ~= "_" end

-- What an ecosystem.lua sees while it loads: its globals, the keys of its
-- pm, and the names its libraries hold ({ string = {...}, ... })
local function load_view()
  core.mkdir(TMP, 493)
  local p = io.popen("mktemp -d " .. TMP .. "/ref.XXXXXX")
  local dir = p:read("*l")
  p:close()
  local f = assert(io.open(dir .. "/ecosystem.lua", "w"))
  f:write([[
local function keys(t, only_tables)
  local l = {}
  for k, v in pairs(t) do
    if not only_tables or type(v) == "table" then l[#l + 1] = k end
  end
  table.sort(l)
  return table.concat(l, " ")
end
local libs = {}
for _, name in ipairs({ "string", "table", "math", "os", "bit", "coroutine" }) do
  if type(_G[name]) == "table" then libs[#libs + 1] = name .. "=" .. keys(_G[name]) end
end
return { apps = { { name = "x", script = "x", env = {
  GLOBALS = keys(_G), PM = keys(pm), LIBS = table.concat(libs, ";") } } } }
]])
  f:close()
  local res, err = require("pm.ecosystem").read(dir .. "/ecosystem.lua", { environ = {} })
  os.execute("rm -rf '" .. dir .. "'")
  assert(res, err)
  local env = res.apps[1].env
  local function set(s)
    local t = {}
    for w in s:gmatch("%S+") do t[w] = true end
    return t
  end
  local libs = {}
  for part in env.LIBS:gmatch("[^;]+") do
    local name, names = part:match("^(%w+)=(.*)$")
    libs[name] = set(names)
  end
  return set(env.GLOBALS), set(env.PM), libs
end

-- Every public function, by section: { section = { name = fn-or-true } }
local function code_functions()
  local pm = require "pm"
  local fns = { client = {}, bus = {}, child = {}, hook = {}, load = {}, console = {} }
  for _, k in ipairs(sorted_keys(pm, public_fn)) do fns.client["pm." .. k] = pm[k] end
  local Bus = assert(ref.bus_class(pm), "the bus's class, from pm.launchBus")
  for _, k in ipairs(sorted_keys(Bus, public_fn)) do
    if not INTERNAL["bus " .. k] then fns.bus["bus:" .. k] = Bus[k] end
  end
  local child = require "pm.child"
  for _, k in ipairs(sorted_keys(child, public_fn)) do fns.child["child." .. k] = child[k] end
  -- the hook's pm: the daemon's API as hooks.lua copies it into a sandbox
  require("pm.daemon").hook_api()
  local hooks = require "pm.hooks"
  local hook_pm = hooks.sandbox({}).pm
  for _, k in ipairs(sorted_keys(hook_pm, public_fn)) do fns.hook["pm." .. k] = hook_pm[k] end
  -- while a file loads: the same pm and its helpers, require
  local globals, load_pm = load_view()
  for k in pairs(load_pm) do
    if not hook_pm[k] then fns.load["pm." .. k] = true end
  end
  if globals.require then fns.load.require = true end
  -- the console's own functions (the client's API in it is the client's)
  local env = require("pm.console").console_env(function() end)
  for _, k in ipairs(sorted_keys(env, public_fn)) do
    if not pm[k] then fns.console[k] = env[k] end
  end
  return fns
end

describe("the Lua reference (doc/lua.md)", function()
  local entries, sections, fns

  setup(function()
    entries, sections = assert(ref.parse())
    fns = code_functions()
  end)

  it("has an entry for every public function of pm's modules", function()
    local have = {}
    for _, e in ipairs(entries) do have[ref.key(e)] = true end
    local missing = {}
    for _, section in ipairs({ "client", "bus", "child", "hook", "load", "console" }) do
      for _, name in ipairs(sorted_keys(fns[section])) do
        if not have[section .. " " .. name] then
          missing[#missing + 1] = ("%s (section {#%s} of doc/lua.md)"):format(name, section)
        end
      end
    end
    assert(#missing == 0, "functions with no entry in doc/lua.md:\n  " .. table.concat(missing, "\n  "))
    assert.is_true(#entries > 40)
  end)

  it("names no function that does not exist", function()
    local stale, seen = {}, {}
    for _, e in ipairs(entries) do
      local key = ref.key(e)
      if not (fns[e.section] and fns[e.section][e.name]) then
        stale[#stale + 1] = ("%s: `### %s` names nothing in the code"):format(key, e.sig)
      end
      if seen[key] then stale[#stale + 1] = key .. ": two entries" end
      seen[key] = true
    end
    assert(#stale == 0, "entries of doc/lua.md without a function:\n  " .. table.concat(stale, "\n  "))
  end)

  it("gives every entry its context, returns and errors", function()
    local bad = {}
    for _, e in ipairs(entries) do
      local key = ref.key(e)
      for _, field in ipairs({ "context_text", "returns", "errors" }) do
        if not e[field] then
          bad[#bad + 1] = ("%s: no `- %s:` line"):format(key, field:gsub("_text$", ""))
        end
      end
      for _, c in ipairs(e.context) do
        if not ref.CONTEXTS[c] then
          bad[#bad + 1] = ("%s: context '%s' is none of client, hook, ecosystem load, child, console"):format(key, c)
        end
      end
    end
    assert(#bad == 0, table.concat(bad, "\n"))
  end)

  it("lists the sandbox's contents exactly: every global, every name of its libraries", function()
    local globals, _, libs = load_view()
    local text = sections.sandbox.text
    local missing = {}
    for g in pairs(globals) do
      if not text:find("`" .. g .. "`", 1, true) then missing[#missing + 1] = g end
    end
    for lib, names in pairs(libs) do
      local line = text:match("\n%- `" .. lib .. "`:([^\n]*)")
      if not line then
        missing[#missing + 1] = lib .. " (no line '- `" .. lib .. "`: ...')"
      else
        for name in pairs(names) do
          if not line:find("`" .. name .. "`", 1, true) then missing[#missing + 1] = lib .. "." .. name end
        end
      end
    end
    table.sort(missing)
    assert(#missing == 0, "the sandbox's names missing from doc/lua.md's {#sandbox} section:\n  "
      .. table.concat(missing, "\n  "))
  end)

  it("has LuaLS stubs (doc/types/) declaring every client, bus, child, hook and load function", function()
    local function read(p)
      local f = assert(io.open(SRC .. "/" .. p))
      local s = f:read("*a")
      f:close()
      return s
    end
    local stubs = read("doc/types/pm/init.lua") .. read("doc/types/pm/child.lua")
    assert.truthy(stubs:find("^%-%-%-@meta"), "a ---@meta file")
    local missing = {}
    for _, section in ipairs({ "client", "bus", "child" }) do
      for _, name in ipairs(sorted_keys(fns[section])) do
        local decl = name:gsub("^bus:", "Bus:")
        if not stubs:find("\nfunction " .. decl:gsub("%.", "%%.") .. "%(") then
          missing[#missing + 1] = name
        end
      end
    end
    local sandbox = read("doc/types/pm_sandbox.lua")
    for _, section in ipairs({ "hook", "load" }) do
      for _, name in ipairs(sorted_keys(fns[section])) do
        local short = name:match("^pm%.([%w_]+)$")
        if short and not sandbox:find("\nfunction hook%." .. short .. "%(") then
          missing[#missing + 1] = name .. " (" .. section .. ", doc/types/pm_sandbox.lua)"
        end
      end
    end
    assert(#missing == 0, "functions the stubs doc/types/*.lua do not declare:\n  "
      .. table.concat(missing, "\n  "))
  end)

  it("is installed by make install with the stubs; the rockspec runs the Makefile with its install dirs", function()
    local dest = TMP .. "/install." .. core.getpid()
    local rc = os.execute(("make -s -C '%s' install DESTDIR='%s' PREFIX=/usr >/dev/null"):format(SRC, dest))
    assert.equal(0, rc)
    for _, f in ipairs({ "/usr/share/pm/types/pm/init.lua", "/usr/share/pm/types/pm/child.lua",
      "/usr/share/pm/types/pm_sandbox.lua", "/usr/share/doc/pm/lua.md", "/usr/share/lua/5.1/pm/lua_doc.lua",
      "/usr/share/lua/5.1/pm/reference.lua", "/usr/lib/lua/5.1/pm/core.so", "/usr/bin/pm" }) do
      assert.truthy(core.stat(dest .. f), f .. " installed")
    end
    -- the installed reference is the same text
    local doc = dofile(dest .. "/usr/share/lua/5.1/pm/lua_doc.lua")
    assert.equal(assert(io.open(SRC .. "/doc/lua.md")):read("*a"), doc)
    os.execute("rm -rf '" .. dest .. "'")
    -- the rockspec: a make build whose variables are the Makefile's
    local spec = {}
    assert(setfenv(assert(loadfile(SRC .. "/pm-scm-1.rockspec")), spec))()
    assert.equal("pm", spec.package)
    assert.equal("make", spec.build.type)
    local f = assert(io.open(SRC .. "/Makefile"))
    local makefile = f:read("*a")
    f:close()
    for var in pairs(spec.build.install_variables) do
      assert.truthy(makefile:find("\n" .. var .. " *%?=") or makefile:find("\n" .. var .. " *:?="),
        var .. " is a variable of the Makefile")
    end
    if core.access("/usr/bin/luarocks", "x") then
      assert.equal(0, os.execute(("cd '%s' && luarocks lint pm-scm-1.rockspec >/dev/null"):format(SRC)))
    end
  end)

  it("is what help and pm help lua read: an entry found by a name, a section and a name", function()
    local found = ref.find(entries, "restart")
    assert.equal("client", found[1].section)
    assert.equal("hook", found[2].section)
    assert.equal(1, #ref.find(entries, "hook pm.restart"))
    assert.equal("bus:on", ref.find(entries, "bus:on")[1].name)
    assert.equal(0, #ref.find(entries, "nosuch"))
  end)
end)
