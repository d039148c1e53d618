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
 * Sets `obj.priority` by the rule and cuts `obj.vllm_xargs` (and a generate request's
 * `sampling_params.extra_args`) to the allowed keys, never the transfer keys; true when the body
 * changed. One that is not an object is removed (vLLM would refuse it anyway); one left empty too.
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
  changed = cutArgs(obj, "vllm_xargs", allowedXargs) || changed;
  // /inference/v1/generate takes vLLM's SamplingParams as they are, `extra_args` (where vllm_xargs
  // lands on the other routes) among them
  const sp = obj.sampling_params;
  if (sp !== null && typeof sp === "object" && !Array.isArray(sp))
    changed = cutArgs(sp as Record<string, unknown>, "extra_args", allowedXargs) || changed;
  return changed;
}

/** `holder[field]` cut to the allowed keys, never the transfer keys; removed when not an object or left empty */
function cutArgs(holder: Record<string, unknown>, field: string, allowed: readonly string[]): boolean {
  if (!(field in holder)) return false;
  const x = holder[field];
  if (x === null || x === undefined) return false;
  if (typeof x !== "object" || Array.isArray(x)) {
    delete holder[field];
    return true;
  }
  const kept: Record<string, unknown> = {};
  let dropped = false;
  for (const [k, v] of Object.entries(x as Record<string, unknown>)) {
    if (allowed.includes(k) && !ROUTER_XARGS.has(k)) kept[k] = v;
    else dropped = true;
  }
  if (!dropped) return false;
  if (Object.keys(kept).length === 0) delete holder[field];
  else holder[field] = kept;
  return true;
}
