// What the router knows about each path a vLLM 0.32 engine serves, in one table: how the request's
// body is read, where its model and prompt are (for routing and the prompt budget), whether it
// generates, whether its stream may migrate or run as disaggregated prefill/decode, what pins it to
// one engine, and what tracing and the metrics call it. One table, so that ingress, migration, P/D,
// tracing and the prompt budget cannot disagree about a route: a route missing from a list of one of
// them would be answered 404 by the router while the engine serves it.
//
// Matching allocates nothing for a fixed path (one Map lookup) and one string for a path that
// carries an id (`/v1/responses/{id}`): the id itself.
import type { ChatMessage } from "../../protocol/chat-messages.js";
import { HttpError } from "../../http/errors.js";

/**
 * Where a request's prompt is for prefix and KV routing and the prompt budget:
 * - `chat`: `messages`; `completion`: `prompt`; `token-ids`: `token_ids` (/inference/v1/generate);
 * - `messages`: Anthropic's `system` + `messages`, turned into the chat messages vLLM renders them as;
 * - `responses`: `instructions` + `input`, likewise;
 * - `chat-batch`: the first conversation of `messages` (a list of conversations);
 * - `auto`: `messages` when present, else `prompt` (tokenize, SageMaker's /invocations);
 * - `none`: nothing to route by but load.
 */
export type PromptSource =
  "chat" | "completion" | "messages" | "responses" | "chat-batch" | "token-ids" | "auto" | "none";

/** How the router reads the request: a JSON body, a multipart upload streamed through, or no body. */
export type BodyForm = "json" | "multipart" | "none";

/**
 * Who answers: the router relays it to an engine; answers it itself (its own health, metrics, model
 * list); or refuses it as a per-engine operation that must be sent to the engine directly.
 */
export type Served = "relay" | "router" | "engine-only";

/** Which request counter a request lands in. */
export type Counted =
  /** switchyard_requests_total and the TTFT/ITL/E2E histograms (inference: generation and pooling) */
  | "requests"
  /** switchyard_tokenizer_requests_total */
  | "tokenizer"
  /** switchyard_other_requests_total: answers that generate nothing (render, stored responses, ...) */
  | "other";

export interface Endpoint {
  /** the path as vLLM declares it; `{id}` stands for one path segment */
  readonly path: string;
  readonly methods: readonly ("GET" | "POST")[];
  readonly served: Served;
  readonly body: BodyForm;
  readonly prompt: PromptSource;
  /** the answer is generated text or tokens (the TTFT is a first token's) */
  readonly generates: boolean;
  readonly counted: Counted;
  /** a stream that breaks off may continue on another engine as this kind (../migration/rules.ts) */
  readonly migrates: "chat" | "completion" | undefined;
  /** runs as disaggregated prefill/decode when the model has both pools (../pd/disagg.ts) */
  readonly disagg: boolean;
  /**
   * what pins the request to the engine that holds its state: the response id in the path, or
   * `previous_response_id` in the body (vLLM keeps stored responses in one engine's memory)
   */
  readonly pin: "path-id" | "previous-response-id" | undefined;
  /** answers carry a response id the router remembers with the engine that made it */
  readonly remembers: boolean;
  /**
   * `issued`: the engine names the request by its X-Request-Id and `/inference/v1/abort_requests` can
   * stop it; `scoped`: the body's `request_ids` names such requests, and only the caller's own are
   * relayed (../dataplane/issued-ids.ts)
   */
  readonly abortIds: "issued" | "scoped" | undefined;
  /** gen_ai.operation.name of the request's span */
  readonly trace: string;
  /** vLLM serves its only model when the body names none; the router does the same with one model */
  readonly modelOptional: boolean;
  /**
   * the request names no model (a GET, or a POST without a body): the model is the pinned engine's,
   * or the fleet's; the engine answers for the rest
   */
  readonly modelless: boolean;
  /**
   * the query parameters vLLM reads on this route, the only ones relayed (../engines/upstream-rules.ts): any
   * other parameter is the client's to send the router, not to send past it to an engine
   */
  readonly query: readonly string[];
  /** one line for the endpoint table in docs/router.md */
  readonly note: string;
}

