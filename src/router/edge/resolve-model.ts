// Ingress step: resolve the model (ingress.ts). The served model a request goes to: aliases resolved,
// the fleet's only model when the route lets the request name none, a stored response's model for a
// route that takes none. A model the tenant may not use is answered exactly as one that does not exist.
import { HttpError } from "../../http/errors.js";
import type { RouterGate } from "../../tenancy/router-gate.js";
import type { Tenant } from "../../tenancy/state.js";
import { aliasTarget, type RouterConfig } from "../config/config.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import { modelNotFound, modelsNotYetKnown } from "../request/routed-request.js";
import type { Passage } from "./passage.js";

/** What resolving needs: the aliases, the engines' models, who may use which. */
export interface ResolveModelNeeds {
  config: () => RouterConfig;
  registry: EngineRegistry;
  gate: Pick<RouterGate, "mayUse">;
}

export class ResolveModel {
  constructor(private readonly d: ResolveModelNeeds) {}

  run(p: Passage): void {
    const multipart = p.ep.body === "multipart";
    p.model = p.ep.modelless
      ? this.anyModel(p.home?.model)
      : this.model(p.body?.model, multipart || p.ep.modelOptional, multipart, p.tenant);
  }

  /** After pinning: an alias's request is re-serialised with the target name (the only one the engine knows). */
  named(p: Passage): void {
    const obj = p.body?.parsed;
    p.mutated = obj !== undefined && p.body?.model !== undefined && p.model !== p.body.model;
    if (p.mutated) obj!.model = p.model;
  }

  /**
   * The model of a request that names none (a stored response's, or /version): the pinned response's
   * model, else the fleet's only one, else any engine's; 503 when no engine serves anything yet.
   */
  anyModel(pinned: string | undefined): string {
    if (pinned) return pinned;
    const only = this.soleModel();
    if (only !== undefined) return only;
    for (const e of this.d.registry.engines.values())
      if (e.healthy && !e.draining) for (const m of e.view.models) return m;
    for (const e of this.d.registry.engines.values()) for (const m of e.view.models) return m;
    throw new HttpError(503, "no engine serves a model yet; retry later", null, { "retry-after": "1" });
  }

  private model(
    requested: string | undefined,
    optional: boolean | undefined,
    multipart: boolean,
    tenant: Tenant | undefined,
  ): string {
    const cfg = this.d.config();
    const model =
      requested !== undefined
        ? (aliasTarget(cfg.aliases, requested) ?? requested)
        : optional
          ? this.soleModel()
          : undefined;
    if (model === undefined) {
      throw multipart
        ? new HttpError(400, "the form needs a `model` field before the file part", "model")
        : new HttpError(400, "the request needs a `model` field", "model");
    }
    if (!this.d.registry.knowsModel(model))
      throw this.d.registry.modelsPending() ? modelsNotYetKnown(model) : modelNotFound(model);
    const adapters = this.d.registry.adapters?.registry;
    const named = requested ?? model;
    // as a name that exists nowhere: the name the client gave, and the same 503 while models are unknown
    if (!this.d.gate.mayUse(tenant, named, model, (n) => adapters?.privateTo(n)))
      throw this.d.registry.modelsPending() ? modelsNotYetKnown(named) : modelNotFound(named);
    return model;
  }

  /** The only model name in the fleet, when there is exactly one. */
  private soleModel(): string | undefined {
    let only: string | undefined;
    for (const e of this.d.registry.engines.values()) {
      for (const m of e.view.models) {
        if (only === undefined) only = m;
        else if (only !== m) return undefined;
      }
    }
    return only;
  }
}
