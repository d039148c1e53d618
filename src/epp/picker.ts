// The decision: the router's policy over the router's snapshot (src/routing's `decide`, the same
// call the proxy makes), narrowed to the data plane's subset hint, turned into the endpoint list the
// GIE protocol wants: the primary engine, then fallbacks in the policy's own order. The primary gets
// one of the router's in-flight slots; when every candidate is at its cap the request waits in the
// router's admission queue, and is refused 429 when that queue is full or the wait times out.
import { HttpError } from "../http/errors.js";
import { decide, type EngineView, type Policy, type RequestView } from "../routing/index.js";
import type { Tenant } from "../tenancy/state.js";
import type { Subset } from "./request.js";
import type { RoutingHost, Slot } from "./types.js";

/** An engine's `host:port`, as the data plane addresses it (the GIE `<ip:port>` form). */
const endpointCache = new Map<string, string>();

export function endpointOf(engineId: string): string {
  let ep = endpointCache.get(engineId);
  if (ep === undefined) {
    try {
      const u = new URL(engineId);
      const port = u.port || (u.protocol === "https:" ? "443" : "80");
      ep = `${u.hostname}:${port}`.toLowerCase();
    } catch {
      ep = engineId.toLowerCase();
    }
    // engine ids come from discovery: bounded by the fleet, but churn over a long life is cleared
    if (endpointCache.size >= 4096) endpointCache.clear();
    endpointCache.set(engineId, ep);
  }
  return ep;
}

function hostOf(endpoint: string): string {
  const i = endpoint.lastIndexOf(":");
  return (i > 0 ? endpoint.slice(0, i) : endpoint).replace(/^\[|\]$/g, "");
}

export function inSubset(engineId: string, subset: Subset): boolean {
  const ep = endpointOf(engineId);
  return subset.endpoints.has(ep) || (subset.hosts.size > 0 && subset.hosts.has(hostOf(ep)));
}

export interface Picked {
  kind: "picked";
  slot: Slot;
  /** primary first, then fallbacks: the value of x-gateway-destination-endpoint */
  endpoints: string[];
  policy: string;
}

/**
 * Policies without their `onPicked` and `admit` hooks, for fallbacks: a fallback is not a routing decision,
 * and not an admission either (the pick was admitted; a fallback is where the gateway goes if it fails, so
 * it is neither refused by an SLO nor held for room, which would leave a phantom waiter behind)
 */
const quiet = new WeakMap<Policy, Policy>();
function quietPolicy(p: Policy): Policy {
  let q = quiet.get(p);
  if (!q) {
    q = { ...p, onPicked: undefined, admit: undefined };
    quiet.set(p, q);
  }
  return q;
}

export class EndpointPicker {
  /** this picker's request counter: the routing library's rotation among ties */
  private seq = 0;

  constructor(private readonly host: RoutingHost) {}

  /** A request view for the routing library, as the proxy builds one. */
  view(
    model: string,
    parsed: Record<string, unknown> | undefined,
    sessionKey: string | undefined,
    path?: string,
  ): RequestView {
    const input =
      parsed && path !== undefined && this.host.routingInput ? this.host.routingInput(path, parsed) : parsed;
    return {
      model,
      seq: this.seq++ & 0x3fffffff,
      sessionKey,
      prompt: input?.prompt,
      messages: input?.messages,
      body: parsed,
    };
  }

  private candidates(subset: Subset | undefined): readonly EngineView[] {
    const all = this.host.snapshot();
    return subset ? all.filter((e) => inSubset(e.id, subset)) : all;
  }

  /**
   * Picks the engines for an inference request. Synchronous when an engine has room; a promise when
   * every candidate is at its in-flight cap and the request waits for room. Throws HttpError for
   * what the GIE contract answers with an ImmediateResponse (503, 429, 404).
   */
  pick(
    view: RequestView,
    subset: Subset | undefined,
    signal: AbortSignal,
    tenant?: Tenant,
  ): Picked | Promise<Picked> {
    const policy = this.host.policy();
    const dec = decide(policy, view, { engines: this.candidates(subset), now: performance.now() });
    if (dec.kind === "picked") {
      const slot = this.host.claim(dec.engine.id, { view, policy });
      if (slot) return this.withFallbacks(policy, view, subset, slot);
    } else if (dec.kind === "unknown-model") {
      if (subset && this.host.knowsModel(view.model))
        throw new HttpError(503, `no endpoint of the subset hint serves the model \`${view.model}\``, null, {
          "retry-after": "1",
        });
      throw new HttpError(404, `The model \`${view.model}\` does not exist.`, "model");
    } else if (dec.kind === "unavailable") {
      throw new HttpError(
        503,
        subset
          ? `no ready endpoint in the subset hint serves the model \`${view.model}\``
          : `no ready engine serves the model \`${view.model}\` right now; retry later`,
        null,
        { "retry-after": "1" },
      );
    }
    // saturated (or the engine left between the decision and the claim): wait for room
    return this.waitForRoom(policy, view, subset, signal, tenant);
  }

  private async waitForRoom(
    policy: Policy,
    view: RequestView,
    subset: Subset | undefined,
    signal: AbortSignal,
    tenant: Tenant | undefined,
  ): Promise<Picked> {
    let slot: Slot | undefined;
    let current = policy;
    try {
      await this.host.waitForRoom(
        () => {
          current = this.host.policy();
          const dec = decide(current, view, { engines: this.candidates(subset), now: performance.now() });
          if (dec.kind !== "picked") return false;
          slot = this.host.claim(dec.engine.id, { view, policy: current });
          return slot !== undefined;
        },
        signal,
        tenant,
        view,
      );
    } catch (err) {
      // timed out, refused or abandoned while held: it ranks among the waiting no more
      current.onLeftQueue?.(view);
      throw err;
    }
    return this.withFallbacks(current, view, subset, slot!);
  }

  private withFallbacks(policy: Policy, view: RequestView, subset: Subset | undefined, slot: Slot): Picked {
    const endpoints = [endpointOf(slot.engineId)];
    const n = this.host.settings().fallbacks;
    if (n > 0) {
      const exclude = new Set([slot.engineId]);
      const fleet = { engines: this.candidates(subset), now: performance.now() };
      const q = quietPolicy(policy);
      for (let i = 0; i < n; i++) {
        const dec = decide(q, { ...view, exclude }, fleet);
        if (dec.kind !== "picked") break;
        exclude.add(dec.engine.id);
        endpoints.push(endpointOf(dec.engine.id));
      }
    }
    return { kind: "picked", slot, endpoints, policy: policy.name };
  }

  /**
   * A request without a body (a GET): no model to route by, so the least busy healthy candidate,
   * ties rotating. It holds no slot: it is not inference work.
   */
  pickAny(subset: Subset | undefined): string {
    let best: EngineView | undefined;
    let ties = 0;
    const s = this.seq++;
    for (const e of this.candidates(subset)) {
      if (!e.healthy || e.weight <= 0) continue;
      if (!best || e.inFlight < best.inFlight) {
        best = e;
        ties = 1;
      } else if (e.inFlight === best.inFlight && s % ++ties === 0) best = e;
    }
    if (!best)
      throw new HttpError(503, "no ready endpoint to send the request to; retry later", null, {
        "retry-after": "1",
      });
    return endpointOf(best.id);
  }

  /** The engine id behind an endpoint the data plane reports, when it is one of the fleet's. */
  engineAt(endpoint: string): string | undefined {
    for (const e of this.host.snapshot()) if (endpointOf(e.id) === endpoint) return e.id;
    return undefined;
  }
}
