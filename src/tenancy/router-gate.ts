// The router's side of tenancy, in the order of the request path: authenticate (before the body is
// read, so an anonymous client cannot make the router buffer a body), admit under the tenant's
// limits (over HTTP also before the body is read, so slow bodies hold the tenant's own slots),
// rewrite the body where tenancy needs it (cache salt, usage in streams, fields only the router may
// set), decide who may have the debug explanation, and hand the data
// plane a TenantRequest that settles usage and frees the slot when the request ends. Every way into
// the router goes through this one gate: HTTP ingress (src/router/edge/ingress.ts) and the endpoint
// picker (src/epp/stream.ts) alike, so a gateway-routed request cannot skip a key, a limit or a salt.
import { HttpError } from "../http/errors.js";
import { tenantMayUse } from "./models.js";
import { TenantRequest, type TenantSink } from "./request.js";
import { ownRequestFields } from "./request-fields.js";
import type { Admission, Tenant, TenancyState } from "./state.js";

/** The metadata key of a stored response's owner tag (read back by the router's response affinity). */
export const OWNER_METADATA_KEY = "switchyard_owner";

/** Per-tenant numbers the router exports (metrics.ts): tenant names only, never keys. */
export interface TenantMetricsSink extends TenantSink {
  rejected(tenant: string, limit: string): void;
}

/**
 * Endpoints whose streams carry a final usage event (`"choices":[]`) only when asked
 * (`stream_options.include_usage`): chat, completions and token-in generate.
 * Messages (`message_delta`) and Responses (`response.completed`) streams always carry theirs.
 */
const USAGE_STREAM_PATHS = new Set(["/v1/chat/completions", "/v1/completions", "/inference/v1/generate"]);

/**
 * Routes that generate tokens, and so are charged a declared maximum when their answer reports no
 * usage (every other route generates nothing: 0).
 */
const GENERATING_PATHS = new Set([
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/responses",
  "/v1/messages",
  "/v1/chat/completions/batch",
  "/inference/v1/generate",
  "/v1/audio/transcriptions",
  "/v1/audio/translations",
]);

/** vLLM's default max_tokens of a completion (other routes default to what the context leaves) */
const COMPLETION_DEFAULT_MAX = 16;
/** the context assumed when no engine has announced the model's max_model_len */
export const UNKNOWN_CONTEXT_TOKENS = 32_768;

/**
 * The route a request is served as: SageMaker's `/invocations` goes to the first request type its
 * body validates as, in vLLM's order: a chat (a `messages` list), a completion with a prompt, an
 * embedding (an `input`: it generates nothing), else a completion; every other path is itself.
 */
export function servedAs(route: string, obj: Record<string, unknown> | undefined): string {
  if (route !== "/invocations") return route;
  if (obj === undefined) return "/v1/completions";
  if (Array.isArray(obj.messages)) return "/v1/chat/completions";
  if (obj.prompt == null && obj.input != null) return "/v1/embeddings";
  return "/v1/completions";
}

/**
 * The output limits each route's engine reads, as vLLM 0.32 reads them: chat (and its batch)
 * `max_completion_tokens`, else `max_tokens` (both are honoured, the first winning: the larger is what
 * the request may cost); a completion, Anthropic Messages (the engine hands it on as the chat's
 * limit) and token-in generate's `sampling_params` only `max_tokens` (a `max_completion_tokens` there
 * is ignored, so it must not lower the charge); Responses `max_output_tokens`.
 */
const LIMIT_FIELDS: Record<string, readonly string[]> = {
  "/v1/chat/completions": ["max_completion_tokens", "max_tokens"],
  "/v1/chat/completions/batch": ["max_completion_tokens", "max_tokens"],
  "/v1/completions": ["max_tokens"],
  "/v1/messages": ["max_tokens"],
  "/inference/v1/generate": ["max_tokens"],
  "/v1/responses": ["max_output_tokens"],
};

/**
 * The most completion tokens a request can cost, read as its engine reads it: the largest of the
 * output limits the route honours (LIMIT_FIELDS; token-in generate's in `sampling_params`), else
 * vLLM's default (16 for a completion, what the context leaves for every other route: the context
 * bounds it); times the answers it asks for (`n`, a completion's list of prompts, a batch's
 * conversations). What a request without a closing usage in its answer is charged.
 */
