/*
 * io.c: bytes. Line-framed streams over sockets (the control protocol) and
 * the unix-socket listen/accept/connect with peer credentials.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "core.h"

#define STREAM_MT "pm.stream"
#define READ_CHUNK 65536
/* an idle stream keeps no buffer larger than this (2,000 apps' channels
 * would otherwise hold 64 KB each once they have said anything) */
#define KEEP_BUF 4096

/* ---- line-framed streams ---- */

typedef struct {
	ev_io r, w;
	int fd;
	char *in;
	size_t inlen, incap;
	char *out;
	size_t outlen, outoff, outcap;
	size_t max_line;
	int discarding;  /* inside a line that was too long */
	int chunked;     /* deliver what arrives as it is, no lines */
	int flush_close; /* close once the output is written */
	int throttled;   /* reading stopped: the peer does not read our output */
	size_t max_pending;
	int closed;
	int on_line, on_close, self;
} stream_t;

/* An idle stream keeps no buffer over KEEP_BUF (call when empty). */
static void drop_in(stream_t *s)
{
	if (s->incap > KEEP_BUF) {
		free(s->in);
		s->in = NULL;
		s->incap = 0;
	}
}

static void drop_out(stream_t *s)
{
	if (s->outcap > KEEP_BUF) {
		free(s->out);
		s->out = NULL;
		s->outcap = 0;
	}
}

static void stream_close(lua_State *L, stream_t *s)
{
	if (s->closed)
		return;
	s->closed = 1;
	ev_io_stop(EV_DEFAULT, &s->r);
	ev_io_stop(EV_DEFAULT, &s->w);
	close(s->fd);
	s->fd = -1;
	free(s->in); /* nothing reads or writes a closed stream */
	free(s->out);
	s->in = s->out = NULL;
	s->inlen = s->incap = s->outlen = s->outoff = s->outcap = 0;
	pm_unref(L, &s->on_line);
	pm_unref(L, &s->on_close);
	pm_unref(L, &s->self);
}

static void stream_lost(stream_t *s, const char *why)
{
	lua_State *L = pm_L;
	if (s->closed)
		return;
	PM_STACK_SAVE(L);
	int fn = s->on_close;
	s->on_close = LUA_NOREF;
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->self); /* keep s alive */
	stream_close(L, s);
	if (fn != LUA_NOREF) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, fn);
		luaL_unref(L, LUA_REGISTRYINDEX, fn);
		lua_pushstring(L, why);
		pm_pcall(L, 1, 0);
	}
	lua_pop(L, 1);
	PM_STACK_CHECK(L);
}

/* Calls on_line(line) or on_line(nil, "line too long"). Returns 0 when the
 * stream was closed by the callback. */
static int deliver(stream_t *s, const char *line, size_t len)
{
	lua_State *L = pm_L;
	PM_STACK_SAVE(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->on_line);
	if (line) {
		lua_pushlstring(L, line, len);
		pm_pcall(L, 1, 0);
	} else {
		lua_pushnil(L);
		lua_pushstring(L, "line too long");
		pm_pcall(L, 2, 0);
	}
	PM_STACK_CHECK(L);
	return !s->closed;
}

/* Reads once and delivers the lines: 1 when something came, 0 when
 * nothing waits, -1 when the stream closed. */
static int stream_pull(stream_t *s)
{
	lua_State *L = pm_L;
	if (pm_grow(&s->in, &s->incap, s->inlen + READ_CHUNK) < 0) {
		stream_lost(s, "out of memory");
		return -1;
	}
	ssize_t n = read(s->fd, s->in + s->inlen, READ_CHUNK);
	if (n == 0) {
		stream_lost(s, "eof");
		return -1;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			stream_lost(s, strerror(errno));
			return -1;
		}
		if (s->inlen == 0) /* nothing came: no idle 64 KB */
			drop_in(s);
		return 0;
	}
	size_t scan = s->inlen;
	s->inlen += (size_t)n;
	PM_STACK_SAVE(L);
	if (s->chunked) {
		/* a long reply passed on piece by piece (pm jlist) */
		size_t len = s->inlen;
		s->inlen = 0;
		lua_rawgeti(L, LUA_REGISTRYINDEX, s->self);
		ev_io_stop(EV_DEFAULT, &s->r);
		if (deliver(s, s->in, len) && !s->throttled && !s->flush_close)
			ev_io_start(EV_DEFAULT, &s->r);
		lua_pop(L, 1);
		PM_STACK_CHECK(L);
		return s->closed ? -1 : 1;
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->self); /* keep s alive meanwhile */
	/* A callback may run the loop (a client call inside a bus handler):
	 * this stream is not read again until its lines are delivered. */
	ev_io_stop(EV_DEFAULT, &s->r);
	size_t start = 0;
	for (;;) {
		char *nl = memchr(s->in + scan, '\n', s->inlen - scan);
		if (!nl)
			break;
		size_t end = (size_t)(nl - s->in);
		if (s->discarding)
			s->discarding = 0;
		else if (!deliver(s, s->in + start, end - start))
			goto out;
		start = scan = end + 1;
	}
	if (start > 0) {
		memmove(s->in, s->in + start, s->inlen - start);
		s->inlen -= start;
	}
	if (s->inlen > s->max_line) {
		s->inlen = 0;
		if (!s->discarding) {
			s->discarding = 1;
			if (!deliver(s, NULL, 0))
				goto out;
		}
	}
	if (s->inlen == 0)
		drop_in(s);
	if (!s->closed && !s->throttled && !s->flush_close)
		ev_io_start(EV_DEFAULT, &s->r);
