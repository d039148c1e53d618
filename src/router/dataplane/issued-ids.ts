// Which token-in requests (`/inference/v1/generate`) the router has in flight, and for whom, so that
// `/inference/v1/abort_requests` stops only the caller's own. vLLM names such a request
// `generate-tokens-<X-Request-Id>` and aborts whatever ids it is given: with the ids relayed as sent,
// one tenant could stop another's generations by guessing or reading their ids. The engine gets the
// router's own X-Request-Id (random), and the client may name its request by the id the answer
// carries (`generate-tokens-<router's id>`) or by the one it chose (`generate-tokens-<its X-Request-Id>`);
// an abort keeps only the ids its tenant issued, turned into the engine's, and drops the rest as the
// engine drops an id it does not know. Entries live while their requests do (bounded by the requests
// in flight, and a cap beyond which the oldest go).
import { LruMap } from "../../collections/lru-map.js";

/** vLLM's prefix for a token-in request's id (vllm/entrypoints/serve, the generate route). */
export const GENERATE_ID_PREFIX = "generate-tokens-";

/** A request's names under its owner, for its removal at its end. */
export interface Issued {
  readonly keys: readonly string[];
  readonly upstream: string;
}

/** names remembered at once; beyond, the oldest are forgotten (their abort then reaches nothing) */
const DEFAULT_CAP = 65_536;

export class IssuedIds {
  /** `owner \n name` → the engine's id */
  private readonly names = new LruMap<string, string>();
  /** names forgotten to keep within the cap */
  evictions = 0;

  constructor(private readonly cap = DEFAULT_CAP) {}

  get size(): number {
    return this.names.size;
  }

  /**
   * A token-in request sent with the router's id `routerId`, by `owner` (its tenant; "" with tenancy
   * off), whose client named it `clientId` (its X-Request-Id), if it did.
   */
  add(owner: string, routerId: string, clientId: string | undefined): Issued {
    const upstream = GENERATE_ID_PREFIX + routerId;
    const keys = [`${owner}\n${upstream}`];
    if (clientId !== undefined && clientId !== routerId)
      keys.push(`${owner}\n${GENERATE_ID_PREFIX}${clientId}`);
    for (const k of keys) this.names.set(k, upstream);
    while (this.names.size > this.cap && this.names.shift()) this.evictions++;
    return { keys, upstream };
  }

  /** The request ended: nothing can abort it any more (a later one under the same client id stays). */
  remove(issued: Issued): void {
    for (const k of issued.keys) if (this.names.get(k) === issued.upstream) this.names.delete(k);
  }

  /**
   * The engine's ids of those `ids` (an abort's `request_ids`: a list, or one string) that `owner`'s
   * requests in flight carry; every other id is left out, unless `keepUnknown` (tenancy off: there
   * is no other tenant, and a request sent to an engine directly may be named) keeps it as it is.
   */
  scope(owner: string, ids: unknown, keepUnknown = false): string[] {
    const out: string[] = [];
    for (const id of Array.isArray(ids) ? (ids as unknown[]) : [ids]) {
      if (typeof id !== "string") continue;
      const upstream = this.names.get(`${owner}\n${id}`) ?? (keepUnknown ? id : undefined);
      if (upstream !== undefined && !out.includes(upstream)) out.push(upstream);
    }
    return out;
  }
}
