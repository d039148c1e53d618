// What vLLM 0.32 does that the sim and the router once did otherwise, checked on real engines behind
// the router (scripts/interop/vllm.mjs runs them): a salted prompt is routed as a KV hit (0.31's
// tagged extra keys, 0.29's default seed), a SIGTERM drain under load costs no client an error, and an
// engine closing idle connections as requests go out on them costs none either.
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** A salted long prompt warmed on `home` is routed back to it by kv-hit 3 of 3; another salt shares nothing. */
export async function saltedHits({ h, call, note, ROOT, MODEL }, r, home) {
  const words = readFileSync(join(ROOT, "docs", "router.md"), "utf8").replace(/\s+/g, " ");
  const body = {
    model: MODEL,
    messages: [{ role: "user", content: words.slice(0, 4500) }],
    max_tokens: 1,
    cache_salt: "tenant-a-0123456789",
  };
  const warm = await call(home.url, "POST", "/v1/chat/completions", body);
  if (warm.status !== 200) throw new Error(`warming: ${warm.status} ${warm.text.slice(0, 200)}`);
  await h.sleep(1000);
  const picks = [];
  for (let i = 0; i < 3; i++) {
    const res = await call(r.url, "POST", "/v1/chat/completions", body, { "x-switchyard-debug": "1" });
    if (res.status !== 200) throw new Error(`via router: ${res.status} ${res.text.slice(0, 200)}`);
    const nt = note(res.headers.get("x-switchyard-route"));
    picks.push({ engine: nt.engine, reason: nt.reason, cached: Number(nt.predicted_cached_tokens) });
  }
  const bad = picks.filter((x) => !x.engine?.includes(String(home.port)) || x.reason !== "kv-hit");
  if (bad.length)
    throw new Error(`${bad.length}/3 not to the warmed engine by kv-hit: ${JSON.stringify(picks)}`);
  // another tenant's salt shares no block with it
  const other = await call(
    r.url,
    "POST",
    "/v1/chat/completions",
    { ...body, cache_salt: "tenant-b-0123456789" },
    { "x-switchyard-debug": "1" },
  );
  const on = note(other.headers.get("x-switchyard-route"));
  if (Number(on.predicted_cached_tokens) !== 0)
    throw new Error(`tenant b predicted ${on.predicted_cached_tokens}`);
  return `3/3 kv-hit, predicted_cached_tokens ${picks.map((x) => x.cached).join("/")}; another salt: 0`;
}

/** SIGTERM to the engine holding a long stream while a steady load runs: no error, the stream finishes. */
export async function drainUnderLoad({ h, call, stream, MODEL }, r, engines) {
  // a stream long enough to outlast the drain's start; the engine it runs on is the one stopped
  let routed;
  const onRoute = new Promise((res) => (routed = res));
  const long = stream(
    r.url,
    "/v1/completions",
    { model: MODEL, prompt: "a long story", max_tokens: 1500, ignore_eos: true, stream: true },
    { "x-switchyard-debug": "1" },
    (o) => routed(o.route),
  );
  const route = await Promise.race([onRoute, h.sleep(60_000).then(() => "")]);
  const victim = engines.find((e) => String(route).includes(`:${e.port}`));
  if (!victim) throw new Error(`the long stream's route names no engine: ${route}`);
  const results = { ok: 0, errors: [] };
  let stopLoad = false;
  const load = (async () => {
    for (let i = 0; !stopLoad; i++) {
      const res = await call(r.url, "POST", "/v1/completions", {
        model: MODEL,
        prompt: `steady ${i}`,
        max_tokens: 4,
      });
      if (res.status === 200) results.ok++;
      else results.errors.push(`${res.status} ${res.text.slice(0, 160)}`);
      await h.sleep(100);
    }
  })();
  await h.sleep(1500);
  const before = results.ok;
  // to the API server alone, as Kubernetes signals a container's main process: signalled as a
  // group, its workers exit at once and the requests in flight die with them
  process.kill(victim.proc.child.pid, "SIGTERM");
  await h.sleep(8000);
  stopLoad = true;
  await load;
  const s = await long;
  const during = results.ok - before;
  if (results.errors.length)
    throw new Error(`${results.errors.length} errors: ${results.errors.slice(0, 3).join("; ")}`);
  if (s.errors.length || s.done !== 1)
    throw new Error(`the long stream: ${s.errors.join("; ")} (${s.done} [DONE], ${s.events} events)`);
  const doc = (await call(r.url, "GET", "/engines")).json;
  const st = (doc?.engines ?? doc ?? []).map((e) => `${e.url} ${e.state}`).join(", ");
  return `${results.ok} requests answered (${during} after the SIGTERM), none failed; the stream on the stopped engine ended with [DONE] after ${s.events} events; engines then: ${st}`;
}

/**
 * Bursts of 16 completions through a router in front of an engine that closes a connection idle for
 * 1 s (VLLM_HTTP_TIMEOUT_KEEP_ALIVE=1), each burst sent a set time after the last one ended, that time
 * swept across the close in 0.5 ms steps: requests go out on connections uvicorn is closing. Every one
 * is answered; the router's count of requests it sent again after such a close says how many met it.
 */
export async function idleCloses({ h, call, MODEL }, r) {
  const statuses = new Map();
  const one = async (i) => {
    const res = await call(r.url, "POST", "/v1/completions", {
      model: MODEL,
      prompt: `idle ${i}`,
      max_tokens: 1,
    });
    const k = res.status === 200 ? "200" : `${res.status} ${res.text.slice(0, 120)}`;
    statuses.set(k, (statuses.get(k) ?? 0) + 1);
  };
  const bursts = 60;
  for (let i = 0; i < bursts; i++) {
    await Promise.all(Array.from({ length: 16 }, (_, j) => one(i * 16 + j)));
    const gap = 990 + 0.5 * (i % 28);
    const target = performance.now() + gap;
    await h.sleep(gap - 3);
    while (performance.now() < target); // the last milliseconds to the sweep's step
  }
  const metrics = (await call(r.url, "GET", "/metrics")).text;
  const retries = metrics.split("\n").filter((l) => l.startsWith("switchyard_retries_total{"));
  const again = retries.find((l) => l.includes('reason="engine closed the connection under the request"'));
  const failed = [...statuses].filter(([k]) => k !== "200");
  if (failed.length)
    throw new Error(
      `not all answered: ${JSON.stringify(Object.fromEntries(statuses))}; ${retries.join("; ")}`,
    );
  return `${bursts * 16} requests in ${bursts} bursts, all 200; sent again after a close under them: ${again ? again.split(" ").at(-1) : 0}; other retries: ${retries.filter((l) => l !== again).join("; ") || "none"}`;
}

/** vLLM's own hash functions recompute the tagged-key vectors (scripts/interop/vllm_block_hashes.py). */
export function vectorsCheck(h, p, ROOT) {
  const file = join(ROOT, "test/fixtures/vectors/vllm-block-hashes-tagged.json");
  return h.py(p.python, "vllm_block_hashes.py", ["check", file]).trim();
}
