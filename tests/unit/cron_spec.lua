-- cron_restart expressions: the parser and the next fire time, in UTC.
local cron = require "pm.cron"

-- epoch seconds of a UTC civil time, computed here independently of pm.cron
local function utc(y, mo, d, h, mi, s)
  local days = 0
  for year = 1970, y - 1 do
    days = days + ((year % 4 == 0 and (year % 100 ~= 0 or year % 400 == 0)) and 366 or 365)
  end
  local mdays = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
  if y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then mdays[2] = 29 end
  for m = 1, mo - 1 do days = days + mdays[m] end
  days = days + d - 1
  return days * 86400 + (h or 0) * 3600 + (mi or 0) * 60 + (s or 0)
end

local function fmt(t)
  if t == nil then return "nil" end
  return os.date("!%Y-%m-%d %H:%M:%S", t)
end

-- "YYYY-MM-DD HH:MM:SS" of the next fire time strictly after `after`
local function next_of(expr, after)
  local spec, err = cron.parse(expr)
  assert(spec, err)
  return fmt(cron.next(spec, after, true))
end

-- the n fire times that follow `after`
local function series(expr, after, n)
  local spec = assert(cron.parse(expr))
  local out, t = {}, after
  for i = 1, n do
    t = cron.next(spec, t, true)
    out[i] = fmt(t)
    if not t then break end
  end
  return out
end

local function parse_error(expr)
  local spec, err = cron.parse(expr)
  assert.is_nil(spec, "parsed: " .. tostring(expr))
  assert.is_string(err)
  return err
end

