-- busted output: one line per test as it ends, failures in full at the end,
-- and the closing line "N passed, N failed, N skipped" that CI reads.
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.base")()
  local pretty = require "pl.pretty"

  local function message(f)
    if type(f.message) == "string" then return f.message end
    if f.message == nil then return "nil error" end
    return pretty.write(f.message)
  end

  handler.testEnd = function(element, _, status)
    local mark = ({ success = "ok  ", failure = "FAIL", error = "ERR ", pending = "skip" })[status] or status
    io.write(mark, " ", handler.getFullName(element), "\n")
    io.flush()
    return nil, true
  end

  handler.suiteEnd = function()
    local function dump(list, what)
      for _, f in ipairs(list) do
        local where = f.element.trace and f.element.trace.short_src
          and (f.element.trace.short_src .. ":" .. f.element.trace.currentline) or "?"
        io.write("\n", what, " ", f.name, " (", where, ")\n", message(f), "\n")
        if options.verbose and f.trace and f.trace.traceback then io.write(f.trace.traceback, "\n") end
      end
    end
    dump(handler.failures, "FAILED:")
    dump(handler.errors, "ERROR:")
    io.write(("\n%.1f s\n"):format(handler.getDuration()))
    io.write(("%d passed, %d failed, %d skipped\n"):format(handler.successesCount,
      handler.failuresCount + handler.errorsCount, handler.pendingsCount))
    io.flush()
    return nil, true
  end

  busted.subscribe({ "test", "end" }, handler.testEnd, { predicate = handler.cancelOnPending })
  busted.subscribe({ "suite", "end" }, handler.suiteEnd)
  return handler
end
