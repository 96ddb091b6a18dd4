std = "luajit"
codes = true
max_line_length = 120
files["tests"] = { std = "+busted" }
files["tests/helpers/output.lua"] = { std = "+busted" }
exclude_files = { "tests/tmp" }
