"""Fallback client load when wrk is not installed: THREADS threads GET
http://127.0.0.1:PORT/ on a new connection each, until SECONDS pass, MAX
requests are done or SIGINT comes; prints one JSON line
{requests, failed, errors, seconds}. 127.0.0.1 only."""
import json
import signal
import socket
import sys
import threading
import time

port, seconds, limit, nthreads = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
deadline = time.time() + seconds
stop = threading.Event()
lock = threading.Lock()
st = {"requests": 0, "failed": 0, "errors": {}}
REQ = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def one():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(REQ)
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    finally:
        s.close()
    if not data.startswith(b"HTTP/1.1 200"):
        raise IOError("bad answer")


def worker():
    while not stop.is_set() and time.time() < deadline:
        with lock:
            if st["requests"] >= limit:
                return
        try:
            one()
            ok = None
        except Exception as e:
            ok = type(e).__name__
        with lock:
            st["requests"] += 1
            if ok:
                st["failed"] += 1
                st["errors"][ok] = st["errors"].get(ok, 0) + 1


signal.signal(signal.SIGINT, lambda *a: stop.set())
t0 = time.time()
ts = [threading.Thread(target=worker) for _ in range(nthreads)]
for t in ts:
    t.start()
while any(t.is_alive() for t in ts):
    for t in ts:
        t.join(0.1)
st["seconds"] = time.time() - t0
print(json.dumps(st), flush=True)
