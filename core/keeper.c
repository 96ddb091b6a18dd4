/*
 * keeper.c: the daemon's side of the keeper (DESIGN §11), what
 * lua/pm/keeper.lua speaks it with. The keeper itself is a program of its
 * own, bin/pm-keeper (core/pm-keeper.c: its wire, its life); the packet
 * code both use is keeper_wire.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>

#include "core.h"
#include "keeper_wire.h"

/* ---- the daemon's side: what lua/pm/keeper.lua speaks it with ---- */

/* core.keeper_exec(keeper, bin, args, lock_fd, keep_stdio) -> nil, err:
 * this process becomes the keeper (exec of the program keeper, bin/pm-
 * keeper), which starts bin with args as the daemon; returns only when
 * the exec failed */
static int l_keeper_exec(lua_State *L)
{
	const char *keeper = luaL_checkstring(L, 1);
	const char *bin = luaL_checkstring(L, 2);
	luaL_checktype(L, 3, LUA_TTABLE);
	int lock_fd = (int)luaL_checkinteger(L, 4);
	int keep = lua_toboolean(L, 5);
	int n = (int)lua_objlen(L, 3);
	char lockbuf[16];
	snprintf(lockbuf, sizeof lockbuf, "%d", lock_fd);
	const char **argv = lua_newuserdata(L, sizeof(char *) * (size_t)(n + 5));
	argv[0] = keeper;
	argv[1] = lockbuf;
	argv[2] = keep ? "keep" : "null";
	argv[3] = bin;
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, 3, i);
		argv[3 + i] = luaL_checkstring(L, -1);
		lua_pop(L, 1); /* (the table keeps it) */
	}
	argv[4 + n] = NULL;
	fcntl(lock_fd, F_SETFD, 0);
	fflush(stdout);
	fflush(stderr);
	execv(keeper, (char **)argv);
	int e = errno;
	fcntl(lock_fd, F_SETFD, FD_CLOEXEC);
	errno = e;
	return pm_fail(L, keeper);
}

/* core.sendmsg(fd, data [, fds]) -> true | nil, err ("again": the peer's
 * queue is full): one packet of a SOCK_SEQPACKET socket, with fds
 * (SCM_RIGHTS, at most 250) */
static int l_sendmsg(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	int fds[FDS_PER_PKT], nfds = 0;
	if (lua_istable(L, 3)) {
		nfds = (int)lua_objlen(L, 3);
		if (nfds > FDS_PER_PKT)
			return luaL_error(L, "sendmsg: at most %d fds", FDS_PER_PKT);
		for (int i = 0; i < nfds; i++) {
			lua_rawgeti(L, 3, i + 1);
			fds[i] = (int)luaL_checkinteger(L, -1);
			lua_pop(L, 1);
		}
	}
	ssize_t n = pkt_sendmsg(fd, data, len, fds, nfds, MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN) {
			lua_pushnil(L);
			lua_pushliteral(L, "again");
			return 2;
		}
		return pm_fail(L, "sendmsg");
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* core.recvmsg(fd [, wait_ms]) -> data, fds | "" (the peer is gone) | nil,
 * err ("again": nothing now): one packet and the fds that came with it
 * (CLOEXEC); wait_ms: wait that long for one (the daemon's start) */
static int l_recvmsg(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	int wait = (int)luaL_optinteger(L, 2, 0);
	if (wait > 0) {
		struct pollfd p = {fd, POLLIN, 0};
		int r;
		do
			r = poll(&p, 1, wait);
		while (r < 0 && errno == EINTR);
		if (r == 0) {
			lua_pushnil(L);
			lua_pushliteral(L, "timed out");
			return 2;
		}
	}
	char *buf = lua_newuserdata(L, PKT_MAX);
	int fds[FDS_PER_PKT], nfds;
	ssize_t n = pkt_recvmsg(fd, buf, PKT_MAX, fds, &nfds);
	if (n < 0) {
		if (errno == EAGAIN) {
			lua_pushnil(L);
			lua_pushliteral(L, "again");
			return 2;
		}
		return pm_fail(L, "recvmsg");
	}
	lua_pushlstring(L, buf, (size_t)n);
	lua_createtable(L, nfds, 0);
	for (int i = 0; i < nfds; i++) {
		lua_pushinteger(L, fds[i]);
		lua_rawseti(L, -2, i + 1);
	}
	return 2;
}

/* core.cloexec(fd) -> true | nil, err: fd is not given to children */
static int l_cloexec(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return pm_fail(L, "fcntl");
	lua_pushboolean(L, 1);
	return 1;
}

/* core.sockname(fd) -> "tcp", host, port | "unix", path | nil, err: the
 * address a listening socket is bound to (a held socket handed over) */
static int l_sockname(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return pm_fail(L, "getsockname");
	char host[INET6_ADDRSTRLEN];
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
		lua_pushliteral(L, "tcp");
		lua_pushstring(L, host);
		lua_pushinteger(L, ntohs(a->sin_port));
		return 3;
	}
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
		lua_pushliteral(L, "tcp");
		lua_pushstring(L, host);
		lua_pushinteger(L, ntohs(a->sin6_port));
		return 3;
	}
	if (ss.ss_family == AF_UNIX) {
		struct sockaddr_un *a = (struct sockaddr_un *)&ss;
		size_t plen = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
		lua_pushliteral(L, "unix");
		lua_pushlstring(L, a->sun_path, strnlen(a->sun_path, plen));
		return 2;
	}
	lua_pushnil(L);
	lua_pushliteral(L, "not an address pm binds");
	return 2;
}

void pm_open_keeper(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"keeper_exec", l_keeper_exec},
		{"sendmsg", l_sendmsg},
		{"recvmsg", l_recvmsg},
		{"cloexec", l_cloexec},
		{"sockname", l_sockname},
		{NULL, NULL},
	};
	luaL_register(L, NULL, fns);
}
