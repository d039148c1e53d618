// The agentic benchmark's decision log (bench/routing/agentic.ts --decisions FILE): why a policy's resumed turns
// paid for their context again. For every turn sent after a tool pause it joins the fleet's decision
// (what the policy predicted per engine, what each engine held) with the turn's outcome, and sorts the
// turn into one of three fates:
//   - stayed: an engine held the session's context and the turn went there;
//   - moved: an engine held it and the policy sent the turn elsewhere (its model priced the move cheaper);
//   - lost: no engine held it any more (evicted while the session waited on its tool), and for those,
//     what was placed on the session's last engine during the pause (the work that evicted it).
// A context counts as held where at least HELD_FRACTION of it is cached (the answer's last token and a
// partial block never are).
import { appendFileSync } from "node:fs";
import type { FleetDecision } from "../../src/fleet/fleet.js";
import type { RequestRecord } from "../../src/workload/record.js";
import type { Session } from "../../src/workload/types.js";

const HELD_FRACTION = 0.9;

export type Fate = "stayed" | "moved" | "lost";

export interface Fates {
  stayed: number;
  moved: number;
  lost: number;
  /** of the lost: how many had sessions' first turns placed on their last engine during the pause */
  lostUnderNewSessions: number;
}

export const noFates = (): Fates => ({ stayed: 0, moved: 0, lost: 0, lostUnderNewSessions: 0 });

export function addFates(a: Fates, b: Fates): Fates {
  return {
    stayed: a.stayed + b.stayed,
    moved: a.moved + b.moved,
    lost: a.lost + b.lost,
    lostUnderNewSessions: a.lostUnderNewSessions + b.lostUnderNewSessions,
  };
}

export interface LogTag {
  preset: string;
  policy: string;
  load: number;
  seed: number;
}

/** one engine's part of a decision, for the log line */
function engineAt(d: FleetDecision, e: number) {
  const r = (x: number) => (Number.isNaN(x) ? null : Math.round(x));
  return {
    engine: e,
    held: d.heldTokens[e]!,
    predictedCached: r(d.cachedTokens[e]!),
    predictedTtftMs: r(d.ttftMs[e]!),
    cost: Number.isNaN(d.cost[e]!) ? null : Number(d.cost[e]!.toFixed(3)),
    awaiting: d.awaiting[e]!,
    inFlight: d.inFlight[e]!,
    kvUsage: Number(d.kvUsage[e]!.toFixed(3)),
  };
}

/**
 * The resumed turns among `resumed` (request records of the steady window), logged to `file` (JSON lines)
 * and counted by fate. `prevOf` gives the record of the turn whose context a turn resumes.
 */
export function logResumed(
  file: string,
  tag: LogTag,
  resumed: readonly RequestRecord[],
  decisions: ReadonlyMap<number, FleetDecision>,
  routedTo: readonly number[],
  cached: readonly number[],
  prevOf: (x: RequestRecord) => RequestRecord | undefined,
  byId: ReadonlyMap<string, Session>,
): Fates {
  const fates = noFates();
  const lines: string[] = [];
  const sortedIdx = [...decisions.keys()].sort((a, b) => a - b);
  const pos = new Map(sortedIdx.map((k, i) => [k, i]));
  for (const x of resumed) {
    const d = decisions.get(x.index);
    const p = prevOf(x);
    if (!d || !p) continue;
    const context = p.promptTokens + p.outputTokens;
    let holder = 0;
    for (let e = 1; e < d.heldTokens.length; e++) if (d.heldTokens[e]! > d.heldTokens[holder]!) holder = e;
    const held = d.heldTokens[holder]! >= HELD_FRACTION * context;
    const pickedHolds = d.picked >= 0 && d.heldTokens[d.picked]! >= HELD_FRACTION * context;
    const fate: Fate = !held ? "lost" : pickedHolds ? "stayed" : "moved";
    fates[fate]++;
    // what went to the session's last engine while it waited on its tool
    const last = routedTo[p.index] ?? -1;
    const pauseFrom = (p.start + p.e2el) / 1000;
    let placed = 0;
    let placedTokens = 0;
    let newSessions = 0;
    for (let i = (pos.get(p.index) ?? 0) + 1; i < (pos.get(x.index) ?? 0); i++) {
      const o = decisions.get(sortedIdx[i]!)!;
      if (o.picked !== last || o.at < pauseFrom) continue;
      placed++;
      placedTokens += o.promptTokens - o.heldTokens[last]!;
      const s = byId.get(o.sessionId);
      if (o.round === (s?.startRound ?? 0)) newSessions++;
    }
    if (fate === "lost" && newSessions > 0) fates.lostUnderNewSessions++;
    lines.push(
      JSON.stringify({
        ...tag,
        index: x.index,
        session: x.sessionId,
        round: x.round,
        at: Number(d.at.toFixed(3)),
        pauseS: Number((d.at - pauseFrom).toFixed(3)),
        context,
        fate,
        lastEngine: last,
        holder: held ? engineAt(d, holder) : null,
        picked: d.picked >= 0 ? engineAt(d, d.picked) : null,
        lastEngineDuringPause: { placed, uncachedTokensPlaced: Math.round(placedTokens), newSessions },
        outcome: { ttftMs: Math.round(x.ttft), cachedTokens: cached[x.index] ?? 0 },
      }),
    );
  }
  if (lines.length > 0) appendFileSync(file, lines.join("\n") + "\n");
  return fates;
}
