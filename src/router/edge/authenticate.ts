// Ingress step one (ingress.ts): who is asking, and their slot taken, before any body byte is read, so
// an anonymous client never makes the router buffer one and a tenant's slow bodies take its own slots.
// A sheddable tenant's generation with every engine full is refused here, as the queue would refuse it.
import { HttpError } from "../../http/errors.js";
import { parseSloHeader, SLO_HEADER } from "../../routing/index.js";
import { promptEstimate, type RouterGate } from "../../tenancy/router-gate.js";
import type { Tenant } from "../../tenancy/state.js";
import { ANONYMOUS_FLOW, sheddableRefusal, type QueueFlow } from "../request/admission.js";
import type { RouterMetrics } from "../telemetry/metrics.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { Passage } from "./passage.js";

/** What authentication needs: the tenancy gate, whether engines are full, the rejection counter. */
export interface AuthenticateNeeds {
  gate: RouterGate;
  registry: Pick<EngineRegistry, "saturated">;
  metrics: Pick<RouterMetrics, "rejected">;
}

/** The body size a request declares (Content-Length); 0 when it declares none (chunked, or no body). */
export function declaredBytes(req: Passage["req"]): number {
  const n = Number(req.headers["content-length"] ?? 0);
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/** The admission-queue flow of a request: its tenant's (weight, priority), else the anonymous one. */
export function flowOf(t: Tenant | undefined): QueueFlow {
  return t ? { key: t.name, weight: t.weight, priority: t.priority } : ANONYMOUS_FLOW;
}

export class Authenticate {
  constructor(private readonly d: AuthenticateNeeds) {}

  /** A promise only where it waits (a tenant's slot): the anonymous request goes on in the same turn. */
  run(p: Passage): Promise<void> | undefined {
    const tenant = (p.tenant = this.d.gate.authenticate(p.req));
    const slo = parseSloHeader(p.req.headers[SLO_HEADER]);
    if (slo instanceof Error) throw new HttpError(400, slo.message, SLO_HEADER);
    p.slo = slo;
    return tenant ? this.admit(p, tenant) : undefined;
  }

  private async admit(p: Passage, tenant: Tenant): Promise<void> {
    // before any body byte is read: a tenant's slow bodies hold its own concurrency slots, and one
    // over its limit is refused now rather than after its body has been buffered
    p.admission = await this.d.gate.take(tenant, promptEstimate(declaredBytes(p.req)));
    // a sheddable tenant's generation with every engine full: the queue would refuse it at once
    // (../request/admission.ts), so it is refused now, before its body is read, parsed and routed
    if (tenant.priority < 0 && p.ep.counted === "requests" && this.d.registry.saturated()) {
      this.d.metrics.rejected.inc({ reason: "queue" });
      throw sheddableRefusal(flowOf(tenant));
    }
  }
}
