// The request fields a tenant's client may not set as it sends them, because vLLM or LMCache read them
// as the operator's word: the engine's scheduling `priority`, and `vllm_xargs` (vLLM copies it into the
// request's `extra_args`, where its KV connectors read `kv_transfer_params` and LMCache its `lmcache.*`
// request settings). With tenancy on, the router decides both: the priority from the tenant's band
// (a client's value dropped, or clamped inside the band where the tenant allows it), and `vllm_xargs`
// cut to the keys the operator lists. docs/security.md names the vLLM source each rule answers.
import { ROUTER_XARGS } from "./config.js";

/** how the engine's priority is set: the tenancy config's `enginePriority` with the tenant's own rule */
export interface PriorityRule {
  /** the tenant's band (tenancy.tenants.NAME.priority; higher is served first) */
  band: number;
  /** set vLLM's priority from the band (engines run `--scheduling-policy priority`) */
  fromBand: boolean;
  /** engine priority values one band spans */
  bandWidth: number;
  /** a client's own value: dropped, or kept within the band */
  client: "drop" | "clamp";
}

/**
 * The engine's `priority` for a request: undefined = send none (vLLM's default 0). vLLM serves lower
 * values first, so band b starts at `-b × bandWidth` and spans bandWidth values from there: a higher
 * band is always ahead of a lower one, whatever a client asks. A clamped client value (0 up to
 * bandWidth-1) only orders the tenant's own requests inside its band.
 */
export function enginePriority(rule: PriorityRule, asked: unknown): number | undefined {
  const base = rule.fromBand ? -rule.band * rule.bandWidth : 0;
  let offset = 0;
  if (rule.client === "clamp" && typeof asked === "number" && Number.isInteger(asked))
    offset = Math.min(Math.max(asked, 0), rule.bandWidth - 1);
  const p = base + offset;
  return p === 0 ? undefined : p;
}

/**
 * Sets `obj.priority` by the rule and cuts `obj.vllm_xargs` to the allowed keys (never the transfer
 * keys); true when the body changed. A `vllm_xargs` that is not an object is removed (vLLM would refuse
 * it anyway); one left empty is removed.
 */
export function ownRequestFields(
  obj: Record<string, unknown>,
  rule: PriorityRule,
  allowedXargs: readonly string[],
): boolean {
  let changed = false;
  const p = enginePriority(rule, obj.priority);
  if (p === undefined) {
    if ("priority" in obj) {
      delete obj.priority;
      changed = true;
    }
  } else if (obj.priority !== p) {
    obj.priority = p;
    changed = true;
  }
  if ("vllm_xargs" in obj) {
    const x = obj.vllm_xargs;
    if (x === null || typeof x !== "object" || Array.isArray(x)) {
      delete obj.vllm_xargs;
      return true;
    }
    const kept: Record<string, unknown> = {};
    let dropped = false;
    for (const [k, v] of Object.entries(x as Record<string, unknown>)) {
      if (allowedXargs.includes(k) && !ROUTER_XARGS.has(k)) kept[k] = v;
      else dropped = true;
    }
    if (dropped) {
      changed = true;
      if (Object.keys(kept).length === 0) delete obj.vllm_xargs;
      else obj.vllm_xargs = kept;
    }
  }
  return changed;
}
