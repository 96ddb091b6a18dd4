/*
 * io.c: bytes. Line-framed streams over sockets (the control protocol) and
 * the unix-socket listen/accept/connect with peer credentials.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

#include "core.h"

#define STREAM_MT "pm.stream"
#define READ_CHUNK 65536
/* an idle stream keeps no buffer larger than this (2,000 apps' channels
 * would otherwise hold 64 KB each once they have said anything) */
#define KEEP_BUF 4096
/* fds waiting to be passed on one stream (stream:write_fd) */
#define MAX_PASS 8

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
	int paused;      /* reading stopped by Lua (stream:pause) */
	int held;        /* lines read but not delivered yet (paused or throttled) */
	int pulling;     /* inside stream_pull: it starts reading again itself */
	int eof;         /* the peer's input ended (with on_eof: still writable) */
	size_t max_pending;
	int closed;
	int on_line, on_close, on_eof, self;
	/* a list of strings being written (write_pieces) before out's bytes:
	 * its registry ref (LUA_NOREF: none; the list, the caller's own,
	 * holds the strings, so their bytes stay where they are), its length
	 * (pn), the next piece (pi, 1-based) and the bytes of it written
	 * already (poff), and the bytes left in all */
	int pieces, pn, pi;
	size_t poff;
	size_t pleft;
	/* small pieces are copied into a buffer and written from there
	 * (bounce, blen bytes, the next at boff): the kernel's copy of
	 * 200,000 iovecs of ~110 bytes each was a third of a 10,000-app
	 * jlist's CPU */
	char *bounce;
	size_t blen, boff;
	/* fds to pass (stream:write_fd): each goes, SCM_RIGHTS, with the
	 * byte of the output at offset at (the first of its message) */
	struct {
		size_t at;
		int fd;
	} pass[MAX_PASS];
	int npass;
} stream_t;

/* The fds a stream holds to pass on, and drops (closed, or its output
 * forgotten by stream:cut) */
static void drop_passes(stream_t *s)
{
	for (int i = 0; i < s->npass; i++)
		close(s->pass[i].fd);
	s->npass = 0;
}

/* Whether lines may be delivered and the fd read */
static int stream_open(const stream_t *s)
{
	return !s->closed && !s->throttled && !s->paused && !s->flush_close && !s->eof;
}

/* Reading goes on after a pause or a throttle: the lines kept meanwhile
 * are delivered from the loop (never from inside a write). */
static void stream_go_on(stream_t *s)
{
	if (s->pulling || !stream_open(s))
		return;
	ev_io_start(pm_loop, &s->r);
	if (s->held)
		ev_feed_event(pm_loop, &s->r, EV_READ);
}

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

/* Bytes queued and not yet written */
static size_t queued(const stream_t *s)
{
	return s->outlen - s->outoff + s->pleft;
}

static void drop_pieces(lua_State *L, stream_t *s)
{
	pm_unref(L, &s->pieces);
	s->pn = s->pi = 0;
	s->poff = 0;
	s->pleft = 0;
	free(s->bounce);
	s->bounce = NULL;
	s->blen = s->boff = 0;
}

static void stream_close(lua_State *L, stream_t *s)
{
	if (s->closed)
		return;
	s->closed = 1;
	ev_io_stop(pm_loop, &s->r);
	ev_io_stop(pm_loop, &s->w);
	pm_fd_forget(s->fd); /* (an app's channel or stdin: the keeper holds a copy) */
	close(s->fd);
	s->fd = -1;
	drop_passes(s);
	free(s->in); /* nothing reads or writes a closed stream */
	free(s->out);
	s->in = s->out = NULL;
	s->inlen = s->incap = s->outlen = s->outoff = s->outcap = 0;
	pm_unref(L, &s->on_line);
	pm_unref(L, &s->on_close);
	pm_unref(L, &s->on_eof);
	drop_pieces(L, s);
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

/* The end of the peer's input. A last line without newline is delivered
 * first (the peer half-closed after it). With on_eof, the stream stays open
 * for writing and on_eof() says what to do; without, it closes. Returns
 * -1 when the stream closed, 1 otherwise. */
static int stream_eof(stream_t *s)
{
	lua_State *L = pm_L;
	if (!s->chunked && s->inlen > 0 && !s->discarding) {
		size_t len = s->inlen;
		s->inlen = 0;
		lua_rawgeti(L, LUA_REGISTRYINDEX, s->self);
		int open = deliver(s, s->in, len);
		lua_pop(L, 1);
		if (!open)
			return -1;
	}
	s->inlen = 0;
	drop_in(s);
	if (s->on_eof == LUA_NOREF) {
		stream_lost(s, "eof");
		return -1;
	}
	PM_STACK_SAVE(L);
	ev_io_stop(pm_loop, &s->r);
	s->eof = 1; /* never read again */
	int fn = s->on_eof;
	s->on_eof = LUA_NOREF;
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->self);
	lua_rawgeti(L, LUA_REGISTRYINDEX, fn);
	luaL_unref(L, LUA_REGISTRYINDEX, fn);
	pm_pcall(L, 0, 0);
	lua_pop(L, 1);
	PM_STACK_CHECK(L);
	return s->closed ? -1 : 1;
}