type Spec = Partial<Endpoint> & Pick<Endpoint, "path" | "note">;

const DEFAULTS: Omit<Endpoint, "path" | "note"> = {
  methods: ["POST"],
  served: "relay",
  body: "json",
  prompt: "none",
  generates: false,
  counted: "other",
  migrates: undefined,
  disagg: false,
  pin: undefined,
  remembers: false,
  abortIds: undefined,
  trace: "",
  modelOptional: false,
  modelless: false,
  query: [],
};

function ep(s: Spec): Endpoint {
  const e = { ...DEFAULTS, ...s };
  // a span named after the route when no GenAI operation fits: `render chat/completions`
  if (e.trace === "") e.trace = s.path.replace(/^\/(v\d\/)?/, "").replace(/\/\{id\}/, "");
  return Object.freeze(e);
}

/** render and derender: the chat template and tokenizer without a GPU; nothing to route by but load */
const render = (path: string, what: string): Endpoint =>
  ep({ path, modelOptional: true, note: `${what} (scale-out)` });

/** Every path a vLLM 0.32 engine (generative or pooling model) serves, and the router's own. */
export const ENDPOINTS: readonly Endpoint[] = [
  // ---- generation ----
  ep({
    path: "/v1/chat/completions",
    prompt: "chat",
    generates: true,
    counted: "requests",
    migrates: "chat",
    disagg: true,
    trace: "chat",
    note: "OpenAI chat completions",
  }),
  ep({
    path: "/v1/completions",
    prompt: "completion",
    generates: true,
    counted: "requests",
    migrates: "completion",
    disagg: true,
    trace: "text_completion",
    note: "OpenAI completions",
  }),
  ep({
    path: "/v1/responses",
    prompt: "responses",
    generates: true,
    counted: "requests",
    pin: "previous-response-id",
    remembers: true,
    trace: "chat",
    note: "OpenAI Responses; the answer's id is remembered, a `previous_response_id` goes to its engine",
  }),
  ep({
    path: "/v1/responses/{id}",
    methods: ["GET"],
    body: "none",
    pin: "path-id",
    modelless: true,
    // vLLM's retrieve route: `?stream=true&starting_after=N` replays a background response's events
    query: ["stream", "starting_after", "include_obfuscation"],
    trace: "responses.retrieve",
    note: "a stored response: goes to the engine that made it",
  }),
  ep({
    path: "/v1/responses/{id}/cancel",
    body: "none",
    pin: "path-id",
    modelless: true,
    trace: "responses.cancel",
    note: "cancels a background response on the engine that made it",
  }),
  ep({
    path: "/v1/messages",
    prompt: "messages",
    generates: true,
    counted: "requests",
    trace: "chat",
    note: "Anthropic Messages; routed by its conversation as a chat",
  }),
  ep({
    path: "/v1/messages/count_tokens",
    prompt: "messages",
    trace: "count_tokens",
    note: "Anthropic token count; routed by its conversation as a chat",
  }),
  ep({
    path: "/v1/chat/completions/batch",
    prompt: "chat-batch",
    generates: true,
    counted: "requests",
    trace: "chat",
    note: "several conversations in one request; routed by the first",
  }),
  ep({
    path: "/invocations",
    prompt: "auto",
    generates: true,
    counted: "requests",
    modelOptional: true,
    trace: "invocations",
    note: "SageMaker: vLLM dispatches on the body's shape (chat, completion, pooling)",
  }),
  ep({
    path: "/inference/v1/generate",
    prompt: "token-ids",
    generates: true,
    counted: "requests",
    modelOptional: true,
    abortIds: "issued",
    trace: "generate",
    note: "token ids in, token ids out (scale-out); routed by its token ids",
  }),
  ep({
    path: "/inference/v1/abort_requests",
    modelOptional: true,
    // only the ids of the caller's own requests in flight through this router process go on; the
    // router does not track which engine runs which: with several engines this reaches one chosen by
    // load, and closing the request's own connection is what aborts it anywhere
    abortIds: "scoped",
    note: "aborts the caller's own token-in requests by id (scale-out); several engines: one by load, so close the request's connection instead",
  }),
  // vLLM 0.32's structured-decisions API (501 from models that do not support it)
  ep({ path: "/v1/systemone", modelOptional: true, note: "structured decisions" }),
  // ---- render (scale-out) ----
  render("/v1/chat/completions/render", "chat → token ids"),
  render("/v1/completions/render", "completion → token ids"),
  render("/v1/messages/render", "Anthropic Messages → token ids"),
  render("/v1/responses/render", "Responses → token ids"),
  render("/v1/chat/completions/derender", "token ids → chat completion"),
  render("/v1/completions/derender", "token ids → completion"),
  // ---- tokenizer ----
  ep({
    path: "/tokenize",
    prompt: "auto",
    counted: "tokenizer",
    modelOptional: true,
    note: "`prompt` or `messages` → token ids",
  }),
  ep({ path: "/detokenize", counted: "tokenizer", modelOptional: true, note: "token ids → text" }),
  // ---- pooling models ----
  ep({ path: "/v1/embeddings", counted: "requests", trace: "embeddings", note: "embeddings" }),
  ep({ path: "/pooling", counted: "requests", modelOptional: true, note: "raw pooler output" }),
  ep({ path: "/classify", counted: "requests", modelOptional: true, note: "classification" }),
  ep({ path: "/score", counted: "requests", note: "pair scores" }),
  ep({ path: "/v1/score", counted: "requests", note: "pair scores" }),
  ep({ path: "/rerank", counted: "requests", note: "rerank (Jina/Cohere shape)" }),
  ep({ path: "/v1/rerank", counted: "requests", note: "rerank" }),
  ep({ path: "/v2/rerank", counted: "requests", note: "rerank (Cohere v2 shape)" }),
  ep({ path: "/generative_scoring", counted: "requests", note: "scores with a generative model" }),
  // ---- audio (multipart uploads, streamed through) ----
  ep({
    path: "/v1/audio/transcriptions",
    body: "multipart",
    counted: "requests",
    generates: true,
    note: "speech → text (multipart)",
  }),
  ep({
    path: "/v1/audio/translations",
    body: "multipart",
    counted: "requests",
    generates: true,
    note: "speech → English text (multipart)",
  }),
  // ---- about the engine ----
  ep({
    path: "/version",
    methods: ["GET"],
    body: "none",
    modelless: true,
    note: "the engines' vLLM version (asked of one engine)",
  }),
  // ---- answered by the router itself ----
  ep({ path: "/health", methods: ["GET"], served: "router", note: "the router is up" }),
  ep({
    path: "/ping",
    methods: ["GET", "POST"],
    served: "router",
    note: "SageMaker's health check: 200 while an engine is ready, as `/ready`",
  }),
  ep({ path: "/metrics", methods: ["GET"], served: "router", note: "the router's Prometheus metrics" }),
  ep({ path: "/v1/models", methods: ["GET"], served: "router", note: "the fleet's models and aliases" }),
  ep({
    path: "/load",
    methods: ["GET"],
    served: "router",
    note: "`{server_load}`: the router's requests in flight",
  }),
  // ---- per engine: sent to the engine itself, never through the router ----
  ep({
    path: "/kv_event_sources",
    methods: ["GET"],
    served: "engine-only",
    note: "one engine's KV-event sockets (the router reads each engine's at discovery)",
  }),
  ep({ path: "/scale_elastic_ep", served: "engine-only", note: "elastic expert parallelism of one engine" }),
  ep({ path: "/is_scaling_elastic_ep", served: "engine-only", note: "elastic expert parallelism" }),
  ep({ path: "/v1/load_lora_adapter", served: "engine-only", note: "loads an adapter into one engine" }),
  ep({ path: "/v1/unload_lora_adapter", served: "engine-only", note: "unloads an adapter" }),
  ep({ path: "/reset_prefix_cache", served: "engine-only", note: "dev mode: one engine's prefix cache" }),
  ep({ path: "/sleep", served: "engine-only", note: "dev mode: one engine sleeps" }),
  ep({ path: "/wake_up", served: "engine-only", note: "dev mode" }),
  ep({ path: "/is_sleeping", methods: ["GET"], served: "engine-only", note: "dev mode" }),
];

