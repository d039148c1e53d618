// What every ZMQ socket that reads from the network may take, and what it refused. vLLM's KV-event
// publisher has no authentication, and a router's collector binds where any engine can reach it; a
// single 256 MiB frame sent to one took a router from 206 to 469 MB resident. So each reading socket has libzmq's
// `maxMessageSize`: libzmq reads a frame's length first and, when it is over the cap, closes that
// peer's connection before allocating anything (the sender reconnects; the message is lost). libzmq
// says nothing more than "disconnected" when it does, so that is what is counted. A cap per frame
// cannot bound a message of many frames, which libzmq assembles whole before handing it over: those
// are measured here and dropped, counted as oversized.
//
// The counts are per process, not per socket: a /metrics family must exist in every router process
// whether or not it has such a socket yet, and sockets come and go with engines.
import type { Socket } from "zeromq";

/**
 * The largest KV-event message (one scheduler step's batch) taken by default: a step prefilling 128k
 * tokens writes under 1 MB.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 8 * 2 ** 20;

/** Control messages (a replay request, a subscription) are a few bytes; this is generous. */
export const CONTROL_MAX_MESSAGE_BYTES = 64 * 1024;

/** The reading sockets, as the metrics label them. */
export type GuardedSocket = "kv-subscriber" | "kv-collector" | "kv-relay" | "kv-replay" | "peers";

export interface ZmqGuardCounts {
  /** peer connections that ended: a peer that went away, or one libzmq cut off for a frame over the cap */
  disconnects: Record<GuardedSocket, number>;
  /** messages whose frames each passed libzmq's cap but whose whole was over it, dropped here */
  oversized: Record<GuardedSocket, number>;
  /**
   * connections that failed the security handshake: on a CURVE server, a client that is not allowed
   * (zap.ts) or speaks without CURVE; on a CURVE client, a server that does not hold the expected key
   */
  authFailures: Record<GuardedSocket, number>;
  /** KV-event batches held on one message's word and dropped when the publisher's own stream refuted them */
  refuted: number;
  /** counts in router replicas' reports cut to what one engine can plausibly hold (src/router/cluster/peers.ts) */
  peerCountsClamped: number;
}

const zero = (): Record<GuardedSocket, number> => ({
  "kv-subscriber": 0,
  "kv-collector": 0,
  "kv-relay": 0,
  "kv-replay": 0,
  peers: 0,
});

/** This process's counts, read by /metrics. */
export const zmqGuardCounts: ZmqGuardCounts = {
  disconnects: zero(),
  oversized: zero(),
  authFailures: zero(),
  refuted: 0,
  peerCountsClamped: 0,
};

/** Bytes in a message's frames together. */
export function messageBytes(frames: readonly Buffer[]): number {
  let n = 0;
  for (const f of frames) n += f.length;
  return n;
}

/** True (and counted) when a message received whole is over `cap` bytes: the caller drops it. */
export function oversized(frames: readonly Buffer[], cap: number, socket: GuardedSocket): boolean {
  if (messageBytes(frames) <= cap) return false;
  zmqGuardCounts.oversized[socket]++;
  return true;
}

/**
 * Starts the socket's event monitor now, before it binds or connects: libzmq reports only what happens
 * once the monitor exists, and a handshake refused in between would go unseen (a plain peer's is never
 * tried again). zeromq.js keeps one monitor per socket, which watchDisconnects then reads.
 */
export function observeFromNow(socket: Socket): void {
  void socket.events;
}

/**
 * Counts the socket's ended peer connections and failed security handshakes until it closes;
 * `on.disconnect` hears each ended connection too, `on.connect` each new one and `on.authFailure` each
 * failed handshake. One consumer per socket: zeromq.js hands each event to one reader.
 */
export async function watchDisconnects(
  socket: Socket,
  name: GuardedSocket,
  on: { disconnect?: () => void; connect?: () => void; authFailure?: (why: string) => void } = {},
): Promise<void> {
  try {
    for await (const ev of socket.events) {
      if (ev.type === "connect") on.connect?.();
      if (ev.type.startsWith("handshake:error")) {
        zmqGuardCounts.authFailures[name]++;
        on.authFailure?.(ev.type);
      }
      if (ev.type !== "disconnect") continue;
      zmqGuardCounts.disconnects[name]++;
      on.disconnect?.();
    }
  } catch {
    // the event stream ends with the socket
  }
}
