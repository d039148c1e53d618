// Client connections: the cap (`limits.maxConnections`) and who gives way at it. Node's own
// `server.maxConnections` refuses a new connection whatever the open ones are doing, so idle keep-alive
// connections could hold every slot; here, at the cap, a new connection takes the slot of the one idle
// longest, and is refused only when every open one has a request in progress (the rules in full:
// docs/router.md#hardening-and-drain). Node's cap stays a little above as a backstop. Per-connection
// state lives on the socket and in an intrusive list, so joining and leaving the idle list costs a few
// pointer writes per request.
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { LinkedList, type Linked } from "../../collections/linked-list.js";

interface Conn extends Linked<Conn> {
  socket: Socket;
  owner: ClientConnections;
  /** requests on it whose response has not ended (pipelining allows more than one) */
  busy: number;
  /** no request yet: closed if none comes within the headers timeout */
  fresh: boolean;
  /** closed to make room: already left the count */
  reclaimed: boolean;
  /** the socket's bytesRead when it went idle: more since means a request's headers are arriving */
  readAtIdle: number;
}

const CONN = Symbol("switchyard.conn");
type Tracked = Socket & { [CONN]?: Conn };

/** Node's cap for a router cap of `cap`: room for sockets closed but not yet counted out. */
export function backstop(cap: number): number {
  return cap > 0 ? cap + Math.max(16, Math.ceil(cap / 16)) : 0;
}

export interface ConnectionEvents {
  /** a new connection refused: every open one had a request in progress */
  refused(): void;
  /** an idle connection closed to make room for a new one */
  reclaimed(): void;
  /** the count of open connections changed */
  changed?(): void;
}

export class ClientConnections {
  /** open connections with no request in progress, the one idle longest first */
  private readonly idle = new LinkedList<Conn>();
  private open = 0;
  private inProgress = 0;

  constructor(
    server: Server,
    /** the cap; 0 = none */
    private readonly cap: number,
    /** how long a new connection may take to send its first request */
    private readonly firstRequestMs: number,
    private readonly events: ConnectionEvents,
  ) {
    server.on("connection", this.onConnection);
    // before the router's own handler, which may end a response before it returns
    server.prependListener("request", this.onRequest);
  }

  /** Connections counted against the cap now. */
  get count(): number {
    return this.open;
  }

  /** Of those, the ones with a request in progress (never closed to make room). */
  get busy(): number {
    return this.inProgress;
  }

  private readonly onConnection = (socket: Tracked): void => {
    const conn: Conn = {
      socket,
      owner: this,
      busy: 0,
      fresh: true,
      reclaimed: false,
      readAtIdle: 0,
      prev: null,
      next: null,
      list: null,
    };
    socket[CONN] = conn;
    this.open++;
    this.events.changed?.();
    this.idle.push(conn);
    socket.once("close", () => this.closed(conn));
    if (this.firstRequestMs > 0) {
      // Node's own 'timeout' handling destroys a socket nobody else listens for
      socket.setTimeout(this.firstRequestMs);
    }
    if (this.cap > 0 && this.open > this.cap) this.makeRoom(conn);
  };

  private readonly onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const conn = (req.socket as Tracked)[CONN];
    if (!conn) return;
    if (conn.fresh) {
      conn.fresh = false;
      // from here on Node's timers apply (request, headers, keep-alive); a long answer may be silent
      conn.socket.setTimeout(0);
    }
    if (conn.busy++ === 0 && !conn.reclaimed) this.inProgress++;
    this.idle.remove(conn);
    res.once("close", responseClosed);
  };

  /**
   * Closes the connection idle longest for `incoming` (a silent one first, then one sending its
   * headers), or refuses `incoming` when none is idle. Walks the idle list only at the cap.
   */
  private makeRoom(incoming: Conn): void {
    let victim: Conn | null = null;
    let sending: Conn | null = null;
    for (let c = this.idle.head; c !== null; c = c.next) {
      if (c === incoming) continue;
      // bytesRead is counted by the handle, also while Node's HTTP parser consumes the socket natively
      if (c.socket.bytesRead === c.readAtIdle) {
        victim = c;
        break;
      }
      sending ??= c;
    }
    victim ??= sending;
    if (victim !== null) {
      this.forget(victim);
      victim.socket.destroy();
      this.events.reclaimed();
      return;
    }
    this.forget(incoming);
    incoming.socket.destroy();
    this.events.refused();
  }

  private forget(conn: Conn): void {
    if (conn.reclaimed) return;
    conn.reclaimed = true;
    this.idle.remove(conn);
    this.open--;
    if (conn.busy > 0) this.inProgress--;
    this.events.changed?.();
  }

  private closed(conn: Conn): void {
    this.forget(conn);
    delete (conn.socket as Tracked)[CONN];
  }

  /** A response ended: its connection is idle again once none is left in progress. */
  settled(conn: Conn): void {
    if (--conn.busy > 0 || conn.reclaimed) return;
    this.inProgress--;
    if (conn.socket.destroyed) return;
    conn.readAtIdle = conn.socket.bytesRead;
    this.idle.push(conn);
  }
}

/** Shared by every response (no closure per request): `this` is the response. */
function responseClosed(this: ServerResponse): void {
  const conn = (this.req.socket as Tracked | null)?.[CONN];
  if (conn) conn.owner.settled(conn);
}
