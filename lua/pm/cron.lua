-- cron_restart expressions: 5 fields (minute hour day month weekday) or 6
-- (seconds first); *, lists, ranges, steps, names of months and days. The
-- next fire time is computed in local time, or in UTC for tests.
local M = {}

local fields = {
  { name = "second", min = 0, max = 59 },
  { name = "minute", min = 0, max = 59 },
  { name = "hour", min = 0, max = 23 },
  { name = "day of month", min = 1, max = 31 },
  { name = "month", min = 1, max = 12, names = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5,
    jun = 6, jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12 } },
  { name = "day of week", min = 0, max = 7, names = { sun = 0, mon = 1, tue = 2, wed = 3,
    thu = 4, fri = 5, sat = 6 } },
}

local function value(s, f)
  local n = tonumber(s)
  if not n and f.names then n = f.names[s:lower()] end
  if not n or n ~= math.floor(n) or n < f.min or n > f.max then
    return nil, ("bad %s '%s' (%d-%d)"):format(f.name, s, f.min, f.max)
  end
  return n
end

local function parse_field(text, f)
  local set, any = {}, text == "*" or text == "?"
  for part in text:gmatch("[^,]+") do
    local range, step = part:match("^([^/]+)/(%d+)$")
    if not range then range = part end
    step = tonumber(step or 1)
    if step < 1 then return nil, "bad step in '" .. part .. "'" end
    local lo, hi
    if range == "*" or range == "?" then
      lo, hi = f.min, f.max
      if f.name == "day of week" then hi = 6 end
    else
      local a, b = range:match("^([^-]+)-([^-]+)$")
      local err
      if a then
        lo, err = value(a, f)
        if not lo then return nil, err end
        hi, err = value(b, f)
        if not hi then return nil, err end
        if hi < lo then return nil, ("bad range '%s'"):format(range) end
      else
        lo, err = value(range, f)
        if not lo then return nil, err end
        hi = part:find("/") and f.max or lo
      end
    end
    for v = lo, hi, step do set[f.name == "day of week" and v % 7 or v] = true end
  end
  if next(set) == nil then return nil, "empty " .. f.name end
  return set, any
end

-- parse(expr) -> spec | nil, err
function M.parse(expr)
  if type(expr) ~= "string" then return nil, "cron_restart: a string expected" end
  local parts = {}
  for w in expr:gmatch("%S+") do parts[#parts + 1] = w end
  if #parts == 5 then table.insert(parts, 1, "0") end
  if #parts ~= 6 then
    return nil, ("cron_restart '%s': 5 or 6 fields expected, got %d"):format(expr, #parts)
  end
  local spec = {}
  for i, f in ipairs(fields) do
    local set, any = parse_field(parts[i], f)
    if not set then return nil, ("cron_restart '%s': %s"):format(expr, any) end
    spec[i] = set
    if i == 4 then spec.dom_any = any end
    if i == 6 then spec.dow_any = any end
  end
  return spec
end

-- Whether spec can ever fire: only days of month that none of its months
-- has (30 February, 31 April) make it never (a weekday always comes back;
-- with both restricted either one matches).
local MAX_DAYS = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
function M.fires(spec)
  if spec.dom_any or not spec.dow_any then return true end
  for m = 1, 12 do
    if spec[5][m] then
      for d = 1, MAX_DAYS[m] do
        if spec[4][d] then return true end
      end
    end
  end
  return false
end

-- days since 1970-01-01 of a civil date (UTC arithmetic)
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function mktime(t, utc)
  if utc then
    -- normalize overflowing fields the way os.time does
    local y, m = t.year, t.month
    y = y + math.floor((m - 1) / 12)
    m = (m - 1) % 12 + 1
    return days_from_civil(y, m, 1) * 86400 + (t.day - 1) * 86400 + t.hour * 3600 + t.min * 60 + t.sec
  end
  return os.time({ year = t.year, month = t.month, day = t.day, hour = t.hour, min = t.min, sec = t.sec })
end

local function day_ok(spec, tm)
  local dom, dow = spec[4][tm.day], spec[6][tm.wday - 1]
  if spec.dom_any and spec.dow_any then return true end
  if spec.dom_any then return dow end
  if spec.dow_any then return dom end
  return dom or dow -- both restricted: either matches (cron's rule)
end

-- next(spec, after) -> the first time (epoch seconds) strictly after `after`
function M.next(spec, after, utc)
  local t = math.floor(after) + 1
  local fmt = utc and "!*t" or "*t"
  for _ = 1, 100000 do
    local tm = os.date(fmt, t)
    if not spec[5][tm.month] then
      t = mktime({ year = tm.year, month = tm.month + 1, day = 1, hour = 0, min = 0, sec = 0 }, utc)
    elseif not day_ok(spec, tm) then
      t = mktime({ year = tm.year, month = tm.month, day = tm.day + 1, hour = 0, min = 0, sec = 0 }, utc)
    elseif not spec[3][tm.hour] then
      t = mktime({ year = tm.year, month = tm.month, day = tm.day, hour = tm.hour + 1, min = 0, sec = 0 }, utc)
    elseif not spec[2][tm.min] then
      t = mktime({ year = tm.year, month = tm.month, day = tm.day, hour = tm.hour, min = tm.min + 1, sec = 0 }, utc)
    elseif not spec[1][tm.sec] then
      t = t + 1
    else
      return t
    end
  end
  return nil
end

return M
