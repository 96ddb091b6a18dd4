/*
 * http.c: an HTTP server through libmicrohttpd, run by pm's libev loop.
 * MHD works in its "external" mode with epoll: its one epoll fd is watched
 * by an ev_io, MHD_run is called when it is readable and when the timeout
 * MHD_get_timeout gives expires. A request, once its body is read, goes to
 * Lua (protected) as (id, method, url, headers, body, peer, args); Lua
 * answers it then or later with server:respond, or opens a chunked stream
 * (server:stream, then server:send: Server-Sent Events, until the client
 * leaves or the server closes).
 * A connection waiting for its answer, or a stream waiting for data, is
 * suspended (MHD_suspend_connection) and resumed when Lua gives it.
 * The limits are MHD's: connections in all and per IP, the memory of one
 * connection (so the size of a request's head), the idle timeout; the body
 * is bounded here. bin/pm loads this file as lib/pm/http.so (the module
 * pm.http, for the web process only: every other exec of pm stays without
 * libmicrohttpd); lib/pm/core.so has it in pm.core.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <microhttpd.h>

#include "core.h"

#define HTTP_MT "pm.http"

typedef struct req_s req_t;

/* A chunked response's bytes not yet taken by MHD. Owned by the response
 * (freed by MHD's free callback); r is NULL once the request is over. */
typedef struct {
	char *buf;
	size_t len, off, cap;
	int end;       /* no more data: the last chunk once buf is drained */
	int suspended; /* the connection waits for data */
	req_t *r;
} stream_t;

typedef struct server_s server_t;

struct req_s {
	server_t *srv;
	struct MHD_Connection *conn;
	double id;
	char *body;
	size_t len, cap;
	int too_big;
	int state;     /* R_READ, R_WAIT, R_READY (resp set), R_QUEUED */
	int suspended; /* waiting for Lua's answer */
	struct MHD_Response *resp;
	unsigned status;
	stream_t *stream;
	req_t *prev, *next;
};

enum { R_READ, R_WAIT, R_READY, R_QUEUED };

struct server_s {
	struct MHD_Daemon *d;
	ev_io io;
	ev_timer timer;
	int on_request, on_close, self;
	size_t max_body;
	double next_id;
	int in_run;
	int closing;
	req_t *reqs;
};

static void arm(server_t *s);

static req_t *find(server_t *s, double id)
{
	for (req_t *r = s->reqs; r; r = r->next)
		if (r->id == id)
			return r;
	return NULL;
}

static enum MHD_Result header_cb(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	lua_State *L = cls;
	char name[128];
	size_t n = strlen(key);
	if (n >= sizeof name || !value)
		return MHD_YES;
	for (size_t i = 0; i <= n; i++)
		name[i] = (char)tolower((unsigned char)key[i]);
	lua_pushstring(L, value);   /* t value */
	lua_setfield(L, -2, name);  /* t */
	return MHD_YES;
}

static enum MHD_Result arg_cb(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	lua_State *L = cls;
	lua_pushstring(L, value ? value : ""); /* t value */
	lua_setfield(L, -2, key);              /* t */
	return MHD_YES;
}

