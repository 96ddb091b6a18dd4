'use strict';
// The benchmark's Node HTTP server: on the socket pm passes at fd 3
// (LISTEN_FDS), else on 127.0.0.1:$PORT (the plain process). "ready" over
// IPC once listening; SIGINT: stop accepting, finish what is in flight, exit.
const http = require('http');
const body = 'hello\n';
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  res.end(body);
});
const ready = () => { if (process.send) process.send('ready'); };
if (Number(process.env.LISTEN_FDS || 0) > 0) server.listen({ fd: 3 }, ready);
else server.listen(Number(process.env.PORT), '127.0.0.1', ready);
let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.close(() => process.exit(0));
  if (server.closeIdleConnections) server.closeIdleConnections();
  if (process.connected) process.disconnect();
  setTimeout(() => process.exit(0), 5000).unref();
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