describe("cron.parse", function()
  it("has a sane date helper in this spec", function()
    assert.equal("2024-02-29 12:34:56", fmt(utc(2024, 2, 29, 12, 34, 56)))
    assert.equal("2000-03-01 00:00:00", fmt(utc(2000, 3, 1)))
    assert.equal("2100-03-01 00:00:00", fmt(utc(2100, 2, 29))) -- 2100 is not a leap year
  end)

  it("reads 5 fields as minute hour day month weekday, at second 0", function()
    local spec = assert(cron.parse("30 4 1 6 2"))
    assert.same({ [0] = true }, spec[1])
    assert.same({ [30] = true }, spec[2])
    assert.same({ [4] = true }, spec[3])
    assert.same({ [1] = true }, spec[4])
    assert.same({ [6] = true }, spec[5])
    assert.same({ [2] = true }, spec[6])
  end)

  it("reads 6 fields with the seconds first", function()
    local spec = assert(cron.parse("15 30 4 1 6 2"))
    assert.same({ [15] = true }, spec[1])
    assert.same({ [30] = true }, spec[2])
    assert.same({ [2] = true }, spec[6])
  end)

  it("expands *, lists, ranges and steps", function()
    local spec = assert(cron.parse("*/15 1,2,5 8-10 */10 1-12/4 *"))
    assert.same({ [0] = true, [15] = true, [30] = true, [45] = true }, spec[1])
    assert.same({ [1] = true, [2] = true, [5] = true }, spec[2])
    assert.same({ [8] = true, [9] = true, [10] = true }, spec[3])
    assert.same({ [1] = true, [11] = true, [21] = true, [31] = true }, spec[4])
    assert.same({ [1] = true, [5] = true, [9] = true }, spec[5])
    for d = 0, 6 do assert.is_true(spec[6][d]) end
    local n = 0
    for m = 0, 59 do if assert(cron.parse("* * * * *"))[2][m] then n = n + 1 end end
    assert.equal(60, n)
  end)

  it("reads a range with a step, a start with a step, and a list of ranges", function()
    local spec = assert(cron.parse("5-20/5 10/20 0-2,22-23 * * *"))
    assert.same({ [5] = true, [10] = true, [15] = true, [20] = true }, spec[1])
    assert.same({ [10] = true, [30] = true, [50] = true }, spec[2])
    assert.same({ [0] = true, [1] = true, [2] = true, [22] = true, [23] = true }, spec[3])
  end)

  it("knows the names of months and days, in any case", function()
    local spec = assert(cron.parse("0 0 1 jan,Jul,DEC mon-fri"))
    assert.same({ [1] = true, [7] = true, [12] = true }, spec[5])
    assert.same({ [1] = true, [2] = true, [3] = true, [4] = true, [5] = true }, spec[6])
    spec = assert(cron.parse("0 0 * feb-apr SUN,sat"))
    assert.same({ [2] = true, [3] = true, [4] = true }, spec[5])
    assert.same({ [0] = true, [6] = true }, spec[6])
  end)

  it("takes 7 as Sunday too", function()
    local spec = assert(cron.parse("0 0 * * 7"))
    assert.same({ [0] = true }, spec[6])
    spec = assert(cron.parse("0 0 * * 5-7"))
    assert.same({ [5] = true, [6] = true, [0] = true }, spec[6])
  end)

  it("ignores extra blanks around and between the fields", function()
    assert.is_table(cron.parse("  */5   *  * * *  "))
    assert.is_table(cron.parse("0\t0 * * *"))
  end)

  it("rejects a wrong number of fields, saying how many it got", function()
    local err = parse_error("* * * *")
    assert.truthy(err:find("cron_restart", 1, true), err)
    assert.truthy(err:find("'* * * *'", 1, true), err)
    assert.truthy(err:find("5 or 6 fields", 1, true), err)
    assert.truthy(err:find("got 4", 1, true), err)
    assert.truthy(parse_error("* * * * * * *"):find("got 7", 1, true))
    assert.truthy(parse_error(""):find("got 0", 1, true))
  end)

  it("rejects what is not a string", function()
    assert.truthy(parse_error(nil):find("string", 1, true))
    assert.truthy(parse_error(5):find("string", 1, true))
  end)

  local bad = {
    { "60 * * * *", "bad minute '60' (0-59)" },
    { "* 24 * * *", "bad hour '24' (0-23)" },
    { "0 0 0 0 * *", "bad day of month '0' (1-31)" },
    { "* * 32 * *", "bad day of month '32' (1-31)" },
    { "* * * 13 *", "bad month '13' (1-12)" },
    { "* * * 0 *", "bad month '0' (1-12)" },
    { "* * * foo *", "bad month 'foo'" },
    { "* * * * 8", "bad day of week '8'" },
    { "* * * * funday", "bad day of week 'funday'" },
    { "60 * * * * *", "bad second '60' (0-59)" },
    { "* * mon * *", "bad day of month 'mon'" },
    { "1.5 * * * *", "bad minute '1.5'" },
    { "-1 * * * *", "bad minute '-1'" },
    { "*/x * * * *", "bad minute '*/x'" },
    { "5-1 * * * *", "bad range '5-1'" },
    { "fri-mon * * * * *", "bad second 'fri'" },
    { "0 0 * * fri-mon", "bad range 'fri-mon'" },
    { "*/0 * * * *", "bad step" },
    { "1-2-3 * * * *", "bad minute '1-2-3'" },
  }
  for _, case in ipairs(bad) do
    it(("rejects %q with %q"):format(case[1], case[2]), function()
      local err = parse_error(case[1])
      assert.truthy(err:find(case[2], 1, true), err)
      -- the message names the option and quotes the whole expression
      assert.truthy(err:find("cron_restart '" .. case[1] .. "'", 1, true), err)
    end)
  end
end)