static void push_peer(lua_State *L, struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	char ip[INET6_ADDRSTRLEN] = "";
	if (ci && ci->client_addr) {
		const struct sockaddr *sa = ci->client_addr;
		if (sa->sa_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
		else if (sa->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
	}
	lua_pushstring(L, ip);
}

static enum MHD_Result queue_plain(struct MHD_Connection *c, unsigned status, const char *text)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), (void *)text,
								     MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
	enum MHD_Result rc = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				 const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	(void)version;
	server_t *s = cls;
	req_t *r = *con_cls;
	if (!r) {
		r = calloc(1, sizeof *r);
		if (!r)
			return MHD_NO;
		r->srv = s;
		r->conn = c;
		r->id = ++s->next_id;
		r->next = s->reqs;
		if (s->reqs)
			s->reqs->prev = r;
		s->reqs = r;
		*con_cls = r;
		return MHD_YES;
	}
	if (r->state == R_READ) {
		if (*upload_size) {
			if (!r->too_big) {
				if (r->len + *upload_size > s->max_body ||
				    pm_grow(&r->body, &r->cap, r->len + *upload_size + 1) < 0) {
					r->too_big = 1;
				} else {
					memcpy(r->body + r->len, upload, *upload_size);
					r->len += *upload_size;
				}
			}
			*upload_size = 0;
			return MHD_YES;
		}
		if (r->too_big) {
			r->state = R_QUEUED;
			return queue_plain(c, 413, "request body too large\n");
		}
		if (s->closing)
			return MHD_NO;
		r->state = R_WAIT;
		lua_State *L = pm_L;
		PM_STACK_SAVE(L);
		lua_rawgeti(L, LUA_REGISTRYINDEX, s->on_request); /* fn */
		lua_pushnumber(L, r->id);
		lua_pushstring(L, method);
		lua_pushstring(L, url);
		lua_newtable(L);
		MHD_get_connection_values(c, MHD_HEADER_KIND, header_cb, L);
		lua_pushlstring(L, r->body ? r->body : "", r->len);
		push_peer(L, c);
		lua_newtable(L);
		MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, arg_cb, L);
		pm_pcall(L, 7, 0);
		PM_STACK_CHECK(L);
		free(r->body);
		r->body = NULL;
		r->len = r->cap = 0;
	}
	if (r->state == R_READY) {
		r->state = R_QUEUED;
		enum MHD_Result rc = MHD_queue_response(c, r->status, r->resp);
		MHD_destroy_response(r->resp);
		r->resp = NULL;
		return rc;
	}
	if (r->state == R_WAIT && !r->suspended) {
		MHD_suspend_connection(c);
		r->suspended = 1;
	}
	return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void)c;
	(void)toe;
	server_t *s = cls;
	req_t *r = *con_cls;
	if (!r)
		return;
	*con_cls = NULL;
	if (r->prev)
		r->prev->next = r->next;
	else
		s->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	if (r->stream)
		r->stream->r = NULL;
	if (r->resp)
		MHD_destroy_response(r->resp);
	free(r->body);
	if (r->state != R_READ && s->on_close != LUA_NOREF && !s->closing) {
		lua_State *L = pm_L;
		PM_STACK_SAVE(L);
		lua_rawgeti(L, LUA_REGISTRYINDEX, s->on_close); /* fn */
		lua_pushnumber(L, r->id);
		pm_pcall(L, 1, 0);
		PM_STACK_CHECK(L);
	}
	free(r);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	stream_t *st = cls;
	if (st->off < st->len) {
		size_t n = st->len - st->off;
		if (n > max)
			n = max;
		memcpy(buf, st->buf + st->off, n);
		st->off += n;
		if (st->off == st->len)
			st->off = st->len = 0;
		return (ssize_t)n;
	}
	if (st->end || !st->r)
		return MHD_CONTENT_READER_END_OF_STREAM;
	/* nothing yet: wait, suspended, for server:send */
	MHD_suspend_connection(st->r->conn);
	st->suspended = 1;
	return 0;
}

static void stream_free(void *cls)
{
	stream_t *st = cls;
	if (st->r)
		st->r->stream = NULL;
	free(st->buf);
	free(st);
}

static void run(server_t *s)
{
	if (!s->d || s->in_run)
		return;
	s->in_run = 1;
	MHD_run(s->d);
	s->in_run = 0;
	arm(s);
}

static void on_io(EV_P_ ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	run((server_t *)((char *)w - offsetof(server_t, io)));
}

static void on_timer(EV_P_ ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	run((server_t *)((char *)w - offsetof(server_t, timer)));
}

