/*
 * watch.c: file-system change events through one inotify fd for the whole
 * daemon, and directory listing. Which directories to watch, what to ignore
 * and what a change leads to are Lua's.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/inotify.h>

#include "core.h"

static int ino_fd = -1;
static ev_io ino_w;
static int ino_fn = LUA_NOREF;

#define WATCH_MASK (IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | \
		    IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB | IN_ONLYDIR)

static const char *kind_of(uint32_t m)
{
	if (m & IN_Q_OVERFLOW) return "overflow";
	if (m & IN_IGNORED) return "ignored";
	if (m & IN_CREATE) return "create";
	if (m & (IN_DELETE | IN_DELETE_SELF)) return "delete";
	if (m & (IN_MOVED_FROM | IN_MOVED_TO | IN_MOVE_SELF)) return "move";
	if (m & IN_ATTRIB) return "attrib";
	return "modify";
}

static void on_inotify(EV_P_ ev_io *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	lua_State *L = pm_L;
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t n = read(ino_fd, buf, sizeof buf);
		if (n <= 0)
			return;
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			p += sizeof *ev + ev->len;
			if (ino_fn == LUA_NOREF)
				continue;
			PM_STACK_SAVE(L);
			lua_rawgeti(L, LUA_REGISTRYINDEX, ino_fn);
			lua_pushinteger(L, ev->wd);
			if (ev->len)
				lua_pushstring(L, ev->name);
			else
				lua_pushnil(L);
			lua_pushboolean(L, (ev->mask & IN_ISDIR) != 0);
			lua_pushstring(L, kind_of(ev->mask));
			pm_pcall(L, 4, 0);
			PM_STACK_CHECK(L);
		}
	}
}

/* core.inotify(fn(wd, name|nil, isdir, kind)) -> true | nil, err
 * kind: create, delete, move, modify, attrib, ignored (watch gone) or
 * overflow (wd -1: events were lost, rescan). */
static int l_inotify(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TFUNCTION);
	if (ino_fd < 0) {
		ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (ino_fd < 0)
			return pm_fail(L, "inotify_init1");
		ev_io_init(&ino_w, on_inotify, ino_fd, EV_READ);
		ev_io_start(pm_loop, &ino_w);
	}
	pm_unref(L, &ino_fn);
	lua_pushvalue(L, 1);
	ino_fn = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushboolean(L, 1);
	return 1;
}

/* core.inotify_add(dir) -> wd | nil, err (ENOSPC: out of watches) */
static int l_inotify_add(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	if (ino_fd < 0)
		return luaL_error(L, "inotify not initialised");
	int wd = inotify_add_watch(ino_fd, path, WATCH_MASK);
	if (wd < 0) {
		if (errno == ENOSPC) {
			lua_pushnil(L);
			lua_pushfstring(L, "%s: out of inotify watches (fs.inotify.max_user_watches)", path);
			return 2;
		}
		return pm_fail(L, path);
	}
	lua_pushinteger(L, wd);
	return 1;
}

/* core.inotify_rm(wd) -> nothing */
static int l_inotify_rm(lua_State *L)
{
	if (ino_fd >= 0)
		inotify_rm_watch(ino_fd, (int)luaL_checkinteger(L, 1));
	return 0;
}

/* core.listdir(path [, mode [, max]]) -> { name = "dir"|"file"|"unknown"|"other", ... } [, true] | n | nil, err
 * mode true: how many entries, without a string for each (/proc/self/fd of
 * a daemon of 10,000 apps: 20,000 of them, 775 KB of garbage a count);
 * "dirs": only the entries that are (or may be: "unknown") folders; max:
 * at most that many entries read (true after the table when more were
 * left: a user's folder of a million files is not read whole on the loop) */
static int l_listdir(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int count = lua_type(L, 2) == LUA_TBOOLEAN && lua_toboolean(L, 2);
	int dirs_only = lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "dirs") == 0;
	lua_Number max = luaL_optnumber(L, 3, -1);
	DIR *d = opendir(path);
	if (!d)
		return pm_fail(L, path);
	lua_Number n = 0, seen = 0;
	int more = 0;
	if (!count)
		lua_newtable(L);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (max >= 0 && seen >= max) {
			more = 1;
			break;
		}
		seen++;
		if (count) {
			n++;
			continue;
		}
		if (dirs_only && e->d_type != DT_DIR && e->d_type != DT_UNKNOWN)
			continue;
		lua_pushstring(L, e->d_type == DT_DIR ? "dir" : e->d_type == DT_REG ? "file"
				  : e->d_type == DT_UNKNOWN ? "unknown" : "other");
		lua_setfield(L, -2, e->d_name);
	}
	closedir(d);
	if (count)
		lua_pushnumber(L, n);
	if (more)
		lua_pushboolean(L, 1);
	return more ? 2 : 1;
}

void pm_open_watch(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"inotify", l_inotify},
		{"inotify_add", l_inotify_add},
		{"inotify_rm", l_inotify_rm},
		{"listdir", l_listdir},
		{NULL, NULL},
	};
	luaL_register(L, NULL, fns);
}
