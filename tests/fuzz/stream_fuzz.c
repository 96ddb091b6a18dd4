/*
 * A libFuzzer harness over the control protocol's line framing: the real
 * core.stream of core/io.c (with the rest of the core and LuaJIT), fed over
 * a socketpair in chunks of fuzzed sizes, checked against a model.
 *
 * Input: byte 0-1 the maximum line length (1..2048), byte 2 the chunking
 * seed, the rest the bytes sent. The stream echoes every line it delivers,
 * and closes itself on the line "QUIT".
 *
 * The model: the complete lines of the input (split on '\n'), in order.
 *   - a line no longer than the maximum is delivered exactly, once;
 *   - a longer one is either delivered whole (it came in one read) or
 *     replaced by exactly one "line too long" (on_line(nil));
 *   - after "QUIT" nothing more is delivered;
 *   - a last line without '\n' (the peer half-closed after it) is
 *     delivered at the end of input when it is no longer than the maximum;
 *     a longer one may give one "line too long";
 *   - at the end of input on_close runs exactly once (unless QUIT closed it);
 *   - what comes back on the other end is a prefix of the delivered lines,
 *     each followed by '\n' (output queued at a close is dropped).
 * Any difference aborts (a crash for libFuzzer), as do ASan/UBSan reports.
 *
 * Build and run: tests/fuzz/run (clang -fsanitize=fuzzer,address,undefined).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <lualib.h>

#include "core.h"

static lua_State *L;
static int harness_ref = LUA_NOREF;

static const char *harness =
	"local core = require 'pm.core'\n"
	"local H = {}\n"
	"function H.open(fd, max_line)\n"
	"  H.events, H.closes, H.quit = {}, 0, false\n"
	"  local s\n"
	"  s = core.stream(fd, function(line)\n"
	"    if line == nil then H.events[#H.events + 1] = false; return end\n"
	"    H.events[#H.events + 1] = line\n"
	"    s:write(line .. '\\n')\n"
	"    if line == 'QUIT' then H.quit = true; s:close() end\n"
	"  end, function() H.closes = H.closes + 1 end, max_line)\n"
	"  H.s = s\n"
	"end\n"
	"function H.done() return H.quit or H.closes > 0 end\n"
	"function H.finish()\n"
	"  if H.s then H.s:close() end\n"
	"  H.s = nil\n"
	"end\n"
	"return H\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	L = luaL_newstate();
	luaL_openlibs(L);
	pm_L = L;
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	lua_pushcfunction(L, luaopen_pm_core);
	lua_setfield(L, -2, "pm.core");
	lua_pop(L, 2);
	if (luaL_loadstring(L, harness) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
		fprintf(stderr, "harness: %s\n", lua_tostring(L, -1));
		abort();
	}
	harness_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

static void call(const char *fn, int nargs, int nres)
{
	lua_rawgeti(L, LUA_REGISTRYINDEX, harness_ref);
	lua_getfield(L, -1, fn);
	lua_remove(L, -2);
	lua_insert(L, -1 - nargs);
	if (lua_pcall(L, nargs, nres, 0) != 0) {
		fprintf(stderr, "harness %s: %s\n", fn, lua_tostring(L, -1));
		abort();
	}
}

static int done(void)
{
	call("done", 0, 1);
	int d = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return d;
}

/* the echo, read from the other end as it comes */
static char *echo;
static size_t echo_len, echo_cap;

static void drain(int fd)
{
	for (;;) {
		if (echo_len + 65536 > echo_cap) {
			echo_cap = (echo_len + 65536) * 2;
			echo = realloc(echo, echo_cap);
			if (!echo)
				abort();
		}
		ssize_t n = read(fd, echo + echo_len, 65536);
		if (n <= 0)
			return;
		echo_len += (size_t)n;
	}
}

/* runs the loop until the stream has read all there is (or is closed) */
static void pump(int rfd, int wfd)
{
	for (int i = 0; i < 1000; i++) {
		drain(wfd);
		if (done())
			return;
		int pending = 0;
		if (ioctl(rfd, FIONREAD, &pending) < 0 || pending == 0)
			return;
		ev_run(EV_DEFAULT, EVRUN_NOWAIT);
	}
}