export function declaredMaxCompletion(
  path: string,
  obj: Record<string, unknown> | undefined,
  context: number | undefined,
): number {
  const route = servedAs(path, obj);
  if (!GENERATING_PATHS.has(route)) return 0;
  const ctx = context !== undefined && context > 0 ? context : UNKNOWN_CONTEXT_TOKENS;
  if (!obj) return ctx;
  const body = obj;
  if (route === "/inference/v1/generate") {
    // token-in generate keeps its limits in `sampling_params`
    const sp = obj.sampling_params;
    obj = sp !== null && typeof sp === "object" ? (sp as Record<string, unknown>) : {};
  }
  let declared: number | undefined;
  for (const f of LIMIT_FIELDS[route] ?? []) {
    const v = positive(obj[f]);
    if (v !== undefined) declared = Math.max(declared ?? 0, v);
  }
  const each = Math.min(ctx, declared ?? (route === "/v1/completions" ? COMPLETION_DEFAULT_MAX : ctx));
  let answers = positive(obj.n) ?? 1;
  if (route === "/v1/completions") answers *= promptCount(body.prompt);
  if (route === "/v1/chat/completions/batch" && Array.isArray(body.messages))
    answers *= Math.max(1, body.messages.length);
  return each * answers;
}

/** A completion's prompts: a list of strings or of token-id lists is one completion each; else one. */
export function promptCount(prompt: unknown): number {
  if (!Array.isArray(prompt) || prompt.length === 0) return 1;
  const first: unknown = prompt[0];
  return typeof first === "string" || Array.isArray(first) ? prompt.length : 1;
}

function positive(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) && v > 0 ? Math.ceil(v) : undefined;
}

/** A tenant with a concurrency or token limit: what a background response would escape. */
function boundByLimits(t: Tenant): boolean {
  const l = t.limits;
  return l.maxConcurrent > 0 || l.promptTokensPerMinute > 0 || l.completionTokensPerMinute > 0;
}

/** vLLM's (pydantic's) false values of a bool field; any other value it reads as true or refuses */
const FALSE_WORDS = new Set(["false", "0", "no", "off", "n", "f"]);

/** The body asks for a background response, as vLLM would read `background` (`"true"`, 1, ...). */
function asksBackground(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0) return false;
  return !(typeof v === "string" && FALSE_WORDS.has(v.trim().toLowerCase()));
}

/**
 * `background: true` on /v1/responses answers at once while the engine keeps generating, out of the
 * router's sight: refused for a tenant whose concurrency or tokens are limited (docs/security.md).
 */
function backgroundRefused(t: Tenant): HttpError {
  return new HttpError(
    400,
    `background responses are not available to tenant '${t.name}': its concurrency and token limits ` +
      "hold only while the router relays the answer; send the request with `stream: true` (or without " +
      "`background`) instead",
    "background",
  );
}

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
  /** the served model (a multipart upload's, whose body is not parsed): its context bounds the charge */
  model?: string;
}

/** Who may have the routing explanation of `x-switchyard-debug: 1` (the router's `debug.allowHeader`). */
export type DebugAccess = "admin" | "open" | "off";

/** The prompt tokens reserved for a body of this many bytes: ~4 bytes a token (usage settles it). */
export function promptEstimate(bodyBytes: number): number {
  return Number.isFinite(bodyBytes) && bodyBytes > 0 ? Math.ceil(bodyBytes / 4) : 0;
}

/**
 * Body fields only the router may set with tenancy on, removed from a client's body:
 * `kv_transfer_params` tells a decode engine where to pull KV blocks from (`remote_host`,
 * `remote_engine_id`, `remote_block_ids`): with a real P/D connector a client's own would make the
 * engine connect where the client says, and read blocks another tenant's prompt left. The router's P/D
 * flow (src/router/pd/disagg.ts) adds its own after this. `request_id` is what vLLM names the request
 * by when no X-Request-Id comes with it (the endpoint picker's way): a tenant's chosen id could match
 * another's. `ec_transfer_params` is the same for the encoder cache (vLLM's encoder-disaggregated
 * serving). Removed rather than refused: a client library that fills them in keeps working.
 */
export const ROUTER_OWNED_FIELDS = ["kv_transfer_params", "ec_transfer_params", "request_id"] as const;