/* Reads once and delivers the lines: 1 when something came, 0 when
 * nothing waits, -1 when the stream closed. Lines kept while the stream
 * was paused or throttled (held) are delivered first, without a read. */
static int stream_pull(stream_t *s)
{
	lua_State *L = pm_L;
	size_t scan = 0;
	if (s->held) {
		s->held = 0;
	} else {
		if (pm_grow(&s->in, &s->incap, s->inlen + READ_CHUNK) < 0) {
			stream_lost(s, "out of memory");
			return -1;
		}
		ssize_t n = read(s->fd, s->in + s->inlen, READ_CHUNK);
		if (n == 0)
			return stream_eof(s);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR) {
				stream_lost(s, strerror(errno));
				return -1;
			}
			if (s->inlen == 0) /* nothing came: no idle 64 KB */
				drop_in(s);
			return 0;
		}
		scan = s->inlen;
		s->inlen += (size_t)n;
	}
	PM_STACK_SAVE(L);
	if (s->chunked) {
		/* a long reply passed on piece by piece (pm jlist) */
		size_t len = s->inlen;
		s->inlen = 0;
		lua_rawgeti(L, LUA_REGISTRYINDEX, s->self);
		ev_io_stop(pm_loop, &s->r);
		s->pulling = 1;
		int open = deliver(s, s->in, len);
		s->pulling = 0;
		if (open && stream_open(s))
			ev_io_start(pm_loop, &s->r);
		lua_pop(L, 1);
		PM_STACK_CHECK(L);
		return s->closed ? -1 : 1;
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->self); /* keep s alive meanwhile */
	/* A callback may run the loop (a client call inside a bus handler):
	 * this stream is not read again until its lines are delivered. */
	ev_io_stop(pm_loop, &s->r);
	s->pulling = 1;
	size_t start = 0;
	for (;;) {
		if (!stream_open(s)) {
			/* paused, or the peer reads its replies too slowly: the
			 * lines left wait here, and nothing more is read */
			if (!s->closed)
				s->held = 1;
			break;
		}
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
	if (!s->held && s->inlen > s->max_line) {
		s->inlen = 0;
		if (!s->discarding) {
			s->discarding = 1;
			if (!deliver(s, NULL, 0))
				goto out;
		}
	}
	if (s->inlen == 0) {
		s->held = 0;
		drop_in(s);
	}
	if (stream_open(s))
		ev_io_start(pm_loop, &s->r);
out:
	s->pulling = 0;
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

/* Writes from the output's offset up to end, with fd (SCM_RIGHTS) on the
 * first byte when fd >= 0 */
static ssize_t send_out(stream_t *s, size_t end, int fd)
{
	if (fd < 0)
		return write(s->fd, s->out + s->outoff, end - s->outoff);
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} ctl;
	memset(&ctl, 0, sizeof ctl);
	struct iovec iov = {s->out + s->outoff, end - s->outoff};
	struct msghdr msg;
	memset(&msg, 0, sizeof msg);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = ctl.b;
	msg.msg_controllen = sizeof ctl.b;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof fd);
	return sendmsg(s->fd, &msg, MSG_NOSIGNAL);
}

