// The router's CURVE keys on the KV-event sockets it opens (`routing.kvEvents.curve`): loaded, reloaded
// when a Secret rotates, and per publisher the choice of CURVE with its server key, plain, or no
// subscription at all; an endpoint beyond this host taken in plain is said once, unless `plain: true`
// says it is meant.
import {
  curveClientFor,
  endpointIsLocal,
  engineKeyFor,
  loadCurveKeys,
  type CurveClient,
  type CurveKeys,
} from "../../kvevents/curve.js";
import { logger } from "../../obs/log.js";
import type { RouterConfig } from "../config/config.js";

const log = logger("router.cache");

/** endpoints warned about (plain beyond this host, CURVE without a server key) at most, then silent */
const MAX_WARNED_ENDPOINTS = 1024;

export class SubscriptionKeys {
  /** the router's CURVE keys (routing.kvEvents.curve), null: plain */
  private curve: CurveKeys | null;
  /** the keys as last loaded, to see a rotation (in memory only) */
  private curveSeen: string;
  private readonly warned = new Set<string>();

  constructor(
    cfg: RouterConfig,
    /** `routing.kvEvents.plain` as configured now: plain endpoints are meant */
    private readonly plainMeant: () => boolean,
  ) {
    const files = cfg.routing.kvEvents.curve;
    this.curve = files ? loadCurveKeys(files) : null;
    this.curveSeen = fingerprint(this.curve);
  }

  /** the keys, null: plain; a new object whenever they change */
  get keys(): CurveKeys | null {
    return this.curve;
  }

  /**
   * Re-reads the key files (a reload after a rotated Secret); true when the keys changed. A file that
   * cannot be read now keeps the keys in use: the config's own check would have refused the reload,
   * so this is a file changed in between.
   */
  reload(cfg: RouterConfig): boolean {
    const files = cfg.routing.kvEvents.curve;
    let next: CurveKeys | null;
    try {
      next = files ? loadCurveKeys(files) : null;
    } catch (err) {
      log.error({ err: (err as Error).message }, "KV-event CURVE keys not reloaded; keeping the keys in use");
      return false;
    }
    const seen = fingerprint(next);
    if (seen === this.curveSeen) return false;
    this.curve = next;
    this.curveSeen = seen;
    return true;
  }

  /** Says a thing about an endpoint once (bounded: a fleet of ten thousand engines says the first thousand). */
  private warnOnce(key: string, fn: () => void): void {
    if (this.warned.has(key) || this.warned.size >= MAX_WARNED_ENDPOINTS) return;
    this.warned.add(key);
    fn();
  }

  /** A plain KV-event endpoint beyond this host, without `routing.kvEvents.plain`: said once. */
  warnPlain(endpoint: string, what: string): void {
    if (this.plainMeant() || endpointIsLocal(endpoint)) return;
    this.warnOnce(`plain ${endpoint}`, () =>
      log.warn(
        { endpoint },
        `${what} without authentication: any process that reaches it can publish KV events as an engine and steer routing. ` +
          "Keep it on a private network (vLLM's publisher cannot do CURVE) and set routing.kvEvents.plain: true to say so, " +
          "or give Switchyard's publishers and the router CURVE keys (routing.kvEvents.curve)",
      ),
    );
  }

  /**
   * How to reach one publisher: CURVE with its server key, plain (no keys, or a backend marked plain),
   * or undefined when the router has keys but none for this publisher (it is not subscribed to: taking
   * it in plain would undo the keys).
   */
  clientSecurity(
    endpoint: string,
    src: { serverKey?: string | undefined; plain?: boolean | undefined },
    url: string,
  ): CurveClient | null | undefined {
    const keys = this.curve;
    // the engine's own key (its backend's kvEvents.serverKey, or engines.keys) binds its events to
    // the holder of that engine's secret; the shared server key only where neither names one
    const choice = curveClientFor(keys, src, keys ? engineKeyFor(keys, url) : undefined);
    if (choice.mode === "curve") return choice.curve;
    if (choice.mode === "plain") {
      if (!src.plain) this.warnPlain(endpoint, `KV events from ${endpoint} are taken`);
      return null;
    }
    this.warnOnce(`nokey ${endpoint}`, () =>
      log.error(
        { endpoint, keys: keys?.source },
        "not subscribed to KV events: the router has CURVE keys but no server key for this publisher (its line in engines.keys, the backend's kvEvents.serverKey, or server.key; kvEvents.plain for an engine that cannot do CURVE)",
      ),
    );
    return undefined;
  }

  /** the engine's replay socket is CURVE like its publisher: believed with the publishers' key */
  replayCurve(url: string): CurveClient | null {
    const replayKey = this.curve ? (engineKeyFor(this.curve, url) ?? this.curve.serverKey) : null;
    return this.curve && replayKey ? { keys: this.curve, serverKey: replayKey } : null;
  }

  /** the engine's own public key, which the collector checks its publisher against */
  engineKey(url: string): string | undefined {
    return this.curve ? engineKeyFor(this.curve, url) : undefined;
  }
}

/** The keys as compared across reloads (engines.keys is a Map, which JSON would write as {}). */
function fingerprint(keys: CurveKeys | null): string {
  return JSON.stringify(keys && { ...keys, engineKeys: keys.engineKeys ? [...keys.engineKeys] : null });
}
