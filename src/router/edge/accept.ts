// Listening on several sockets at once (SO_REUSEPORT, Node's `reusePort`), so that a storm of new
// connections is accepted in a few event-loop turns rather than hundreds: since libuv 1.45 a listening
// socket accepts one connection per turn, and a busy router took up to a second to accept a burst.
// Another process of the same user could join the port's group silently, so several sockets are used
// only on an explicit port, after a plain bind has proved it free; `limits.listenSockets` is 64 by
// default (auto): a busy router took 39 turns (0.5 s) to accept a burst of 256 new connections on 8
// sockets and about 10 (60-70 ms) on 64, and 1 turns it off. Router workers each listen on sockets
// of their own in the group, auto sharing the 64 out between them.
// The measurements and the hazard in full: docs/router.md#hardening-and-drain.
import cluster from "node:cluster";
import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import type { Server } from "node:http";

/**
 * `limits.listenSockets: auto`. The kernel picks a connection's socket by a hash of its addresses, so
 * a burst is accepted in as many turns as the busiest socket got connections: 256 over 64 sockets is
 * 4 each on average and about 10 at the most, over 8 it is 32 and about 40.
 */
export const AUTO_LISTEN_SOCKETS = 64;

/**
 * `auto` for one of `groupSize` processes listening on the port together (router workers): the
 * group's AUTO_LISTEN_SOCKETS shared out, since a burst spreads over every socket in the group and
 * each process accepts its own at once.
 */
export function autoListenSockets(groupSize: number): number {
  return Math.max(1, Math.ceil(AUTO_LISTEN_SOCKETS / Math.max(1, groupSize)));
}

/**
 * Node's per-socket cap when `sockets` share `maxConnections`: an equal share plus four standard
 * deviations of the kernel's hash spread, so that the busiest socket does not refuse connections while
 * the router's own count (which sees them all) still has room.
 */
export function socketShare(maxConnections: number, sockets: number): number {
  if (maxConnections <= 0 || sockets <= 1) return 0;
  const mean = maxConnections / sockets;
  return Math.ceil(mean + 4 * Math.sqrt(mean));
}

/** True where `listen({ reusePort })` exists (Node 22.12+, 23.1+) and spreads connections (Linux). */
export function reusePortSupported(
  version: string = process.versions.node,
  platform: NodeJS.Platform = process.platform,
): boolean {
  if (platform !== "linux") return false;
  const [major = 0, minor = 0] = version.split(".").map(Number);
  return major >= 24 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

export interface Listening {
  /** sockets accepting for the server (1 where reusePort is not available) */
  readonly sockets: number;
  /**
   * Stops the extra sockets accepting (the server's own is closed by server.close()); resolves once
   * every connection they accepted has ended. The server counts only the connections its own socket
   * accepted, so its close callback alone would fire while streams on the others are still open.
   */
  close(): Promise<void>;
}

/**
 * Listens `server` on host:port with up to `sockets` listening sockets. `maxConnections` (0 = none)
 * bounds the connections the sockets accept together: each socket takes a share (socketShare), since
 * the kernel spreads new connections over them; `onDrop` is called for each one refused.
 */
export async function listenOnSockets(
  server: Server,
  port: number,
  host: string,
  sockets: number,
  maxConnections: number,
  onDrop: () => void,
  /** a router worker whose primary proved the port free: it binds its own sockets (see above) */
  ownSockets = false,
): Promise<Listening> {
  const own = ownSockets && cluster.isWorker;
  const n = own || (port !== 0 && !cluster.isWorker && reusePortSupported()) ? sockets : 1;
  // one socket keeps the server's own maxConnections; several take a share of it each
  const share = socketShare(maxConnections, n);
  if (share > 0) server.maxConnections = share;
  // EADDRINUSE here, as a plain listener would get, rather than joining another process's group
  if (n > 1 && !own) await provePortFree(port, host);
  await listen(server, own || n > 1 ? { port, host, reusePort: true, exclusive: own } : { port, host });
  const extra: NetServer[] = [];
  try {
    for (let i = 1; i < n; i++) {
      const s = createNetServer((sock: Socket) => server.emit("connection", sock));
      if (share > 0) s.maxConnections = share;
      s.on("drop", onDrop);
      extra.push(s);
      await listen(s, { port, host, reusePort: true, exclusive: own });
    }
  } catch (err) {
    for (const s of extra) s.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    throw err;
  }
  return {
    sockets: n,
    close: () =>
      Promise.all(extra.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => {}),
  };
}

/**
 * Called by a router's primary before it starts any worker: proves an explicit port free (so a taken
 * one fails there with EADDRINUSE, as a lone router does, instead of in every worker), and says
 * whether the workers can each bind sockets of their own on it.
 */
export async function workersOwnSockets(port: number, host: string): Promise<boolean> {
  if (port === 0) return false;
  await provePortFree(port, host);
  return reusePortSupported();
}

/** A plain bind on host:port, released at once: rejects with EADDRINUSE where the port is taken. */
async function provePortFree(port: number, host: string): Promise<void> {
  const probe = createNetServer();
  await listen(probe, { port, host });
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

function listen(
  s: NetServer | Server,
  opts: { port: number; host: string; reusePort?: boolean; exclusive?: boolean },
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    s.once("error", reject);
    s.listen(opts, () => {
      s.off("error", reject);
      resolve();
    });
  });
}
