// The live routing benchmark sums up the router's decisions from its debug log as the fleet simulator's
// are summed up; these tests pin the join (a decision to its request's access line, by request id) and
// the table's buckets, so the two sides stay comparable.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decisionTable, rowsFromRouterLog } from "../../bench/support/decision-table.js";

const routed = (id: string, note: string) =>
  JSON.stringify({ level: 20, name: "router.route", requestId: id, seq: 1, note, msg: "routed" });
const access = (id: string, path: string, ttftMs: number, queuedMs?: number) =>
  JSON.stringify({ level: 30, name: "router.access", requestId: id, path, ttftMs, queuedMs, msg: "request" });

test("a live decision is joined to its request's access line by request id, its TTFT counted from the pick (less the time queued in the router)", () => {
  const log = [
    "not json",
    routed("a", "engine=http://e1; policy=predictive; predicted_ttft_ms=900; kv_usage=0.970; in_flight=10"),
    // a failover's second decision replaces the first
    routed("b", "engine=http://e1; policy=predictive; predicted_ttft_ms=100; kv_usage=0.100; in_flight=0"),
    routed("b", "engine=http://e2; policy=predictive; predicted_ttft_ms=500; kv_usage=0.500; in_flight=1"),
    // a policy whose note carries no KV figure, and a request that is no generation, are left out
    routed("c", "engine=http://e1; policy=round-robin"),
    access("a", "/v1/completions", 2_800, 1_000),
    access("b", "/v1/chat/completions", 450),
    access("c", "/v1/completions", 300),
    access("d", "/tokenize", 5),
  ].join("\n");
  assert.deepEqual(rowsFromRouterLog(log), [
    { kvUsage: 0.97, predictedMs: 900, fromPickMs: 1_800, heldMs: 1_000 },
    { kvUsage: 0.5, predictedMs: 500, fromPickMs: 450, heldMs: 0 },
  ]);
});

test("the decisions are summed up by the picked engine's KV in use: room, filling, full; and the router's holds", () => {
  const rows = [
    { kvUsage: 0.5, predictedMs: 500, fromPickMs: 500, heldMs: 0 },
    { kvUsage: 0.97, predictedMs: 900, fromPickMs: 1_800, heldMs: 1_000 },
    { kvUsage: 1, predictedMs: 1_000, fromPickMs: 2_000, heldMs: 0 },
  ];
  const t = decisionTable(rows);
  const line = (bucket: string) => t.find((l) => l.startsWith(`| ${bucket} |`));
  assert.match(line("0–80%")!, /\| 1 \| 1\.00× \| 500 \| 500 \/ 500 \|/);
  assert.equal(line("80–95%"), undefined, "a bucket without picks has no line");
  assert.match(line("≥ 95%")!, /\| 2 \| 2\.00× \|/);
  assert.match(t.at(-1)!, /1 of 3 requests/);
});
