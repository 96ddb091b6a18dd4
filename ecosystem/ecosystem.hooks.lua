-- Restart policy as code: `pm start ecosystem/ecosystem.hooks.lua`.
-- `job` exits 3 when it is done: the hook stops it instead of restarting.
-- `flaky` fails with other codes: the hook backs off, and after three
-- failures it restarts `ticker` too and lets the built-in policy decide.
local failures = 0

return {
  hooks = {
    on_start = function(proc)
      pm.log(proc.name .. " is online with pid " .. proc.pid)
    end,
  },
  apps = {
    { name = "job", script = "job.sh",
      on_exit = function(_, exit)
        if exit.code == 3 then return "stop" end
      end },
    { name = "flaky", script = "job.sh", env = { JOB_EXIT = 1, JOB_SECONDS = 1 },
      on_exit = function(proc, exit)
        failures = failures + 1
        if failures >= 3 then
          failures = 0
          pm.restart("ticker")
          return nil
        end
        return { action = "restart", delay = 500 * failures }
      end },
    { name = "ticker", script = "ticker.sh" },
  },
}
