# pm: plain GNU make. `make`, `make run`, `make test`, `make install`, `make bench`.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
LUAJIT  ?= luajit
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -I/usr/include/luajit-2.1 -DPM_PREFIX='"$(PREFIX)"'
# bin/pm carries LuaJIT, libev and lua-cjson in itself (Debian's static
# archives, from the same -dev packages): three shared objects fewer to map
# and relocate (cjson.so was loaded by every call), a few hundred
# microseconds of each `pm list`. -Wl,-E exports their API for the C
# modules it loads (term.so).
LDLIBS  := -Wl,-Bstatic -llua5.1-cjson -lluajit-5.1 -lev -lz -Wl,-Bdynamic -static-libgcc -lm -ldl -pthread
# Only the terminal (console.c, screen.c) needs these: bin/pm does not link
# them (a few hundred microseconds off every exec); lib/pm/term.so does.
TERM_LIBS := -ledit -lncursesw
Q       := $(if $(V),,@)

# Debian packages the build, the tests and the demo need.
DEPS := gcc make libluajit-5.1-dev luajit libev-dev libedit-dev libncurses-dev lua-cjson lua-cjson-dev lua-argparse python3 lua-luv lua-copas \
        lua-busted lua-check socat procps zlib1g-dev lua-yaml libmicrohttpd-dev prometheus \
        chromium chromium-driver python3-selenium \
        systemd docker-compose openssh-server openssh-client git musl-tools

