/*
 * input.c: the stdin of an app started with input = true: a pipe whose
 * write end the daemon holds, never blocking it. A line goes whole or not
 * at all: at most PIPE_BUF bytes, which a non-blocking pipe takes in one
 * piece or refuses (full: the app does not read).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

/* core.input_pipe() -> read_fd, write_fd | nil, err: both close-on-exec,
 * the write end non-blocking */
static int l_input_pipe(lua_State *L)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return pm_fail(L, "pipe");
	fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) | O_NONBLOCK);
	lua_pushinteger(L, p[0]);
	lua_pushinteger(L, p[1]);
	return 2;
}

/* core.input_write(fd, data) -> true | nil, err: data (at most PIPE_BUF
 * bytes) written whole, or nothing: err "full" when the pipe has no room,
 * "closed" when nothing reads it any more, "too long" over PIPE_BUF */
static int l_input_write(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	size_t len;
	const char *p = luaL_checklstring(L, 2, &len);
	const char *err = NULL;
	if (len > PIPE_BUF) {
		err = "too long";
	} else {
		ssize_t n;
		do
			n = write(fd, p, len);
		while (n < 0 && errno == EINTR);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			err = "full";
		else if (n < 0 && errno == EPIPE)
			err = "closed";
		else if (n < 0)
			return pm_fail(L, "write");
	}
	if (err) {
		lua_pushnil(L);
		lua_pushstring(L, err);
		return 2;
	}
	lua_pushboolean(L, 1);
	return 1;
}

void pm_open_input(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"input_pipe", l_input_pipe},
		{"input_write", l_input_write},
		{NULL, NULL},
	};
	luaL_register(L, NULL, fns);
}
