// A client request once the ingress has accepted it: the typed value the data plane
// (../dataplane/attempt-loop.ts), the prefill step (../pd/disagg.ts) and the attempts (../dataplane/attempt.ts)
// share. It lives in its own module so that none of them imports another for its types (loop ↔ disagg was a file cycle).
import type { Readable } from "node:stream";
import { HttpError } from "../../http/errors.js";
import type { QueueAsk, QueueFlow } from "./admission.js";
import type { Endpoint } from "./endpoints.js";
import type { TenantRequest } from "../../tenancy/request.js";

/** Everything the data plane knows about one client request. */
export interface RoutedRequest {
  /** the client's path, with only the query parameters the endpoint relays (../engines/upstream-rules.ts) */
  path: string;
  /** what the router knows of the path (endpoints.ts); absent in requests built by tests: looked up */
  endpoint?: Endpoint | undefined;
  /** GET, or POST (every body-carrying route) */
  method?: "GET" | "POST" | undefined;
  /**
   * the engine that holds the state this request needs (a stored response): the request goes there
   * and nowhere else (../dataplane/response-affinity.ts)
   */
  pin?: { id: string; engine: string } | undefined;
  /** the served model (aliases already resolved) */
  model: string;
  stream: boolean;
  sessionKey: string | undefined;
  /** exact bytes to send upstream, or a one-shot stream (multipart) that cannot be replayed */
  body: Buffer | Readable;
  /** the parsed JSON body (cache-aware routing, tracing, the prefill step) */
  parsed?: Record<string, unknown> | undefined;
  /**
   * The client's own Authorization, only when the router did not consume it: with tenancy on the
   * client's key is the router's credential and never leaves the router (../engines/upstream-rules.ts).
   */
  clientAuthorization?: string | undefined;
  /** tenancy on: the admitted tenant's bookkeeping (usage from the relayed body, slot release) */
  tenant?: TenantRequest | undefined;
  /** the fair admission queue's flow (tenant, weight, priority); anonymous when absent */
  flow?: QueueFlow | undefined;
  /** slots above each engine's cap it may take (its tenant is in the top band: admission.topBandHeadroom) */
  headroom?: number | undefined;
  /** its own rank and longest wait within that flow (an agentic context's priority and deadline) */
  queueAsk?: QueueAsk | undefined;
  /**
   * counted in the generation metrics (requests_total, TTFT, ITL, E2E); false for the tokenizer
   * endpoints (/tokenize, /detokenize), which are counted on their own
   */
  generation: boolean;
  /**
   * The prompt's token ids when the ingress computed them off the event loop (long prompts): routing
   * hashes these instead of tokenising the prompt again on the loop.
   */
  promptTokens?: number[] | undefined;
  /**
   * performance.now() when the router's CPU work on the request began (counting its prompt): its
   * place in the line of sliced work (src/eventloop/turns.ts), kept by its later slices (block hashing).
   * The ingress always sets it; a request built elsewhere (tests) counts from when the data plane took it.
   */
  workBegan?: number | undefined;
  /** the client's TTFT SLO in ms (x-slo-ttft-ms), for the predictive policy's admission */
  sloTtftMs?: number | undefined;
}

/**
 * The answer for a model no engine is known to serve while an engine's model list is still unknown
 * (just started or just discovered): the client retries rather than hearing a 404 that is not true.
 */
export function modelsNotYetKnown(model: string): HttpError {
  return new HttpError(
    503,
    `The router has not yet learned every engine's models, so it cannot tell whether \`${model}\` is served: retry shortly.`,
    "model",
    { "retry-after": "1" },
  );
}

/** vLLM's answer for a model nobody serves (the one place the text is written). */
export function modelNotFound(model: string): HttpError {
  return new HttpError(404, `The model \`${model}\` does not exist.`, "model");
}