#define PIECES_SNDBUF (2 << 20)

/* Writes the pieces (write_pieces): 1 when all are written, 0 when the
 * socket takes no more now, -1 when the stream was lost. Runs of small
 * pieces are copied into the bounce buffer and go in one write of up to
 * PIECES_BOUNCE bytes; a large piece goes from where it is. */
#define PIECES_BOUNCE (256 << 10)
#define PIECES_SMALL 4096
static int flush_pieces(stream_t *s)
{
	lua_State *L = pm_L;
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, s->pieces);
	int list = lua_gettop(L);
	int rc = 1;
	for (;;) {
		ssize_t n;
		size_t len = 0;
		if (s->boff < s->blen) {
			n = write(s->fd, s->bounce + s->boff, s->blen - s->boff);
			if (n >= 0) {
				s->boff += (size_t)n;
				s->pleft = s->pleft > (size_t)n ? s->pleft - (size_t)n : 0;
				continue;
			}
		} else {
			if (s->pi > s->pn)
				break;
			lua_rawgeti(L, list, s->pi);
			const char *data = lua_tolstring(L, -1, &len);
			if (!data || len <= s->poff) { /* (empty; checked a string at write_pieces) */
				lua_pop(L, 1);
				s->pi++;
				s->poff = 0;
				continue;
			}
			if (len - s->poff < PIECES_SMALL && (s->bounce || (s->bounce = malloc(PIECES_BOUNCE)))) {
				/* the next run of small pieces, copied (a number is
				 * its text: copied while on the stack) */
				s->blen = s->boff = 0;
				while (len - s->poff < PIECES_SMALL && s->blen + (len - s->poff) <= PIECES_BOUNCE) {
					memcpy(s->bounce + s->blen, data + s->poff, len - s->poff);
					s->blen += len - s->poff;
					lua_pop(L, 1);
					s->pi++;
					s->poff = 0;
					if (s->pi > s->pn)
						break;
					lua_rawgeti(L, list, s->pi);
					data = lua_tolstring(L, -1, &len);
					if (!data) {
						data = "";
						len = 0;
					}
				}
				lua_settop(L, list);
				continue;
			}
			/* a large piece (or no memory for the buffer): from where it is */
			n = write(s->fd, data + s->poff, len - s->poff);
			lua_pop(L, 1);
			if (n >= 0) {
				s->pleft = s->pleft > (size_t)n ? s->pleft - (size_t)n : 0;
				s->poff += (size_t)n;
				if (s->poff >= len) {
					s->pi++;
					s->poff = 0;
				}
				continue;
			}
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			rc = 0;
			break;
		}
		rc = -1;
		break;
	}
	lua_settop(L, top);
	if (rc < 0) {
		stream_lost(s, strerror(errno));
		return -1;
	}
	if (rc == 1)
		drop_pieces(L, s);
	return rc;
}

static void stream_flush(stream_t *s)
{
	if (s->pieces != LUA_NOREF) {
		int r = flush_pieces(s);
		if (r < 0)
			return;
		if (r == 0) {
			if (!ev_is_active(&s->w))
				ev_io_start(pm_loop, &s->w);
			return;
		}
	}
	while (s->outoff < s->outlen) {
		/* an fd to pass goes with its message's first byte: what is
		 * before it goes first, and it goes with the bytes up to the
		 * next one */
		size_t end = s->outlen;
		int fd = -1;
		if (s->npass > 0) {
			if (s->pass[0].at == s->outoff) {
				fd = s->pass[0].fd;
				if (s->npass > 1)
					end = s->pass[1].at;
			} else {
				end = s->pass[0].at;
			}
		}
		ssize_t n = send_out(s, end, fd);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			stream_lost(s, strerror(errno));
			return;
		}
		s->outoff += (size_t)n;
		if (fd >= 0 && n > 0) {
			/* passed: the peer has its own copy */
			close(fd);
			memmove(&s->pass[0], &s->pass[1], (size_t)(s->npass - 1) * sizeof s->pass[0]);
			s->npass--;
		}
	}
	if (s->throttled && queued(s) <= s->max_pending / 4) {
		/* the peer caught up: read its requests again */
		s->throttled = 0;
		stream_go_on(s);
	}
	if (s->outoff == s->outlen) {
		s->outoff = s->outlen = 0;
		drop_out(s); /* a big reply is not kept for life */
		ev_io_stop(pm_loop, &s->w);
		if (s->flush_close)
			stream_lost(s, "closed");
	} else if (!ev_is_active(&s->w)) {
		ev_io_start(pm_loop, &s->w);
	}
}

