// Response affinity: which engine made each Responses API answer. vLLM keeps a stored response in the
// memory of the engine that made it, so a GET, a cancel or a `previous_response_id` follow-up must reach
// that engine. The id is read off the answer as it is relayed; the table is an LRU shared by a router
// group, fair between owners (past its cap the owner holding the most entries loses its oldest). With
// tenancy on an entry holds its tenant's name, and the record travels with the response as an owner tag
// in its `metadata`, so an id the table lost is found on the engines (`locateResponse`).
// See docs/router.md#response-affinity and docs/security.md#tenant-owned-state-routes-and-request-ids.
import { timingSafeEqual } from "node:crypto";
import { detached } from "../../collections/detached.js";
import { LruMap } from "../../collections/lru-map.js";
import { HttpError } from "../../http/errors.js";
import { logger } from "../../obs/log.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import { UpstreamTooLargeError } from "../engines/engine-get.js";

/** Where a response was made: its engine, and the model it was asked of (for the follow-up's metrics). */
export interface ResponseHome {
  engine: string;
  model: string;
  /** the session the response was made in, so a follow-up naming it joins that session */
  session?: string | undefined;
  /** the tenant whose request made it (tenancy on); undefined: made with tenancy off */
  owner?: string | undefined;
}

/**
 * One learned id, as the processes of a router group tell each other. The session is "" when there is
 * none and an owner follows.
 */
export type ResponseLink = [id: string, engine: string, model: string, session?: string, owner?: string];

/**
 * Whether a request of `tenant` (undefined: tenancy off) may reach response `home`: with tenancy off,
 * any; with it on, only the tenant that made it (an entry without an owner belongs to nobody).
 */
export function ownerMay(home: ResponseHome | undefined, tenant: string | undefined): boolean {
  if (tenant === undefined) return true;
  return home !== undefined && home.owner === tenant;
}

const log = logger("router.responses");

/** Links one report may carry; beyond, the oldest are dropped (a follow-up then finds no home: 404). */
/** requests waiting at once for an id the group has not told this process yet; beyond, a 404 at once */
const MAX_WAITING = 256;
const MAX_LINKS_PER_BATCH = 4096;

export class ResponseAffinity {
  private readonly homes = new LruMap<string, ResponseHome>();
  /** each owner's ids ("" for none), least recently used first: what the cap evicts, fairly */
  private readonly byOwner = new Map<string, LruMap<string, true>>();
  /** ids requests wait for (`arrival`), each with its waiters */
  private readonly waiting = new Map<string, Array<(home: ResponseHome) => void>>();
  private waiters = 0;
  private outgoing: ResponseLink[] = [];
  /** ids dropped to keep within the cap */
  evictions = 0;
  /** called once the first link of a batch is ready to send (router groups send or schedule it) */
  onLearned: (() => void) | undefined;
  /** whether this process sends what it learns to others (a router group) */
  sharing = false;
  /** unknown ids being looked up on the engines now (locateResponse), at most MAX_LOOKUPS: this router's */
  lookups = 0;

  constructor(private cap: number) {}

  get size(): number {
    return this.homes.size;
  }

  /** requests waiting for an entry to arrive (`arrival`) */
  get waitingRequests(): number {
    return this.waiters;
  }

  setCap(cap: number): void {
    this.cap = cap;
    this.trim();
  }

  /** The engine that made response `id`, made the most recently used; undefined when unknown. */
  home(id: string): ResponseHome | undefined {
    const h = this.homes.use(id);
    if (h !== undefined) this.byOwner.get(h.owner ?? "")?.touch(id);
    return h;
  }

  /** Entries held for `owner` ("" for entries without one): tests, metrics. */
  ownedBy(owner: string): number {
    return this.byOwner.get(owner)?.size ?? 0;
  }

  /**
   * The home of `id`, waiting up to `ms` for it to come from the rest of the group: a follow-up can
   * overtake the message that tells this process of its response (another worker's, another
   * replica's). Undefined when it does not come, or when too many requests already wait.
   */
  arrival(id: string, ms: number): Promise<ResponseHome | undefined> {
    const known = this.homes.use(id);
    if (known !== undefined || ms <= 0 || this.waiters >= MAX_WAITING) return Promise.resolve(known);
    return new Promise((resolve) => {
      let list = this.waiting.get(id);
      if (list === undefined) this.waiting.set(id, (list = []));
      this.waiters++;
      const arrived = (home: ResponseHome) => {
        clearTimeout(timer);
        this.waiters--;
        resolve(home);
      };
      const timer = setTimeout(() => {
        this.waiters--;
        const l = this.waiting.get(id);
        const at = l?.indexOf(arrived) ?? -1;
        if (at >= 0) l!.splice(at, 1);
        if (l?.length === 0) this.waiting.delete(id);
        resolve(undefined);
      }, ms);
      list.push(arrived);
    });
  }

