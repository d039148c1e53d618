// The router's side of tenancy, in the order of the request path: authenticate (before the body is
// read, so an anonymous client cannot make the router buffer a body), admit under the tenant's
// limits, rewrite the body where tenancy needs it (cache salt, usage in streams), and hand the data
// plane a TenantRequest that settles usage and frees the slot when the request ends. Every way into
// the router goes through this one gate: HTTP ingress (src/router/ingress.ts) and the endpoint
// picker (src/epp/stream.ts) alike, so a gateway-routed request cannot skip a key, a limit or a salt.
import { HttpError } from "../http/errors.js";
import { TenantRequest, type TenantSink } from "./request.js";
import type { Tenant, TenancyState } from "./state.js";

/** Per-tenant numbers the router exports (metrics.ts): tenant names only, never keys. */
export interface TenantMetricsSink extends TenantSink {
  rejected(tenant: string, limit: string): void;
}

/** Endpoints whose streams can carry a final usage event (`stream_options.include_usage`). */
const USAGE_STREAM_PATHS = new Set(["/v1/chat/completions", "/v1/completions"]);

/** What authentication reads of a request: its headers (an HTTP request, or an ext_proc one's). */
export interface Credentials {
  readonly headers: { readonly authorization?: string | string[] | undefined };
}

export interface AdmitOptions {
  /**
   * The caller sees the response body and can drop the usage event it asked for (the default);
   * false where it cannot (a gateway that does not stream the response through the picker): the
   * client's request is then left as it is and tokens settle by the estimate.
   */
  usageEvent?: boolean;
}

export interface Admitted {
  request: TenantRequest;
  /** the body object was changed (salt, stream_options): re-serialise it */
  mutated: boolean;
}

export class RouterGate {
  constructor(
    readonly state: TenancyState,
    private readonly sink: TenantMetricsSink,
  ) {}

  get enabled(): boolean {
    return this.state.enabled;
  }

  /** The tenant of a data-plane request; undefined with tenancy off. Throws 401/403 (OpenAI format). */
  authenticate(req: Credentials): Tenant | undefined {
    if (!this.state.enabled) return undefined;
    return this.state.authenticate(req.headers.authorization);
  }

  /** Admin endpoints (`/engines`, reload, drain): throws 401/403 unless the admin key is presented. */
  authenticateAdmin(req: Credentials): void {
    this.state.authenticateAdmin(req.headers.authorization);
  }

  /**
   * Applies the tenant's limits (429 with Retry-After and the limit named, counted by limit) and
   * prepares the body: the tenant's `cache_salt` (so the KV-aware router hashes what the engine
   * will) and, when the tenant has token limits and the client streams without usage,
   * `stream_options.include_usage` (the usage event is stripped again before the client sees it).
   */
  async admit(
    tenant: Tenant,
    path: string,
    obj: Record<string, unknown> | undefined,
    bodyBytes: number,
    opts: AdmitOptions = {},
  ): Promise<Admitted> {
    // the prompt estimate: ~4 bytes a token; usage settles the difference afterwards
    const estimate = Number.isFinite(bodyBytes) && bodyBytes > 0 ? Math.ceil(bodyBytes / 4) : 0;
    let admission;
    try {
      admission = await this.state.admit(tenant, estimate);
    } catch (err) {
      if (err instanceof HttpError) {
        this.sink.rejected(
          tenant.name,
          err.headers["x-ratelimit-limit"] ?? (err.status === 503 ? "store" : "other"),
        );
        this.sink.finished(tenant.name, err.status);
      }
      throw err;
    }
    let mutated = false;
    let strip = false;
    const stream = obj?.stream === true;
    if (obj) {
      if (tenant.cacheSalt !== undefined) {
        const own = typeof obj.cache_salt === "string" ? obj.cache_salt : undefined;
        obj.cache_salt = this.state.cacheSaltFor(tenant, own);
        mutated = true;
      }
      const l = tenant.limits;
      if (
        stream &&
        opts.usageEvent !== false &&
        USAGE_STREAM_PATHS.has(path) &&
        (l.promptTokensPerMinute > 0 || l.completionTokensPerMinute > 0)
      ) {
        const so = obj.stream_options;
        const asked =
          so !== null && typeof so === "object" && (so as Record<string, unknown>).include_usage === true;
        if (!asked) {
          // continuous stats would put usage in every event, and those carry content: keep them off
          obj.stream_options = {
            ...(so !== null && typeof so === "object" ? so : {}),
            include_usage: true,
            continuous_usage_stats: false,
          };
          mutated = strip = true;
        }
      }
    }
    const request = new TenantRequest(this.state, admission, this.sink, {
      promptEstimate: estimate,
      stream,
      stripUsageEvent: strip,
    });
    return { request, mutated };
  }

  /** A request that failed before it was admitted (401, 403, 4xx of the body): counted by tenant when known. */
  refused(tenant: Tenant | undefined, status: number): void {
    if (tenant) this.sink.finished(tenant.name, status);
  }
}
