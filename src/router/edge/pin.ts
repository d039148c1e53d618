// Ingress step: pin (ingress.ts). A request that names a stored response (a path id, or
// `previous_response_id`) goes to the engine that holds it. The router's own books say where that is;
// with tenancy on, another tenant's response is not there for this one; an id the router never saw,
// among several engines, is asked of the engines once the model is known.
import { setTimeout as delay } from "node:timers/promises";
import { OWNER_METADATA_KEY, type RouterGate } from "../../tenancy/router-gate.js";
import type { RouterConfig } from "../config/config.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import {
  followUpWaitMs,
  locateResponse,
  ownerMay,
  responseNotFound,
  type ResponseAffinity,
} from "../dataplane/response-affinity.js";
import type { Passage } from "./passage.js";

/** What pinning needs: the stored responses' engines, the engines to ask, the owner tags. */
export interface PinNeeds {
  config: () => RouterConfig;
  registry: EngineRegistry;
  affinity: ResponseAffinity;
  gate: Pick<RouterGate, "ownerTag">;
  /** the model a modelless request goes to, given the pinned response's (resolve-model.ts) */
  models: { anyModel(pinned: string | undefined): string };
}

export class Pin {
  constructor(private readonly d: PinNeeds) {}

  /**
   * Before the model: the response the request names, and where the router's books say it is. A promise
   * only for a request that names one: the others go on in the same turn.
   */
  home(p: Passage): Promise<void> | undefined {
    const { ep } = p;
    const obj = p.body?.parsed;
    const pinId =
      ep.pin === "path-id"
        ? p.pathId
        : ep.pin === "previous-response-id" && typeof obj?.previous_response_id === "string"
          ? obj.previous_response_id
          : undefined;
    p.pinId = pinId;
    return pinId === undefined ? undefined : this.homeOf(p, pinId);
  }

  private async homeOf(p: Passage, pinId: string): Promise<void> {
    const tenant = p.tenant;
    let home = this.d.affinity.home(pinId);
    // a router group with tenancy on: the engines are not asked, so the entry is given the time the
    // group takes to pass it on (a follow-up may overtake the message about its response)
    if (tenant && this.d.affinity.sharing) {
      const ms = followUpWaitMs(this.d.config().peers);
      if (home === undefined) home = await this.d.affinity.arrival(pinId, ms);
      // another tenant's is answered no sooner than an unknown one: the delay tells nothing
      else if (home.owner !== tenant.name) await delay(ms);
    }
    // tenancy on: another tenant's response, or one whose owner nobody knows, is not there for this
    // tenant (the answer an id nobody made gets; the engines are not asked)
    // ... unless its engine holds it under this tenant's owner tag (the router restarted, the replica
    // that made it is gone, its entry was evicted): the engines are asked, and only the tag decides;
    // another tenant's known id is asked for too, so its 404 comes no sooner than an unknown one's
    if (!ownerMay(home, tenant?.name)) {
      const tag = tenant ? this.d.gate.ownerTag(tenant) : undefined;
      const found =
        tag !== undefined
          ? await locateResponse(this.d.registry, this.d.affinity, pinId, undefined, {
              tenant: tenant!.name,
              tag,
              field: OWNER_METADATA_KEY,
            })
          : undefined;
      if (found === undefined) throw responseNotFound(pinId);
      home = found;
    }
    p.home = home;
  }

  /**
   * After the model: an id the router never saw, among several engines: the engines are asked who
   * holds it; when none does, an engine that lacks the history must not answer as if it did (vLLM's
   * own 404). A modelless request takes the model of the response found. A promise only where the
   * engines are asked.
   */
  locate(p: Passage): Promise<void> | undefined {
    if (p.pinId === undefined || p.home !== undefined) return undefined;
    const among = p.ep.modelless ? undefined : p.model;
    if (this.candidates(among) <= 1) return undefined;
    return this.ask(p, p.pinId, among);
  }

  private async ask(p: Passage, pinId: string, among: string | undefined): Promise<void> {
    const home = await locateResponse(this.d.registry, this.d.affinity, pinId, among);
    if (!home) throw responseNotFound(pinId);
    p.home = home;
    if (p.ep.modelless) p.model = this.d.models.anyModel(home.model);
  }

  /** Engines a request could go to: those serving `model` (any model when undefined), not draining. */
  private candidates(model: string | undefined): number {
    let n = 0;
    for (const e of this.d.registry.engines.values())
      if (!e.draining && (model === undefined || e.view.models.has(model))) n++;
    return n;
  }
}