  /** A response made here (by tenant `owner`, tenancy on): remembered, and told to the rest of the group. */
  remember(found: string, engine: string, model: string, session?: string, owner?: string): void {
    // read off the answer's bytes: kept as it is, the id would keep up to 64 KiB of them alive
    const id = detached(found);
    this.learn(id, engine, model, session, owner);
    if (!this.sharing) return;
    const first = this.outgoing.length === 0;
    if (this.outgoing.length >= MAX_LINKS_PER_BATCH) this.outgoing.shift();
    const link: ResponseLink = [id, engine, model];
    if (session !== undefined || owner !== undefined) link.push(session ?? "");
    if (owner !== undefined) link.push(owner);
    this.outgoing.push(link);
    if (first) this.onLearned?.();
  }

  /** What this process learned since the last call (for the group). */
  take(): ResponseLink[] {
    const out = this.outgoing;
    if (out.length > 0) this.outgoing = [];
    return out;
  }

  /**
   * Another replica's responses. With tenancy on, only from a signed report (`peers.secret`): an
   * unsigned one could name any tenant the owner of any id, so its links are dropped (and counted),
   * and a follow-up there is a 404 until it reaches the replica that made the response.
   */
  applyFromPeer(links: readonly ResponseLink[], signed: boolean, tenancy: boolean): void {
    if (signed || !tenancy) return this.apply(links);
    if (this.unsignedDropped === 0)
      log.warn(
        "stored responses from router replicas are ignored: with tenancy on their owners need signed reports (peers.secret or peers.secretFile)",
      );
    this.unsignedDropped += links.length;
  }

  /** links from unsigned replica reports dropped with tenancy on */
  unsignedDropped = 0;

  /** Others' responses (never sent on again). */
  apply(links: readonly ResponseLink[]): void {
    let n = 0;
    for (const l of links) {
      if (++n > MAX_LINKS_PER_BATCH) break;
      if (Array.isArray(l) && typeof l[0] === "string" && typeof l[1] === "string")
        this.learn(
          l[0],
          l[1],
          typeof l[2] === "string" ? l[2] : "",
          typeof l[3] === "string" && l[3] !== "" ? l[3] : undefined,
          typeof l[4] === "string" && l[4] !== "" ? l[4] : undefined,
        );
    }
  }

  private learn(
    id: string,
    engine: string,
    model: string,
    session: string | undefined,
    owner: string | undefined,
  ): void {
    const home: ResponseHome = { engine, model };
    if (session !== undefined) home.session = session;
    if (owner !== undefined) home.owner = owner;
    const was = this.homes.get(id);
    if (was !== undefined) this.unown(id, was.owner);
    this.homes.set(id, home);
    let ids = this.byOwner.get(owner ?? "");
    if (ids === undefined) this.byOwner.set(owner ?? "", (ids = new LruMap()));
    ids.set(id, true);
    this.trim();
    const w = this.waiting.get(id);
    if (w !== undefined) {
      this.waiting.delete(id);
      for (const f of w) f(home);
    }
  }

  private unown(id: string, owner: string | undefined): void {
    const ids = this.byOwner.get(owner ?? "");
    if (ids === undefined) return;
    ids.delete(id);
    if (ids.size === 0) this.byOwner.delete(owner ?? "");
  }

  /** Past the cap: the least recently used entry of the owner holding the most goes. */
  private trim(): void {
    while (this.homes.size > this.cap) {
      let most: LruMap<string, true> | undefined;
      let mostOwner = "";
      for (const [o, ids] of this.byOwner)
        if (most === undefined || ids.size > most.size) {
          most = ids;
          mostOwner = o;
        }
      const gone = most?.shift();
      if (gone === undefined) {
        // not reachable while both maps agree; keeps the cap whatever happens
        if (!this.homes.shift()) return;
      } else {
        this.homes.delete(gone.key);
        if (most!.size === 0) this.byOwner.delete(mostOwner);
      }
      this.evictions++;
    }
  }
}

/**
 * How long a follow-up in a router group waits for its response's entry with tenancy on (`arrival`):
 * a report interval and as much again for the network with replicas, 100 ms between workers.
 */
export function followUpWaitMs(peers: { bind?: string | undefined; interval: number }): number {
  return peers.bind ? Math.max(100, 2 * peers.interval) : 100;
}

/** unknown ids looked up on the engines at once; past it an unknown id is answered 404 at once */
const MAX_LOOKUPS = 64;
/** a stored response is in memory: an engine that has not answered in this long is not asked again */
const LOOKUP_TIMEOUT_MS = 2_000;

