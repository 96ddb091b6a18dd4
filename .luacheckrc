std = "luajit"
codes = true
max_line_length = 120
files["tests"] = { std = "+busted" }
files["tests/helpers/output.lua"] = { std = "+busted" }
exclude_files = { "tests/tmp" }
-- ecosystem files: hooks see the daemon-side API as `pm`
files["ecosystem/ecosystem*.lua"] = { read_globals = { "pm" }, unused_args = false }
files["tests/fixtures/*.lua"] = { read_globals = { "pm" }, unused_args = false }