function dropOwnedFields(obj: Record<string, unknown>): boolean {
  let dropped = false;
  for (const f of ROUTER_OWNED_FIELDS) {
    if (f in obj) {
      delete obj[f];
      dropped = true;
    }
  }
  return dropped;
}

export interface Admitted {
  request: TenantRequest;
  /** the body object was changed (salt, stream_options): re-serialise it */
  mutated: boolean;
}

export interface RouterGateOptions {
  /** the model's context (max_model_len) as its engines announce it: the charge of a request without usage */
  contextOf?: (model: string) => number | undefined;
}

export class RouterGate {
  constructor(
    readonly state: TenancyState,
    private readonly sink: TenantMetricsSink,
    private readonly opts: RouterGateOptions = {},
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
   * The endpoint picker's way: its gateway has buffered the body already. HTTP ingress takes the
   * slot at the headers instead (`take`, then `prepare`).
   */
  async admit(
    tenant: Tenant,
    path: string,
    obj: Record<string, unknown> | undefined,
    bodyBytes: number,
    opts: AdmitOptions = {},
  ): Promise<Admitted> {
    const estimate = promptEstimate(bodyBytes);
    const admission = await this.take(tenant, estimate);
    try {
      return this.prepare(admission, path, obj, estimate, opts);
    } catch (err) {
      // refused by its body (a background response under limits): the slot comes back at once
      this.release(admission, err instanceof HttpError ? err.status : 500);
      throw err;
    }
  }

  /**
   * Takes the tenant's concurrency slot and reserves its buckets as soon as its request's headers
   * are authenticated, before any body byte is read: a tenant trickling N bodies holds at most its
   * concurrency limit of slots, and the next request gets the tenant's 429 at once, instead of every
   * slow body being free until it completed. `estimate`: prompt tokens to reserve (promptEstimate of
   * the declared Content-Length; 0 without one, settled from usage when the request ends).
   */
  async take(tenant: Tenant, estimate: number): Promise<Admission> {
    try {
      return await this.state.admit(tenant, estimate);
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
  }

  /**
   * The admission's prompt reservation checked against the body once it is read, before routing: a
   * request that declared no length (chunked) was admitted on an estimate of 0, and is refused here
   * with the tenant's 429 when its real prompt would not have been admitted (counted as a refusal).
   */
  async reserve(admission: Admission, estimate: number): Promise<void> {
    if (estimate <= admission.grant.promptReserved) return;
    try {
      await this.state.reserve(admission, estimate);
    } catch (err) {
      if (err instanceof HttpError)
        this.sink.rejected(admission.tenant.name, err.headers["x-ratelimit-limit"] ?? "other");
      throw err;
    }
  }

  /**
   * The body's part of admission, once it is read: the fields the router owns set or removed, and
   * the TenantRequest that settles usage and frees the slot when the request ends. Throws a 400 for
   * a background response the tenant's limits could not hold (the caller releases the admission).
   */
  prepare(
    admission: Admission,
    path: string,
    obj: Record<string, unknown> | undefined,
    estimate: number,
    opts: AdmitOptions = {},
  ): Admitted {
    const tenant = admission.tenant;
    let mutated = false;
    let strip = false;
    const stream = obj?.stream === true;
    const q = path.indexOf("?");
    const route = q < 0 ? path : path.slice(0, q);
    // /invocations: its usage event and its charge as the chat or completion it is served as
    const served = servedAs(route, obj);
    if (route === "/v1/responses" && asksBackground(obj?.background) && boundByLimits(tenant))
      throw backgroundRefused(tenant);
    if (obj) {
      mutated = dropOwnedFields(obj);
      // the engine's priority from the tenant's band, vllm_xargs cut to what the operator lists
      const rules = this.state.fieldRules;
      const rule = { band: tenant.priority, client: tenant.clientPriority, ...rules.enginePriority };
      mutated = ownRequestFields(obj, rule, rules.vllmXargs) || mutated;
      // a stored response carries its owner's tag, so that its owner, and only its owner, reaches
      // it after the router forgot it (a restart, another replica: response-affinity.ts)
      if (route === "/v1/responses") mutated = this.tagOwner(tenant, obj) || mutated;
      if (tenant.cacheSalt !== undefined) {
        const own = typeof obj.cache_salt === "string" ? obj.cache_salt : undefined;
        obj.cache_salt = this.state.cacheSaltFor(tenant, own);
        mutated = true;
      }
      const l = tenant.limits;
      if (
        stream &&
        opts.usageEvent !== false &&
        USAGE_STREAM_PATHS.has(served) &&
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
    const model = opts.model ?? (typeof obj?.model === "string" ? obj.model : undefined);
    const request = new TenantRequest(this.state, admission, this.sink, {
      promptEstimate: estimate,
      maxCompletion: declaredMaxCompletion(
        route,
        obj,
        model !== undefined ? this.opts.contextOf?.(model) : undefined,
      ),
      // a stored response read again (GET /v1/responses/{id}, its replayed stream) was charged once
      readUsage: !route.startsWith("/v1/responses/"),
      stream,
      stripUsageEvent: strip,
      chargeLoad: () => this.chargeAdapterLoad(tenant),
    });
    return { request, mutated };
  }

  /**
   * Whether `tenant` (undefined: tenancy off) may use the model it named (`requested`, served as
   * `served`): its `models` patterns and the adapters private to some tenants (models.ts). A model it
   * may not use is answered as one that does not exist.
   */
  mayUse(
    tenant: Tenant | undefined,
    requested: string,
    served: string,
    privateTo: (name: string) => ReadonlySet<string> | undefined,
  ): boolean {
    return tenantMayUse(tenant, requested, served, privateTo);
  }

  /** One LoRA adapter load charged to `tenant` before it starts; its 429 counted as a refusal. */
  chargeAdapterLoad(tenant: Tenant): void {
    try {
      this.state.chargeAdapterLoad(tenant);
    } catch (err) {
      if (err instanceof HttpError) this.sink.rejected(tenant.name, "adapter_loads_per_minute");
      throw err;
    }
  }

  /** The tag `tenant`'s stored responses carry; undefined without the router's secret. */
  ownerTag(tenant: Tenant): string | undefined {
    return this.state.ownerTag(tenant.name);
  }

  /**
   * Writes the tenant's owner tag into a Responses request's `metadata` (over a client's value of
   * that key, which could otherwise claim another's tag); metadata that is not an object is left for
   * the engine to refuse.
   */
  private tagOwner(tenant: Tenant, obj: Record<string, unknown>): boolean {
    const tag = this.state.ownerTag(tenant.name);
    if (tag === undefined) return false;
    const md = obj.metadata;
    if (md === undefined || md === null) obj.metadata = { [OWNER_METADATA_KEY]: tag };
    else if (typeof md === "object" && !Array.isArray(md))
      obj.metadata = { ...(md as Record<string, unknown>), [OWNER_METADATA_KEY]: tag };
    else return false;
    return true;
  }

  /**
   * A request refused after `take` (its body was bad, its client left): the slot and the
   * reservation come back (nothing was used) and the refusal is counted under the tenant.
   */
  release(admission: Admission, status: number): void {
    this.state.record(admission, { promptTokens: 0, completionTokens: 0 });
    this.state.release(admission);
    this.sink.finished(admission.tenant.name, status);
  }

  /**
   * Whether a request's `x-switchyard-debug: 1` is honoured (docs/security.md): the answer names
   * engines (their URLs) and tells how much of the prompt the router predicts cached, which with
   * shared engines says whether another client sent the same prompt. `open`: every client; `off`:
   * nobody; `admin`: a request carrying the router's admin key in `x-switchyard-debug-key` (the admin
   * key cannot authenticate inference itself), or any request while the router has no keys at all
   * (then every client may read /engines too).
   */
  mayDebug(mode: DebugAccess, key: string | string[] | undefined): boolean {
    if (mode === "open") return true;
    if (mode === "off") return false;
    if (!this.state.adminGuarded) return true;
    if (typeof key !== "string" || key === "") return false;
    try {
      this.state.authenticateAdmin(`Bearer ${key}`);
      return true;
    } catch {
      return false;
    }
  }

  /** A request that failed before it was admitted (401, 403, 4xx of the body): counted by tenant when known. */
  refused(tenant: Tenant | undefined, status: number): void {
    if (tenant) this.sink.finished(tenant.name, status);
  }
}
