// Generated and mutated requests for fuzzing the router's request path (whatever a client sends, the
// router answers without a 5xx, an unsafe echo or a crash), and the driver that sends them over
// keep-alive connections and checks every answer. Shared by
// test/tenancy/router-fuzz.test.ts (a slice) and bench/tenancy/fuzz.ts (100 000 requests).
//
// The rule checked: a client's error is never a 5xx. Every generated request is either valid (the
// stand-in upstream answers 200, or the tenant's limit answers 429) or broken by the client (4xx); a
// 5xx, a request with no answer, an unsafe X-Request-Id echo or a dead router fails the run.
import { Pool } from "undici";

export const FUZZ_MODEL = "bench/m";
export const FUZZ_KEYS = {
  good: "sk-fuzz-good-000000000000",
  limited: "sk-fuzz-limited-0000000000",
  admin: "sk-fuzz-admin-00000000000",
};

/** The router's tenancy block for a fuzz run (hash function passed in to keep this file dependency-free). */
export function fuzzTenancy(hash: (k: string) => string): Record<string, unknown> {
  return {
    tenants: { good: {}, limited: { limits: { requestsPerMinute: 600, maxConcurrent: 2 } } },
    keys: [
      { hash: hash(FUZZ_KEYS.good), tenant: "good" },
      { hash: hash(FUZZ_KEYS.limited), tenant: "limited" },
    ],
    adminKeys: [hash(FUZZ_KEYS.admin)],
  };
}