static void fail(const char *what, size_t line, const uint8_t *p, size_t n)
{
	fprintf(stderr, "stream_fuzz: %s (input line %zu, %zu bytes: \"%.*s\")\n", what, line, n,
		(int)(n > 200 ? 200 : n), (const char *)p);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	size_t max_line = 1 + ((size_t)data[0] | (size_t)data[1] << 8) % 2048;
	uint32_t rnd = 2166136261u ^ data[2];
	const uint8_t *in = data + 3;
	size_t n = size - 3;

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	echo_len = 0;
	lua_pushinteger(L, sv[0]);
	lua_pushinteger(L, (lua_Integer)max_line);
	call("open", 2, 0);

	size_t pos = 0;
	while (pos < n && !done()) {
		rnd = rnd * 1103515245u + 12345u;
		size_t chunk = (rnd >> 16) % 8 == 0 ? 1 + (rnd >> 8) % 70000 : 1 + (rnd >> 16) % 97;
		if (chunk > n - pos)
			chunk = n - pos;
		ssize_t w = write(sv[1], in + pos, chunk);
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			break;
		if (w > 0)
			pos += (size_t)w;
		pump(sv[0], sv[1]);
	}
	shutdown(sv[1], SHUT_WR);
	for (int i = 0; i < 1000 && !done(); i++) {
		ev_run(EV_DEFAULT, EVRUN_NOWAIT);
		drain(sv[1]);
	}
	drain(sv[1]);
	if (!done())
		fail("no on_close at the end of input", 0, in, 0);

	/* the model */
	lua_rawgeti(L, LUA_REGISTRYINDEX, harness_ref);
	lua_getfield(L, -1, "events");
	int events = lua_gettop(L);
	size_t nev = lua_objlen(L, events);
	lua_getfield(L, -2, "closes");
	int closes = (int)lua_tointeger(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, -2, "quit");
	int quit = lua_toboolean(L, -1);
	lua_pop(L, 1);
	size_t ei = 1, start = 0, lineno = 0, eo = 0;
	int stopped = 0;
	for (size_t i = 0; i < n && !stopped; i++) {
		if (in[i] != '\n')
			continue;
		const uint8_t *line = in + start;
		size_t len = i - start;
		start = i + 1;
		lineno++;
		if (ei > nev)
			fail("a line was not delivered", lineno, line, len);
		lua_rawgeti(L, events, (int)ei++);
		if (lua_isboolean(L, -1)) {
			if (len <= max_line)
				fail("a short line reported as too long", lineno, line, len);
		} else {
			size_t got_len;
			const char *got = lua_tolstring(L, -1, &got_len);
			if (got_len != len || memcmp(got, line, len) != 0)
				fail("a line delivered other than it was sent", lineno, line, len);
			/* the echo: this line and '\n', unless the output stopped here */
			if (eo < echo_len) {
				if (echo_len - eo < len + 1) {
					if (memcmp(echo + eo, got, echo_len - eo > len ? len : echo_len - eo) != 0)
						fail("the echo differs", lineno, line, len);
					eo = echo_len;
				} else {
					if (memcmp(echo + eo, got, len) != 0 || echo[eo + len] != '\n')
						fail("the echo differs", lineno, line, len);
					eo += len + 1;
				}
			}
			if (len == 4 && memcmp(line, "QUIT", 4) == 0)
				stopped = 1;
		}
		lua_pop(L, 1);
	}
	size_t tail = stopped ? 0 : n - start;
	if (tail > 0 && tail <= max_line) {
		/* the last line without '\n': delivered at the end of input */
		const uint8_t *line = in + start;
		lineno++;
		if (ei > nev)
			fail("the last, unterminated line was not delivered", lineno, line, tail);
		lua_rawgeti(L, events, (int)ei++);
		size_t got_len;
		const char *got = lua_isboolean(L, -1) ? NULL : lua_tolstring(L, -1, &got_len);
		if (!got || got_len != tail || memcmp(got, line, tail) != 0)
			fail("the last, unterminated line delivered other than it was sent", lineno, line, tail);
		if (eo < echo_len) {
			size_t m = echo_len - eo < tail + 1 ? echo_len - eo : tail + 1;
			if (memcmp(echo + eo, got, m > tail ? tail : m) != 0 || (m > tail && echo[eo + tail] != '\n'))
				fail("the echo differs", lineno, line, tail);
			eo += m;
		}
		lua_pop(L, 1);
		if (tail == 4 && memcmp(line, "QUIT", 4) == 0)
			stopped = 1;
		tail = 0;
	}
	if (stopped != quit)
		fail(quit ? "closed by a QUIT never delivered" : "QUIT delivered, the stream not closed", lineno, in, 0);
	if (!stopped) {
		/* at most one "too long" for the last, unterminated line */
		if (ei <= nev) {
			lua_rawgeti(L, events, (int)ei++);
			if (!lua_isboolean(L, -1) || tail <= max_line)
				fail("an event for the unterminated end of the input", lineno + 1, in + start, tail);
			lua_pop(L, 1);
		}
		if (closes != 1)
			fail("on_close not called exactly once at the end of input", lineno, in, 0);
	}
	if (ei <= nev)
		fail("more events than lines", lineno, in, 0);
	if (eo != echo_len)
		fail("echo bytes beyond the delivered lines", lineno, in, 0);
	lua_pop(L, 2);

	call("finish", 0, 0);
	close(sv[1]);
	lua_gc(L, LUA_GCCOLLECT, 0);
	return 0;
}
