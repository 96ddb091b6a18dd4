-- Files pm writes for apps. CLUSTER: preloaded (node -r) into a Node app
-- in cluster mode, so that server.listen(port) listens on the socket the
-- daemon holds for that port (PM_LISTEN_MAP: {"port": fd}) and instances
-- share it, with no relay, instead of dying with EADDRINUSE.
local M = {}

M.CLUSTER = [[
'use strict';
// Written by pm: see PM_LISTEN_MAP. Maps listen(port) to a held socket.
const net = require('net');
let map = {};
try { map = JSON.parse(process.env.PM_LISTEN_MAP || '{}'); } catch (e) { map = {}; }
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  let port;
  const a = args[0];
  if (typeof a === 'number' || (typeof a === 'string' && /^\d+$/.test(a))) port = String(a);
  else if (a && typeof a === 'object' && a.fd === undefined && a.port !== undefined) port = String(a.port);
  if (port !== undefined && map[port] !== undefined) {
    const cb = args.find((x) => typeof x === 'function');
    return cb ? listen.call(this, { fd: map[port] }, cb) : listen.call(this, { fd: map[port] });
  }
  return listen.apply(this, args);
};
]]

return M
