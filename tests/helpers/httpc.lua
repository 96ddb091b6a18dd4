-- A small HTTP/1.1 client for the specs of pm web, on pm.core's loop (no
-- process per request: python3 takes seconds to start on a busy machine).
-- request(port, method, path, {headers = {...}, body, raw, want, ms})
-- -> { status (0: none), headers (lower-case names), body, closed }.
-- raw: the request's text as it is; want: read a streamed body (SSE)
-- until it holds this plain text; discard: a body of known length is
-- counted (res.size), not kept (as a scraper reading into a buffer it
-- keeps: no block of megabytes made for each answer).
local core = require "pm.core"
local H = require "pmtest"

local M = {}

local function dechunk(s)
  local out, pos = {}, 1
  while true do
    local size_hex, after = s:match("^(%x+)[^\r\n]*\r\n()", pos)
    if not size_hex then return nil end
    local size = tonumber(size_hex, 16)
    if size == 0 then return table.concat(out) end
    if #s < after + size + 1 then return nil end
    out[#out + 1] = s:sub(after, after + size - 1)
    pos = after + size + 2
  end
end

function M.request(port, method, path, opts)
  opts = opts or {}
  local fd = assert(core.connect_tcp(opts.host or "127.0.0.1", tostring(port)))
  local writable = false
  local w = core.watch_write(fd, function() writable = true end)
  H.pump(function() return writable end, 5000, "a connection to port " .. port)
  w:close()
  local err = core.sock_error(fd)
  if err then
    core.close(fd)
    return { status = 0, headers = {}, body = "", closed = true, error = err }
  end
  local got, closed = {}, false
  local head, len, size, seen = nil, nil, 0, 0
  local conn = core.stream(fd, function(data)
    if not data then return end
    if opts.discard and len then -- (its head read: the body counted, not kept)
      len.have = len.have + #data
      got[#got + 1] = true
      return
    end
    got[#got + 1] = data
  end, function() closed = true end)
  conn:chunked()
  local text = opts.raw
  if not text then
    local lines = { ("%s %s HTTP/1.1"):format(method, path), "Host: 127.0.0.1:" .. port }
    for k, v in pairs(opts.headers or {}) do lines[#lines + 1] = k .. ": " .. v end
    if opts.body then lines[#lines + 1] = "Content-Length: " .. #opts.body end
    lines[#lines + 1] = ""
    lines[#lines + 1] = opts.body or ""
    text = table.concat(lines, "\r\n")
  end
  conn:write(text)
  local res = { status = 0, headers = {}, body = "", closed = false }
  H.run_until(function()
    if #got == seen and not closed then return false end -- (nothing new)
    seen = #got
    if head and len then -- (a known length: counted, not joined, until it is all there)
      for i = size + 1, #got do if got[i] ~= true then len.have = len.have + #got[i] end end
      size = #got
      if len.have < len.need and not closed then return false end
      if opts.discard then -- (only its length: no block of megabytes made for it)
        res.size = len.have - #head - 4
        return true
      end
      -- then joined once, without the head (a body of megabytes is not
      -- copied twice)
      local first = got[1]:sub(#head + 5)
      got[1] = first
      local body = table.concat(got)
      res.body = #body > len.need - #head - 4 and body:sub(1, len.need - #head - 4) or body
      res.size = #res.body
      return #res.body == len.need - #head - 4 or closed
    end
    local all = table.concat(got)
    got, seen, size = { all }, 1, 1
    local rest
    head, rest = all:match("^(.-)\r\n\r\n(.*)$")
    if not head then return closed end
    res.status = tonumber(head:match("^HTTP/1%.%d (%d+)")) or 0
    for k, v in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do res.headers[k:lower()] = v end
    local clen = tonumber(res.headers["content-length"])
    if clen and not opts.want then len = { need = #head + 4 + clen, have = #all } end
    len = clen and not opts.want and len or nil
    if opts.want then
      res.body = rest
      return rest:find(opts.want, 1, true) or closed
    elseif clen then
      if #rest >= clen then res.body, res.size = rest:sub(1, clen), clen; return true end
    elseif (res.headers["transfer-encoding"] or ""):lower() == "chunked" then
      local body = dechunk(rest)
      if body then res.body = body; return true end
    else
      res.body = rest
    end
    return closed
  end, opts.ms or 5000)
  res.closed = closed
  conn:close()
  return res
end

function M.get(port, path, headers, opts)
  opts = opts or {}
  opts.headers = headers
  return M.request(port, "GET", path, opts)
end

function M.post(port, path, body, headers)
  return M.request(port, "POST", path, { headers = headers, body = body })
end

return M
