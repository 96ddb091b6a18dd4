-- Environments: `pm start ecosystem/ecosystem.env.lua --env production`
-- merges env_production over env (PM2's precedence).
return {
  { name = "web-env", script = "web.py",
    env = { PORT = 8100, MODE = "development" },
    env_production = { PORT = 8101, MODE = "production" } },
}