export interface FuzzRequest {
  kind: string;
  method: "GET" | "POST" | "PUT" | "DELETE" | "HEAD";
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

/** xorshift32: fast, seeded, good enough to pick mutations. */
export class Rand {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

const PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/tokenize", "/v1/responses"];
const JUNK_VALUES: unknown[] = [
  null,
  true,
  -1,
  0,
  1e308,
  -0.5,
  "",
  "x".repeat(300),
  [],
  {},
  [1, "a", null],
  { nested: { deeper: [1, 2, { x: "y" }] } },
  "\u0000\uffff\ud800",
  "💥",
];
const FIELDS = [
  "model",
  "messages",
  "prompt",
  "stream",
  "max_tokens",
  "temperature",
  "n",
  "stream_options",
  "cache_salt",
  "input",
  "seed",
  "top_p",
  "user",
];

function validBody(r: Rand, path: string): Record<string, unknown> {
  const stream = r.int(4) === 0;
  const base: Record<string, unknown> = { model: FUZZ_MODEL, max_tokens: 1 + r.int(3) };
  if (path === "/v1/chat/completions")
    base.messages = [{ role: "user", content: "hi ".repeat(1 + r.int(20)) }];
  else if (path === "/v1/completions") base.prompt = r.int(2) ? "hello" : [1, 2, 3];
  else if (path === "/v1/embeddings") base.input = "text";
  else if (path === "/tokenize") base.prompt = "abc";
  else base.input = "hi";
  if (stream && (path === "/v1/chat/completions" || path === "/v1/completions")) {
    base.stream = true;
    if (r.int(2)) base.stream_options = { include_usage: true };
  }
  return base;
}

function mutateBytes(r: Rand, b: Buffer): Buffer {
  const out = Buffer.from(b);
  switch (r.int(6)) {
    case 0: // truncate
      return out.subarray(0, r.int(out.length));
    case 1: // flip bytes
      for (let i = 0, n = 1 + r.int(4); i < n && out.length; i++) out[r.int(out.length)] = r.int(256);
      return out;
    case 2: {
      // insert structural characters
      const at = r.int(out.length + 1);
      return Buffer.concat([
        out.subarray(0, at),
        Buffer.from(r.pick(["{", "}", "[", "]", ",", ":", '"', "\\", "\u0000"])),
        out.subarray(at),
      ]);
    }
    case 3: // duplicate a slice
      return Buffer.concat([out, out.subarray(r.int(out.length))]);
    case 4: // invalid UTF-8
      return Buffer.concat([
        out.subarray(0, out.length >> 1),
        Buffer.from([0xc3, 0x28, 0xff]),
        out.subarray(out.length >> 1),
      ]);
    default: // nothing (a valid body with other mutations around it)
      return out;
  }
}

function deep(n: number): string {
  return "[".repeat(n) + "]".repeat(n);
}

/** One request: ~45 % valid, the rest broken in one way (auth, headers, body, JSON shape, route). */
export function generate(r: Rand): FuzzRequest {
  const path = r.pick(PATHS);
  const headers: Record<string, string> = { "content-type": "application/json" };
  const key = r.int(10) === 0 ? FUZZ_KEYS.limited : FUZZ_KEYS.good;
  headers.authorization = `Bearer ${key}`;
  if (r.int(3) === 0)
    headers["x-request-id"] = r.pick(["abc-123", "é-not-ascii", "a b c", "x".repeat(300), "ok_id.1:2"]);
  const roll = r.int(100);
  const body = validBody(r, path);
  if (roll < 45)
    return { kind: "valid", method: "POST", path, headers, body: Buffer.from(JSON.stringify(body)) };
  if (roll < 55) {
    // auth
    const h = r.pick([
      undefined,
      "",
      "Bearer",
      "Bearer ",
      "Basic Zm9vOmJhcg==",
      "Bearer sk-wrong",
      `Bearer ${"k".repeat(600)}`,
      `bearer\t${FUZZ_KEYS.good}x`,
      `Bearer ${FUZZ_KEYS.admin}`,
    ]);
    if (h === undefined) delete headers.authorization;
    else headers.authorization = h;
    return { kind: "auth", method: "POST", path, headers, body: Buffer.from(JSON.stringify(body)) };
  }
  if (roll < 75) {
    return {
      kind: "bytes",
      method: "POST",
      path,
      headers,
      body: mutateBytes(r, Buffer.from(JSON.stringify(body))),
    };
  }
  if (roll < 88) {
    // JSON shape: wrong types, missing fields, odd documents
    const doc: Record<string, unknown> = { ...body };
    for (let i = 0, n = 1 + r.int(3); i < n; i++) {
      const f = r.pick(FIELDS);
      if (r.int(4) === 0) delete doc[f];
      else doc[f] = r.pick(JUNK_VALUES);
    }
    const text = r.pick([
      () => JSON.stringify(doc),
      () => JSON.stringify(doc),
      () => JSON.stringify(doc),
      () => deep(40 + r.int(100)),
      () => `{"model":"${FUZZ_MODEL}","messages":${deep(80)}}`,
      () => "null",
      () => "[]",
      () => '"str"',
      () => "",
      () => "{}",
    ])();
    return { kind: "shape", method: "POST", path, headers, body: Buffer.from(text) };
  }
  if (roll < 94) {
    // headers
    const v = r.int(5);
    if (v === 4) {
      // over the router's body limit (the fuzz router runs with 64 KiB)
      const big = { ...body, prompt: "p".repeat(70_000) };
      return { kind: "headers", method: "POST", path, headers, body: Buffer.from(JSON.stringify(big)) };
    }
    if (v === 0)
      headers["content-type"] = r.pick([
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
      ]);
    else if (v === 1) headers["x-filler"] = "f".repeat(r.int(2) ? 20_000 : 1_000);
    else if (v === 2) headers["x-session-id"] = "s".repeat(1 + r.int(2000));
    else headers["content-type"] = "application/json; charset=latin1";
    return { kind: "headers", method: "POST", path, headers, body: Buffer.from(JSON.stringify(body)) };
  }
  // routes and methods
  const m = r.pick(["GET", "PUT", "DELETE", "HEAD", "POST"] as const);
  const p = r.pick([
    path,
    "/",
    "/v1",
    "/v1/models",
    "/engines",
    "/admin/reload",
    "/admin/drain/x",
    "/../../etc/passwd",
    "/v1/chat/completions?x=1",
    "/%00",
    "/metrics?x",
  ]);
  const hasBody = m === "POST" || m === "PUT";
  return {
    kind: "route",
    method: m,
    path: p,
    headers,
    body: hasBody ? Buffer.from(JSON.stringify(body)) : undefined,
  };
}

export interface FuzzStats {
  sent: number;
  byStatus: Map<number, number>;
  byKind: Map<string, number>;
  failures: string[];
}

const SAFE_ID = /^[\x21-\x7e]{1,200}$/;

/**
 * Sends `count` generated requests over `connections` keep-alive connections; records statuses and
 * rule violations (5xx, no answer, an unsafe X-Request-Id).
 */
export async function runFuzz(
  url: string,
  count: number,
  seed: number,
  connections = 32,
  onProgress?: (done: number) => void,
): Promise<FuzzStats> {
  const pool = new Pool(url, { connections, pipelining: 1, headersTimeout: 30_000, bodyTimeout: 30_000 });
  const r = new Rand(seed);
  const stats: FuzzStats = { sent: 0, byStatus: new Map(), byKind: new Map(), failures: [] };
  const fail = (req: FuzzRequest, why: string) => {
    if (stats.failures.length < 50)
      stats.failures.push(
        `${why} — ${req.kind} ${req.method} ${req.path} ${req.body?.toString("latin1").slice(0, 120) ?? ""}`,
      );
  };
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      const req = generate(r);
      stats.byKind.set(req.kind, (stats.byKind.get(req.kind) ?? 0) + 1);
      try {
        const res = await pool.request({
          path: req.path,
          method: req.method,
          headers: req.headers,
          body: req.body,
        });
        await res.body.dump({ limit: 1 << 20 }).catch(() => undefined);
        stats.byStatus.set(res.statusCode, (stats.byStatus.get(res.statusCode) ?? 0) + 1);
        if (res.statusCode >= 500) fail(req, `status ${res.statusCode}`);
        const rid = res.headers["x-request-id"];
        if (rid !== undefined && (typeof rid !== "string" || !SAFE_ID.test(rid)))
          fail(req, `unsafe x-request-id echo`);
      } catch (err) {
        // the router may close a connection after a 4xx it cannot recover from (431, 408): that is fine;
        // an error on a well-formed request is not
        const code = (err as { code?: string }).code ?? (err as Error).message;
        stats.byStatus.set(-1, (stats.byStatus.get(-1) ?? 0) + 1);
        if (req.kind === "valid") fail(req, `transport error on a valid request: ${code}`);
      }
      stats.sent++;
      if (onProgress && stats.sent % 10_000 === 0) onProgress(stats.sent);
    }
  };
  await Promise.all([...Array(connections)].map(() => worker()));
  await pool.close();
  return stats;
}
