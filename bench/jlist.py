#!/usr/bin/env python3
"""`pm jlist` with many apps, split (issue 21): a daemon in a temporary
PM_HOME with N /bin/sleep apps (as bench/bench.lua's big and huge
figures), then ROUNDS rounds, each timing in turn:

  pm jlist >/dev/null            the round trip (wall, median)
  sockfloor >/dev/null           the same bytes, ready in memory, over a unix
                                 socket to a client copying them to stdout
                                 (bench/sockfloor.c): the floor
  /bin/true                      an exec and nothing else
  pm jlist | cat >/dev/null      the same through a pipe (sh -c)
  sockfloor | cat >/dev/null

and per pm jlist call the daemon's CPU (its main thread, schedstat) and the
client's (user + sys); the daemon's VmRSS 2 s after the rounds. Prints one table; the load average beside it (the
machine may be shared: the figures are medians).

  [PM_BIN=path/to/pm] bench/jlist.py [APPS [ROUNDS]]   (2000 10)
"""
import os, resource, shutil, statistics, subprocess, sys, tempfile, time, json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PM = os.environ.get("PM_BIN") or os.path.join(ROOT, "bin", "pm")  # (PM_BIN: another build, to compare)
apps = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 10

tmp = tempfile.mkdtemp(prefix="pm-jlist-")
home = os.path.join(tmp, "home")
os.mkdir(home)
env = dict(os.environ, PM_HOME=home)
env.pop("PM_LUA_DIR", None)
floor_pid = None


def pm(*args, **kw):
    return subprocess.run([PM, *args], env=env, **kw)


def main_cpu_ns(pid):
    with open("/proc/%d/task/%d/schedstat" % (pid, pid)) as f:
        return int(f.read().split()[0])


def timed(cmd, **kw):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, env=env, **kw)
    return (time.perf_counter() - t) * 1000


try:
    floor = os.path.join(tmp, "sockfloor")
    subprocess.run(["cc", "-O2", "-o", floor, os.path.join(ROOT, "bench", "sockfloor.c")], check=True)
    eco = os.path.join(tmp, "eco.json")
    with open(eco, "w") as f:
        json.dump({"apps": [{"name": "s%d" % i, "script": "/bin/sleep", "args": "3600",
                             "interpreter": "none"} for i in range(1, apps + 1)]}, f)
    t0 = time.perf_counter()
    pm("start", eco, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    # until all are online, or as many as fit (the count still for 3 s)
    deadline, last, still = time.time() + 600, -1, time.time()
    while True:
        out = pm("jlist", stdout=subprocess.PIPE, timeout=120).stdout
        up = sum(1 for p in json.loads(out) if p["pm2_env"]["status"] == "online")
        if up != last:
            last, still = up, time.time()
        if up >= apps or time.time() > deadline or (up > 0 and time.time() - still > 3):
            break
        time.sleep(0.2)
    started = (time.perf_counter() - t0) * 1000
    if up < apps:
        print("only %d of %d apps online (the fd limit? ulimit -n)" % (up, apps))
    saved = os.path.join(tmp, "jlist.json")
    with open(saved, "wb") as f:
        f.write(out)
    sock = os.path.join(tmp, "floor.sock")
    floor_pid = subprocess.Popen([floor, "serve", sock, saved]).pid
    while not os.path.exists(sock):
        time.sleep(0.01)
    with open(os.path.join(home, "pm.pid")) as f:
        dpid = int(f.read().split()[0])
    time.sleep(1.5)  # (the samples of the first lists taken)
    rows = {k: [] for k in ("pm", "floor", "true", "pm_pipe", "floor_pipe")}
    dcpu, ccpu = [], []
    for _ in range(rounds):
        r0, c0 = resource.getrusage(resource.RUSAGE_CHILDREN), main_cpu_ns(dpid)
        rows["pm"].append(timed([PM, "jlist"]))
        r1, c1 = resource.getrusage(resource.RUSAGE_CHILDREN), main_cpu_ns(dpid)
        dcpu.append((c1 - c0) / 1e6)
        ccpu.append((r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1000)
        rows["floor"].append(timed([floor, sock]))
        rows["true"].append(timed(["/bin/true"]))
        rows["pm_pipe"].append(timed(["sh", "-c", '"$0" jlist | cat >/dev/null', PM]))
        rows["floor_pipe"].append(timed(["sh", "-c", '"$0" "$1" | cat >/dev/null', floor, sock]))
    med = {k: statistics.median(v) for k, v in rows.items()}
    time.sleep(2)  # (the daemon's collection after a burst of replies: 0.5 s after the last)
    with open("/proc/%d/status" % dpid) as f:
        rss = int([l for l in f if l.startswith("VmRSS:")][0].split()[1]) / 1024
    print("%d apps (%d online, started in %.0f ms), jlist %.2f MB; %d rounds; load %.2f %.2f %.2f" % (
        apps, up, started, len(out) / 1e6, rounds, *os.getloadavg()))
    print("| what | median ms |")
    print("|---|---|")
    print("| `pm jlist >/dev/null` | %.1f |" % med["pm"])
    print("|   daemon CPU (main thread) per call | %.1f |" % statistics.median(dcpu))
    print("|   client CPU (user + sys) per call | %.1f |" % statistics.median(ccpu))
    print("| floor: the same bytes over a unix socket (bench/sockfloor.c) | %.1f |" % med["floor"])
    print("| exec of /bin/true | %.1f |" % med["true"])
    print("| daemon VmRSS 2 s after the rounds (MB) | %.1f |" % rss)
    print("| `pm jlist \\| cat >/dev/null` (sh -c) | %.1f |" % med["pm_pipe"])
    print("| floor `\\| cat >/dev/null` (sh -c) | %.1f |" % med["floor_pipe"])
finally:
    if floor_pid:
        os.kill(floor_pid, 15)
        os.waitpid(floor_pid, 0)
    pm("kill", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    shutil.rmtree(tmp, ignore_errors=True)