static void stream_writable(EV_P_ ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	stream_flush((stream_t *)((char *)w - offsetof(stream_t, w)));
}

/* core.stream(fd, on_line(line | nil, err), on_close(reason) [, max_line
 * [, max_pending [, on_eof]]]) -> stream. Takes ownership of fd (made
 * non-blocking). max_pending: when that much output waits for a peer that
 * does not read, the stream stops reading from it, and delivering the
 * lines it has read, until a quarter of it is left. At the end of the
 * peer's input a last line without newline is delivered; then, with
 * on_eof, on_eof() is called and the stream stays open for writing (Lua
 * closes it: stream:close(true)); without, the stream closes. */
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
	s->on_line = s->on_close = s->on_eof = s->self = s->pieces = LUA_NOREF;
	luaL_getmetatable(L, STREAM_MT);
	lua_setmetatable(L, -2);
	lua_pushvalue(L, 2);
	s->on_line = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushvalue(L, 3);
	s->on_close = luaL_ref(L, LUA_REGISTRYINDEX);
	if (lua_isfunction(L, 6)) {
		lua_pushvalue(L, 6);
		s->on_eof = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_pushvalue(L, -1);
	s->self = luaL_ref(L, LUA_REGISTRYINDEX);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	ev_io_init(&s->r, stream_read, fd, EV_READ);
	ev_io_init(&s->w, stream_writable, fd, EV_WRITE);
	ev_io_start(pm_loop, &s->r);
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
	if (!s->closed && s->max_pending && !s->throttled && queued(s) > s->max_pending) {
		s->throttled = 1;
		ev_io_stop(pm_loop, &s->r);
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

/* stream:write_fd(data, fd) -> true | nil, err: data (a message, not
 * empty) is queued as write queues it, and a copy of fd goes with its
 * first byte (SCM_RIGHTS; the stream's fd is a unix socket): the peer
 * receives the fd with the read that holds that byte. fd stays the
 * caller's. nil, "busy" while 8 fds already wait to be passed. */
static int l_stream_write_fd(lua_State *L)
{
	stream_t *s = luaL_checkudata(L, 1, STREAM_MT);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	int fd = (int)luaL_checkinteger(L, 3);
	luaL_argcheck(L, len > 0, 2, "an fd goes with a message, not an empty one");
	if (s->closed)
		return stream_refused(L);
	if (s->npass == MAX_PASS) {
		lua_pushnil(L);
		lua_pushliteral(L, "busy");
		return 2;
	}
	int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (copy < 0)
		return pm_fail(L, "write_fd");
	size_t at = s->outlen;
	if (stream_append(s, data, len) < 0) {
		close(copy);
		return luaL_error(L, "out of memory");
	}
	s->pass[s->npass].at = at;
	s->pass[s->npass].fd = copy;
	s->npass++;
	return stream_written(L, s);
}

/* stream:write_pieces(list [, total]) -> true | nil, "closed": the strings of list
 * queued in order, then one flush (a reply of 2,000 descriptions is
 * written without a Lua string holding all of it). When nothing else
 * waits to be written, the list itself is held until it is written (it
 * must not change meanwhile; total: its bytes, when the caller counted
 * them, else they are counted here): its small strings go through a 256 KB
 * buffer, its large ones from where they are; 10 MB of descriptions are
 * not copied into the output first, and no copy of the list is made. */
static int l_stream_write_pieces(lua_State *L)
{
	stream_t *s = luaL_checkudata(L, 1, STREAM_MT);
	luaL_checktype(L, 2, LUA_TTABLE);
	if (s->closed)
		return stream_refused(L);
	int n = (int)lua_objlen(L, 2);
	if (queued(s) == 0 && s->npass == 0 && s->pieces == LUA_NOREF && n > 0) {
		size_t total = 0;
		if (lua_isnumber(L, 3) && lua_tonumber(L, 3) >= 0) { /* the caller counted them */
			total = (size_t)lua_tonumber(L, 3);
		} else {
			for (int i = 1; i <= n; i++) {
				lua_rawgeti(L, 2, i);
				int t = lua_type(L, -1);
				if (t != LUA_TSTRING && t != LUA_TNUMBER)
					return luaL_error(L, "write_pieces: piece %d is not a string", i);
				size_t len;
				lua_tolstring(L, -1, &len); /* (a number: its text's length) */
				total += len;
				lua_pop(L, 1);
			}
		}
		if (total == 0)
			return stream_written(L, s);
		lua_pushvalue(L, 2);
		s->pieces = luaL_ref(L, LUA_REGISTRYINDEX);
		if (total > PIECES_SNDBUF) {
			/* a long reply goes in fewer turns of the loop (as far as
			 * net.core.wmem_max lets; nothing when the fd is no socket) */
			int sz = PIECES_SNDBUF;
			setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
		}
		s->pn = n;
		s->pi = 1;
		s->poff = 0;
		s->pleft = total;
		return stream_written(L, s);
	}
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

/* Waits until fd is readable (POLLIN) or writable (POLLOUT); 0, or -1 */
static int wait_fd(int fd, short ev)
{
	struct pollfd p = {fd, ev, 0};
	for (;;) {
		int r = poll(&p, 1, -1);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

/* Writes all of data to fd (blocking or not); 0, or -1 with errno */
static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && wait_fd(fd, POLLOUT) == 0)
				continue;
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

#define RELAY_BUF (1 << 18)

/* stream:relay(fd, head) -> true | nil, err [, line]: the next line the
 * peer sends, when it begins with head, is copied to fd as it comes
 * without head and without its last two bytes ("}\n": a JSON-RPC reply
 * whose result is last), never held whole and never made a Lua string
 * (pm jlist: megabytes from the daemon straight to stdout). A line that
 * does not begin with head comes back as the third result (an error
 * reply), with err "other reply"; err is "output closed" when fd's reader
 * went away (EPIPE). Blocks: the loop does not run meanwhile; the stream
 * reads nothing afterwards. */
static int l_stream_relay(lua_State *L)
{
	stream_t *s = luaL_checkudata(L, 1, STREAM_MT);
	int out = (int)luaL_checkinteger(L, 2);
	size_t hlen;
	const char *head = luaL_checklstring(L, 3, &hlen);
	if (s->closed)
		return stream_refused(L);
	ev_io_stop(pm_loop, &s->r);
	s->paused = 1; /* nothing is read by the loop afterwards */
	size_t cap = RELAY_BUF + hlen + s->inlen;
	char *buf = malloc(cap);
	if (!buf)
		return luaL_error(L, "out of memory");
	/* what the stream read already comes first */
	size_t have = s->inlen;
	if (have)
		memcpy(buf, s->in, have);
	s->inlen = 0;
	drop_in(s);
	int in_head = 1;
	const char *err = NULL;
	int err_errno = 0;
	for (;;) {
		if (in_head && have >= hlen) {
			if (memcmp(buf, head, hlen) != 0) {
				/* another reply (an error): its line, up to 1 MB */
				char *nl = memchr(buf, '\n', have);
				if (nl || have >= cap) {
					size_t len = nl ? (size_t)(nl - buf) : have;
					lua_pushnil(L);
					lua_pushliteral(L, "other reply");
					lua_pushlstring(L, buf, len);
					free(buf);
					return 3;
				}
				if (cap < (1 << 20)) {
					char *b = realloc(buf, 1 << 20);
					if (!b) {
						free(buf);
						return luaL_error(L, "out of memory");
					}
					buf = b;
					cap = 1 << 20;
				}
			} else {
				in_head = 0;
				memmove(buf, buf + hlen, have - hlen);
				have -= hlen;
			}
		}
		if (!in_head) {
			char *nl = memchr(buf, '\n', have);
			if (nl) {
				size_t len = (size_t)(nl - buf);
				if (len == 0 || buf[len - 1] != '}') {
					err = "bad reply from the daemon";
					break;
				}
				if (write_all(out, buf, len - 1) < 0) {
					err_errno = errno;
					break;
				}
				break; /* done */
			}
			/* all but the last two bytes (the end may be "}" + "\n") */
			if (have > 2) {
				if (write_all(out, buf, have - 2) < 0) {
					err_errno = errno;
					break;
				}
				memmove(buf, buf + have - 2, 2);
				have = 2;
			}
		}
		if (have >= cap) {
			err = "bad reply from the daemon";
			break;
		}
		ssize_t n = read(s->fd, buf + have, cap - have);
		if (n == 0) {
			err = "the pm daemon closed the connection";
			break;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && wait_fd(s->fd, POLLIN) == 0)
				continue;
			err_errno = errno;
			break;
		}
		have += (size_t)n;
	}
	free(buf);
	if (!err && err_errno == EPIPE) /* the reader of fd went away */
		err = "output closed";
	if (err || err_errno) {
		lua_pushnil(L);
		lua_pushstring(L, err ? err : strerror(err_errno));
		return 2;
	}
	lua_pushboolean(L, 1);
	return 1;
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

/* stream:pause() -> nothing: no more lines are delivered (those read
 * already wait) and the fd is not read until stream:resume() */
static int l_stream_pause(lua_State *L)
{
	stream_t *s = luaL_checkudata(L, 1, STREAM_MT);
	s->paused = 1;
	if (!s->pulling)
		ev_io_stop(pm_loop, &s->r);
	return 0;
}

/* stream:resume() -> nothing: lines are delivered again (from the loop,
 * not from this call), and the fd read */
static int l_stream_resume(lua_State *L)
{
	stream_t *s = luaL_checkudata(L, 1, STREAM_MT);
	if (s->paused) {
		s->paused = 0;
		stream_go_on(s);
	}
	return 0;
}

/* stream:pending() -> bytes queued and not yet written */
static int l_stream_pending(lua_State *L)
{
	stream_t *s = luaL_checkudata(L, 1, STREAM_MT);
	lua_pushnumber(L, (double)queued(s));
	return 1;
}

/* stream:close([after_flush]) -> nothing: closes the fd now, or, with
 * after_flush, once the output queued is written (reading stops at once) */
static int l_stream_close(lua_State *L)
{
	stream_t *s = luaL_checkudata(L, 1, STREAM_MT);
	if (lua_toboolean(L, 2) && !s->closed && queued(s) > 0) {
		s->flush_close = 1;
		ev_io_stop(pm_loop, &s->r);
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
	/* what it was sent is forgotten below: no throttle holds its lines */
	s->throttled = 0;
	/* bounded: a descendant flooding the channel must not hold the daemon */
	int rc = 1;
	for (int i = 0; i < 64 && rc > 0; i++)
		rc = stream_pull(s);
	if (rc != 0 || s->closed)
		goto no;
	s->inlen = 0;
	s->held = 0;
	s->discarding = 0;
	drop_in(s);
	s->outlen = s->outoff = 0;
	drop_passes(s);
	drop_pieces(L, s);
	drop_out(s);
	ev_io_stop(pm_loop, &s->w);
	s->throttled = 0;
	stream_go_on(s);
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

/* 0, or -1 with nil, err pushed: a path too long for a unix socket */
static int unix_addr(lua_State *L, const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sa->sun_path) {
		lua_pushnil(L);
		lua_pushfstring(L, "socket path too long (%d bytes, at most %d): %s",
				(int)strlen(path), (int)sizeof sa->sun_path - 1, path);
		return -1;
	}
	strcpy(sa->sun_path, path);
	return 0;
}

/* "dev:ino" of st: what tells one file from another at the same path */
static void push_file_id(lua_State *L, const struct stat *st)
{
	char id[48];
	snprintf(id, sizeof id, "%llu:%llu", (unsigned long long)st->st_dev, (unsigned long long)st->st_ino);
	lua_pushstring(L, id);
}

/* core.listen_unix(path [, mode [, blocking]]) -> fd, id | nil, err. The
 * socket is made mode 0600 unless told; blocking: for apps that accept on
 * it. id: the socket file's identity (see core.file_id) once bound. */
static int l_listen_unix(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	mode_t mode = (mode_t)luaL_optinteger(L, 2, 0600);
	int blocking = lua_toboolean(L, 3);
	struct sockaddr_un sa;
	if (unix_addr(L, path, &sa) < 0)
		return 2;
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
	struct stat st;
	if (lstat(path, &st) < 0)
		lua_pushnil(L);
	else
		push_file_id(L, &st);
	return 2;
}

/* core.file_id(path | fd) -> id | nil, err: the identity ("dev:ino") of the
 * file at path (not followed: a link is itself) or open as fd. The same
 * path with another id is another file (a socket deleted and made again,
 * a lock file replaced). */
static int l_file_id(lua_State *L)
{
	struct stat st;
	if (lua_type(L, 1) == LUA_TNUMBER) {
		if (fstat((int)lua_tointeger(L, 1), &st) < 0)
			return pm_fail(L, "fstat");
	} else {
		const char *path = luaL_checkstring(L, 1);
		if (lstat(path, &st) < 0)
			return pm_fail(L, path);
	}
	push_file_id(L, &st);
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

/* core.listen_tcp(host, port [, backlog [, dual [, nonblock]]]) -> fd | nil, err: a
 * listening socket (host numeric: "127.0.0.1", "::1", "" for any IPv4
 * address) that the daemon holds for apps; the daemon itself never
 * accepts on it. Blocking, as socket activation hands them, unless
 * nonblock (a socket handed to a running Node process, which takes it as
 * it is). An IPv6 host listens for IPv6 only, or with dual for IPv4 too
 * ("::" with dual: any address of either family, as Node's listen(port)
 * does). */
static int l_listen_tcp(lua_State *L)
{
	const char *host = luaL_checkstring(L, 1);
	const char *port = luaL_checkstring(L, 2);
	int backlog = (int)luaL_optinteger(L, 3, 511);
	int dual = lua_toboolean(L, 4);
	int nonblock = lua_toboolean(L, 5);
	struct addrinfo *ai;
	int rc = tcp_addr(host, port, 1, &ai);
	if (rc != 0) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s:%s: %s", host, port, gai_strerror(rc));
		return 2;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		return pm_fail(L, "socket");
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ai->ai_family == AF_INET6) {
		int only = !dual;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &only, sizeof only);
	}
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
	if (unix_addr(L, path, &sa) < 0)
		return 2;
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

/* core.recv_cred(fd) -> data, pid, uid | nil, err ("again" when none waits):
 * one datagram, its sender's pid (0 when it came without credentials) and
 * uid (nil then) */
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
	long pid = 0, uid = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
			struct ucred cr;
			memcpy(&cr, CMSG_DATA(c), sizeof cr);
			pid = cr.pid;
			uid = (long)cr.uid;
		}
	lua_pushlstring(L, buf, (size_t)n);
	lua_pushinteger(L, pid);
	if (uid < 0)
		lua_pushnil(L);
	else
		lua_pushinteger(L, uid);
	return 3;
}

/* A peer dropped for want of fds hears why first (a JSON-RPC error of id
 * null: the client says it as the reason the connection closed). */
static void say_no_fd(int fd)
{
	struct rlimit rl;
	char line[256];
	int n = snprintf(line, sizeof line,
			 "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32000,\"message\":"
			 "\"the daemon has no fd left: its fd limit (%llu) is reached; raise LimitNOFILE "
			 "(or ulimit -n), or stop apps\"}}\n",
			 getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (unsigned long long)rl.rlim_cur : 0ULL);
	if (n > 0 && n < (int)sizeof line && send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* (a peer that cannot take it hears only the close) */
	}
}

/* core.accept(fd) -> cfd, uid, pid | nil, err ("again" when none waits).
 * Under EMFILE the pending peer is accepted, told why and dropped so the
 * loop does not spin on a listening socket that stays readable. */
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
			if (t >= 0) {
				say_no_fd(t);
				close(t);
			}
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
	if (unix_addr(L, path, &sa) < 0)
		return 2;
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
		{"write_fd", l_stream_write_fd},
		{"chunked", l_stream_chunked},
		{"relay", l_stream_relay},
		{"pending", l_stream_pending},
		{"pause", l_stream_pause},
		{"resume", l_stream_resume},
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
		{"file_id", l_file_id},
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
