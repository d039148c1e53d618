// The cache-aware policies' admission (plugin `cache-aware`): `predictive` refuses (over-slo) a request
// no engine is predicted to start within its TTFT SLO, calibrated by how admitted requests came out;
// late binding (cost/late-binding.ts) holds a request in the router while the engine it picked has
// prompts enough queued.
import type { Decision, Policy } from "../../policy/policy.js";
import type { CacheAwareBook } from "./book.js";

const SATURATED: Decision = { kind: "saturated" };
/** a step's budget when the timing does not say: vLLM's max_num_batched_tokens on most GPUs */
const DEFAULT_STEP_TOKENS = 2048;

/** the admit hook, or undefined where the policy neither admits by SLO nor binds late */
export function cacheAwareAdmit(book: CacheAwareBook): Policy["admit"] {
  const { admitBySlo, late, last, calibration, options } = book;
  if (!(admitBySlo || late)) return undefined;
  return (req, engine, fleet): Decision | undefined => {
    const scored = last.get(req);
    const i = scored ? scored.engines.indexOf(engine) : -1;
    if (admitBySlo && scored?.ttftMs && scored.sloMs !== undefined) {
      const ttft = (i >= 0 ? scored.ttftMs[i]! : Infinity) * calibration.value;
      if (ttft > scored.sloMs) {
        late?.left(req);
        return {
          kind: "over-slo",
          predictedTtftMs: ttft,
          sloTtftMs: scored.sloMs,
          retryAfterMs: ttft - scored.sloMs,
        };
      }
    }
    // held in the router until the engine can start it soon; but a request with a TTFT SLO was
    // admitted by a prediction that binds it now, and is bound now
    if (late && i >= 0 && scored!.sloMs === undefined) {
      const step = options.predictive?.timing?.(engine, req.model)?.stepTokens ?? DEFAULT_STEP_TOKENS;
      if (late.holds(req, engine, scored!.uncached[i]!, fleet.now, step)) return SATURATED;
    }
    return undefined;
  };
}
