-- JSON-RPC 2.0 over the control socket, one object per line (DESIGN §6).
-- Each connection is served in the order requests arrive; replies may come
-- later (a stop waits for the process). Nothing a peer sends can take the
-- daemon down: every failure is a JSON-RPC error. Decides how much one
-- connection may hold: its requests are not read while its unread replies
-- are over MAX_PENDING (core.stream's throttle) or while MAX_INFLIGHT of
-- them wait for their reply; a peer that half-closes gets its replies.
local core = require "pm.core"
local util = require "pm.util"
local log = require "pm.log"

local M = {}

M.MAX_LINE = 1024 * 1024
-- replies a client has not read yet: past this, its requests wait (the
-- bus's own bound, bus.MAX_PENDING, drops events before it is reached)
M.MAX_PENDING = 16 * 1024 * 1024
-- requests of one connection whose reply is not written yet: past this,
-- its next requests wait (an answer of each may be as large as a list)
M.MAX_INFLIGHT = 64

M.PARSE_ERROR = -32700
M.INVALID_REQUEST = -32600
M.METHOD_NOT_FOUND = -32601
M.INVALID_PARAMS = -32602
M.INTERNAL_ERROR = -32603
M.SERVER_ERROR = -32000

-- s with every byte that is not part of valid UTF-8 replaced by U+FFFD
-- (what a peer sent comes back in ids and messages: a reply is valid JSON)
local utf8_clean = util.utf8_clean
M.utf8_clean = utf8_clean

-- Replies are written with the result last, so that a client can take the
-- result's JSON text as it is (`pm jlist` prints it without re-encoding).
local function reply(conn, id, err, result)
  if id == nil or conn.stream:closed() then return end -- a notification: no reply
  -- a number id comes back digit for digit (cjson keeps 14 digits)
  local idtext = type(id) == "number" and util.json_number(id)
    or util.encode(type(id) == "string" and utf8_clean(id) or id)
  local head = '{"jsonrpc":"2.0","id":' .. idtext
  local line
  if err then
    if type(err) ~= "table" then err = { code = M.SERVER_ERROR, message = tostring(err) } end
    line = head .. ',"error":' .. util.encode({ code = err.code or M.SERVER_ERROR,
      message = utf8_clean(tostring(err.message)) }) .. "}"
  elseif util.is_raw(result) then
    -- pieces of JSON text (a long list): written as they are, no copy;
    -- their bytes counted here (200,000 pieces: a pass in C cost 5 ms)
    local st, total = conn.stream, 0
    for i = 1, #result do
      local piece = result[i]
      total = total + (type(piece) == "string" and #piece or #tostring(piece))
    end
    st:write(head .. ',"result":')
    st:write_pieces(result, total)
    st:write("}\n")
    return
  else
    if result == nil then result = true end
    local ok, body = pcall(util.encode_text, result)
    if ok then
      line = head .. ',"result":' .. body .. "}"
    else
      line = head .. ',"error":' .. util.encode({ code = M.INTERNAL_ERROR,
        message = "cannot encode the result: " .. tostring(body) }) .. "}"
    end
  end
  conn.stream:write(line .. "\n")
end

local function valid_id(id)
  local t = type(id)
  return id == nil or t == "string" or t == "number" or id == util.null
end

-- requests answered by method, since the daemon started (metrics)
M.requests = {}

local function dispatch(conn, methods, line)
  if line:match("^%s*$") then return end
  local req, derr = util.decode(line)
  if req == nil then
    return reply(conn, util.null, { code = M.PARSE_ERROR, message = "parse error: " .. tostring(derr) })
  end
  if type(req) == "table" and (req[1] ~= nil or line:match("^%s*%[")) then
    return reply(conn, util.null, { code = M.INVALID_REQUEST,
      message = "invalid request: batches (arrays of requests) are not supported: send one object per line" })
  end
  if type(req) ~= "table" then
    return reply(conn, util.null, { code = M.INVALID_REQUEST, message = "invalid request: an object expected" })
  end
  local id = req.id
  if not valid_id(id) then
    return reply(conn, util.null, { code = M.INVALID_REQUEST, message = "invalid request: bad id" })
  end
  if type(req.method) ~= "string" then
    return reply(conn, id == nil and util.null or id,
      { code = M.INVALID_REQUEST, message = "invalid request: method must be a string" })
  end
  local params = req.params
  if params == nil or params == util.null then params = {} end
  if type(params) ~= "table" then
    return reply(conn, id, { code = M.INVALID_PARAMS, message = "params must be an object" })
  end
  local handler = methods[req.method]
  if not handler then
    return reply(conn, id, { code = M.METHOD_NOT_FOUND, message = "unknown method: " .. req.method })
  end
  -- a connection that restricted itself (methods.restrict: pm web's, before
  -- it drops to a user of its own) may call only what its profile allows,
  -- with what the profile lets through of the params
  if conn.allowed then
    local check = conn.allowed[req.method]
    local why = not check and "not allowed on this connection (restricted)" or check(params)
    if why then return reply(conn, id, { code = M.SERVER_ERROR, message = req.method .. ": " .. why }) end
  end
  M.requests[req.method] = (M.requests[req.method] or 0) + 1
  local answered = false
  conn.inflight = conn.inflight + 1
  if conn.inflight == M.MAX_INFLIGHT then conn.stream:pause() end
  local function done(err, result)
    if answered then return end
    answered = true
    reply(conn, id, err, result)
    conn.inflight = conn.inflight - 1
    if conn.inflight == M.MAX_INFLIGHT - 1 then conn.stream:resume() end
    if conn.eof and conn.inflight == 0 then conn.finish() end
    if M.on_reply then M.on_reply() end
  end
  local ok, err = xpcall(function() return handler(params, conn, done) end, debug.traceback)
  if not ok then
    log.error("request %s failed: %s", req.method, err)
    done({ code = M.INTERNAL_ERROR, message = "internal error: " .. tostring(err):match("^[^\n]*") })
  end
end

-- Serves one accepted connection. on_close(conn) is called when it ends.
-- A peer that half-closes is answered every request it sent (a last one
-- without newline too); the connection then closes.
function M.serve(fd, uid, methods, on_close)
  local conn = { uid = uid, inflight = 0 }
  local ended = false
  local function closed()
    if ended then return end
    ended = true
    if on_close then on_close(conn) end
  end
  function conn.finish()
    conn.stream:close(true) -- once the replies are written
    if conn.stream:closed() then closed() end
  end
  conn.stream = core.stream(fd, function(line)
    if line == nil then
      reply(conn, util.null, { code = M.INVALID_REQUEST,
        message = ("request too large (over %d bytes)"):format(M.MAX_LINE) })
      return
    end
    dispatch(conn, methods, line)
  end, closed, M.MAX_LINE, M.MAX_PENDING, function()
    conn.eof = true
    if conn.inflight == 0 then conn.finish() end
  end)
  return conn
end

return M