/** One request's endpoint, and the id its path carries (`{id}`), if any. */
export interface EndpointMatch {
  readonly endpoint: Endpoint;
  readonly id: string | undefined;
}

const EXACT = new Map<string, EndpointMatch>();
/** paths with an id: matched by what comes before and after it */
const WITH_ID: Array<{ before: string; after: string; endpoint: Endpoint }> = [];
for (const e of ENDPOINTS) {
  const at = e.path.indexOf("{id}");
  if (at < 0) EXACT.set(e.path, Object.freeze({ endpoint: e, id: undefined }));
  else WITH_ID.push({ before: e.path.slice(0, at), after: e.path.slice(at + 4), endpoint: e });
}

/** The endpoint of a path (no query string), or undefined for a path vLLM does not serve. */
export function matchEndpoint(path: string): EndpointMatch | undefined {
  const exact = EXACT.get(path);
  if (exact !== undefined) return exact;
  for (const p of WITH_ID) {
    const end = path.length - p.after.length;
    if (end <= p.before.length || !path.startsWith(p.before) || !path.endsWith(p.after)) continue;
    const slash = path.indexOf("/", p.before.length);
    if (slash >= 0 && slash < end) continue;
    return { endpoint: p.endpoint, id: decodeSegment(path.slice(p.before.length, end)) };
  }
  return undefined;
}

