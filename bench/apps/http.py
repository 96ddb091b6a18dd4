"""The benchmark's Python HTTP server (asyncio): on the sockets pm passes
(LISTEN_FDS, fd 3), else on 127.0.0.1:$PORT (the plain process). READY=1
on NOTIFY_SOCKET once serving; SIGINT: stop accepting, finish the
connections in flight, exit."""
import asyncio
import os
import signal
import socket

BODY = b"hello\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % len(BODY)
active = 0


async def handle(reader, writer):
    global active
    active += 1
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            close = b"connection: close" in head.lower() or head.startswith(b"GET / HTTP/1.0")
            writer.write(RESPONSE + (b"Connection: close\r\n\r\n" if close or stopping.is_set() else b"\r\n") + BODY)
            await writer.drain()
            if close or stopping.is_set():
                break
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()
        active -= 1


def notify(msg):
    path = os.environ.get("NOTIFY_SOCKET")
    if path:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.sendto(msg, "\0" + path[1:] if path.startswith("@") else path)
        finally:
            s.close()


async def main():
    global stopping
    stopping = asyncio.Event()
    if int(os.environ.get("LISTEN_FDS", "0") or "0") > 0:
        server = await asyncio.start_server(handle, sock=socket.socket(fileno=3), backlog=511)
    else:
        server = await asyncio.start_server(handle, "127.0.0.1", int(os.environ["PORT"]), backlog=511,
                                            reuse_address=True)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    notify(b"READY=1")
    await stopping.wait()
    # stop accepting, without server.close(): with Python 3.11 a connection
    # accepted just before a close fails in its accept task and is reset
    for sock in server.sockets:
        loop.remove_reader(sock.fileno())
    # accepted connections start their handler a loop turn or two later:
    # let them, then wait until every one is done
    await asyncio.sleep(0.1)
    for _ in range(500):
        if active == 0:
            break
        await asyncio.sleep(0.01)


asyncio.run(main())
