-- Env files (an app's env_file, pm start --env-file, pm.dotenv in an
-- ecosystem file): the dotenv syntax docker compose and systemd's
-- EnvironmentFile= read. One KEY=value a line; blank lines and lines
-- starting with # skipped; an optional `export ` prefix; a value in single
-- quotes is taken as it is, one in double quotes takes \n \r \t \\ \" \$
-- escapes, both may span lines; an unquoted value ends at " #" (a comment)
-- and loses its surrounding blanks. No expansion: $X stays $X. Pure: the
-- text in, a table out (the caller reads the file). An error names
-- path:line and never shows the line (it may hold a secret).
local M = {}

local ESC = { n = "\n", r = "\r", t = "\t", ["\\"] = "\\", ['"'] = '"', ["$"] = "$", ["`"] = "`" }

-- text, path (for errors) -> { KEY = value } | nil, "path:line: message"
function M.parse(text, path)
  path = path or "env file"
  if type(text) ~= "string" then return nil, path .. ": not text" end
  if text:find("%z") then return nil, path .. ": a NUL byte: not a text file" end
  text = text:gsub("\r\n", "\n")
  local vars = {}
  local pos, line, len = 1, 1, #text
  local function fail(at, msg) return nil, ("%s:%d: %s"):format(path, at, msg) end
  while pos <= len do
    local eol = text:find("\n", pos, true) or (len + 1)
    local s = text:sub(pos, eol - 1)
    local start_line = line
    local body = s:match("^%s*(.-)%s*$")
    if body == "" or body:sub(1, 1) == "#" then
      pos, line = eol + 1, line + 1
    else
      body = s:match("^%s*(.*)$")
      local rest = body:match("^export%s+(.*)$")
      if rest and rest:find("=", 1, true) then body = rest end
      local key, after = body:match("^([^=]-)%s*=%s*(.*)$")
      if not key then return fail(start_line, "expected KEY=value") end
      if not key:match("^[%a_][%w_%.%-]*$") then
        return fail(start_line, "not a variable name before '=' (letters, digits, _ . -)")
      end
      local q = after:sub(1, 1)
      if q == "'" or q == '"' then
        -- a quoted value: up to its closing quote, over lines if need be
        local from = pos + (#s - #after) + 1 -- the character after the quote
        local out, i = {}, from
        local closed = false
        while i <= len do
          local c = text:sub(i, i)
          if c == q then closed = true; break end
          if c == "\n" then line = line + 1 end
          if q == '"' and c == "\\" and i < len then
            local n = text:sub(i + 1, i + 1)
            out[#out + 1] = ESC[n] or ("\\" .. n)
            if n == "\n" then line = line + 1 end
            i = i + 2
          else
            out[#out + 1] = c
            i = i + 1
          end
        end
        if not closed then return fail(start_line, "the quote opened here is never closed") end
        local eol2 = text:find("\n", i + 1, true) or (len + 1)
        local tail = text:sub(i + 1, eol2 - 1)
        if not tail:match("^%s*$") and not tail:match("^%s+#") and not tail:match("^#") then
          return fail(line, "text after the closing quote (quote the whole value)")
        end
        vars[key] = table.concat(out)
        pos, line = eol2 + 1, line + 1
      else
        local v = after:gsub("%s+#.*$", ""):match("^(.-)%s*$")
        vars[key] = v
        pos, line = eol + 1, line + 1
      end
    end
  end
  return vars
end

return M
