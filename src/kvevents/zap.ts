// The process's ZAP handler (ZMQ RFC 27): which CURVE clients a server socket lets in. CURVE alone
// authenticates only the server; any client that knows the server's public key (which is public) gets
// through. A collector that engines publish to must know who is publishing, so it names the clients'
// public keys it accepts, and libzmq asks this handler about each new connection before it passes a
// single message on. libzmq asks the one handler bound at inproc://zeromq.zap.01 in the socket's
// context (zeromq.js: one context per process), so every server socket registers a domain of its own
// here with its allow-list (or none: any client that knows the server key); a domain nobody registered
// is refused, so no CURVE server in this process is open by accident.
//
// The handler's socket keeps the event loop alive while it reads, so it exists only while some server
// socket is registered, and closes with the last one.
import { Router } from "zeromq";
import { logger } from "../obs/log.js";
import { z85Encode } from "./curve.js";
import { BindError } from "../errors/index.js";

const ZAP_ENDPOINT = "inproc://zeromq.zap.01";
const log = logger("kvevents.zap");

interface Domain {
  /** the clients' public keys (Z85) let in; null: any client holding the server's public key */
  allow: ReadonlySet<string> | null;
  /** names the socket in logs */
  label: string;
  /** clients refused so far */
  denied: number;
}

const domains = new Map<string, Domain>();
// process-wide: libzmq asks the one handler bound at inproc://zeromq.zap.01 in the process's context,
// so the handler, its read loop, the queue of opens and closes and the domain counter are the process's
const zap = {
  handler: null as Router | null,
  loop: Promise.resolve() as Promise<void>,
  /** opens and closes run one at a time */
  chain: Promise.resolve() as Promise<unknown>,
  counter: 0,
};

export interface ZapRegistration {
  /** set it as the server socket's `zapDomain` */
  readonly domain: string;
  /** clients this socket refused (unknown key, or not CURVE) */
  readonly denied: number;
  /** call after the socket is closed */
  release(): Promise<void>;
}

/**
 * Registers a server socket's allow-list and makes sure the handler is bound. Await it before the socket
 * binds: a CURVE server with no handler in its context lets every client in.
 */
export function registerZap(label: string, clientKeys: readonly string[] | null): Promise<ZapRegistration> {
  const domain = `switchyard-${label}-${process.pid}-${++zap.counter}`;
  const d: Domain = { allow: clientKeys ? new Set(clientKeys) : null, label, denied: 0 };
  const run = zap.chain.then(async () => {
    domains.set(domain, d);
    if (!zap.handler) await open();
  });
  zap.chain = run.catch(() => undefined);
  return run.then(
    () => ({
      domain,
      get denied() {
        return d.denied;
      },
      release: () => release(domain),
    }),
    (err: unknown) => {
      domains.delete(domain);
      throw err;
    },
  );
}

function release(domain: string): Promise<void> {
  const run = zap.chain.then(async () => {
    if (!domains.delete(domain) || domains.size > 0 || !zap.handler) return;
    const h = zap.handler;
    zap.handler = null;
    h.close();
    await zap.loop;
  });
  zap.chain = run.catch(() => undefined);
  return run;
}

async function open(): Promise<void> {
  const h = new Router({ linger: 0 });
  // a handler closed a moment ago may still hold the inproc name while libzmq's reaper lets it go
  for (let tries = 0; ; tries++) {
    try {
      await h.bind(ZAP_ENDPOINT);
      break;
    } catch (err) {
      if ((err as { code?: string }).code !== "EADDRINUSE" || tries >= 500) {
        h.close();
        throw new BindError(`cannot start the ZAP handler: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  }
  zap.handler = h;
  zap.loop = serve(h);
}

const OK = Buffer.from("200");
const DENIED = Buffer.from("400");
const EMPTY = Buffer.alloc(0);

/** [identity, "", version, request id, domain, address, routing id, mechanism, credentials...] */
async function serve(h: Router): Promise<void> {
  try {
    for await (const f of h) {
      if (f.length < 8) continue;
      const [identity, , version, requestId, domainF, address, , mechanism, key] = f;
      const d = domains.get(domainF!.toString("latin1"));
      let ok = false;
      if (d && mechanism!.toString("latin1") === "CURVE" && key?.length === 32)
        ok = d.allow === null || d.allow.has(z85Encode(key));
      if (!ok && d) {
        d.denied++;
        // one line per refused connection attempt would let a client fill the log: the first, then every 100th
        if (d.denied === 1 || d.denied % 100 === 0)
          log.warn(
            { socket: d.label, address: address!.toString("latin1"), denied: d.denied },
            "a ZMQ client was refused: its CURVE public key is not among the allowed client keys",
          );
      }
      await h.send([identity!, EMPTY, version!, requestId!, ok ? OK : DENIED, ok ? "OK" : "denied", "", ""]);
    }
  } catch {
    // the handler closed
  }
}
