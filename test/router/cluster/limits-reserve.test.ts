// A router group's workers ask the primary for limits: a prompt reservation raised once a chunked
// body is read goes there too, so eight workers' chunked prompts share one prompt budget.
import { test } from "node:test";
import assert from "node:assert/strict";
import { GroupLimiter, LimitKeeper, type LimitRequest } from "../../../src/router/cluster/limits.js";
import { HttpError } from "../../../src/http/errors.js";

test("in a router group, 8 chunked 6,000-token prompts admitted at 0 over a 2,000-token budget: the primary raises one reservation and refuses 7 with 429", async () => {
  const keeper = new LimitKeeper();
  const workers: GroupLimiter[] = [];
  for (let w = 0; w < 8; w++) {
    const limiter: GroupLimiter = new GroupLimiter((m: LimitRequest) => {
      // the primary's answer comes back on a later turn, as over IPC
      setImmediate(() => {
        const a = keeper.handle(w, m);
        if (a) limiter.answer(a);
      });
    });
    workers.push(limiter);
  }
  const limits = {
    requestsPerMinute: 0,
    promptTokensPerMinute: 2000,
    completionTokensPerMinute: 0,
    maxConcurrent: 0,
  };
  const grants = await Promise.all(workers.map((l) => l.admit("a", limits, 0)));
  const raised = await Promise.all(
    grants.map((g, i) =>
      workers[i]!.reserve(g, 6000).then(
        () => "ok",
        (e: unknown) => e,
      ),
    ),
  );
  const refused = raised.filter((r) => r instanceof HttpError) as HttpError[];
  assert.equal(raised.filter((r) => r === "ok").length, 1);
  assert.equal(refused.length, 7);
  for (const e of refused) {
    assert.equal(e.status, 429);
    assert.equal(e.headers["x-ratelimit-limit"], "prompt_tokens_per_minute");
  }
  assert.equal(grants.filter((g) => g.promptReserved === 6000).length, 1);
});
