-- Files pm writes for apps. CLUSTER: preloaded (node -r) into a Node app
-- in cluster mode, so that its instances share the ports they listen on,
-- with no relay, instead of dying with EADDRINUSE. server.listen(port)
-- listens on the socket the daemon holds for that port: one it was given
-- at its start (PM_LISTEN_MAP: {"port": fd}, for a port declared or
-- learned before), or else one it asks the daemon for over its IPC
-- channel ({cmd: "NODE_PM_LISTEN", seq, port, address}); the daemon binds
-- the port for the app (sockets.lua decides what it may) and passes the
-- socket back the way Node passes handles ({cmd: "NODE_HANDLE", type:
-- "net.Native", msg: {cmd: "NODE_PM_LISTEN_OK", seq}} with the fd), or says
-- why not ({cmd: "NODE_PM_LISTEN_ERR", seq, code, message}: the server
-- emits that error, as a listen() that fails does). Both are Node's
-- internal messages: the app's own 'message' listeners never see them.
-- Each instance is a worker of the cluster, as under PM2 (whose instances
-- its daemon forks with Node's cluster module): cluster.isWorker is true,
-- cluster.isPrimary / isMaster false and cluster.worker is { id (pm_id +
-- 1), process, send, ... }, so that an app's `if (cluster.isPrimary)
-- fork()` takes the worker's branch (under pm each instance forked workers
-- of its own). A process the app forks with Node's own cluster module
-- anyway keeps Node's behaviour (its primary shares the port).
local M = {}

M.CLUSTER = [[
'use strict';
// Written by pm: see PM_LISTEN_MAP and lua/pm/preload.lua. Maps listen(port)
// to a socket the daemon holds, asking the daemon for one it does not hold yet.
const net = require('net');
let map = {};
try { map = JSON.parse(process.env.PM_LISTEN_MAP || '{}'); } catch (e) { map = {}; }
const listen = net.Server.prototype.listen;
const pending = new Map();
let seq = 0;
let hooked = false;
const WAIT_MS = 10000;
// (a worker of the app's own Node cluster: its primary shares the port)
const worker = process.env.NODE_UNIQUE_ID !== undefined;

// An instance is a worker of the cluster, as PM2's are
if (!worker) {
  const cluster = require('cluster');
  const EventEmitter = require('events');
  const w = new EventEmitter();
  const id = Number(process.env.pm_id);
  w.id = Number.isInteger(id) ? id + 1 : Number(process.env.NODE_APP_INSTANCE || 0) + 1;
  w.process = process;
  w.exitedAfterDisconnect = undefined;
  w.send = (...a) => process.send(...a);
  w.isConnected = () => process.connected === true;
  w.isDead = () => false;
  w.disconnect = () => { if (process.connected) process.disconnect(); return w; };
  w.kill = (signal) => process.kill(process.pid, signal || 'SIGTERM');
  // (process's events, listened to once the app listens: a listener of
  // its own would keep the channel, and so the process, alive)
  const fwd = {};
  w.on('newListener', (ev) => {
    if ((ev !== 'message' && ev !== 'disconnect') || fwd[ev]) return;
    fwd[ev] = true;
    process.on(ev, (...a) => w.emit(ev, ...a));
  });
  // (Node's own modules read them too: net and dgram listen as a
  // primary's do, on the sockets pm gives; only the app's code sees a
  // worker)
  const fromNode = (getter) => {
    const prepare = Error.prepareStackTrace;
    const limit = Error.stackTraceLimit;
    Error.prepareStackTrace = (_, frames) => frames;
    Error.stackTraceLimit = 1;
    const e = {};
    Error.captureStackTrace(e, getter);
    const frames = e.stack;
    Error.prepareStackTrace = prepare;
    Error.stackTraceLimit = limit;
    const file = Array.isArray(frames) && frames[0] ? frames[0].getFileName() : undefined;
    return typeof file === 'string' && (file.startsWith('node:') || !file.includes('/'));
  };
  // (what Node's own code reads, else what the app's does)
  const seen = (node, app) => function get() { return fromNode(get) ? node : app; };
  Object.defineProperty(cluster, 'isPrimary', { get: seen(true, false), configurable: true });
  Object.defineProperty(cluster, 'isMaster', { get: seen(true, false), configurable: true });
  Object.defineProperty(cluster, 'isWorker', { get: seen(false, true), configurable: true });
  cluster.worker = w;
}

function onInternal(m, handle) {
  if (!m || (m.cmd !== 'NODE_PM_LISTEN_OK' && m.cmd !== 'NODE_PM_LISTEN_ERR')) return;
  const w = pending.get(m.seq);
  if (!w) { if (handle && typeof handle.close === 'function') handle.close(); return; }
  pending.delete(m.seq);
  clearTimeout(w.timer);
  if (m.cmd === 'NODE_PM_LISTEN_OK' && handle) {
    if (w.cb) listen.call(w.server, handle, w.cb); else listen.call(w.server, handle);
    return;
  }
  const err = new Error(`listen ${m.code || 'EINVAL'}: ${m.message || 'pm could not give the app this port'}`);
  err.code = m.code || 'EINVAL';
  err.syscall = 'listen';
  err.address = w.address;
  err.port = Number(w.port);
  w.server.emit('error', err);
}

// Asks the daemon for a socket on address:port; the listen goes on once it comes.
function ask(server, port, address, cb, args) {
  if (!hooked) { process.on('internalMessage', onInternal); hooked = true; }
  const id = ++seq;
  const w = { server, port, address, cb };
  // (keeps the process alive meanwhile; no answer: a listen of its own)
  w.timer = setTimeout(() => { pending.delete(id); listen.apply(server, args); }, WAIT_MS);
  pending.set(id, w);
  try {
    process.send({ cmd: 'NODE_PM_LISTEN', seq: id, port: Number(port), address }, (err) => {
      if (err && pending.delete(id)) { clearTimeout(w.timer); listen.apply(server, args); }
    });
  } catch (e) {
    pending.delete(id);
    clearTimeout(w.timer);
    return listen.apply(server, args);
  }
  return server;
}

// The daemon is told once that this process listens (a reload stops the
// process it replaces then, as PM2's waits for a worker's 'listening')
let told = false;
function tell() {
  if (told || typeof process.send !== 'function' || !process.connected) return;
  told = true;
  try { process.send({ cmd: 'NODE_PM_LISTENING' }); } catch (e) { /* (gone) */ }
}

net.Server.prototype.listen = function (...args) {
  // (after the app's own 'listening' callbacks)
  if (!worker && !told) this.once('listening', () => setImmediate(tell));
  let port, host;
  const a = args[0];
  if (typeof a === 'number' || (typeof a === 'string' && /^\d+$/.test(a))) {
    port = String(a);
    if (typeof args[1] === 'string') host = args[1];
  } else if (a && typeof a === 'object' && a.fd === undefined && a.path === undefined && a.port !== undefined &&
      (typeof a.port === 'number' || /^\d+$/.test(String(a.port)))) {
    port = String(a.port);
    if (typeof a.host === 'string') host = a.host;
  }
  if (worker || port === undefined || Number(port) === 0) return listen.apply(this, args);
  const cb = args.find((x) => typeof x === 'function');
  if (map[port] !== undefined) {
    const fd = map[port];
    delete map[port]; // (a second listen, after a close, asks for it again)
    return cb ? listen.call(this, { fd }, cb) : listen.call(this, { fd });
  }
  if (typeof process.send !== 'function' || !process.connected) return listen.apply(this, args);
  if (host === undefined || host === '' || net.isIP(host) !== 0) return ask(this, port, host || '', cb, args);
  require('dns').lookup(host, (err, address) => {
    if (err) { this.emit('error', err); return; }
    ask(this, port, address, cb, args);
  });
  return this;
};
]]

return M