/* The next MHD_run when MHD asks for one (a timeout), or at once (a resume). */
static void arm(server_t *s)
{
	if (!s->d)
		return;
	MHD_UNSIGNED_LONG_LONG ms = 0;
	ev_timer_stop(pm_loop, &s->timer);
	if (MHD_get_timeout(s->d, &ms) == MHD_YES) {
		ev_timer_set(&s->timer, (double)ms / 1000.0, 0.);
		ev_timer_start(pm_loop, &s->timer);
	}
}

static void soon(server_t *s)
{
	if (!s->in_run) {
		ev_timer_stop(pm_loop, &s->timer);
		ev_timer_set(&s->timer, 0., 0.);
		ev_timer_start(pm_loop, &s->timer);
	}
}

static server_t *check_server(lua_State *L)
{
	server_t *s = luaL_checkudata(L, 1, HTTP_MT);
	if (!s->d)
		luaL_error(L, "http server closed");
	return s;
}

/* headers at idx: { name = value } onto resp; 0 | -1 (a bad header) */
static int add_headers(lua_State *L, int idx, struct MHD_Response *resp)
{
	if (lua_isnoneornil(L, idx))
		return 0;
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, idx)) { /* key value */
		/* (a key that is not a string is refused: lua_tostring would
		 * change it in place under lua_next) */
		const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		if (!k || !v || strpbrk(k, "\r\n:") || strpbrk(v, "\r\n") ||
		    MHD_add_response_header(resp, k, v) != MHD_YES) {
			lua_pop(L, 2);
			return -1;
		}
		lua_pop(L, 1);
	}
	return 0;
}

/* http:respond(id, status, headers, body) -> true | nil, err ("gone":
 * the connection closed or was answered); body: a string, or a list of
 * strings sent as one (a long answer made in pieces: no Lua string of
 * megabytes) */