CORE_SRC := $(wildcard core/*.c)
TERM_SRC := core/console.c core/screen.c
# The web server (libmicrohttpd) is lib/pm/http.so for bin/pm, loaded only
# by the web process (lua/pm/httplib.lua), as the terminal is term.so.
HTTP_SRC := core/http.c
HTTP_LIBS := -lmicrohttpd
# The keeper (DESIGN §11) is a program of its own, bin/pm-keeper: libc
# alone, linked statically against musl (musl-tools: 60 kB where a static
# glibc is 700 kB, every page of which the kernel maps in when it faults
# around), so that the process that lives beside every daemon holds a few
# pages of its own and nothing of LuaJIT's, libev's or the loader's.
# Without musl-gcc, glibc's libc.a (libc6-dev) does it, larger. (Looked up
# when it is built: `make deps` may have just installed it.)
KEEPER_SRC := core/pm-keeper.c
KEEPER_CC   = $(or $(shell command -v musl-gcc 2>/dev/null),$(CC))
BIN_SRC  := $(filter-out $(TERM_SRC) $(HTTP_SRC) $(KEEPER_SRC),$(CORE_SRC))
LIB_SRC  := $(filter-out core/main.c $(KEEPER_SRC),$(CORE_SRC))
LUA_SRC  := $(wildcard lua/pm/*.lua)
LUA_OBJ  := $(patsubst lua/pm/%.lua,obj/lua/%.o,$(LUA_SRC))

.PHONY: all deps build test test-npm unit integration lint asan run install uninstall bench soak fuzz clean pm2-conformance

all: deps build

build: bin/pm bin/pm-keeper lib/pm/core.so lib/pm/term.so lib/pm/http.so

# Installs only what is missing; does nothing when everything is there.
deps:
	$(Q)missing=$$(for p in $(DEPS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

obj/core/%.o: core/%.c core/core.h
	@mkdir -p $(@D)
	@echo "CC $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

obj/pic/%.o: core/%.c core/core.h
	@mkdir -p $(@D)
	@echo "CC -fPIC $<"
	$(Q)$(CC) $(CFLAGS) -fPIC -DPM_CORE_TERM -c -o $@ $<

obj/core/keeper.o obj/pic/keeper.o obj/asan/keeper.o: core/keeper_wire.h

bin/pm-keeper: $(KEEPER_SRC) core/keeper_wire.h
	@mkdir -p $(@D)
	@echo "LD $@"
	$(Q)$(KEEPER_CC) $(filter-out -I% -fsanitize%,$(CFLAGS)) -static -o $@ $(KEEPER_SRC)

# Each module as bytecode with debug info; init.lua is the module "pm".
obj/lua/%.o: lua/pm/%.lua
	@mkdir -p $(@D)
	@echo "LUAJIT $<"
	$(Q)name=pm.$*; [ "$*" = init ] && name=pm; $(LUAJIT) -b -g -n $$name $< $@

# lua-argparse (Debian's) compiled in too: bytecode loads faster than source.
ARGPARSE := /usr/share/lua/5.1/argparse.lua
obj/lua/argparse.o: $(ARGPARSE)
	@mkdir -p $(@D)
	@echo "LUAJIT $<"
	$(Q)$(LUAJIT) -b -g -n argparse $< $@

# The Lua reference (doc/lua.md) as the module pm.lua_doc: what the
# console's help() and `pm help lua` print (lua/pm/reference.lua), carried
# by bin/pm and installed beside the modules for plain luajit.
DOC_LUA := local s = io.read("*a") local eq = "=" while s:find("]" .. eq .. "]", 1, true) do eq = eq .. "=" end io.write("return [", eq, "[\n", s, "]", eq, "]\n")
obj/lua/lua_doc.lua: doc/lua.md
	@mkdir -p $(@D)
	$(Q)$(LUAJIT) -e '$(DOC_LUA)' < $< > $@.tmp && mv $@.tmp $@

obj/lua/lua_doc.o: obj/lua/lua_doc.lua
	@echo "LUAJIT $<"
	$(Q)$(LUAJIT) -b -n pm.lua_doc $< $@

bin/pm: $(patsubst core/%.c,obj/core/%.o,$(BIN_SRC)) $(LUA_OBJ) obj/lua/argparse.o obj/lua/lua_doc.o
	@mkdir -p $(@D)
	@echo "LD $@"
	$(Q)$(CC) $(CFLAGS) -Wl,-E -o $@ $^ $(LDLIBS)

# pm.core for scripts run by plain luajit (`require "pm"` after make install),
# the terminal included (core.c built with -DPM_CORE_TERM)
lib/pm/core.so: $(patsubst core/%.c,obj/pic/%.o,$(LIB_SRC))
	@mkdir -p $(@D)
	@echo "LD $@"
	$(Q)$(CC) $(CFLAGS) -shared -o $@ $^ -lev -lz $(TERM_LIBS) $(HTTP_LIBS) -pthread

# pm.http: the web server for bin/pm, loaded by lua/pm/httplib.lua only in
# the web process (pm web); like term.so it uses the binary's symbols.
lib/pm/http.so: $(patsubst core/%.c,obj/pic/%.o,$(HTTP_SRC))
	@mkdir -p $(@D)
	@echo "LD $@"
	$(Q)$(CC) $(CFLAGS) $(TERM_LDFLAGS) -o $@ $^ $(HTTP_LIBS)

# pm.term: the terminal for bin/pm, loaded by lua/pm/term.lua only for `pm
# console` and `pm monit`. Its pm_L, pm_pcall, pm_unref are the binary's
# (exported by -Wl,-E), so it is loaded by bin/pm, never by plain luajit.
# -z nodelete: lua_close does not unload it (nor libedit and ncurses, whose
# globals then still hold what they allocated: no leak for LeakSanitizer).
TERM_LDFLAGS := -shared -Wl,-z,nodelete
lib/pm/term.so: $(patsubst core/%.c,obj/pic/%.o,$(TERM_SRC))
	@mkdir -p $(@D)
	@echo "LD $@"
	$(Q)$(CC) $(CFLAGS) $(TERM_LDFLAGS) -o $@ $^ $(TERM_LIBS)

# luacheck, then the C/Lua boundary (tests/boundary.lua, over the core as
# lib/pm/core.so loads it): every core.X the Lua uses exists, every export is
# used, every export has its `core.x(...) -> ...` comment in core/*.c.
lint: deps lib/pm/core.so
	$(Q)luacheck -q --no-color lua tests ecosystem bench
	$(Q)$(LUAJIT) tests/boundary.lua

unit: all
	$(Q)tests/run unit

integration: all test-npm
	$(Q)tests/run integration

# A test-only npm folder (tests/npm): the Kubernetes API schemas
# (kubernetes-models 4, node >= 14) that tests/integration/export_spec.lua
# validates pm export's manifests with. Without npm or the registry it says
# so, and that check skips with a message.
KUBE_MODELS := kubernetes-models@4.5.1
test-npm:
	$(Q)[ -d tests/npm/node_modules/kubernetes-models ] || { command -v npm >/dev/null \
	  && npm install --prefix tests/npm --no-save --no-audit --no-fund --loglevel=error $(KUBE_MODELS) >/dev/null \
	  || echo "test-npm: $(KUBE_MODELS) could not be installed: the Kubernetes schema checks will skip"; }

# The sanitizer pass first, the whole suite last (its closing line is the
# run's). (Side by side they took 7 min instead of 10, but a busy machine
# made the sanitizer build's timings flaky.)
test: all lint test-npm
	$(Q)$(MAKE) --no-print-directory asan
	$(Q)tests/run all

# The core built with ASan/UBSan (bin/pm-asan); the integration suite runs
# against it too, and any sanitizer report fails the run. Every daemon is
# leak-checked at its exit; the CLI calls are not (most end without
# freeing on purpose, and the check cost 50 ms a call). It is a debug
# build (PM_DEBUG): every dispatch from C to Lua asserts a balanced stack.
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -DPM_DEBUG
obj/asan/%.o: core/%.c core/core.h
	@mkdir -p $(@D)
	@echo "CC asan $<"
	$(Q)$(CC) $(CFLAGS) $(ASAN_FLAGS) -c -o $@ $<

bin/pm-asan: $(patsubst core/%.c,obj/asan/%.o,$(BIN_SRC)) $(LUA_OBJ) obj/lua/argparse.o obj/lua/lua_doc.o
	@echo "LD $@"
	$(Q)$(CC) $(CFLAGS) $(ASAN_FLAGS) -Wl,-E -o $@ $^ $(LDLIBS)

# bin/pm-asan's keeper (the daemon of a sanitized pm looks for it first):
# ASan's runtime cannot be linked statically, so this one is not.
bin/pm-keeper-asan: $(KEEPER_SRC) core/keeper_wire.h
	@echo "LD $@"
	$(Q)$(CC) $(CFLAGS) $(ASAN_FLAGS) -o $@ $(KEEPER_SRC)

# The terminal built with the sanitizers too, for bin/pm-asan (core.sanitized:
# lua/pm/term.lua looks for term-asan.so before term.so). Not installed.
obj/asan-pic/%.o: core/%.c core/core.h
	@mkdir -p $(@D)
	@echo "CC asan -fPIC $<"
	$(Q)$(CC) $(CFLAGS) $(ASAN_FLAGS) -fPIC -c -o $@ $<

lib/pm/term-asan.so: $(patsubst core/%.c,obj/asan-pic/%.o,$(TERM_SRC))
	@mkdir -p $(@D)
	@echo "LD $@"
	$(Q)$(CC) $(CFLAGS) $(ASAN_FLAGS) $(TERM_LDFLAGS) -o $@ $^ $(TERM_LIBS)

lib/pm/http-asan.so: $(patsubst core/%.c,obj/asan-pic/%.o,$(HTTP_SRC))
	@mkdir -p $(@D)
	@echo "LD $@"
	$(Q)$(CC) $(CFLAGS) $(ASAN_FLAGS) $(TERM_LDFLAGS) -o $@ $^ $(HTTP_LIBS)

SAN_DIR := $(CURDIR)/tests/tmp/sanitizer
# Left out of the sanitizer pass (they run in the whole suite): the specs
# that spend their minutes on the policy's timing (crash loops held for
# their backoff, reloads waiting for readiness, restart rules' windows)
# over the C paths the other specs already drive (spawn, pipes, held
# sockets, logs: restart_spec, socket_spec, logs_spec...); and those that
# spend theirs in other programs (a browser, Prometheus, sshd, systemd-
# analyze, docker-compose) over Lua, and the HTTP server web_spec drives;
# and the families that check what the Lua decides (PM2's habits and
# conformance, ecosystem files and their sandbox, hooks, prettylist) over
# the same requests, spawns and streams. Keeps make test near 10 minutes
# on 2 cores.
ASAN_EXCLUDE := --exclude-pattern=reliability_spec --exclude-pattern=reload_spec --exclude-pattern=rules_spec \
  --exclude-pattern=web_browser_spec --exclude-pattern=web_prometheus_spec --exclude-pattern=deploy_spec \
  --exclude-pattern=export_spec --exclude-pattern=export_out_spec \
  --exclude-pattern=conformance_ --exclude-pattern=config_ --exclude-pattern=habits_eco_ \
  --exclude-pattern=habits_shape_ --exclude-pattern=habits_api_spec --exclude-pattern=habits_cli_ \
  --exclude-pattern=lua_hooks_ --exclude-pattern=prettylist_spec --exclude-pattern=sandbox_spec \
  --exclude-pattern=trust_spec --exclude-pattern=ecosystem_spec --exclude-pattern=metrics_reason_spec
asan: all bin/pm-asan bin/pm-keeper-asan lib/pm/term-asan.so lib/pm/http-asan.so
	$(Q)rm -rf $(SAN_DIR) && mkdir -p $(SAN_DIR)
	$(Q)PM_BIN=$(CURDIR)/bin/pm-asan PM_SANITIZED=1 PM_SAN_DIR=$(SAN_DIR) \
	  ASAN_OPTIONS=log_path=$(SAN_DIR)/asan:detect_leaks=0 PM_DAEMON_ASAN_OPTIONS=log_path=$(SAN_DIR)/asan \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=log_path=$(SAN_DIR)/ubsan:print_stacktrace=1 tests/run integration $(ASAN_EXCLUDE); \
	rc=$$?; if ls $(SAN_DIR)/* >/dev/null 2>&1; then \
	  echo "sanitizer reports:"; cat $(SAN_DIR)/*; exit 1; fi; \
	echo "sanitizers: no report"; exit $$rc

run: all
	$(Q)bin/pm start ecosystem/ecosystem.lua -s
	$(Q)bin/pm list

# Where the Lua modules, pm.core and the binary go (luarocks make passes
# its tree's: pm-scm-1.rockspec). The LuaLS stubs (doc/types) go to
# $(PREFIX)/share/pm/types: "Lua.workspace.library" for an editor.
LUA_DIR  ?= $(PREFIX)/share/lua/5.1
LUA_CDIR ?= $(PREFIX)/lib/lua/5.1
BIN_DIR  ?= $(PREFIX)/bin
TYPES_DIR ?= $(PREFIX)/share/pm/types

install: build obj/lua/lua_doc.lua
	install -d $(DESTDIR)$(BIN_DIR) $(DESTDIR)$(LUA_DIR)/pm $(DESTDIR)$(LUA_CDIR)/pm
	install -m 0755 bin/pm $(DESTDIR)$(BIN_DIR)/pm
	install -m 0755 bin/pm-keeper $(DESTDIR)$(BIN_DIR)/pm-keeper
	install -m 0644 $(LUA_SRC) obj/lua/lua_doc.lua $(DESTDIR)$(LUA_DIR)/pm/
	install -m 0755 lib/pm/core.so $(DESTDIR)$(LUA_CDIR)/pm/core.so
	install -m 0755 lib/pm/term.so $(DESTDIR)$(LUA_CDIR)/pm/term.so
	install -m 0755 lib/pm/http.so $(DESTDIR)$(LUA_CDIR)/pm/http.so
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 0644 completion/pm.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/pm
	install -d $(DESTDIR)$(TYPES_DIR)/pm $(DESTDIR)$(PREFIX)/share/doc/pm
	install -m 0644 doc/types/pm/*.lua $(DESTDIR)$(TYPES_DIR)/pm/
	install -m 0644 doc/types/pm_sandbox.lua $(DESTDIR)$(TYPES_DIR)/
	install -m 0644 doc/lua.md $(DESTDIR)$(PREFIX)/share/doc/pm/lua.md

uninstall:
	rm -f $(DESTDIR)$(BIN_DIR)/pm $(DESTDIR)$(BIN_DIR)/pm-keeper
	rm -rf $(DESTDIR)$(LUA_DIR)/pm $(DESTDIR)$(LUA_CDIR)/pm
	rm -f $(DESTDIR)$(PREFIX)/share/bash-completion/completions/pm
	rm -rf $(DESTDIR)$(TYPES_DIR) $(DESTDIR)$(PREFIX)/share/doc/pm

bench: all
	$(Q)bench/run

# PM2's own e2e scripts run against pm (and PM2 itself with PM2_NPM=<folder
# holding node_modules/pm2>); PM2_SRC names a PM2 checkout. Not in `make
# test`: see bench/pm2-conformance.sh and bench/PM2-CONFORMANCE.md.
pm2-conformance: build
	$(Q)PM2_SRC="$(PM2_SRC)" PM2_NPM="$(PM2_NPM)" bench/pm2-conformance.sh

# The long reliability checks (about 6-7 min on 2 cores): 10,000 crash
# restarts, 1,000,000 fuzzed frames on rpc.sock, a valgrind leak check of
# the daemon, 120 s of libFuzzer over the stream framing.
SOAK_DEPS := valgrind clang libclang-rt-14-dev
soak: all
	$(Q)$(MAKE) --no-print-directory deps DEPS="$(SOAK_DEPS)"
	$(Q)tests/soak/run

fuzz: all
	$(Q)$(MAKE) --no-print-directory deps DEPS="clang libclang-rt-14-dev"
	$(Q)tests/fuzz/run $(or $(FUZZ_SECONDS),120)

clean:
	rm -rf obj bin lib

