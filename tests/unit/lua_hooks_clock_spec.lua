-- Issue 22, item 2: a hook's budget is the CPU time of the hook's own
-- thread (core.thread_cpu, CLOCK_THREAD_CPUTIME_ID), not os.clock()'s
-- process time: other threads' work (the log writer of a flooding app) is
-- not billed to it. Other threads are made here with pthreads through the
-- FFI, each running strlen over 64 MB while the hook waits for them.
local hooks = require "pm.hooks"
local core = require "pm.core"
local ffi = require "ffi"

ffi.cdef [[
typedef unsigned long h22_pthread_t;
int pthread_create(h22_pthread_t *t, const void *attr, void *(*start)(void *), void *arg);
int pthread_join(h22_pthread_t t, void **ret);
void *malloc(size_t n);
void *memset(void *s, int c, size_t n);
void free(void *p);
size_t strlen(const char *s);
]]

local N = 64 * 1024 * 1024

-- the buffer the threads read, made (and its pages touched) beforehand
local buf = ffi.gc(ffi.C.malloc(N + 1), ffi.C.free)
assert(buf ~= nil, "malloc")
ffi.C.memset(buf, 65, N)
ffi.cast("char *", buf)[N] = 0
local start = ffi.cast("void *(*)(void *)", ffi.C.strlen)

-- Work of other threads: at least ms of CPU in all, while this one waits
local function others_work(ms)
  local c0 = os.clock()
  local t = ffi.new("h22_pthread_t[1]")
  while (os.clock() - c0) * 1000 < ms do
    assert(ffi.C.pthread_create(t, nil, start, buf) == 0, "pthread_create")
    assert(ffi.C.pthread_join(t[0], nil) == 0, "pthread_join")
  end
end

local function write(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

describe("a hook's CPU budget", function()
  it("core.thread_cpu counts this thread only", function()
    local c0, t0 = os.clock(), core.thread_cpu()
    others_work(3 * hooks.TIME_LIMIT)
    local process_ms, thread_ms = (os.clock() - c0) * 1000, core.thread_cpu() - t0
    assert.is_true(process_ms >= 3 * hooks.TIME_LIMIT, tostring(process_ms))
    assert.is_true(thread_ms < process_ms / 2, ("thread %g ms, process %g ms"):format(thread_ms, process_ms))
  end)

  it("does not bill other threads' work: a hook waiting while they burn 3x its limit is not cut off", function()
    local path = write([[
return function(wait_for_others)
  wait_for_others()
  local n = 0
  for i = 1, 2000 do n = n + i end
  return n
end
]])
    local chunk = assert(hooks.loadfile(path))
    local ok, fn = hooks.run(chunk)
    assert.is_true(ok, fn)
    local res = { hooks.run(fn, function() others_work(3 * hooks.TIME_LIMIT) end) }
    os.remove(path)
    assert.same({ true, 2001000 }, res)
  end)
end)
