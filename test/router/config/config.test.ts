import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig, startRouter } from "../../../src/router/index.js";
import { parseEngineMetrics } from "../../../src/router/engines/scrape.js";
import { startFakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import { post, waitUntil } from "../../helpers/router.js";

test("config: defaults, durations, sizes; errors name the field", () => {
  const c = parseConfig({
    backends: ["http://e:8000/", { url: "http://f:8000", weight: 0.1 }],
    timeouts: { firstByte: "5m" },
  });
  assert.equal(c.host, "0.0.0.0");
  assert.equal(c.port, 8080);
  // the sim's limit: the router never accepts a body its engines would refuse
  assert.equal(c.limits.maxBodyBytes, 16 * 2 ** 20);
  assert.equal(c.health.maxEjectionPercent, 50);
  assert.equal(c.retry.poisonAfter, 2);
  assert.deepEqual(c.accessLog, { enabled: true, sampleRatio: 1, maxPerSecond: 1000 });
  assert.equal(c.timeouts.firstByte, 300_000);
  assert.deepEqual(c.backends[0], { url: "http://e:8000", weight: 1 });
  assert.throws(() => parseConfig({ backends: [{ url: "ftp://x" }] }), /backends\.0\.url/);
  assert.throws(() => parseConfig({ timeouts: { idle: "soon" } }), /timeouts\.idle/);
  assert.throws(() => parseConfig({ policy: "random" }), /policy/);
  assert.throws(() => parseConfig({ admission: { queueSize: -1 } }), /admission\.queueSize/);
  assert.throws(() => parseConfig({ typo: 1 }), /typo/);
});

test("scrape: reads the routing gauges, sums series, ignores the rest", () => {
  const text = [
    "# HELP vllm:num_requests_running x",
    'vllm:num_requests_running{engine="0",model_name="m"} 3.0',
    'vllm:num_requests_running{engine="1",model_name="m"} 2.0',
    'vllm:num_requests_waiting{engine="0",model_name="m"} 4.0',
    'vllm:num_requests_waiting_by_reason{engine="0"} 99',
    'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25',
    'vllm:cache_config_info{block_size="32",num_gpu_blocks="1000",enable_prefix_caching="True"} 1.0',
    'vllm:time_to_first_token_seconds_bucket{le="0.1"} 7',
  ].join("\n");
  const l = parseEngineMetrics(text);
  assert.equal(l.running, 5);
  assert.equal(l.waiting, 4);
  assert.equal(l.kvUsage, 0.25);
  assert.equal(l.blockSize, 32);
  assert.equal(l.numGpuBlocks, 1000);
  assert.equal(l.cacheConfig!.enable_prefix_caching, "True");
});

test("hot reload: a config file change swaps backends without dropping in-flight requests", async () => {
  const a = await startFakeEngine({ models: ["fake/m"], tokenDelayMs: 20 });
  const b = await startFakeEngine({ models: ["fake/m"] });
  const dir = mkdtempSync(join(tmpdir(), "router-cfg-"));
  const file = join(dir, "router.yaml");
  const write = (yaml: string) => {
    writeFileSync(`${file}.tmp`, yaml);
    renameSync(`${file}.tmp`, file); // the way editors and ConfigMaps replace files
  };
  const common = "health:\n  interval: 100\n  timeout: 300\ndiscovery:\n  metricsInterval: 100\n";
  write(`backends:\n  - ${a.url}\n${common}`);
  const r = await startRouter({ host: "127.0.0.1", port: 0 }, { configFile: file });
  try {
    await waitUntil(() => r.router.registry.anyReady(), 5000, "ready");
    const streaming = post(`${r.url}/v1/completions`, {
      model: "fake/m",
      prompt: "x",
      max_tokens: 30,
      stream: true,
    }).then((res) => res.text());
    await waitUntil(() => a.active === 1, 2000, "stream started");
    write(`backends:\n  - url: ${b.url}\n    weight: 2\n${common}`);
    await waitUntil(
      () => r.router.registry.snapshot().some((v) => v.id === b.url && v.healthy),
      5000,
      "new backend",
    );
    const res = await post(`${r.url}/v1/completions`, { model: "fake/m", prompt: "x", max_tokens: 1 });
    assert.equal(res.status, 200);
    assert.equal(b.hits, 1);
    const text = await streaming;
    assert.equal((text.match(/"text"/g) ?? []).length, 30, "the stream on the removed engine finished");
    assert.match(text, /data: \[DONE\]\n\n$/);
    await waitUntil(() => !r.router.registry.engines.has(a.url), 2000, "drained engine removed");
    // an invalid file is refused and the running config stays
    write("backends: 12\n");
    await new Promise((res2) => setTimeout(res2, 300));
    assert.equal(
      (await post(`${r.url}/v1/completions`, { model: "fake/m", prompt: "x", max_tokens: 1 })).status,
      200,
    );
  } finally {
    await r.close();
    await a.close();
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