out:
	lua_pop(L, 1);
	PM_STACK_CHECK(L);
	return s->closed ? -1 : 1;
}

static void stream_read(EV_P_ ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	stream_pull((stream_t *)w);
}

static void stream_flush(stream_t *s)
{
	while (s->outoff < s->outlen) {
		ssize_t n = write(s->fd, s->out + s->outoff, s->outlen - s->outoff);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			stream_lost(s, strerror(errno));
			return;
		}
		s->outoff += (size_t)n;
	}
	if (s->throttled && s->outlen - s->outoff <= s->max_pending / 4) {
		/* the peer caught up: read its requests again */
		s->throttled = 0;
		if (!s->closed && !s->flush_close)
			ev_io_start(EV_DEFAULT, &s->r);
	}
	if (s->outoff == s->outlen) {
		s->outoff = s->outlen = 0;
		drop_out(s); /* a big reply is not kept for life */
		ev_io_stop(EV_DEFAULT, &s->w);
		if (s->flush_close)
			stream_lost(s, "closed");
	} else if (!ev_is_active(&s->w)) {
		ev_io_start(EV_DEFAULT, &s->w);
	}
}

static void stream_writable(EV_P_ ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	stream_flush((stream_t *)((char *)w - offsetof(stream_t, w)));
}

/* core.stream(fd, on_line(line | nil, err), on_close(reason) [, max_line
 * [, max_pending]]) -> stream. Takes ownership of fd (made non-blocking).
 * max_pending: when that much output waits for a peer that does not read,
 * the stream stops reading from it until a quarter of it is left. */
static int l_stream(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	luaL_checktype(L, 3, LUA_TFUNCTION);
	size_t max_line = (size_t)luaL_optnumber(L, 4, 1 << 20);
	size_t max_pending = (size_t)luaL_optnumber(L, 5, 0);
	stream_t *s = lua_newuserdata(L, sizeof *s);
	memset(s, 0, sizeof *s);
	s->fd = fd;
	s->max_line = max_line;
	s->max_pending = max_pending;
	s->on_line = s->on_close = s->self = LUA_NOREF;
	luaL_getmetatable(L, STREAM_MT);
	lua_setmetatable(L, -2);
	lua_pushvalue(L, 2);
	s->on_line = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushvalue(L, 3);
	s->on_close = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushvalue(L, -1);
	s->self = luaL_ref(L, LUA_REGISTRYINDEX);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	ev_io_init(&s->r, stream_read, fd, EV_READ);
	ev_io_init(&s->w, stream_writable, fd, EV_WRITE);
	ev_io_start(EV_DEFAULT, &s->r);
	return 1;
}

/* Appends to the output; -1 when out of memory */
static int stream_append(stream_t *s, const char *data, size_t len)
{
	if (pm_grow(&s->out, &s->outcap, s->outlen + len) < 0)
		return -1;
	memcpy(s->out + s->outlen, data, len);
	s->outlen += len;
	return 0;
}

/* After appending: write what the socket takes now, stop reading a peer
 * that does not read us; pushes true, or false once the stream closed */
static int stream_written(lua_State *L, stream_t *s)
{
	if (!ev_is_active(&s->w))
		stream_flush(s);
	if (!s->closed && s->max_pending && !s->throttled && s->outlen - s->outoff > s->max_pending) {
		s->throttled = 1;
		ev_io_stop(EV_DEFAULT, &s->r);
	}
	lua_pushboolean(L, !s->closed);
	return 1;
}

