// The interop `lmcache-mp` group: LMCache 0.5.6's multiprocess server (`lmcache server`, the mode
// vLLM >= 0.32 runs with `--kv-offloading-backend lmcache`) with its RESP L2 adapter (the native
// `lmcache_redis` connector) pointed at `switchyard cache-server --resp-port`, driven by LMCache's
// own MP client (lmcache_mp.py): 1,000 chunks stored and read back from the L2 byte for byte, then
// as many again past the cache server's budget, and the cache server's metrics counting all of it.
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

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
function pyAsync(python, script, args, log, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
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
