/*
 * screen.c: the terminal for `pm monit`, through ncurses: a whole-screen
 * canvas drawn by Lua, keys read without blocking, resizes reported.
 */
#define _GNU_SOURCE
#include <locale.h>
#include <string.h>
#include <curses.h>

#include "core.h"

static int started;

/* core.scr_start() -> rows, cols */
static int l_scr_start(lua_State *L)
{
	if (!started) {
		setlocale(LC_ALL, "");
		if (!initscr())
			return luaL_error(L, "cannot start the terminal screen");
		cbreak();
		noecho();
		keypad(stdscr, TRUE);
		nodelay(stdscr, TRUE);
		curs_set(0);
		if (has_colors()) {
			start_color();
			use_default_colors();
			init_pair(1, COLOR_GREEN, -1);
			init_pair(2, COLOR_RED, -1);
			init_pair(3, COLOR_YELLOW, -1);
			init_pair(4, COLOR_CYAN, -1);
			init_pair(5, COLOR_BLACK, COLOR_CYAN);
		}
		started = 1;
	}
	lua_pushinteger(L, LINES);
	lua_pushinteger(L, COLS);
	return 2;
}

/* core.scr_size() -> rows, cols (0, 0 when the screen is not started) */
static int l_scr_size(lua_State *L)
{
	lua_pushinteger(L, started ? LINES : 0);
	lua_pushinteger(L, started ? COLS : 0);
	return 2;
}

/* core.scr_clear() -> nothing */
static int l_scr_clear(lua_State *L)
{
	(void)L;
	if (started)
		erase();
	return 0;
}

/* core.scr_put(row, col, text [, style]) -> nothing: style is "bold", "reverse",
 * "green", "red", "yellow", "cyan", "dim" or "select"; clipped to the screen */
static int l_scr_put(lua_State *L)
{
	int y = (int)luaL_checkinteger(L, 1), x = (int)luaL_checkinteger(L, 2);
	const char *text = luaL_checkstring(L, 3);
	const char *style = luaL_optstring(L, 4, "");
	if (!started || y < 0 || y >= LINES || x < 0 || x >= COLS)
		return 0;
	attr_t a = A_NORMAL;
	if (strcmp(style, "bold") == 0) a = A_BOLD;
	else if (strcmp(style, "reverse") == 0) a = A_REVERSE;
	else if (strcmp(style, "dim") == 0) a = A_DIM;
	else if (strcmp(style, "green") == 0) a = COLOR_PAIR(1);
	else if (strcmp(style, "red") == 0) a = COLOR_PAIR(2) | A_BOLD;
	else if (strcmp(style, "yellow") == 0) a = COLOR_PAIR(3);
	else if (strcmp(style, "cyan") == 0) a = COLOR_PAIR(4);
	else if (strcmp(style, "select") == 0) a = COLOR_PAIR(5) | A_BOLD;
	/* clip to the columns left, counting characters, not bytes */
	int room = COLS - x, bytes = 0;
	for (const unsigned char *p = (const unsigned char *)text; *p && room > 0; room--) {
		int len = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : 4;
		for (int i = 0; i < len && p[i]; i++)
			bytes++;
		p = (const unsigned char *)text + bytes;
	}
	attron(a);
	mvaddnstr(y, x, text, bytes);
	attroff(a);
	return 0;
}

/* core.scr_refresh() -> nothing: what was put is shown */
static int l_scr_refresh(lua_State *L)
{
	(void)L;
	if (started)
		refresh();
	return 0;
}

/* core.scr_key() -> "up", "down", "left", "right", "enter", "resize",
 * "pageup", "pagedown", a one-character string, or nil when none */
static int l_scr_key(lua_State *L)
{
	if (!started)
		return 0;
	int c = getch();
	const char *name = NULL;
	switch (c) {
	case ERR: return 0;
	case KEY_UP: name = "up"; break;
	case KEY_DOWN: name = "down"; break;
	case KEY_LEFT: name = "left"; break;
	case KEY_RIGHT: name = "right"; break;
	case KEY_NPAGE: name = "pagedown"; break;
	case KEY_PPAGE: name = "pageup"; break;
	case KEY_RESIZE: name = "resize"; break;
	case KEY_ENTER: case '\n': case '\r': name = "enter"; break;
	}
	if (name) {
		lua_pushstring(L, name);
	} else if (c >= 0 && c < 256) {
		char ch = (char)c;
		lua_pushlstring(L, &ch, 1);
	} else {
		lua_pushfstring(L, "key%d", c);
	}
	return 1;
}

/* core.scr_stop() -> nothing: the terminal as it was */
static int l_scr_stop(lua_State *L)
{
	(void)L;
	if (started) {
		curs_set(1);
		endwin();
		started = 0;
	}
	return 0;
}

void pm_open_screen(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{"scr_start", l_scr_start},
		{"scr_size", l_scr_size},
		{"scr_clear", l_scr_clear},
		{"scr_put", l_scr_put},
		{"scr_refresh", l_scr_refresh},
		{"scr_key", l_scr_key},
		{"scr_stop", l_scr_stop},
		{NULL, NULL},
	};
	luaL_register(L, NULL, fns);
}
