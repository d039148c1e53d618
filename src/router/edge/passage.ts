// One request's way through the ingress steps (ingress.ts): what each step found, for the steps after
// it and for the one way out of a refusal. Types only.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Readable } from "node:stream";
import type { Admission, Tenant } from "../../tenancy/state.js";
import type { Endpoint } from "../request/endpoints.js";
import type { ResponseHome } from "../dataplane/response-affinity.js";

/** The body step's result: what the later steps need, whatever the body's format. */
export interface Body {
  /** the model the client named (undefined: none given) */
  model: string | undefined;
  body: Buffer | Readable;
  /** bytes (declared or read), for the tenant's prompt estimate */
  bytes: number;
  parsed?: Record<string, unknown>;
}

export interface Passage {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly path: string;
  readonly url: string;
  readonly ep: Endpoint;
  /** the id in the path (`/v1/responses/{id}`), when the route has one */
  readonly pathId: string | undefined;
  /** authenticate: the tenant (undefined with tenancy off) */
  tenant?: Tenant | undefined;
  /** authenticate: the tenant's slot, taken at the headers (released if the request is refused later) */
  admission?: Admission | undefined;
  /** authenticate: the client's TTFT objective, ms */
  slo?: number | undefined;
  /** read the body */
  body?: Body;
  /** pin: the stored response the request names, and the engine that holds it */
  pinId?: string | undefined;
  home?: ResponseHome | undefined;
  /** resolve the model: the served model it goes to */
  model?: string;
  /** the body changed (an alias, a scoped abort, a tenant's salt): re-serialised on the way out */
  mutated?: boolean;
  /** count the prompt */
  promptTokens?: number[] | undefined;
  workBegan?: number;
}
