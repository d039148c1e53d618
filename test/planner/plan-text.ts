// What a plan's user-facing text (Markdown or JSON) must never name: a machine path, the repo's own
// seeds or results page, or a tracker's issue. Checked on the Markdown of every example by
// slo.test.ts and on the JSON of every example by deploy/plan-values.test.ts, so each example is
// planned once per format across the suite.
import assert from "node:assert/strict";

export const PLAN_TEXT_FORBIDDEN = [/\/work\//, /\bseeds?\b/i, /shared\//, /benchmarks\.md/, /\bissue\b/i];

export function assertPlanTextClean(text: string, what: string): void {
  for (const bad of PLAN_TEXT_FORBIDDEN) assert.doesNotMatch(text, bad, `${what} names ${bad}`);
}
