--[[
The C/Lua boundary lint, run by `make lint` (and so by `make test`):
luajit tests/boundary.lua [root]. Loads pm.core as lib/pm/core.so gives it
(the terminal's rl_* and scr_* included) and reads core/*.c and lua/pm/*.lua.
Fails (exit 1) with one line per fault, naming the function, when

 (a) lua/pm (or tests/, bench/, ecosystem/) uses a core.X that pm.core does
     not have, or calls a method that the handle's type does not have (the
     handle being one the same file assigned from a core constructor,
     `x = core.timer(...)` then `x:again(...)`);
 (b) an export of pm.core, or a method of one of its handles, is used by no
     module of lua/pm (a method counts as used when any `x:name(` appears
     there: the receiver's type is not known) -- except the few exports
     KEPT below for tests/ and bench/, each still used where it says;
 (c) an export has no comment of its own right above its C function that
     gives its signature, lsyncd-style params and results in one line:
     `core.name(params) -> results` (or `stream:name(params) -> results` for
     a method; `-> nothing` when it returns nothing).

Lua is read without its comments and strings. The module aliases are the
locals bound to require "pm.core" (and, for the terminal, to
require("pm.term").load(...)).
]]
local root = arg and arg[1] or (arg and arg[0] and arg[0]:match("^(.*)/tests/[^/]*$")) or "."

-- Exports no lua/pm module uses, kept for the tests and the benchmarks.
-- Each must still be used (as core.name) in every file listed.
local KEPT = {
  narrow_spawns = { "tests/integration/fastpaths_spec.lua" }, -- the narrow way was taken
  spawn_many = { "tests/integration/fastpaths_spec.lua", "bench/bench.lua" },
}

-- The constructors of handles and the type (metatable pm.<type>) of what
-- each returns. Checked against pm.core below: a handle type that no entry
-- makes fails the lint, so a new one gets an entry.
local CTORS = {
  timer = "handle", signal = "handle", watch_read = "handle", watch_write = "handle",
  stream = "stream", logfile = "logfile", logpipe = "logpipe", spawn_start = "spawning",
  http_server = "http",
}

local faults = {}
local function fault(fmt, ...) faults[#faults + 1] = fmt:format(...) end

local function read(path)
  local f = io.open(root .. "/" .. path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function ls(dir, pattern)
  local out = {}
  local p = io.popen("cd '" .. root .. "' && ls " .. dir .. " 2>/dev/null")
  for name in p:lines() do
    if name:match(pattern) then out[#out + 1] = dir .. "/" .. name end
  end
  p:close()
  table.sort(out)
  return out
end

local function escape(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- ---- pm.core as it loads ----

package.cpath = root .. "/lib/?.so;" .. package.cpath
local ok, core = pcall(require, "pm.core")
if not ok then
  io.stderr:write("boundary: cannot load lib/pm/core.so (make builds it): ", tostring(core), "\n")
  os.exit(1)
end

local exports = {} -- name -> "function" | "data"
for k, v in pairs(core) do exports[k] = type(v) == "function" and "function" or "data" end

local methods = {} -- type -> { name = true }
for k, mt in pairs(debug.getregistry()) do
  local tname = type(k) == "string" and k:match("^pm%.([%w_]+)$")
  if tname and type(mt) == "table" and type(mt.__index) == "table" then
    methods[tname] = {}
    for name, fn in pairs(mt.__index) do
      if type(fn) == "function" and not name:match("^__") then methods[tname][name] = true end
    end
  end
end

for ctor, tname in pairs(CTORS) do
  if exports[ctor] ~= "function" then
    fault("tests/boundary.lua: CTORS names core.%s, which pm.core does not have", ctor)
  end
  if not methods[tname] then
    fault("tests/boundary.lua: CTORS gives core.%s the type %s, which pm.core does not have", ctor, tname)
  end
end
for tname in pairs(methods) do
  local made = false
  for _, t in pairs(CTORS) do made = made or t == tname end
  if not made then
    fault("tests/boundary.lua: no entry of CTORS makes pm.core's handle type %s: add its constructor", tname)
  end
end

-- Data fields: the module sets them only in some builds (core.sanitized:
-- bin/pm-asan) or they are tables (core.signals). A name set with
-- lua_setfield on the module in core.c counts as existing.
local core_c = read("core/core.c") or ""
for name in core_c:gmatch('lua_setfield%(L,%s*%-2,%s*"([%w_]+)"%)') do
  exports[name] = exports[name] or "data"
end

-- ---- the C side: where each export is registered, and its comment ----

local cfiles = ls("core", "%.c$")
local registered = {} -- name -> { {file, cfn}, ... }
local defs = {}       -- cfn -> { file, comment }
for _, file in ipairs(cfiles) do
  local src = read(file)
  local function reg(name, cfn)
    if name:match("^__") then return end
    registered[name] = registered[name] or {}
    table.insert(registered[name], { file = file, cfn = cfn })
  end
  -- (the C functions of the boundary are named l_*)
  for name, cfn in src:gmatch('{%s*"([%w_]+)"%s*,%s*(l_[%w_]+)%s*}') do reg(name, cfn) end
  for cfn, name in src:gmatch('lua_pushcfunction%(L,%s*(l_[%w_]+)%);%s*lua_setfield%(L,%s*%-2,%s*"([%w_]+)"%)') do
    reg(name, cfn)
  end
  -- each definition and the comment that ends right above it, if one does
  for pre, cfn in src:gmatch("()static int (l_[%w_]+)%(lua_State %*L%)%s*{") do
    local before = src:sub(1, pre - 1)
    local open = before:match(".*()/%*")
    local comment = open and before:sub(open + 2):match("^(.-)%*/%s*$")
    defs[cfn] = { file = file, comment = comment }
  end
end

local function check_comment(label, sig_pattern, entries)
  for _, e in ipairs(entries) do
    local d = defs[e.cfn]
    if d and d.comment and d.comment:find(sig_pattern) then return end
  end
  local where = {}
  for _, e in ipairs(entries) do where[#where + 1] = e.file .. ": " .. e.cfn end
  fault("%s has no comment `%s(...) -> ...` right above its C function (%s)", label,
    label, table.concat(where, ", "))
end

for name, kind in pairs(exports) do
  if kind == "function" then
    local entries = registered[name]
    if not entries then
      fault("core.%s: pm.core has it, but no luaL_Reg entry in core/*.c registers it", name)
    else
      check_comment("core." .. name, "core%." .. escape(name) .. "%b()%s*%->", entries)
    end
  end
end
for tname, names in pairs(methods) do
  for name in pairs(names) do
    local entries = registered[name]
    if not entries then
      fault("%s:%s: pm.core has it, but no luaL_Reg entry in core/*.c registers it", tname, name)
    else
      check_comment(tname .. ":" .. name, escape(tname) .. ":" .. escape(name) .. "%b()%s*%->", entries)
    end
  end
end
for name, entries in pairs(registered) do
  local known = exports[name] ~= nil
  for _, names in pairs(methods) do known = known or names[name] end
  if not known then
    fault("%s registers %s (%s), which pm.core, as loaded, does not have", entries[1].file, name, entries[1].cfn)
  end
end

-- ---- the Lua side ----

-- The code without comments and without the contents of strings (each
-- string becomes ""), lines kept.
local function code_of(src)
  local out, i, n = {}, 1, #src
  local function keep_lines(s) return (s:gsub("[^\n]", "")) end
  while i <= n do
    local c = src:sub(i, i)
    if c == "-" and src:sub(i, i + 1) == "--" then
      local eq = src:match("^%[(=*)%[", i + 2)
      local j
      if eq then
        j = select(2, src:find("]" .. eq .. "]", i, true)) or n
      else
        j = (src:find("\n", i, true) or n + 1) - 1
      end
      out[#out + 1] = keep_lines(src:sub(i, j))
      i = j + 1
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n do
        local d = src:sub(j, j)
        if d == "\\" then j = j + 2
        elseif d == c or d == "\n" then break
        else j = j + 1 end
      end
      out[#out + 1] = '""' .. keep_lines(src:sub(i, j))
      i = j + 1
    elseif c == "[" and src:match("^%[=*%[", i) then
      local eq = src:match("^%[(=*)%[", i)
      local j = select(2, src:find("]" .. eq .. "]", i, true)) or n
      out[#out + 1] = '""' .. keep_lines(src:sub(i, j))
      i = j + 1
    else
      local j = (src:find("[%-\"'%[]", i + 1)) or n + 1
      out[#out + 1] = src:sub(i, j - 1)
      i = j
    end
  end
  return table.concat(out)
end

local function line_of(code, pos)
  return select(2, code:sub(1, pos):gsub("\n", "")) + 1
end

-- -> { alias, ... }: the names a file gives pm.core (and the terminal)
local function aliases_of(src)
  local list = {}
  for name in src:gmatch("local%s+([%w_]+)%s*=%s*require%s*%(?%s*[\"']pm%.core[\"']") do
    list[#list + 1] = name
  end
  for name in src:gmatch("local%s+([%w_]+)[%w_%s,]*=%s*require%s*%(?%s*[\"']pm%.term[\"']%s*%)?%s*%.load%s*%(") do
    list[#list + 1] = name
  end
  -- (the web server: require("pm.httplib").load())
  for name in src:gmatch("local%s+([%w_]+)[%w_%s,]*=%s*require%s*%(?%s*[\"']pm%.httplib[\"']%s*%)?%s*%.load%s*%(") do
    list[#list + 1] = name
  end
  return list
end

local used_fn = {}     -- name -> first "file:line" in lua/pm
local used_method = {} -- name -> true (any receiver, lua/pm)
local used_in = {}     -- file -> { name = true }: core.name anywhere

local function scan(file, is_module)
  local src = read(file)
  if not src then return end
  local code = code_of(src)
  local names = {}
  used_in[file] = names
  for _, alias in ipairs(aliases_of(src)) do
    local ref = "%f[%w_]" .. escape(alias)
    for pos, name in code:gmatch("()" .. ref .. "%s*%.%s*([%w_]+)") do
      names[name] = true
      if not exports[name] then
        fault("%s:%d: %s.%s: pm.core has no %s", file, line_of(code, pos), alias, name, name)
      end
      if is_module and not used_fn[name] then used_fn[name] = file .. ":" .. line_of(code, pos) end
    end
    for pos in code:gmatch("()" .. ref .. "%s*%[") do
      fault("%s:%d: %s[...]: an export named at run time cannot be checked; name it (%s.name)",
        file, line_of(code, pos), alias, alias)
    end
    -- handles this file assigns from a constructor, and the methods it calls on them
    -- (statements only, `[local] x = core.timer(` at the start of a line,
    -- not the fields of a table: those follow a "{" or a ",")
    local assigned = {}
    local text = "\n" .. code
    for _, head in ipairs({ "\n[ \t]*local%s+([%w_]+)", "\n[ \t]*([%w_%.]+)" }) do
      for pos, recv, ctor in text:gmatch("()" .. head .. "%s*=%s*" .. escape(alias) .. "%s*%.%s*([%w_]+)%s*%(") do
        if not text:sub(1, pos - 1):match("[{,]%s*$") then assigned[#assigned + 1] = { recv, ctor } end
      end
    end
    for _, a in ipairs(assigned) do
      local recv, ctor = a[1], a[2]
      local tname = CTORS[ctor]
      if tname and methods[tname] then
        for pos, m in code:gmatch("()%f[%w_%.]" .. escape(recv) .. "%s*:%s*([%w_]+)") do
          if not methods[tname][m] then
            fault("%s:%d: %s:%s(): %s is a %s (core.%s), which has no method %s", file,
              line_of(code, pos), recv, m, recv, tname, ctor, m)
          end
        end
      end
    end
  end
  if is_module then
    for name in code:gmatch(":%s*([%w_]+)%s*[%(\"{]") do used_method[name] = true end
  end
end

for _, file in ipairs(ls("lua/pm", "%.lua$")) do scan(file, true) end
for _, dir in ipairs({ "tests", "tests/unit", "tests/integration", "tests/helpers", "tests/fixtures",
  "tests/soak", "tests/fuzz", "bench", "ecosystem" }) do
  for _, file in ipairs(ls(dir, "%.lua$")) do scan(file, false) end
end

for name, kind in pairs(exports) do
  if kind == "function" and not used_fn[name] then
    if KEPT[name] then
      for _, file in ipairs(KEPT[name]) do
        if not (used_in[file] and used_in[file][name]) then
          fault("core.%s is kept for %s, which no longer uses it: remove it from pm.core (and from KEPT)", name, file)
        end
      end
    else
      fault("core.%s is used by no module of lua/pm: remove it from pm.core (or use it)", name)
    end
  elseif KEPT[name] and used_fn[name] then
    fault("core.%s is used by %s: remove it from KEPT in tests/boundary.lua", name, used_fn[name])
  end
end
for name in pairs(KEPT) do
  if not exports[name] then fault("tests/boundary.lua: KEPT names core.%s, which pm.core does not have", name) end
end
for tname, names in pairs(methods) do
  for name in pairs(names) do
    if not used_method[name] then
      fault("%s:%s is used by no module of lua/pm: remove it from pm.core (or use it)", tname, name)
    end
  end
end

if #faults > 0 then
  table.sort(faults)
  for _, f in ipairs(faults) do io.stderr:write("boundary: ", f, "\n") end
  io.stderr:write(("boundary: %d fault(s) at the C/Lua boundary\n"):format(#faults))
  os.exit(1)
end
local nfn, nm = 0, 0
for _, kind in pairs(exports) do if kind == "function" then nfn = nfn + 1 end end
for _, names in pairs(methods) do for _ in pairs(names) do nm = nm + 1 end end
print(("boundary: %d functions and %d handle methods of pm.core: each exists, is used and says its signature")
  :format(nfn, nm))
