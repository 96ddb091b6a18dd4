-- Loaded by busted before the specs: pm's modules from the source tree and
-- its C core from the build, so specs can `require "pm"` like a user.
local src = os.getenv("PM_SRC") or "."
package.path = src .. "/lua/?.lua;" .. src .. "/lua/?/init.lua;" .. src .. "/tests/helpers/?.lua;" .. package.path
package.cpath = src .. "/lib/?.so;" .. package.cpath
