// API-key lookup. Only sha256 digests of keys are held; a presented key is hashed once and looked
// up by digest. A Map lookup leaks timing about the digest at most, never about the key (finding a
// key from digest bits needs a sha256 preimage); the final byte compare is constant-time anyway.
import { createHash, timingSafeEqual } from "node:crypto";
import { HttpError } from "../http/errors.js";
import type { KeyEntry } from "./config.js";

export function hashKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** Keys longer than this are refused before hashing: no reason to hash megabytes per request. */
export const MAX_KEY_LENGTH = 512;

interface Held {
  digest: Buffer;
  tenant: string;
}

export type KeyCheck =
  { kind: "tenant"; tenant: string } | { kind: "admin" } | { kind: "missing" } | { kind: "invalid" };

/** Immutable once built, so a reload swaps the whole table in one assignment. */
export class KeyTable {
  private readonly byHash = new Map<string, Held>();
  private readonly admin = new Map<string, Buffer>();

  constructor(keys: readonly KeyEntry[], adminHashes: readonly string[]) {
    for (const k of keys) this.byHash.set(k.hash, { digest: Buffer.from(k.hash, "hex"), tenant: k.tenant });
    for (const h of adminHashes) this.admin.set(h, Buffer.from(h, "hex"));
  }

  get size(): number {
    return this.byHash.size;
  }

  get hasAdmin(): boolean {
    return this.admin.size > 0;
  }

  /** Reads `Authorization: Bearer <key>`; anything else counts as no key. */
  check(authorization: string | string[] | undefined): KeyCheck {
    const key = bearer(authorization);
    if (key === undefined) return { kind: "missing" };
    if (key.length > MAX_KEY_LENGTH) return { kind: "invalid" };
    const hex = hashKey(key);
    const digest = Buffer.from(hex, "hex");
    const a = this.admin.get(hex);
    if (a && timingSafeEqual(a, digest)) return { kind: "admin" };
    const t = this.byHash.get(hex);
    if (t && timingSafeEqual(t.digest, digest)) return { kind: "tenant", tenant: t.tenant };
    return { kind: "invalid" };
  }
}

function bearer(h: string | string[] | undefined): string | undefined {
  if (typeof h !== "string") return undefined;
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1] : undefined;
}

// Messages match OpenAI's wording closely enough for clients that show them, and never echo the key.
export function missingKeyError(): HttpError {
  return new HttpError(
    401,
    "You didn't provide an API key. Provide it in the Authorization header (Authorization: Bearer YOUR_KEY).",
    null,
    { "www-authenticate": 'Bearer realm="switchyard"' },
  );
}

export function invalidKeyError(): HttpError {
  return new HttpError(401, "Incorrect API key provided.", null, {
    "www-authenticate": 'Bearer realm="switchyard"',
  });
}

export function adminOnlyError(): HttpError {
  return new HttpError(403, "this endpoint needs the router's admin key");
}

export function adminDisabledError(): HttpError {
  return new HttpError(403, "admin endpoints are disabled: no admin key is configured");
}
