-- Configuration as code: `DEPLOY_TAG=v42 pm start ecosystem/ecosystem.shared.lua`.
-- The same module as ecosystem.lua (common.lua), data read beside the file
-- with pm's read-only helpers, and the machine's size.
local common = require "common"
local settings = pm.json("settings.json")     -- a table
local defaults = pm.dotenv("demo.env")         -- { GREETING = ..., ... }

return {
  apps = {
    common.app { name = "queue-worker", script = "worker.lua",
      instances = settings.workers_per_cpu * pm.cpus(),
      env = { QUEUE = settings.queue, HOST = pm.hostname(),
        BANNER = defaults.GREETING .. " (" .. common.release .. ")" } },
  },
}