/** a stored response read whole to find its owner's tag (its output can be long) */
const OWNED_LOOKUP_BYTES = 8 * 1024 * 1024;

/** A tenant asking for a response, the tag its responses carry and the metadata key it is under (tenancy on). */
export interface OwnerProof {
  tenant: string;
  tag: string;
  /** the metadata key the router writes the tag under (the tenancy gate's) */
  field: string;
}

/** Whether a stored response's body (vLLM's JSON) carries `tag` as its owner's under `field`. */
export function ownedBy(body: string, field: string, tag: string): boolean {
  let o: unknown;
  try {
    o = JSON.parse(body);
  } catch {
    return false;
  }
  const md = o !== null && typeof o === "object" ? (o as Record<string, unknown>).metadata : undefined;
  const got = md !== null && typeof md === "object" ? (md as Record<string, unknown>)[field] : undefined;
  if (typeof got !== "string") return false;
  const a = Buffer.from(got);
  const b = Buffer.from(tag);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * An id the router does not hold (it restarted; a replica that made it has not reported yet, or is
 * gone): each engine that could hold it is asked for it (`GET /v1/responses/{id}`, as a client
 * would), and the one that answers 200 is remembered as its home. With tenancy on (`owner`), only an
 * answer carrying the asking tenant's owner tag counts: another tenant's response, or one made
 * without a tag, is not found. Undefined when none holds it, or too many lookups are under way (each
 * costs a request to every engine).
 */
export async function locateResponse(
  registry: EngineRegistry,
  affinity: ResponseAffinity,
  id: string,
  model: string | undefined,
  owner?: OwnerProof,
): Promise<ResponseHome | undefined> {
  if (affinity.lookups >= MAX_LOOKUPS) return undefined;
  const path = `/v1/responses/${encodeURIComponent(id)}`;
  const asked: Promise<string | undefined>[] = [];
  for (const e of registry.engines.values()) {
    if (e.draining || !e.healthy || (model !== undefined && !e.view.models.has(model))) continue;
    asked.push(
      owner
        ? registry.get(e, path, LOOKUP_TIMEOUT_MS, OWNED_LOOKUP_BYTES).then(
            (body) => (ownedBy(body, owner.field, owner.tag) ? e.url : undefined),
            () => undefined,
          )
        : registry.get(e, path, LOOKUP_TIMEOUT_MS, 64 * 1024).then(
            () => e.url,
            // a stored response larger than the router reads is still there
            (err: unknown) => (err instanceof UpstreamTooLargeError ? e.url : undefined),
          ),
    );
  }
  if (asked.length === 0) return undefined;
  affinity.lookups++;
  let engine: string | undefined;
  try {
    for (const url of await Promise.all(asked)) engine ??= url;
  } finally {
    affinity.lookups--;
  }
  if (engine === undefined) return undefined;
  const any = registry.engines.get(engine)?.view.models.values().next().value;
  const home: ResponseHome = { engine, model: model ?? any ?? "" };
  if (owner) home.owner = owner.tenant;
  affinity.remember(id, home.engine, home.model, undefined, owner?.tenant);
  return home;
}

/** vLLM's answer for a response id it does not hold (entrypoints/openai, responses serving). */
export function responseNotFound(id: string): HttpError {
  return new HttpError(
    404,
    `Response with id '${id}' not found.`,
    "response_id",
    {},
    "invalid_request_error",
  );
}

/** vLLM's response ids; output items inside an answer have other prefixes (msg_, rs_, fc_) */
const RESPONSE_ID = /"id"\s*:\s*"(resp_[^"\\]{1,256})"/;
/** the id comes first in vLLM's answer and its first event: past this much, it is not coming */
const MAX_SCAN_CHARS = 64 * 1024;
/** characters kept from the last chunk, so an id split between two chunks is still found */
const OVERLAP = 300;

/** Reads a Responses answer's id off the bytes relayed, JSON or event stream, within its first 64 KiB. */
export class ResponseIdScan {
  private carry = "";
  private seen = 0;

  /** The id once found; null once it cannot be found any more; undefined: keep feeding. */
  feed(chunk: Buffer): string | null | undefined {
    const text = this.carry + chunk.toString("utf8", 0, Math.min(chunk.length, MAX_SCAN_CHARS));
    const m = RESPONSE_ID.exec(text);
    if (m) return m[1]!;
    this.seen += chunk.length;
    if (this.seen >= MAX_SCAN_CHARS) return null;
    this.carry = text.length > OVERLAP ? text.slice(text.length - OVERLAP) : text;
    return undefined;
  }
}