static int stream_refused(lua_State *L)
{
	lua_pushnil(L);
	lua_pushstring(L, "closed");
	return 2;
}

/* stream:write(data) -> true | nil, err. Queues what the fd does not take. */
static int l_stream_write(lua_State *L)
{
	stream_t *s = luaL_checkudata(L, 1, STREAM_MT);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	if (s->closed)
		return stream_refused(L);
	if (stream_append(s, data, len) < 0)
		return luaL_error(L, "out of memory");
	return stream_written(L, s);
}

/* stream:write_pieces(list) -> true | nil, "closed": the strings of list
 * appended in order, then one flush (a reply of 2,000 descriptions is
 * written without a Lua string holding all of it) */
static int l_stream_write_pieces(lua_State *L)
{
	stream_t *s = luaL_checkudata(L, 1, STREAM_MT);
	luaL_checktype(L, 2, LUA_TTABLE);
	if (s->closed)
		return stream_refused(L);
	int n = (int)lua_objlen(L, 2);
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, 2, i);
		size_t len;
		const char *data = lua_tolstring(L, -1, &len);
		if (!data)
			return luaL_error(L, "write_pieces: piece %d is not a string", i);
		if (stream_append(s, data, len) < 0)
			return luaL_error(L, "out of memory");
		lua_pop(L, 1);
	}
	return stream_written(L, s);
}

/* stream:chunked() -> nothing: from now on on_line gets the bytes as they
 * arrive (whatever a partial line held first), not lines */
static int l_stream_chunked(lua_State *L)
{
	stream_t *s = luaL_checkudata(L, 1, STREAM_MT);
	s->chunked = 1;
	s->discarding = 0;
	return 0;
}

/* stream:pending() -> bytes queued and not yet written */
static int l_stream_pending(lua_State *L)
{
	stream_t *s = luaL_checkudata(L, 1, STREAM_MT);
	lua_pushnumber(L, (double)(s->outlen - s->outoff));
	return 1;
}

/* stream:close([after_flush]) -> nothing: closes the fd now, or, with
 * after_flush, once the output queued is written (reading stops at once) */
static int l_stream_close(lua_State *L)
{
	stream_t *s = luaL_checkudata(L, 1, STREAM_MT);
	if (lua_toboolean(L, 2) && !s->closed && s->outlen > s->outoff) {
		s->flush_close = 1;
		ev_io_stop(EV_DEFAULT, &s->r);
		return 0;
	}
	stream_close(L, s);
	return 0;
}

/* stream:closed() -> bool: closed by Lua, by its peer or by an error */
static int l_stream_closed(lua_State *L)
{
	stream_t *s = luaL_checkudata(L, 1, STREAM_MT);
	lua_pushboolean(L, s->closed);
	return 1;
}

/*
 * stream:cut() -> true | false: the peer process is gone and another one
 * takes its end (a crash loop, where the daemon keeps the channel): what it
 * sent is read and delivered now, a last line without newline is dropped,
 * and what it was sent but never read is forgotten. false when the stream
 * is closed or chunked (the caller then opens a new channel).
 */
static int l_stream_cut(lua_State *L)
{
	stream_t *s = luaL_checkudata(L, 1, STREAM_MT);
	if (s->closed || s->chunked)
		goto no;
	/* bounded: a descendant flooding the channel must not hold the daemon */
	int rc = 1;
	for (int i = 0; i < 64 && rc > 0; i++)
		rc = stream_pull(s);
	if (rc != 0 || s->closed)
		goto no;
	s->inlen = 0;
	s->discarding = 0;
	drop_in(s);
	s->outlen = s->outoff = 0;
	drop_out(s);
	ev_io_stop(EV_DEFAULT, &s->w);
	if (s->throttled) {
		s->throttled = 0;
		if (!s->flush_close)
			ev_io_start(EV_DEFAULT, &s->r);
	}
	lua_pushboolean(L, 1);
	return 1;
no:
	lua_pushboolean(L, 0);
	return 1;
}

static int l_stream_gc(lua_State *L)
{
	stream_t *s = luaL_checkudata(L, 1, STREAM_MT);
	stream_close(L, s);
	free(s->in);
	free(s->out);
	s->in = s->out = NULL;
	return 0;
}

/* ---- unix sockets ---- */

static int reserve_fd = -1; /* given up to accept-and-drop under EMFILE */