/**
 * The answer to a request the router does not relay and does not answer itself, the same over HTTP
 * and through the endpoint picker: a per-engine route is 404 (it must be sent to that engine, never
 * reach one with the router's engine key), a known path with another method 405, anything else 404.
 */
export function notRelayed(method: string, path: string, m: EndpointMatch | undefined): HttpError {
  if (m?.endpoint.served === "engine-only")
    return new HttpError(
      404,
      `${path} acts on one engine: send it to that engine itself (GET /engines lists them)`,
    );
  if (m !== undefined)
    return new HttpError(405, `method ${method} not allowed on ${path}`, null, {}, "BadRequestError");
  return new HttpError(404, `no route for ${method} ${path}`);
}

/** The endpoint of a path that may carry a query string; undefined when vLLM serves no such path. */
export function endpointOf(pathAndQuery: string): Endpoint | undefined {
  const q = pathAndQuery.indexOf("?");
  return matchEndpoint(q < 0 ? pathAndQuery : pathAndQuery.slice(0, q))?.endpoint;
}

function decodeSegment(s: string): string {
  if (s.indexOf("%") < 0) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** What prefix and KV routing read of a request: a completion's prompt, or chat messages. */
export interface RoutingInput {
  prompt: unknown;
  messages: unknown[] | undefined;
  /**
   * the engine encodes the rendered chat template with special tokens added (vLLM 0.32's Responses:
   * a template that writes its BOS gets a second one); chat and Messages do not
   */
  addSpecialTokens?: boolean;
}

const NONE: RoutingInput = { prompt: undefined, messages: undefined };

/**
 * The prompt or messages a request is routed by, found where its endpoint keeps them; Messages and
 * Responses bodies become the chat messages vLLM renders for them, so their token ids and block
 * hashes are the ones the engine computes (the same path chat takes).
 */
export function routingInput(
  e: Endpoint | undefined,
  body: Record<string, unknown> | undefined,
): RoutingInput {
  if (!body) return NONE;
  switch (e?.prompt ?? "auto") {
    case "chat":
      return { prompt: undefined, messages: Array.isArray(body.messages) ? body.messages : undefined };
    case "completion":
      return { prompt: body.prompt, messages: undefined };
    case "token-ids":
      return { prompt: Array.isArray(body.token_ids) ? body.token_ids : undefined, messages: undefined };
    case "messages":
      return { prompt: undefined, messages: anthropicToChat(body) };
    case "responses":
      return { prompt: undefined, messages: responsesToChat(body), addSpecialTokens: true };
    case "chat-batch": {
      const first = Array.isArray(body.messages) ? (body.messages[0] as unknown) : undefined;
      return { prompt: undefined, messages: Array.isArray(first) ? first : undefined };
    }
    case "auto":
      if (Array.isArray(body.messages)) return { prompt: undefined, messages: body.messages };
      return { prompt: body.prompt, messages: undefined };
    case "none":
      return NONE;
  }
}

type Part = { type: string; text?: string };

function textOf(v: unknown): string | undefined {
  return v && typeof v === "object" && typeof (v as { text?: unknown }).text === "string"
    ? (v as { text: string }).text
    : undefined;
}

/** One message's content as vLLM passes it on: a lone text part becomes a string. */
function content(parts: Part[]): string | Part[] {
  return parts.length === 1 && parts[0]!.type === "text" ? parts[0]!.text! : parts;
}

/**
 * Anthropic Messages → chat messages, as vLLM converts them before its chat template: `system` (a
 * string, or text blocks joined) first; text blocks as text parts; `tool_result` blocks as `tool`
 * messages; `tool_use` blocks as the assistant's tool calls. Undefined when `messages` is no list.
 */
export function anthropicToChat(body: Record<string, unknown>): ChatMessage[] | undefined {
  if (!Array.isArray(body.messages)) return undefined;
  const out: ChatMessage[] = [];
  const sys = body.system;
  if (typeof sys === "string") {
    if (sys !== "") out.push({ role: "system", content: sys });
  } else if (Array.isArray(sys) && sys.length > 0) {
    let text = "";
    for (const b of sys) text += textOf(b) ?? "";
    out.push({ role: "system", content: text });
  }
  for (const m of body.messages as unknown[]) {
    if (!m || typeof m !== "object") return undefined;
    const { role, content: c } = m as { role?: unknown; content?: unknown };
    if (typeof role !== "string") return undefined;
    if (typeof c === "string") {
      out.push({ role, content: c });
      continue;
    }
    if (!Array.isArray(c)) return undefined;
    const parts: Part[] = [];
    const calls: unknown[] = [];
    for (const b of c as Array<Record<string, unknown> | null>) {
      if (!b || typeof b !== "object") continue;
      if (b.type === "text" && typeof b.text === "string" && b.text !== "")
        parts.push({ type: "text", text: b.text });
      else if (b.type === "thinking" && typeof b.thinking === "string" && b.thinking !== "")
        parts.push({ type: "text", text: b.thinking });
      else if (b.type === "tool_use")
        calls.push({
          id: b.id,
          type: "function",
          function: { name: b.name ?? "", arguments: JSON.stringify(b.input ?? {}) },
        });
      else if (b.type === "tool_result" && role === "user") {
        const r = b.content;
        const text =
          typeof r === "string" ? r : Array.isArray(r) ? r.map((x) => textOf(x) ?? "").join("\n") : "";
        out.push({ role: "tool", content: text, tool_call_id: b.tool_use_id ?? "" } as ChatMessage);
      }
    }
    if (parts.length === 0 && calls.length === 0) continue;
    const msg: ChatMessage & { tool_calls?: unknown[] } = {
      role,
      content: parts.length > 0 ? content(parts) : null,
    };
    if (calls.length > 0) msg.tool_calls = calls;
    out.push(msg);
  }
  return out;
}

/**
 * Responses `instructions` + `input` → chat messages, as vLLM builds them: the instructions as the
 * system message, a string input as one user message, input items' text parts (`input_text`,
 * `output_text`) as text. A `previous_response_id`'s history lives on its engine: the request is
 * pinned there, and routed by what it adds.
 */
export function responsesToChat(body: Record<string, unknown>): ChatMessage[] | undefined {
  const out: ChatMessage[] = [];
  if (typeof body.instructions === "string" && body.instructions !== "")
    out.push({ role: "system", content: body.instructions });
  const input = body.input;
  if (typeof input === "string") {
    out.push({ role: "user", content: input });
    return out;
  }
  if (!Array.isArray(input)) return undefined;
  for (const item of input as Array<Record<string, unknown> | null>) {
    if (!item || typeof item !== "object") continue;
    if (item.type !== undefined && item.type !== "message") continue;
    const role = item.role;
    if (typeof role !== "string") continue;
    const c = item.content;
    if (typeof c === "string") {
      out.push({ role, content: c });
      continue;
    }
    if (!Array.isArray(c)) continue;
    const parts: Part[] = [];
    for (const p of c as unknown[]) {
      const t = textOf(p);
      if (t !== undefined) parts.push({ type: "text", text: t });
    }
    if (parts.length > 0) out.push({ role, content: content(parts) });
  }
  return out;
}
