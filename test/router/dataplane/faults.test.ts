// Fault test: engines die, hang and answer 503 under steady load. No non-streaming request may be
// lost, streams on the killed engine move to another engine and end whole, each faulty engine is ejected (the
// hung one by the health check's timeout), and engines come back into rotation after they recover.
// How soon an engine is ejected follows from the health settings, not from this machine's speed, so no
// wall-clock bound is asserted here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startFakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";

test("kill, hang and 503 under load: nothing lost, streams on the killed engine move to another, each ejected, re-admission", async () => {
  const opts = { models: ["fake/m"], tokenDelayMs: 5 };
  const good = await startFakeEngine(opts);
  const killed = await startFakeEngine(opts);
  const hung = await startFakeEngine(opts);
  const failing = await startFakeEngine(opts);
  const engines = [good, killed, hung, failing];
  const router = await routerFor(
    engines.map((e) => e.url),
    // three engines fail at the same instant: a request may meet all three before they are ejected,
    // so it needs four attempts to be sure of reaching the good one, two of them failures while the
    // engine held it (killed, hung): the poison threshold is raised above that. Three of four
    // engines may be out at once (the default keeps half in rotation). Ejection no longer cuts the
    // attempts waiting on the hung engine: the first-byte timeout does, so it is short here.
    {
      policy: "round-robin",
      // and the retry budget is lifted: while the hung engine is still in rotation (until its streams
      // end and its probes time out, later on a busier machine) half the requests need a retry, more
      // than the default 20% budget allows; the budget has its own test
      retry: { maxAttempts: 4, poisonAfter: 3, budgetRatio: 1 },
      timeouts: { firstByte: 1500 },
      health: {
        interval: 100,
        timeout: 1_000, // not less: a healthy engine in this busy process is never taken for a hung one
        failuresToEject: 2,
        successesToReadmit: 2,
        maxEjectionPercent: 100,
      },
    },
  );
  const reg = router.router.registry;
  const stateOf = (url: string) => reg.engines.get(url)!.state;
  try {
    await waitUntil(
      () => engines.every((e) => stateOf(e.url) === "healthy"),
      5000,
      "all engines in rotation",
    );
    let stop = false;
    const statuses = new Map<number, number>();
    let completed = 0;
    const worker = async () => {
      while (!stop) {
        const r = await post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "x", max_tokens: 4 });
        const body = (await r.json()) as { choices?: { text: string }[] };
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 200) assert.equal(body.choices![0]!.text, "tok tok tok tok");
        completed++;
      }
    };
    const workers = Array.from({ length: 8 }, () => worker());
    // long streams, spread round-robin over all four engines
    const streams = Array.from({ length: 8 }, () =>
      post(`${router.url}/v1/completions`, {
        model: "fake/m",
        prompt: "x",
        max_tokens: 400,
        stream: true,
      }).then((r) => r.text()),
    );
    await waitUntil(() => killed.active > 0 && completed > 50, 5000, "load running");
    const streamsOnKilled = killed.active;

    hung.mode = "hang";
    failing.mode = "503";
    await killed.kill();
    // the hung engine still streams what it started, and an engine still sending bytes is not
    // ejected for slow probes: it goes once those streams end
    await Promise.all(
      [killed, hung, failing].map((e) =>
        waitUntil(() => stateOf(e.url) === "ejected", 30_000, `${e.url} ejected`),
      ),
    );
    const afterFault = completed;
    await waitUntil(() => completed > afterFault + 100, 10_000, "load continues on the good engine");

    // recovery
    await killed.restart();
    hung.mode = "ok";
    failing.mode = "ok";
    await waitUntil(() => engines.every((e) => stateOf(e.url) === "healthy"), 5000, "re-admission");
    const hitsBefore = engines.map((e) => e.hits);
    const afterRecovery = completed;
    await waitUntil(() => completed > afterRecovery + 80, 10_000, "load after recovery");
    stop = true;
    await Promise.all(workers);
    const texts = await Promise.all(streams);

    assert.deepEqual(
      [...statuses.keys()],
      [200],
      `every non-streaming request answered 200: ${JSON.stringify([...statuses])}`,
    );
    assert.ok(streamsOnKilled > 0);
    for (const t of texts) {
      assert.ok(
        !t.includes('data: {"error"'),
        "no stream ended with an error event: those on the killed engine moved",
      );
      assert.match(t, /data: \[DONE\]\n\n$/);
      assert.equal(t.split("data: [DONE]").length, 2, "one [DONE]");
      assert.equal((t.match(/tok/g) ?? []).length, 400, "every token, once");
    }
    engines.forEach((e, i) => assert.ok(e.hits > hitsBefore[i]!, `engine ${i} takes traffic again`));
    const m = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(m, /switchyard_retries_total\{[^}]*\} [1-9]/);
    assert.match(m, /switchyard_engine_ejections_total\{[^}]*\} [1-9]/);
    assert.match(
      m,
      /switchyard_migrations_total\{model="fake\/m",reason="connection_lost",outcome="continued"\} [1-9]/,
    );
    const hungEjections = new RegExp(
      `switchyard_engine_ejections_total\\{engine="${hung.url}",reason="health"\\} [1-9]`,
    );
    assert.match(m, hungEjections, "the hung engine is ejected by the health check's timeout");
  } finally {
    await router.close();
    for (const e of engines) await e.close();
  }
});

test("retry budget caps failover: with none left, the engine's 503 reaches the client as it was", async () => {
  const a = await startFakeEngine({ models: ["fake/m"] });
  const b = await startFakeEngine({ models: ["fake/m"] });
  const router = await routerFor([a.url, b.url], {
    policy: "round-robin",
    retry: { maxAttempts: 3, minRetries: 0, budgetRatio: 0 },
  });
  try {
    await waitUntil(() => router.router.registry.engines.get(b.url)!.healthy, 5000, "both engines ready");
    a.mode = "503";
    b.mode = "503";
    // no budget: the first engine's 503 goes to the client as it was, no retry on the other
    const r = await post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "x" });
    assert.equal(r.status, 503);
    assert.equal(((await r.json()) as { error: { message: string } }).error.message, "engine overloaded");
    const m = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(m, /switchyard_rejected_requests_total\{reason="retry_budget"\} 1/);
    assert.doesNotMatch(m, /switchyard_retries_total\{/, "no retry was made");
  } finally {
    await router.close();
    await a.close();
    await b.close();
  }
});

test("admission: per-engine cap queues requests; a full queue answers 429 with Retry-After", async () => {
  const e = await startFakeEngine({ models: ["fake/m"], firstTokenDelayMs: 300 });
  const router = await routerFor([e.url], {
    admission: { maxInFlightPerEngine: 2, queueSize: 2, queueTimeout: 5000 },
  });
  try {
    const reqs = Array.from({ length: 5 }, () =>
      post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "x" }),
    );
    const res = await Promise.all(reqs);
    const codes = res.map((r) => r.status).sort();
    assert.deepEqual(codes, [200, 200, 200, 200, 429]);
    const limited = res.find((r) => r.status === 429)!;
    assert.ok(Number(limited.headers.get("retry-after")) >= 1);
    assert.equal(((await limited.json()) as { error: { type: string } }).error.type, "RateLimitError");
    assert.ok(e.hits === 4);
  } finally {
    await router.close();
    await e.close();
  }
});