describe("cron.next in UTC", function()
  it("is strictly after `after`, never at `after` itself", function()
    assert.equal("2024-05-05 10:00:15", next_of("*/15 * * * * *", utc(2024, 5, 5, 10, 0, 0)))
    assert.equal("2024-05-05 10:00:30", next_of("*/15 * * * * *", utc(2024, 5, 5, 10, 0, 15)))
    assert.equal("2024-05-06 04:30:00", next_of("30 4 * * *", utc(2024, 5, 5, 4, 30, 0)))
    -- Sunday 2024-09-01 00:00:00 itself matches "0 0 * * 0": the next is a week later
    assert.equal("2024-09-08 00:00:00", next_of("0 0 * * 0", utc(2024, 9, 1)))
  end)

  it("takes a fractional `after` (the daemon's clock in ms / 1000)", function()
    assert.equal("2024-05-05 10:00:15", next_of("*/15 * * * * *", utc(2024, 5, 5, 10, 0, 14) + 0.999))
    assert.equal("2024-05-05 10:00:30", next_of("*/15 * * * * *", utc(2024, 5, 5, 10, 0, 15) + 0.001))
  end)

  it("fires every 15 seconds, across minutes and hours", function()
    assert.same({ "2024-05-05 10:59:15", "2024-05-05 10:59:30", "2024-05-05 10:59:45",
      "2024-05-05 11:00:00", "2024-05-05 11:00:15" },
      series("*/15 * * * * *", utc(2024, 5, 5, 10, 59, 0), 5))
    assert.equal("2024-05-05 10:00:15", next_of("*/15 * * * * *", utc(2024, 5, 5, 10, 0, 1)))
  end)

  it("fires 5-field expressions at second 0 of the minute", function()
    assert.equal("2024-05-05 10:01:00", next_of("* * * * *", utc(2024, 5, 5, 10, 0, 0)))
    assert.equal("2024-05-05 10:01:00", next_of("* * * * *", utc(2024, 5, 5, 10, 0, 59)))
    assert.same({ "2024-05-05 12:00:00", "2024-05-05 18:00:00", "2024-05-06 00:00:00" },
      series("0 */6 * * *", utc(2024, 5, 5, 7, 0, 0), 3))
  end)

  it("follows ranges with steps and lists of seconds", function()
    assert.same({ "2024-05-05 10:00:05", "2024-05-05 10:00:10", "2024-05-05 10:00:15",
      "2024-05-05 10:00:20", "2024-05-05 10:01:05" },
      series("5-20/5 * * * * *", utc(2024, 5, 5, 10, 0, 0), 5))
    assert.same({ "2024-05-05 10:00:56", "2024-05-05 10:01:00", "2024-05-05 10:01:07" },
      series("*/7 * * * * *", utc(2024, 5, 5, 10, 0, 49), 3))
  end)

  it("skips the months without a 31st", function()
    assert.same({ "2024-03-31 00:00:00", "2024-05-31 00:00:00", "2024-07-31 00:00:00",
      "2024-08-31 00:00:00", "2024-10-31 00:00:00", "2024-12-31 00:00:00", "2025-01-31 00:00:00" },
      series("0 0 31 * *", utc(2024, 1, 31), 7))
  end)

  it("skips February for the 30th, and goes past month ends by the second", function()
    assert.equal("2023-03-30 00:00:00", next_of("0 0 30 * *", utc(2023, 1, 30)))
    assert.equal("2024-02-01 23:59:59", next_of("59 59 23 * * *", utc(2024, 1, 31, 23, 59, 59)))
    assert.equal("2024-03-01 00:00:00", next_of("0 0 0 1 * *", utc(2024, 2, 1)))
  end)

  it("crosses year ends", function()
    assert.equal("2025-01-01 00:00:00", next_of("*/15 * * * * *", utc(2024, 12, 31, 23, 59, 50)))
    assert.equal("2025-01-01 00:00:00", next_of("0 0 1 1 *", utc(2024, 1, 1)))
    assert.equal("2025-12-31 23:30:00", next_of("30 23 31 dec *", utc(2024, 12, 31, 23, 30, 0)))
    assert.same({ "2024-07-01 00:00:00", "2025-01-01 00:00:00", "2025-07-01 00:00:00" },
      series("0 0 1 jan,jul *", utc(2024, 2, 1), 3))
  end)

  it("finds February 29th only in leap years", function()
    assert.equal("2024-02-29 00:00:00", next_of("0 0 29 2 *", utc(2023, 6, 1)))
    assert.equal("2028-02-29 00:00:00", next_of("0 0 29 2 *", utc(2024, 2, 29)))
    assert.equal("2024-02-29 12:00:00", next_of("0 12 29 feb *", utc(2024, 2, 29, 11, 59, 59)))
    -- 2100 is not a leap year: from 2096 the next is 2104
    assert.equal("2104-02-29 00:00:00", next_of("0 0 29 2 *", utc(2096, 3, 1)))
    -- the day after Feb 28 of a leap year is the 29th
    assert.equal("2024-02-29 00:00:00", next_of("0 0 * 2 *", utc(2024, 2, 28)))
    assert.equal("2023-03-01 00:00:00", next_of("0 0 1 * *", utc(2023, 2, 28)))
  end)

  it("gives nil for a date that never comes", function()
    local spec = assert(cron.parse("0 0 30 2 *"))
    assert.is_nil(cron.next(spec, utc(2024, 1, 1), true))
    spec = assert(cron.parse("0 0 31 4,6,9,11 *"))
    assert.is_nil(cron.next(spec, utc(2024, 1, 1), true))
  end)

  it("says without searching whether an expression can fire at all", function()
    assert.is_false(cron.fires(assert(cron.parse("0 0 30 2 *"))))
    assert.is_false(cron.fires(assert(cron.parse("0 0 31 4,6,9,11 *"))))
    assert.is_true(cron.fires(assert(cron.parse("0 0 29 2 *")))) -- leap years
    assert.is_true(cron.fires(assert(cron.parse("0 0 31 2,3 *"))))
    assert.is_true(cron.fires(assert(cron.parse("0 0 30 2 1")))) -- or any Monday
    assert.is_true(cron.fires(assert(cron.parse("*/5 * * * *"))))
  end)

  it("keeps to the weekdays when only the day of week is restricted", function()
    -- 2024-09-02 is a Monday
    assert.same({ "2024-09-02 00:00:00", "2024-09-09 00:00:00", "2024-09-16 00:00:00" },
      series("0 0 * * 1", utc(2024, 9, 1), 3))
    assert.same({ "2024-09-09 09:00:00", "2024-09-10 09:00:00" },
      series("0 9 * * mon-fri", utc(2024, 9, 6, 9, 0, 0), 2))
    assert.same({ "2024-09-07 00:00:00", "2024-09-08 00:00:00", "2024-09-14 00:00:00" },
      series("0 0 * * 6,7", utc(2024, 9, 6), 3))
  end)

  it("keeps to the days of month when only they are restricted", function()
    assert.same({ "2024-09-13 00:00:00", "2024-10-13 00:00:00" }, series("0 0 13 * *", utc(2024, 9, 1), 2))
  end)

  it("fires on either when both day of month and day of week are restricted (cron's rule)", function()
    -- "the 13th, or any Monday": Mondays 2, 9, 16, 23, 30 Sep; Fri 13 Sep; Sun 13 Oct
    assert.same({ "2024-09-02 00:00:00", "2024-09-09 00:00:00", "2024-09-13 00:00:00",
      "2024-09-16 00:00:00", "2024-09-23 00:00:00", "2024-09-30 00:00:00",
      "2024-10-07 00:00:00", "2024-10-13 00:00:00", "2024-10-14 00:00:00" },
      series("0 0 13 * 1", utc(2024, 9, 1), 9))
    -- with a month restriction too: Feb 29 or a Sunday in February
    assert.same({ "2024-02-25 00:00:00", "2024-02-29 00:00:00", "2025-02-02 00:00:00" },
      series("0 0 29 2 sun", utc(2024, 2, 24), 3))
  end)
end)
