-- The Lua reference (doc/lua.md) read as entries: what the console's
-- help() and `pm help lua` print, and what the reference's coverage test
-- (tests/unit/lua_reference_spec.lua) checks against the loaded modules.
-- One text, no second copy: bin/pm carries doc/lua.md as the module
-- pm.lua_doc (the Makefile makes it, make install installs it); a source
-- tree reads the file beside lua/.
--
-- The format of an entry (doc/lua.md says it too):
--   ## Title {#section}             a section: client, bus, child, hook, load, console, sandbox
--   ### pm.restart(target [, opts] [, cb])
--   - context: client, console
--   - returns: ...
--   - errors: ...
--   text, parameters as "- `name`: ..." lines
local M = {}

M.CONTEXTS = { client = true, hook = true, ["ecosystem load"] = true, child = true, console = true }

local text_cache

-- The reference's text -> text | nil, err
function M.text()
  if text_cache then return text_cache end
  local ok, doc = pcall(require, "pm.lua_doc")
  if ok and type(doc) == "string" then
    text_cache = doc
    return doc
  end
  -- a source tree: doc/lua.md beside lua/ (this file's, or PM_LUA_DIR's)
  local places = {}
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) == "@" then
    places[#places + 1] = src:sub(2):gsub("[^/]*$", "") .. "../../doc/lua.md"
  end
  if os.getenv("PM_LUA_DIR") then places[#places + 1] = os.getenv("PM_LUA_DIR") .. "/../doc/lua.md" end
  if os.getenv("PM_SRC") then places[#places + 1] = os.getenv("PM_SRC") .. "/doc/lua.md" end
  for _, p in ipairs(places) do
    local f = io.open(p)
    if f then
      text_cache = f:read("*a")
      f:close()
      return text_cache
    end
  end
  return nil, "the Lua reference (doc/lua.md) is not installed with this pm"
end

-- The name an entry's heading gives: "pm.restart", "bus:on", "child.send", "help"
local function name_of(sig)
  return (sig:match("^`?([%w_%.:]+)"))
end

--[[ The entries, in the reference's order -> list, sections | nil, err.
An entry: { section, name, sig, context = {list}, context_text, returns,
errors, lines = { its text } }. sections: { tag = { title, text } } (the
text of a section before its first entry, the sandbox's contents). ]]
function M.parse(text)
  if not text then
    local err
    text, err = M.text()
    if not text then return nil, err end
  end
  local entries, sections = {}, {}
  local section, entry
  local in_code = false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^```") then in_code = not in_code end
    local title, tag
    if not in_code then title, tag = line:match("^## (.-)%s*{#([%w_]+)}%s*$") end
    if title then
      section = { tag = tag, title = title, lines = {} }
      sections[tag] = section
      entry = nil
    elseif not in_code and line:match("^#%s") or (not in_code and line:match("^## ")) then
      section, entry = nil, nil
    elseif not in_code and section and line:match("^### ") then
      local sig = line:match("^### (.-)%s*$")
      entry = { section = section.tag, sig = sig, name = name_of(sig), context = {}, lines = { line } }
      entries[#entries + 1] = entry
    elseif entry then
      entry.lines[#entry.lines + 1] = line
      local field, value = line:match("^%- (%a+): (.*)$")
      if field == "context" and not entry.context_text then
        entry.context_text = value
        for c in value:gmatch("[^,]+") do entry.context[#entry.context + 1] = c:match("^%s*(.-)%s*$") end
      elseif field == "returns" and not entry.returns then
        entry.returns = value
      elseif field == "errors" and not entry.errors then
        entry.errors = value
      end
    elseif section then
      section.lines[#section.lines + 1] = line
    end
  end
  for _, e in ipairs(entries) do
    while #e.lines > 1 and e.lines[#e.lines]:match("^%s*$") do e.lines[#e.lines] = nil end
  end
  for _, s in pairs(sections) do s.text = table.concat(s.lines, "\n") end
  return entries, sections
end

-- "client pm.restart": an entry's key, unique in the reference
function M.key(e) return e.section .. " " .. e.name end

-- An entry as help prints it (its markdown, the heading's ### off)
function M.format(e)
  local out = { e.sig .. "    [" .. e.section .. "]" }
  for i = 2, #e.lines do out[#out + 1] = e.lines[i] end
  return table.concat(out, "\n") .. "\n"
end

--[[ The entries a name asks for: "restart", "pm.restart", "bus:on",
"hook pm.restart" (a section first), "child.send" -> list (empty: none) ]]
function M.find(entries, what)
  local section, name = what:match("^(%a+)%s+(.+)$")
  if not section then name = what end
  local found = {}
  for _, e in ipairs(entries) do
    if not section or e.section == section then
      local short = e.name:match("[%.:]([%w_]+)$") or e.name
      if e.name == name or short == name then found[#found + 1] = e end
    end
  end
  return found
end

-- The index: one line an entry, by section -> text
function M.index(entries, sections)
  local out, last = {}, nil
  for _, e in ipairs(entries) do
    if e.section ~= last then
      last = e.section
      out[#out + 1] = ""
      out[#out + 1] = sections[e.section].title:gsub("`", "")
    end
    local sig = e.sig:gsub("`", "")
    out[#out + 1] = ("  %-44s  %s"):format(sig, e.context_text or "")
  end
  return table.concat(out, "\n") .. "\n"
end

-- The bus's class, found where pm.launchBus keeps it (an upvalue of
-- its function, at any depth: the module does not export it) -> table | nil
function M.bus_class(pm)
  local seen = {}
  local function search(fn)
    if seen[fn] then return nil end
    seen[fn] = true
    for i = 1, 255 do
      local name, v = debug.getupvalue(fn, i)
      if not name then break end
      if name == "Bus" and type(v) == "table" then return v end
      if type(v) == "function" then
        local found = search(v)
        if found then return found end
      end
    end
  end
  return search(pm.launchBus)
end

return M