static int unix_addr(lua_State *L, const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sa->sun_path)
		return luaL_error(L, "socket path too long: %s", path);
	strcpy(sa->sun_path, path);
	return 0;
}

/* core.listen_unix(path [, mode [, blocking]]) -> fd | nil, err. The socket
 * is made mode 0600 unless told; blocking: for apps that accept on it. */
static int l_listen_unix(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	mode_t mode = (mode_t)luaL_optinteger(L, 2, 0600);
	int blocking = lua_toboolean(L, 3);
	struct sockaddr_un sa;
	unix_addr(L, path, &sa);
	int fd = socket(AF_UNIX, SOCK_STREAM | (blocking ? 0 : SOCK_NONBLOCK) | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return pm_fail(L, "socket");
	mode_t old = umask(077);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
	umask(old);
	if (rc < 0 || chmod(path, mode) < 0 || listen(fd, 511) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return pm_fail(L, path);
	}
	if (reserve_fd < 0)
		reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	lua_pushinteger(L, fd);
	return 1;
}

static int tcp_addr(const char *host, const char *port, int passive, struct addrinfo **res)
{
	struct addrinfo hints;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	return getaddrinfo(host && *host ? host : NULL, port, &hints, res);
}

/* core.listen_tcp(host, port [, backlog]) -> fd | nil, err: a blocking
 * listening socket (host numeric: "127.0.0.1", "::1", "" for any) that the
 * daemon holds for apps; the daemon itself never accepts on it. */
static int l_listen_tcp(lua_State *L)
{
	const char *host = luaL_checkstring(L, 1);
	const char *port = luaL_checkstring(L, 2);
	int backlog = (int)luaL_optinteger(L, 3, 511);
	struct addrinfo *ai;
	int rc = tcp_addr(host, port, 1, &ai);
	if (rc != 0) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s:%s: %s", host, port, gai_strerror(rc));
		return 2;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		return pm_fail(L, "socket");
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
		int e = errno;
		close(fd);
		freeaddrinfo(ai);
		errno = e;
		lua_pushnil(L);
		lua_pushfstring(L, "%s port %s: %s", host, port, strerror(e));
		return 2;
	}
	freeaddrinfo(ai);
	lua_pushinteger(L, fd);
	return 1;
}

/* core.connect_tcp(host, port) -> fd | nil, err: non-blocking; the
 * connection completes when the fd is writable (see core.sock_error). */
static int l_connect_tcp(lua_State *L)
{
	const char *host = luaL_checkstring(L, 1);
	const char *port = luaL_checkstring(L, 2);
	struct addrinfo *ai;
	int rc = tcp_addr(host, port, 0, &ai);
	if (rc != 0) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s:%s: %s", host, port, gai_strerror(rc));
		return 2;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		return pm_fail(L, "socket");
	}
	rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	if (rc < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		errno = e;
		return pm_fail(L, "connect");
	}
	lua_pushinteger(L, fd);
	return 1;
}

/* core.sock_error(fd) -> nil (connected) | message */
static int l_sock_error(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1), e = 0;
	socklen_t len = sizeof e;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		e = errno;
	if (e == 0)
		lua_pushnil(L);
	else
		lua_pushstring(L, strerror(e));
	return 1;
}

/* core.dgram_unix(path [, uid, mode]) -> fd | nil, err: a datagram socket
 * that learns each sender's pid (SO_PASSCRED), for sd_notify's
 * NOTIFY_SOCKET. With uid and mode, its file is made with that mode (the
 * socket's own, set before bind) and given to uid (lchown: a link is never
 * followed): only that user (and root) can send to it. */
static int l_dgram_unix(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	lua_Integer uid = luaL_optinteger(L, 2, -1);
	lua_Integer mode = luaL_optinteger(L, 3, -1);
	struct sockaddr_un sa;
	unix_addr(L, path, &sa);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return pm_fail(L, "socket");
	int one = 1, bound = 0;
	unlink(path);
	int ok = setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0 &&
		 (mode < 0 || fchmod(fd, (mode_t)(mode & 0777)) == 0);
	if (ok)
		ok = bound = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	if (ok && uid >= 0)
		ok = lchown(path, (uid_t)uid, (gid_t)-1) == 0;
	if (!ok) {
		int e = errno;
		if (bound)
			unlink(path);
		close(fd);
		errno = e;
		return pm_fail(L, path);
	}
	lua_pushinteger(L, fd);
	return 1;
}

