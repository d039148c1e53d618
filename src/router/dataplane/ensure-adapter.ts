// Attempt-loop step: ensure the adapter (attempt-loop.ts). A request for a registry LoRA adapter
// carries the adapter's request view from the start (its base model resolved); on each engine picked
// the request is counted there, then sent once the adapter is loaded (at once, or after the one load
// in flight for it there). The loader keeps each engine's adapters in the engine view's declared
// `lora` field, which the LoRA placement reads.
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { EngineRecord } from "../engines/engine-record.js";
import type { RequestContext } from "./request-context.js";

/** What the adapter step needs: the registry (its adapter loader, base models), the slot to free. */
export interface EnsureAdapterNeeds {
  registry: Pick<EngineRegistry, "adapters" | "adapterBase">;
  picks: { releaseSlot(e: EngineRecord, ctx: RequestContext): void };
}

export class EnsureAdapter {
  constructor(private readonly d: EnsureAdapterNeeds) {}

  /** Before the first pick: the adapter a request names, for the placement to read. */
  view(ctx: RequestContext): void {
    const adapters = this.d.registry.adapters;
    if (!adapters || ctx.view.lora !== undefined) return;
    const v = adapters.requestView(ctx.pr.model);
    if (v) v.base = this.d.registry.adapterBase(v.base || null) ?? v.base;
    ctx.view.lora = v;
  }

  /**
   * A registry adapter's request on its picked engine: counted there, then sent once the adapter is
   * loaded; a failed load frees the slot and answers the load's error. Undefined: nothing to wait for.
   */
  run(ctx: RequestContext, e: EngineRecord): Promise<void> | undefined {
    const loader = this.d.registry.adapters;
    if (!loader || !ctx.view.lora) return undefined;
    const t = ctx.pr.tenant;
    // a load is the cost of the tenant whose request causes it (charged before it starts)
    const who = t
      ? {
          tenant: t.tenant,
          weight: t.weight,
          charge: () => t.chargeAdapterLoad(),
          weightOf: (name: string) => t.weightOf(name),
        }
      : undefined;
    loader.noteSent(e, ctx.view.lora.name, performance.now(), t?.tenant);
    ctx.loraEngine = e.url;
    return loader.ensure(e, ctx.view.lora.name, who).catch((err: unknown) => {
      this.d.picks.releaseSlot(e, ctx);
      throw err;
    });
  }
}
