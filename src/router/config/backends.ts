// The router's engine list as configuration: a `backends` (alias `engines`) entry is a URL or an
// object (weight, key, KV-event endpoints, P/D role, transport), `h2c://` is shorthand for cleartext
// HTTP/2, and `--backend URL#weight` sets a canary weight. Split from config.ts, which builds the schema
// with these entries and re-exports what the rooms read.
import { z } from "zod";
import { backendKvEventsSchema } from "./kv.js";
import { InvalidConfigError } from "../../errors/index.js";

/** How the router talks to an engine: HTTP/1.1 (one socket per request in flight) or cleartext HTTP/2. */
export const BACKEND_PROTOCOLS = ["http1", "h2c"] as const;
export type BackendProtocol = (typeof BACKEND_PROTOCOLS)[number];

/** streams per h2c connection unless a backend says otherwise (undici's and most proxies' default) */
export const DEFAULT_H2C_STREAMS = 100;

// `h2c://host:port` (Traefik's spelling) is shorthand for `{ url: http://host:port, protocol: h2c }`,
// so the `--backend` flag can name an h2c engine without a syntax of its own. The engine's identity
// stays the http:// URL either way.
const H2C_SCHEME = /^h2c:\/\//i;

function isBackendUrl(raw: string): boolean {
  try {
    const u = new URL(raw.replace(H2C_SCHEME, "http://"));
    return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
  } catch {
    return false;
  }
}

const backendUrl = z
  .string()
  .refine(isBackendUrl, { message: "expected an http://, https:// or h2c:// URL" })
  .transform((u) => u.replace(/\/+$/, ""));

const backendObject = z
  .strictObject({
    url: backendUrl,
    weight: z.number().nonnegative().default(1),
    /** overrides the fleet-wide engine API key for this engine */
    apiKey: z.string().optional(),
    /** the engine's KV-event PUB (and replay) endpoints, for the kv/hybrid policies */
    kvEvents: backendKvEventsSchema.optional(),
    /** disaggregated prefill/decode pool (docs/disaggregated.md); mixed = both, the default */
    role: z.enum(["prefill", "decode", "both", "mixed"]).optional(),
    /** http1 (default) or h2c: cleartext HTTP/2, for engines behind an h2c-capable proxy */
    protocol: z.enum(BACKEND_PROTOCOLS).optional(),
    /** h2c: requests multiplexed on one connection before another is opened; keep it at or under
     * the proxy's SETTINGS_MAX_CONCURRENT_STREAMS, else the surplus streams wait in its queue */
    maxConcurrentStreams: z.number().int().min(1).max(10_000).optional(),
  })
  .superRefine((b, ctx) => {
    // an h2c:// url is still here only when it conflicts with an explicit protocol (normalizeBackend)
    if (H2C_SCHEME.test(b.url))
      ctx.addIssue({
        code: "custom",
        path: ["protocol"],
        message: "an h2c:// url cannot use protocol http1",
      });
    else if (b.protocol === "h2c" && /^https:/i.test(b.url))
      ctx.addIssue({ code: "custom", path: ["url"], message: "h2c is cleartext: the url must be http://" });
    if (b.maxConcurrentStreams !== undefined && b.protocol !== "h2c")
      ctx.addIssue({
        code: "custom",
        path: ["maxConcurrentStreams"],
        message: "applies to protocol h2c only",
      });
  });

/**
 * A bare URL is `{ url }`; `h2c://host` (string or `url`) becomes `{ url: http://host, protocol: h2c }`.
 * One object schema after this, so every validation error names its field.
 */
function normalizeBackend(v: string | z.input<typeof backendObject>): unknown {
  const o = typeof v === "string" ? { url: v } : v;
  if (
    o &&
    typeof o === "object" &&
    typeof o.url === "string" &&
    H2C_SCHEME.test(o.url) &&
    (o.protocol === undefined || o.protocol === "h2c")
  )
    return { ...o, url: o.url.replace(H2C_SCHEME, "http://"), protocol: "h2c" };
  return o;
}

export const backend = z.preprocess(normalizeBackend, backendObject);

/** One `backends` entry after parsing. */
export type BackendConfig = z.output<typeof backend>;

/** The configured backends as discovery's engine specs. */
export function engineSpecs(cfg: { backends: readonly BackendConfig[] }) {
  return cfg.backends.map((b) => ({
    url: b.url,
    weight: b.weight,
    apiKey: "apiKey" in b ? b.apiKey : undefined,
    role: "role" in b ? b.role : undefined,
  }));
}

/** The transport settings of the configured backend at `url`; engines found by discovery use HTTP/1.1. */
export function backendTransport(
  cfg: { backends: readonly BackendConfig[] },
  url: string,
): { protocol: BackendProtocol; maxConcurrentStreams: number } {
  const b = cfg.backends.find((x) => x.url === url);
  return {
    protocol: b?.protocol ?? "http1",
    maxConcurrentStreams: b?.maxConcurrentStreams ?? DEFAULT_H2C_STREAMS,
  };
}
/** `--backend URL#weight`: a canary weight after the URL */
export function backendsFromFlag(entries: unknown): unknown[] {
  return (entries as string[]).map((b) => {
    const hash = b.lastIndexOf("#");
    if (hash < 0) return b;
    const weight = Number(b.slice(hash + 1));
    if (!Number.isFinite(weight) || weight < 0)
      throw new InvalidConfigError(`${b}: weight must be a number ≥ 0`);
    return { url: b.slice(0, hash), weight };
  });
}
