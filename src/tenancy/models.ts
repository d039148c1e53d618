// Which models a tenant may use: its `models` patterns (exact names and `*` globs) and the registry
// adapters private to some tenants. A model a tenant may not use is answered exactly as one that does
// not exist, so the router's edges ask this one question before anything else of the model.

/** What the rule reads of a tenant (state.ts's Tenant). */
export interface ModelUser {
  readonly name: string;
  readonly models: ModelPatterns | undefined;
}

/** A tenant's `models` list, compiled once per configuration. */
export class ModelPatterns {
  private readonly exact = new Set<string>();
  private readonly globs: RegExp[] = [];

  constructor(patterns: readonly string[]) {
    for (const p of patterns) {
      if (!p.includes("*")) this.exact.add(p);
      else
        this.globs.push(
          new RegExp(
            `^${p
              .split("*")
              .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
              .join(".*")}$`,
            "s",
          ),
        );
    }
  }

  matches(name: string): boolean {
    if (this.exact.has(name)) return true;
    for (const g of this.globs) if (g.test(name)) return true;
    return false;
  }
}

/**
 * Whether `tenant` (undefined: tenancy off) may use the model it named as `requested`, served as
 * `served` (an alias resolved; the same name otherwise). `privateTo` names the tenants a registry
 * adapter is private to (undefined: not private): such an adapter, under either name, is only its
 * tenants' (and nobody's without tenancy). The tenant's patterns may match either name: an alias the
 * operator listed, or the model itself.
 */
export function tenantMayUse(
  tenant: ModelUser | undefined,
  requested: string,
  served: string,
  privateTo: (name: string) => ReadonlySet<string> | undefined,
): boolean {
  for (const n of requested === served ? [served] : [requested, served]) {
    const owners = privateTo(n);
    if (owners !== undefined && (tenant === undefined || !owners.has(tenant.name))) return false;
  }
  const p = tenant?.models;
  return p === undefined || p.matches(requested) || (requested !== served && p.matches(served));
}
