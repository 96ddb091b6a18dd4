"""A small HTTP server: GET / says hello, GET /health says ok."""
import http.server
import os


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n" if self.path == "/health" else b"hello from pm\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(fmt % args, flush=True)


port = int(os.environ.get("PORT", "8000"))
print(f"listening on 127.0.0.1:{port}", flush=True)
try:
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
except KeyboardInterrupt:  # pm stops apps with SIGINT
    print("stopping", flush=True)
