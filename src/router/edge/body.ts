// Reads a JSON request body with the same limits and messages as src/http/body.ts's readBody, but
// with plain 'data'/'end' listeners: the async-iterator version allocates an iterator and a promise
// per chunk, which showed up on the router's per-request profile. The listeners are module-level
// functions that find their state on the request (no closures per request), and settle once.
//
// The body idle timeout (slowloris) rides on the proxy's shared coarse DeadlineQueue rather than
// `socket.setTimeout`: node parses a POST's headers before its body, so the body is never complete
// when reading starts, and a socket timer (plus the promise and closures around it) per request
// was a measurable share of the router's allocations.
import type { IncomingMessage } from "node:http";
import { HttpError } from "../../http/errors.js";
import { bodyTooLarge } from "../../http/body.js";
import type { LinkedList } from "../../collections/linked-list.js";
import type { Deadline, DeadlineQueue } from "../dataplane/deadlines.js";
import { CancelledError } from "../../errors/index.js";

const EMPTY = Buffer.alloc(0);

/** A client that stops sending its body for `ms` gets 408 (and the connection closes). */
export interface BodyIdle {
  queue: DeadlineQueue;
  ms: number;
}

const STATE = Symbol("switchyard.bodyRead");
type Reading = IncomingMessage & { [STATE]?: BodyRead };

/** One body being read: its chunks, its promise's settlers and its idle deadline. */
class BodyRead implements Deadline {
  first: Buffer | undefined = undefined;
  more: Buffer[] | undefined = undefined;
  size = 0;
  done = false;
  // the Deadline fields (the idle timeout is this object itself)
  at = 0;
  prev: Deadline | null = null;
  next: Deadline | null = null;
  list: LinkedList<Deadline> | null = null;

  constructor(
    readonly req: Reading,
    readonly limit: number,
    readonly idle: BodyIdle | undefined,
    readonly resolve: (b: Buffer) => void,
    readonly reject: (e: Error) => void,
  ) {}

  settle(err: Error | undefined): void {
    this.done = true;
    if (this.idle) this.idle.queue.disarm(this);
    const req = this.req;
    req.off("data", onData);
    req.off("end", onEnd);
    req.off("error", onError);
    req.off("close", onClose);
    req[STATE] = undefined;
    if (err) {
      this.first = this.more = undefined;
      this.reject(err);
    } else this.resolve(this.more ? Buffer.concat(this.more, this.size) : (this.first ?? EMPTY));
  }

  /** idle deadline */
  fire(): void {
    if (this.done) return;
    const ms = this.idle!.ms;
    this.settle(new HttpError(408, `no request body bytes for ${ms} ms`, null, { connection: "close" }));
  }
}

function onData(this: Reading, chunk: Buffer): void {
  const s = this[STATE];
  if (!s || s.done) return;
  s.size += chunk.length;
  if (s.size > s.limit) {
    // the rest of the body is dropped after the answer (lingerAfterRefusal), never kept
    s.settle(bodyTooLarge("request body", s.limit));
    return;
  }
  if (s.first === undefined) s.first = chunk;
  else {
    (s.more ??= [s.first]).push(chunk);
    // another chunk: the client is alive
    if (s.idle && s.list !== null) s.idle.queue.arm(s, s.idle.ms);
  }
}

function onEnd(this: Reading): void {
  const s = this[STATE];
  if (s && !s.done) s.settle(undefined);
}

function onError(this: Reading, err: Error): void {
  const s = this[STATE];
  if (s && !s.done) s.settle(err);
}

function onClose(this: Reading): void {
  const s = this[STATE];
  if (s && !s.done)
    s.settle(new CancelledError("client closed the connection before sending the whole body"));
}

export function readRequestBody(req: IncomingMessage, limitBytes: number, idle?: BodyIdle): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limitBytes) {
    return Promise.reject(bodyTooLarge(`request body of ${declared} bytes`, limitBytes));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const r = req as Reading;
    const s = new BodyRead(r, limitBytes, idle, resolve, reject);
    r[STATE] = s;
    if (idle && idle.ms > 0) idle.queue.arm(s, idle.ms);
    r.on("data", onData);
    r.on("end", onEnd);
    r.on("error", onError);
    r.on("close", onClose);
  });
}
