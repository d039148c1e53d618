// `decide`: a policy run over a fleet snapshot, the whole decision and pure — filters narrow the
// candidates (which stage empties them says why none is left), the weighted scores are summed, the
// picker picks, and the policy's admission may still refuse or hold the request.
import { applyFilters } from "./filter-chain.js";
import type { AdmissionHooks, Decision, PickHooks, ScoringPolicy } from "./policy.js";
import type { FleetSnapshot, RequestView } from "./views.js";

// Score buffers reused across decisions (decide is synchronous and scorers and pickers keep no
// reference), one zeroed pair per candidate count: a decision allocates no typed arrays.
const scratchBuffers: [Float64Array[], Float64Array[]] = [[], []];
function scratch(which: 0 | 1, length: number): Float64Array {
  const buffer = (scratchBuffers[which][length] ??= new Float64Array(length));
  buffer.fill(0);
  return buffer;
}

/** Runs a policy over a snapshot: the whole decision, pure. */
export function decide(
  policy: ScoringPolicy & Pick<AdmissionHooks, "admit"> & Pick<PickHooks, "onPicked">,
  req: RequestView,
  fleet: FleetSnapshot,
): Decision {
  const { candidates, emptiedAt } = applyFilters(policy.filters, req, fleet);
  if (emptiedAt === 0) return { kind: "unknown-model" };
  if (candidates.length === 0) {
    // emptied by the health/exclude stages → nothing usable; by a capacity stage → wait for room
    return emptiedAt >= 0 && policy.filters[emptiedAt]!.waitsForRoom
      ? { kind: "saturated" }
      : { kind: "unavailable" };
  }
  const scores = scratch(0, candidates.length);
  if (policy.scorers.length > 0) {
    const scorerOut = scratch(1, candidates.length);
    for (const scorer of policy.scorers) {
      scorer.score(req, candidates, scorerOut, fleet);
      for (let i = 0; i < scorerOut.length; i++) scores[i] = scores[i]! + scorer.weight * scorerOut[i]!;
    }
  }
  const engine = policy.picker(req, candidates, scores, fleet);
  if (!engine) return { kind: "unavailable" };
  const refused = policy.admit?.(req, engine, fleet);
  if (refused) return refused;
  policy.onPicked?.(req, engine);
  return { kind: "picked", engine };
}
