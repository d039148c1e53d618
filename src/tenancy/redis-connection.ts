// The connection to the Redis (or Valkey) that holds limits shared by every router replica: ioredis,
// set so that a Redis that is down or hung costs a request one timeout at most and never a hang. A
// command waits for the first connection, each command has its timeout, a command in flight when the
// connection drops fails instead of being sent again (an admission must not count twice), and while
// ioredis waits to reconnect (at once, then every second) commands fail at once, so the caller's
// fail-open/closed rule decides quickly instead of stacking requests behind a dead socket.
//
// ioredis is loaded when the first connection is made, not on import: its RESP decoder declares
// `class VerbatimString extends String`, and from then on every loop over a string's `charCodeAt` in
// the process ran 4-8x slower (a 12k-character prompt's session hash: 25-45 µs before, 200-300 µs
// after), so a router without a shared Redis must not load it.
import { createRequire } from "node:module";
import type { Redis } from "ioredis";
import { PeerError } from "../errors/index.js";

const load = createRequire(import.meta.url);

/** Redis cannot be asked now (down, reconnecting, closed, too busy), as opposed to an error reply. */
export class RedisUnavailable extends PeerError {}

export interface RedisConnectionOptions {
  /** redis:// or rediss:// (TLS), with user, password and database as Redis URLs carry them */
  url: string;
  /** the password, given apart from the URL (a Secret's file, an environment variable); wins over the URL's */
  password?: string | undefined;
  /** per command, ms */
  timeout?: number;
  /** between reconnect attempts after the first, ms */
  retryBackoff?: number;
  /** commands in flight before new ones are refused */
  maxPending?: number;
}

export class RedisConnection {
  private readonly client: Redis;
  private readonly maxPending: number;
  private pending = 0;
  private closed = false;
  /** host:port, for messages (never the URL: it may hold a password) */
  private readonly where: string;
  private readonly timeout: number;

  constructor(opts: RedisConnectionOptions) {
    const timeout = opts.timeout ?? 250;
    this.timeout = timeout;
    this.where = new URL(opts.url).host;
    const retryBackoff = opts.retryBackoff ?? 1000;
    this.maxPending = opts.maxPending ?? 10_000;
    const { Redis: Client } = load("ioredis") as typeof import("ioredis");
    this.client = new Client(opts.url, {
      lazyConnect: true,
      commandTimeout: timeout,
      connectTimeout: timeout * 4,
      // the first commands wait for the first connection; later, a command queued while an attempt
      // is under way fails with it (maxRetriesPerRequest 0) or at its timeout
      enableOfflineQueue: true,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      // a dropped connection is tried again at once; a Redis that refuses, every retryBackoff
      retryStrategy: (attempt) => (attempt <= 1 ? 0 : retryBackoff),
      ...(opts.password !== undefined ? { password: opts.password } : {}),
    });
    // each failure reaches its caller through its command's rejection (the limiter logs those)
    this.client.on("error", () => {});
  }

  /** Runs one command; rejects at once while Redis is known down or too many commands are in flight. */
  async run<T>(command: (client: Redis) => Promise<T>): Promise<T> {
    const status = this.client.status;
    if (this.closed || status === "end") throw new RedisUnavailable("redis client closed");
    if (status === "reconnecting" || status === "close")
      throw new RedisUnavailable("redis unreachable (reconnecting)");
    if (this.pending >= this.maxPending) throw new RedisUnavailable("too many redis commands in flight");
    this.pending++;
    try {
      return await command(this.client);
    } catch (err) {
      throw this.explained(err);
    } finally {
      this.pending--;
    }
  }

  /** An error reply as Redis sent it; a transport failure as RedisUnavailable, said plainly. */
  private explained(err: unknown): unknown {
    if (!(err instanceof Error) || err.name === "ReplyError") return err;
    if (err.name === "MaxRetriesPerRequestError")
      return new RedisUnavailable(`cannot connect to redis at ${this.where}`);
    if (err.message === "Command timed out")
      return new RedisUnavailable(`redis at ${this.where} did not answer within ${this.timeout} ms`);
    return new RedisUnavailable(`redis at ${this.where}: ${err.message}`);
  }

  /** Closes at once: commands in flight fail, no reconnect. */
  close(): void {
    this.closed = true;
    this.client.disconnect();
  }
}
