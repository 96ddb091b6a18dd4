-- Instances: four tickers, each with its own pm_id, NODE_APP_INSTANCE 0..3
-- and, through increment_var, its own PORT (9000, 9001, ...).
return {
  apps = {
    { name = "tickers", script = "ticker.sh", instances = 4,
      env = { PORT = 9000 }, increment_var = "PORT",
      merge_logs = true, time = true },
  },
}
