#!/usr/bin/env python3
"""The tools that show every app, with thousands of apps: a daemon in a
temporary PM_HOME with N /bin/sleep apps (as bench/bench.lua's huge
figure), then

  pm prettylist            wall time and the client's peak RSS
  pm save                  wall time, the daemon's RSS before, at its peak
                           (VmHWM, reset first where the kernel allows) and
                           2 s after
  pm monit                 in tmux (a real terminal), for 10 s once drawn:
                           the client's RSS and CPU, the daemon's CPU
  pm web                   the dashboard's first process table in headless
                           Chromium (when chromium, chromium-driver and
                           python3-selenium are there) and a script turn of
                           the page afterwards
  idle                     the daemon's CPU over 10 s with nothing asking,
                           5 minutes after the last ask (IDLE=0: not run)

Prints one table. The machine may be shared: rerun before believing a
figure.

  [PM_BIN=path/to/pm] [IDLE=0] bench/tools.py [APPS]    (9500: 2 fds each fit a
                                                 20,000-fd limit)
"""
import json, os, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PM = os.environ.get("PM_BIN") or os.path.join(ROOT, "bin", "pm")
apps = int(sys.argv[1]) if len(sys.argv) > 1 else 9500
tmp = tempfile.mkdtemp(prefix="pm-tools-")
home = os.path.join(tmp, "home")
os.mkdir(home)
env = dict(os.environ, PM_HOME=home)
rows = []


def pm(*args, **kw):
    return subprocess.run([PM] + list(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def status(pid, key):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def cpu_ms(pid):  # user + system time of pid, ms
    try:
        f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return (int(f[11]) + int(f[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def timed(*args):  # -> wall s, the client's peak RSS in KB, rc
    r = subprocess.run(["/usr/bin/time", "-f", "%e %M", PM] + list(args), env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    wall, rss = r.stderr.decode().strip().split("\n")[-1].split()
    return float(wall), int(rss), r.returncode


def daemon():
    return int(open(os.path.join(home, "pm.pid")).read().split()[0])


def idle(label, secs=10):
    d = daemon()
    c0 = cpu_ms(d)
    time.sleep(secs)
    rows.append((label, "daemon CPU %.1f %% of a core over %d s" % ((cpu_ms(d) - c0) / secs / 10, secs)))


try:
    eco = os.path.join(tmp, "eco.json")
    json.dump({"apps": [{"name": "s%d" % i, "script": "/bin/sleep", "args": "3600", "interpreter": "none"}
                        for i in range(1, apps + 1)]}, open(eco, "w"))
    t0 = time.time()
    pm("start", eco)
    online = pm("jlist").stdout.count(b'"status":"online"')
    rows.append(("start", "%d of %d online in %.1f s" % (online, apps, time.time() - t0)))
    time.sleep(2)
    d = daemon()
    rows.append(("daemon", "VmRSS %.0f MB after start" % (status(d, "VmRSS") / 1024)))

    wall, rss, rc = timed("prettylist")
    rows.append(("pm prettylist", "%.2f s, client peak %.0f MB (rc %d)" % (wall, rss / 1024, rc)))

    before = status(d, "VmRSS")
    try:  # (VmHWM from here on: writing 5 to clear_refs resets it)
        open("/proc/%d/clear_refs" % d, "w").write("5")
        peak_note = ""
    except OSError:
        peak_note = " (VmHWM not reset: since the start)"
    wall, _, rc = timed("save")
    peak = status(d, "VmHWM")
    time.sleep(2)
    rows.append(("pm save", "%.2f s; daemon VmRSS %.0f MB, peak %.0f MB%s, %.0f MB 2 s after (rc %d)" % (
        wall, before / 1024, peak / 1024, peak_note, status(d, "VmRSS") / 1024, rc)))

    if shutil.which("tmux"):
        sess = "pm-bench-tools-%d" % os.getpid()
        subprocess.run(["tmux", "new-session", "-d", "-s", sess, "-x", "160", "-y", "50",
                        "exec env PM_HOME=%s %s monit" % (home, PM)], check=True)
        try:
            mpid = int(subprocess.run(["tmux", "list-panes", "-t", sess, "-F", "#{pane_pid}"],
                                      stdout=subprocess.PIPE).stdout)
            deadline = time.time() + 60
            while time.time() < deadline:
                shown = subprocess.run(["tmux", "capture-pane", "-p", "-t", sess], stdout=subprocess.PIPE).stdout
                if b"app(s)" in shown and b"online" in shown:
                    break
                time.sleep(0.2)
            m0, d0 = cpu_ms(mpid), cpu_ms(d)
            time.sleep(10)
            rows.append(("pm monit", "client VmRSS %.0f MB, CPU %.1f %%; daemon CPU %.1f %% (10 s)" % (
                status(mpid, "VmRSS") / 1024, (cpu_ms(mpid) - m0) / 100, (cpu_ms(d) - d0) / 100)))
        finally:
            subprocess.run(["tmux", "kill-session", "-t", sess])
    else:
        rows.append(("pm monit", "not run: no tmux"))

    py = "/usr/bin/python3"
    browser = os.path.exists("/usr/bin/chromium") and os.path.exists("/usr/bin/chromedriver") and \
        subprocess.run([py, "-c", "import selenium"], stderr=subprocess.DEVNULL).returncode == 0
    if browser:
        port = 19615
        r = pm("web", "--listen", "127.0.0.1:%d" % port)
        token = r.stdout.decode().split("token=")[1].split()[0]
        probe = r'''
import sys, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
o = webdriver.ChromeOptions()
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--user-data-dir=%s"):
    o.add_argument(a)
o.binary_location = "/usr/bin/chromium"
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
try:
    t0 = time.time(); d.get(sys.argv[1])
    while time.time() - t0 < 60 and "process" not in d.find_element(By.ID, "summary").text:
        time.sleep(0.05)
    first = time.time() - t0
    time.sleep(6)
    t = time.time(); d.execute_script("return 1"); turn = time.time() - t
    print("%%.2f %%.3f %%s" %% (first, turn, d.find_element(By.ID, "summary").text.replace(" ", "_")))
finally:
    d.quit()
''' % os.path.join(tmp, "chromium")
        b = subprocess.run([py, "-c", probe, "http://127.0.0.1:%d/?token=%s" % (port, token)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=180)
        out = b.stdout.decode().split()
        if len(out) == 3:
            rows.append(("pm web", "first table after %s s (%s), a script turn %s s later" % (
                out[0], out[2].replace("_", " "), out[1])))
        else:
            rows.append(("pm web", "the browser failed: " + b.stderr.decode()[-300:]))
        pm("web", "--off")
    else:
        rows.append(("pm web", "not run: chromium, chromium-driver or python3-selenium missing"))
    if os.environ.get("IDLE") != "0":
        print("(history sampling goes on 5 minutes after the last ask: the idle figure waits that long)",
              file=sys.stderr)
        time.sleep(305)
        idle("idle")
finally:
    pm("kill")
    shutil.rmtree(tmp, ignore_errors=True)

print("%d apps (bench/tools.py), load %s" % (apps, open("/proc/loadavg").read().split()[0]))
for k, v in rows:
    print("  %-14s %s" % (k, v))