static int l_http_respond(lua_State *L)
{
	server_t *s = check_server(L);
	req_t *r = find(s, luaL_checknumber(L, 2));
	unsigned status = (unsigned)luaL_checkinteger(L, 3);
	size_t len = 0;
	const char *body = NULL;
	int pieces = lua_type(L, 5) == LUA_TTABLE ? (int)lua_objlen(L, 5) : -1;
	if (pieces < 0)
		body = luaL_optlstring(L, 5, "", &len);
	for (int i = 1; i <= pieces; i++) {
		lua_rawgeti(L, 5, i);
		if (lua_type(L, -1) != LUA_TSTRING)
			return luaL_error(L, "http: body piece %d is not a string", i);
		len += lua_objlen(L, -1);
		lua_pop(L, 1);
	}
	if (!r || r->state != R_WAIT || r->resp) {
		lua_pushnil(L);
		lua_pushliteral(L, "gone");
		return 2;
	}
	struct MHD_Response *resp;
	if (pieces < 0) {
		resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	} else {
		char *joined = malloc(len ? len : 1);
		if (!joined)
			return luaL_error(L, "http: out of memory");
		size_t at = 0;
		for (int i = 1; i <= pieces; i++) {
			size_t n;
			lua_rawgeti(L, 5, i);
			const char *p = lua_tolstring(L, -1, &n);
			memcpy(joined + at, p, n);
			at += n;
			lua_pop(L, 1);
		}
		resp = MHD_create_response_from_buffer(len, joined, MHD_RESPMEM_MUST_FREE);
		if (!resp)
			free(joined);
	}
	if (!resp)
		return luaL_error(L, "http: out of memory");
	if (add_headers(L, 4, resp) < 0) {
		MHD_destroy_response(resp);
		return luaL_error(L, "http: a bad response header");
	}
	r->resp = resp;
	r->status = status;
	r->state = R_READY;
	if (r->suspended) {
		r->suspended = 0;
		MHD_resume_connection(r->conn);
		soon(s);
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* http:stream(id, status, headers) -> true | nil, err: a chunked answer
 * whose body server:send gives, piece by piece, until the client leaves */
static int l_http_stream(lua_State *L)
{
	server_t *s = check_server(L);
	req_t *r = find(s, luaL_checknumber(L, 2));
	unsigned status = (unsigned)luaL_checkinteger(L, 3);
	if (!r || r->state != R_WAIT || r->resp) {
		lua_pushnil(L);
		lua_pushliteral(L, "gone");
		return 2;
	}
	stream_t *st = calloc(1, sizeof *st);
	if (!st)
		return luaL_error(L, "http: out of memory");
	struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st,
								      stream_free);
	if (!resp) {
		free(st);
		return luaL_error(L, "http: out of memory");
	}
	st->r = r;
	r->stream = st;
	if (add_headers(L, 4, resp) < 0) {
		MHD_destroy_response(resp); /* (frees st) */
		return luaL_error(L, "http: a bad response header");
	}
	r->resp = resp;
	r->status = status;
	r->state = R_READY;
	if (r->suspended) {
		r->suspended = 0;
		MHD_resume_connection(r->conn);
		soon(s);
	}
	lua_pushboolean(L, 1);
	return 1;
}

static void stream_wake(server_t *s, stream_t *st)
{
	if (st->suspended && st->r) {
		st->suspended = 0;
		MHD_resume_connection(st->r->conn);
		soon(s);
	}
}

/* http:send(id, data) -> bytes pending | nil, err ("gone": the client
 * left; "full": over max_pending bytes wait unsent, nothing added) */
static int l_http_send(lua_State *L)
{
	server_t *s = check_server(L);
	req_t *r = find(s, luaL_checknumber(L, 2));
	size_t len;
	const char *data = luaL_checklstring(L, 3, &len);
	size_t max_pending = (size_t)luaL_optnumber(L, 4, 1 << 20);
	stream_t *st = r ? r->stream : NULL;
	if (!st || st->end) {
		lua_pushnil(L);
		lua_pushliteral(L, "gone");
		return 2;
	}
	if (st->len - st->off + len > max_pending) {
		lua_pushnil(L);
		lua_pushliteral(L, "full");
		return 2;
	}
	if (pm_grow(&st->buf, &st->cap, st->len + len) < 0)
		return luaL_error(L, "http: out of memory");
	memcpy(st->buf + st->len, data, len);
	st->len += len;
	stream_wake(s, st);
	lua_pushnumber(L, (double)(st->len - st->off));
	return 1;
}

/* http:port() -> the port it listens on */
static int l_http_port(lua_State *L)
{
	server_t *s = check_server(L);
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
	lua_pushinteger(L, di ? di->port : 0);
	return 1;
}

static void server_stop(lua_State *L, server_t *s)
{
	if (!s->d)
		return;
	s->closing = 1;
	for (req_t *r = s->reqs; r; r = r->next) {
		if (r->suspended) {
			r->suspended = 0;
			MHD_resume_connection(r->conn);
		}
		if (r->stream && r->stream->suspended) {
			r->stream->suspended = 0;
			MHD_resume_connection(r->conn);
		}
	}
	ev_io_stop(pm_loop, &s->io);
	ev_timer_stop(pm_loop, &s->timer);
	MHD_stop_daemon(s->d);
	s->d = NULL;
	pm_unref(L, &s->on_request);
	pm_unref(L, &s->on_close);
	pm_unref(L, &s->self);
}

/* http:close() -> nothing: every connection closed, the port released */
static int l_http_close(lua_State *L)
{
	server_t *s = luaL_checkudata(L, 1, HTTP_MT);
	if (s->in_run)
		return luaL_error(L, "http: server:close() from inside a request: close it from a timer");
	server_stop(L, s);
	return 0;
}

static int l_http_gc(lua_State *L)
{
	server_t *s = luaL_checkudata(L, 1, HTTP_MT);
	server_stop(L, s);
	return 0;
}

static unsigned opt_uint(lua_State *L, int idx, const char *name, unsigned dflt)
{
	lua_getfield(L, idx, name);
	unsigned v = lua_isnumber(L, -1) ? (unsigned)lua_tonumber(L, -1) : dflt;
	lua_pop(L, 1);
	return v;
}

/* core.http_server(opts, on_request, on_close) -> server | nil, err.
 * opts: host (numeric, default "127.0.0.1"), port (0: any), connections
 * (all, default 64), per_ip (default 16), timeout (idle seconds, default
 * 10), memory (bytes a connection may use, so the largest request head,
 * default 32768), max_body (default 65536). on_request(id, method, url,
 * headers (names in lower case), body, peer ip, query args) answers with
 * server:respond or server:stream, then or later; on_close(id): a request
 * Lua had is over (answered and sent, or its client left). */
static int l_http_server(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_getfield(L, 1, "host");
	const char *host = luaL_optstring(L, -1, "127.0.0.1");
	lua_pop(L, 1); /* (the string stays in opts) */
	unsigned port = opt_uint(L, 1, "port", 0);
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
				  .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai = NULL;
	char portstr[16];
	snprintf(portstr, sizeof portstr, "%u", port);
	if (port > 65535 || getaddrinfo(host, portstr, &hints, &ai) != 0 || !ai) {
		lua_pushnil(L);
		lua_pushfstring(L, "not a numeric address and port: %s:%d", host, (int)port);
		return 2;
	}
	server_t *s = lua_newuserdata(L, sizeof *s);
	memset(s, 0, sizeof *s);
	s->on_request = s->on_close = s->self = LUA_NOREF;
	s->max_body = opt_uint(L, 1, "max_body", 65536);
	luaL_getmetatable(L, HTTP_MT);
	lua_setmetatable(L, -2);
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	s->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_access, s,
				MHD_OPTION_SOCK_ADDR, ai->ai_addr,
				MHD_OPTION_CONNECTION_LIMIT, opt_uint(L, 1, "connections", 64),
				MHD_OPTION_PER_IP_CONNECTION_LIMIT, opt_uint(L, 1, "per_ip", 16),
				MHD_OPTION_CONNECTION_TIMEOUT, opt_uint(L, 1, "timeout", 10),
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)opt_uint(L, 1, "memory", 32768),
				MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
				MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!s->d)
		return pm_fail(L, "cannot listen");
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!di) {
		MHD_stop_daemon(s->d);
		s->d = NULL;
		lua_pushnil(L);
		lua_pushliteral(L, "libmicrohttpd has no epoll fd");
		return 2;
	}
	lua_pushvalue(L, 2);
	s->on_request = luaL_ref(L, LUA_REGISTRYINDEX);
	if (lua_isfunction(L, 3)) {
		lua_pushvalue(L, 3);
		s->on_close = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_pushvalue(L, -1);
	s->self = luaL_ref(L, LUA_REGISTRYINDEX);
	ev_io_init(&s->io, on_io, di->epoll_fd, EV_READ);
	ev_io_start(pm_loop, &s->io);
	ev_timer_init(&s->timer, on_timer, 0., 0.);
	arm(s);
	return 1;
}

static const luaL_Reg server_methods[] = {
	{ "respond", l_http_respond },
	{ "stream", l_http_stream },
	{ "send", l_http_send },
	{ "port", l_http_port },
	{ "close", l_http_close },
	{ NULL, NULL },
};

void pm_open_http(lua_State *L)
{
	if (luaL_newmetatable(L, HTTP_MT)) {
		lua_newtable(L);
		luaL_register(L, NULL, server_methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, l_http_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
	lua_pushcfunction(L, l_http_server);
	lua_setfield(L, -2, "http_server");
}

/* pm.http for bin/pm (lib/pm/http.so): the binary's loop and Lua state */
int luaopen_pm_http(lua_State *L)
{
	lua_newtable(L);
	pm_open_http(L);
	return 1;
}