/* core.recv_cred(fd) -> data, pid | nil, err ("again" when none waits): one
 * datagram and its sender's pid (0 when it came without credentials) */
static int l_recv_cred(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	char buf[4096];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(struct ucred))];
	} ctl;
	struct iovec iov = {buf, sizeof buf};
	struct msghdr msg;
	memset(&msg, 0, sizeof msg);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = ctl.b;
	msg.msg_controllen = sizeof ctl.b;
	ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0) {
		lua_pushnil(L);
		lua_pushstring(L, errno == EAGAIN ? "again" : strerror(errno));
		return 2;
	}
	long pid = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
			struct ucred cr;
			memcpy(&cr, CMSG_DATA(c), sizeof cr);
			pid = cr.pid;
		}
	lua_pushlstring(L, buf, (size_t)n);
	lua_pushinteger(L, pid);
	return 2;
}

/* core.accept(fd) -> cfd, uid, pid | nil, err ("again" when none waits).
 * Under EMFILE the pending peer is accepted and dropped so the loop does not
 * spin on a listening socket that stays readable. */
static int l_accept(lua_State *L)
{
	int lfd = (int)luaL_checkinteger(L, 1);
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) {
			lua_pushnil(L);
			lua_pushliteral(L, "again");
			return 2;
		}
		if ((errno == EMFILE || errno == ENFILE) && reserve_fd >= 0) {
			close(reserve_fd);
			int t = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (t >= 0)
				close(t);
			reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			errno = EMFILE;
		}
		return pm_fail(L, "accept");
	}
	struct ucred cred;
	socklen_t len = sizeof cred;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		close(fd);
		return pm_fail(L, "SO_PEERCRED");
	}
	lua_pushinteger(L, fd);
	lua_pushinteger(L, cred.uid);
	lua_pushinteger(L, cred.pid);
	return 3;
}

/* core.connect_unix(path) -> fd | nil, err */
static int l_connect_unix(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct sockaddr_un sa;
	unix_addr(L, path, &sa);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return pm_fail(L, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return pm_fail(L, path);
	}
	lua_pushinteger(L, fd);
	return 1;
}

/* core.socketpair() -> fd1, fd2 | nil, err (a stream pair, both CLOEXEC) */
static int l_socketpair(lua_State *L)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return pm_fail(L, "socketpair");
	lua_pushinteger(L, sv[0]);
	lua_pushinteger(L, sv[1]);
	return 2;
}

/* core.discard(fd) -> bytes: reads and drops what waits on a socket (the
 * messages a dead process never read, from the end the daemon kept) */
static int l_discard(lua_State *L)
{
	int fd = (int)luaL_checkinteger(L, 1);
	char buf[16384];
	double total = 0;
	ssize_t n;
	while ((n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
		total += (double)n;
	lua_pushnumber(L, total);
	return 1;
}

/* core.pipe([size]) -> rfd, wfd | nil, err (CLOEXEC; size: F_SETPIPE_SZ,
 * best effort) */
static int l_pipe(lua_State *L)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return pm_fail(L, "pipe");
	if (lua_isnumber(L, 1))
		fcntl(p[1], F_SETPIPE_SZ, (int)lua_tointeger(L, 1));
	lua_pushinteger(L, p[0]);
	lua_pushinteger(L, p[1]);
	return 2;
}

void pm_open_io(lua_State *L)
{
	static const luaL_Reg stream_m[] = {
		{"write", l_stream_write},
		{"write_pieces", l_stream_write_pieces},
		{"chunked", l_stream_chunked},
		{"pending", l_stream_pending},
		{"close", l_stream_close},
		{"closed", l_stream_closed},
		{"cut", l_stream_cut},
		{NULL, NULL},
	};
	luaL_newmetatable(L, STREAM_MT);
	lua_newtable(L);
	luaL_register(L, NULL, stream_m);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, l_stream_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
	static const luaL_Reg fns[] = {
		{"stream", l_stream},
		{"listen_unix", l_listen_unix},
		{"listen_tcp", l_listen_tcp},
		{"connect_tcp", l_connect_tcp},
		{"sock_error", l_sock_error},
		{"dgram_unix", l_dgram_unix},
		{"recv_cred", l_recv_cred},
		{"accept", l_accept},
		{"connect_unix", l_connect_unix},
		{"socketpair", l_socketpair},
		{"pipe", l_pipe},
		{"discard", l_discard},
		{NULL, NULL},
	};
	luaL_register(L, NULL, fns);
}
