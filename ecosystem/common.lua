-- A module the demo's ecosystem files share: `local common = require "common"`
-- loads this file (beside them; "lib.x" would be lib/x.lua), once per
-- evaluation, in the same sandbox as the file that requires it.
local M = {}

-- The caller's environment: `DEPLOY_TAG=v42 pm start ecosystem/ecosystem.lua`
-- (os.getenv sees the shell that ran the command, not the daemon's).
M.release = os.getenv("DEPLOY_TAG") or "dev"

-- An app with the demo's defaults: the variables of demo.env (a path
-- relative to the ecosystem file), RELEASE, and what the app says.
function M.app(app)
  app.env_file = app.env_file or "demo.env"
  app.env = app.env or {}
  app.env.RELEASE = M.release
  return app
end

return M
