/*
 * console.c: line editing for `pm console` through libedit (BSD licence).
 * readline() reads its characters through our getc, which runs the event
 * loop while it waits: bus events print above the line being typed, and
 * the line is drawn again under them. History, and completion asked of Lua.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <editline/readline.h>

#include "core.h"

static int complete_fn = LUA_NOREF; /* complete(word, before) -> { candidates } */
static int reading;                 /* inside readline() */
static int interrupted;
static ev_io stdin_w;
static char **candidates;
static size_t ncandidates;

static void on_stdin(EV_P_ ev_io *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ONE);
}

/* readline's getc: a byte from stdin, running the loop until one comes */
static int pump_getc(FILE *f)
{
	(void)f;
	for (;;) {
		if (interrupted) {
			rl_replace_line("", 0);
			return '\n';
		}
		struct pollfd p = {0, POLLIN, 0};
		if (poll(&p, 1, 0) > 0) {
			unsigned char c;
			ssize_t n = read(0, &c, 1);
			if (n == 1)
				return c;
			if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
				return EOF;
			continue;
		}
		ev_io_start(pm_loop, &stdin_w);
		ev_run(pm_loop, EVRUN_ONCE);
		ev_io_stop(pm_loop, &stdin_w);
	}
}

static void free_candidates(void)
{
	for (size_t i = 0; i < ncandidates; i++)
		free(candidates[i]);
	free(candidates);
	candidates = NULL;
	ncandidates = 0;
}

static char *generator(const char *text, int state)
{
	static size_t next;
	(void)text;
	if (state == 0)
		next = 0;
	if (next < ncandidates)
		return strdup(candidates[next++]);
	return NULL;
}

static char **complete(const char *text, int start, int end)
{
	(void)start;
	(void)end;
	lua_State *L = pm_L;
	free_candidates();
	rl_completion_append_character = '\0';
	if (complete_fn == LUA_NOREF)
		return NULL;
	PM_STACK_SAVE(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, complete_fn);
	lua_pushstring(L, text);
	lua_pushlstring(L, rl_line_buffer, (size_t)rl_point);
	if (pm_pcall(L, 2, 1) != 0) {
		PM_STACK_CHECK(L);
		return NULL;
	}
	if (lua_istable(L, -1)) {
		size_t n = lua_objlen(L, -1);
		candidates = calloc(n + 1, sizeof(char *));
		for (size_t i = 1; candidates && i <= n; i++) {
			lua_rawgeti(L, -1, (int)i);
			const char *s = lua_tostring(L, -1);
			if (s)
				candidates[ncandidates++] = strdup(s);
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	PM_STACK_CHECK(L);
	if (ncandidates == 0)
		return NULL;
	return rl_completion_matches(text, generator);
}

/* core.rl_init(complete(word, before) -> list) -> nothing: the editor's
 * set-up; complete gives the candidates for word, before being the line up
 * to the cursor */
static int l_rl_init(lua_State *L)
{
	pm_unref(L, &complete_fn);
	if (lua_isfunction(L, 1)) {
		lua_pushvalue(L, 1);
		complete_fn = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	rl_readline_name = "pm";
	rl_catch_signals = 0;
	rl_getc_function = pump_getc;
	rl_attempted_completion_function = complete;
	rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{}()[],+-*/%^~#.:";
	rl_initialize();
	rl_bind_key('\t', rl_complete);
	ev_io_init(&stdin_w, on_stdin, 0, EV_READ);
	return 0;
}

/* core.rl_readline(prompt) -> line | nil (end of input), interrupted (Ctrl-C)
 * The loop runs while it waits for keys. */
static int l_rl_readline(lua_State *L)
{
	const char *prompt = luaL_checkstring(L, 1);
	interrupted = 0;
	reading = 1;
	char *line = readline(prompt);
	reading = 0;
	int was = interrupted;
	interrupted = 0;
	if (!line) {
		lua_pushnil(L);
		lua_pushboolean(L, was);
		return 2;
	}
	lua_pushstring(L, line);
	free(line);
	lua_pushboolean(L, was);
	return 2;
}

/* core.rl_interrupt() -> nothing: Ctrl-C: the line being typed is dropped */
static int l_rl_interrupt(lua_State *L)
{
	(void)L;
	if (reading)
		interrupted = 1;
	return 0;
}

/* core.rl_print(text) -> nothing: prints above the line being edited, then redraws
 * the prompt and what was typed so far. */
static int l_rl_print(lua_State *L)
{
	size_t len;
	const char *text = luaL_checklstring(L, 1, &len);
	if (!reading) {
		fwrite(text, 1, len, stdout);
		fflush(stdout);
		return 0;
	}
	fputs("\r\033[K", stdout);
	fwrite(text, 1, len, stdout);
	if (len == 0 || text[len - 1] != '\n')
		fputc('\n', stdout);
	fflush(stdout);
	rl_forced_update_display();
	return 0;
}

/* core.rl_history_add(line) -> nothing */
static int l_rl_history_add(lua_State *L)
{
	add_history(luaL_checkstring(L, 1));
	return 0;
}

/* core.rl_history_load(path) -> nothing (a missing file is no history) */
static int l_rl_history_load(lua_State *L)
{
	read_history(luaL_checkstring(L, 1));
	return 0;
}

/* core.rl_history_save(path) -> bool */
static int l_rl_history_save(lua_State *L)
{
	lua_pushboolean(L, write_history(luaL_checkstring(L, 1)) == 0);
	return 1;
}

void pm_open_console(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"rl_init", l_rl_init},
		{"rl_readline", l_rl_readline},
		{"rl_interrupt", l_rl_interrupt},
		{"rl_print", l_rl_print},
		{"rl_history_add", l_rl_history_add},
		{"rl_history_load", l_rl_history_load},
		{"rl_history_save", l_rl_history_save},
		{NULL, NULL},
	};
	luaL_register(L, NULL, fns);
}

/* pm.term (lib/pm/term.so): the console and the screen as a module of their
 * own, for bin/pm, which does not link libedit and ncurses. */
int luaopen_pm_term(lua_State *L)
{
	lua_newtable(L);
	pm_open_console(L);
	pm_open_screen(L);
	return 1;
}
