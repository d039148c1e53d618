// The interop `valkey` group: the shared KV tier beyond one machine. A real Valkey/Redis Cluster (3
// primaries, a replica each: Debian's redis-server in cluster mode, or valkey-server where installed,
// started and joined by src/ops/kv-cluster.ts) as the L2 of LMCache 0.5.6's multiprocess server,
// through LMCache's own valkey adapter in cluster mode (it needs PyPI's valkey-glide-sync, installed
// here beside LMCache's venv, never into it).
// 1. LMCache's own MP client (lmcache_valkey.py): chunks stored, spread over the three primaries, read
//    back from the cluster byte for byte; a primary killed -9, read while the cluster fails over and
//    after: every chunk a hit with the stored bytes or a miss, never other bytes.
// Every node runs with a password (requirepass, masterauth), as the chart's l2.cluster.auth runs it:
// LMCache's adapter sends it in its JSON (`password`), and a client without it is refused (NOAUTH,
// FLUSHALL included).
// 2. Two real vLLM 0.32 engines (CPU) on --kv-offloading-backend lmcache sharing the MP server, and a
//    third with no cache at all: B's prefill of A's prompts comes from the cluster
//    (vllm:external_prefix_cache_hits_total), then a stream of new prompts while a primary is killed -9:
//    every request answered, B's greedy answers equal the uncached engine's (or part from them only at
//    a bfloat16 tie: greedy-ties.mjs), hits before/during/after.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { lmcacheForVllm, pyAsync } from "./lmcache-mp.mjs";
import { VLLM_ENV, VLLM_SERVE_FLAGS } from "./vllm.mjs";
import { collectTopTwo, judge, topTwo } from "./greedy-ties.mjs";

const GLIDE = "valkey-glide-sync==2.5.3";
/** a primary unreachable this long is replaced by its replica */
const NODE_TIMEOUT_MS = 2000;
const CHUNK_TOKENS = 64;
/** 2 layers of K and V, 2 heads of 64 fp16: 1 KiB per token, 64 KiB per chunk */
const SHAPE = "(2,1024,16,2,64):float16:2";
/** every node's password (letters, digits and -_.~: it rides in the adapter's JSON) */
const PASSWORD = "interop-kv-cluster_pass.1";

/** valkey-glide-sync (the client LMCache's valkey adapter needs) in a folder of its own, once */
function installGlide(p, PEERS) {
  const lib = join(PEERS, GLIDE.replace("==", "-"));
  if (!existsSync(join(lib, ".switchyard-installed"))) {
    // its dependencies (cffi, protobuf, typing-extensions) are LMCache's too: --no-deps keeps theirs
    const pip = spawnSync(
      join(dirname(p.lmcachePy), "pip"),
      ["install", "--quiet", "--disable-pip-version-check", "--no-deps", "--target", lib, GLIDE],
      { encoding: "utf8", timeout: 1_200_000 },
    );
    if (pip.status !== 0) throw new Error(`pip ${GLIDE}: ${(pip.stderr || pip.stdout).slice(-800)}`);
    writeFileSync(join(lib, ".switchyard-installed"), `${GLIDE}\n`);
  }
  return lib;
}

export async function valkeyChecks(h, p) {
  const { start, stop, check, until, freePort, RUN, HERE, ROOT, PEERS } = h;
  const kv = await import(join(ROOT, "dist/src/ops/kv-cluster.js"));
  const bins = kv.findKvServer();
  if (!bins) {
    await check("a Valkey/Redis Cluster (valkey-server or Debian's redis-server)", async () => {
      throw new Error("neither valkey-server nor redis-server is installed (apt-get install redis-server)");
    });
    return;
  }
  let glide;
  await check(`${GLIDE} (LMCache's valkey adapter's client) beside LMCache's venv`, async () => {
    glide = installGlide(p, PEERS);
    const v = spawnSync(p.lmcachePy, ["-c", "import glide_sync; print(glide_sync.__name__)"], {
      encoding: "utf8",
      env: { ...process.env, PYTHONPATH: glide },
    });
    if (v.status !== 0) throw new Error(v.stderr.slice(-500));
    return `${glide}; ${bins.name}: ${spawnSync(bins.server, ["--version"], { encoding: "utf8" }).stdout.trim()}`;
  });
  if (!glide) return;

  /** a cluster of 3 primaries + 3 replicas on fresh ports; its nodes' processes */
  const cluster = async (name) => {
    // ports whose bus port (+10000) is free too
    const ports = [];
    while (ports.length < 6) {
      const q = await freePort();
      if (q < 55535 && !ports.includes(q)) ports.push(q);
    }
    ports.sort((a, b) => a - b);
    const dir = mkdtempSync(join(tmpdir(), `switchyard-${name}-`));
    const nodes = [];
    const o = {
      bins,
      host: "127.0.0.1",
      basePort: 0,
      primaries: 3,
      replicasPerPrimary: 1,
      maxMemoryBytes: 256 * 2 ** 20,
      dir,
      nodeTimeoutMs: NODE_TIMEOUT_MS,
      password: PASSWORD,
    };
    for (const q of ports) nodes.push(start(`${name}-${q}`, bins.server, kv.kvNodeArgs(o, q)));
    // --cluster create over these ports (not consecutive: joined by hand, as joinKvCluster does)
    for (const q of ports)
      await until(
        `${bins.name} node ${q}`,
        async () => kv.kvCli(bins, "127.0.0.1", q, ["ping"], PASSWORD).includes("PONG"),
        30_000,
      );
    const r = spawnSync(
      bins.cli,
      [
        "--cluster",
        "create",
        ...ports.map((q) => `127.0.0.1:${q}`),
        "--cluster-replicas",
        "1",
        "--cluster-yes",
      ],
      { encoding: "utf8", timeout: 60_000, env: kv.kvCliEnv(PASSWORD) },
    );
    if (r.status !== 0) throw new Error(`--cluster create: ${(r.stdout + r.stderr).slice(-800)}`);
    for (const q of ports)
      await until(
        `cluster state ok on ${q}`,
        async () => kv.clusterState(bins, "127.0.0.1", q, PASSWORD).cluster_state === "ok",
        60_000,
      );
    return {
      ports,
      nodes,
      seeds: ports.map((q) => `127.0.0.1:${q}`).join(","),
      primaries: (from) => kv.clusterPrimaries(bins, "127.0.0.1", from, PASSWORD),
      keys: (q) => Number(kv.kvCli(bins, "127.0.0.1", q, ["dbsize"], PASSWORD).trim() || 0),
      /** what a client without the password gets for `args` on node q */
      bare: (q, args) => {
        const b = spawnSync(bins.cli, ["-h", "127.0.0.1", "-p", String(q), ...args], {
          encoding: "utf8",
          env: kv.kvCliEnv(undefined),
          timeout: 10_000,
        });
        return `${b.stdout}${b.stderr}`.trim();
      },
      close: async () => {
        for (const x of nodes) await stop(x);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  };
  const adapter = (c) =>
    JSON.stringify({
      type: "valkey",
      startup_nodes: c.seeds,
      cluster_mode: true,
      // LMCache 0.5.6 builds glide's ServerCredentials(username, password) positionally, whose order
      // is (password, username) (lmcache/v1/storage_backend/valkey/worker_pool.py): its `username`
      // reaches the server as the password and its `password` as the user name. `password` alone
      // connects without AUTH (NOAUTH). Swapped here, the default user with the cluster's password
      username: PASSWORD,
      password: "default",
      num_workers: 2,
      request_timeout: 2,
    });
  const mpServer = async (name, c, extra) => {
    const [mpPort, httpPort, promPort] = [await freePort(), await freePort(), await freePort()];
    const mp = start(
      name,
      p.lmcacheBin,
      [
        "server",
        ...["--host", "127.0.0.1", "--port", String(mpPort), "--http-port", String(httpPort)],
        ...["--prometheus-port", String(promPort), "--eviction-policy", "LRU"],
        ...extra,
        ...["--l2-adapter", adapter(c)],
      ],
      { LMCACHE_DISABLE_BANNER: "1", LMCACHE_TRACK_USAGE: "false", PYTHONPATH: glide },
    );
    await until(
      "LMCache's MP server",
      () => fetch(`http://127.0.0.1:${httpPort}/docs`).then((r) => r.status < 500),
      300_000,
      mp,
    );
    const clearL1 = async () => {
      const r = await fetch(`http://127.0.0.1:${httpPort}/cache/clear`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ force: true }),
      });
      if (!r.ok) throw new Error(`L1 clear: ${r.status}`);
    };
    return { mp, mpPort, httpPort, clearL1 };
  };

  // ---- 1: LMCache's own client, a primary killed ----
  {
    let c;
    let m;
    try {
      await check(
        "LMCache 0.5.6's MP server with its valkey L2 in cluster mode on 3 primaries + 3 replicas, every node with a password (a client without it refused, FLUSHALL included): chunks spread over every primary, read back from the cluster byte for byte; a primary killed -9: hits or misses while it fails over, never other bytes, every chunk back after",
        async () => {
          c = await cluster("kv-a");
          // a client without the password is refused by every node, FLUSHALL included
          for (const q of c.ports)
            for (const args of [["ping"], ["get", "k"], ["flushall"]]) {
              const got = c.bare(q, args);
              if (!/NOAUTH/.test(got))
                throw new Error(`node ${q} answered ${args[0]} without the password: ${got}`);
            }
          m = await mpServer("lmcache-mp-valkey", c, [
            ...["--chunk-size", String(CHUNK_TOKENS), "--l1-size-gb", "0.2"],
            ...["--supported-transfer-mode", "engine_driven"],
          ]);
          const victim = [...c.primaries(c.ports[0]).keys()][0];
          const out = join(RUN, "lmcache-valkey.json");
          await pyAsync(
            p.lmcachePy,
            join(HERE, "lmcache_valkey.py"),
            [
              `tcp://127.0.0.1:${m.mpPort}`,
              `http://127.0.0.1:${m.httpPort}`,
              bins.cli,
              "127.0.0.1",
              c.ports.join(","),
              victim.split(":")[1],
              String(CHUNK_TOKENS),
              "10",
              "30",
              SHAPE,
              out,
            ],
            // the script's own CLI calls (keys per primary, the victim's pid) send the password too
            { PYTHONPATH: glide, REDISCLI_AUTH: PASSWORD, VALKEYCLI_AUTH: PASSWORD },
            join(RUN, "lmcache-valkey-client.log"),
            900_000,
          );
          const r = JSON.parse(readFileSync(out, "utf8"));
          const fail = [];
          const per = Object.values(r.keys_per_primary ?? {});
          if (r.cold_hits !== 0) fail.push(`cold lookups hit ${r.cold_hits}`);
          if (per.length !== 3 || per.some((k) => k === 0))
            fail.push(`keys per primary ${JSON.stringify(r.keys_per_primary)}`);
          if (r.before.identical !== r.chunks)
            fail.push(`read back ${r.before.identical}/${r.chunks} identical`);
          if (!r.failed_over) fail.push(`no failover in ${r.failover_s} s`);
          for (const ph of ["before", "during", "after"])
            if (r[ph].wrong !== 0) fail.push(`${ph}: ${r[ph].wrong} chunks came back with other bytes`);
          if (r.after.identical !== r.chunks)
            fail.push(`after the failover ${r.after.identical}/${r.chunks} identical`);
          if (fail.length) throw new Error(`${fail.join("; ")} (${out})`);
          return `${r.chunks} chunks of 64 KiB, keys per primary ${JSON.stringify(r.keys_per_primary)}; L1 cleared, all ${r.before.identical} read back from the cluster byte-identical; primary ${victim} killed -9: failed over in ${r.failover_s} s (primaries now ${JSON.stringify(r.primaries_after)}); during: ${r.during.hits}/${r.during.chunks} hits, ${r.during.wrong} wrong; after: ${r.after.identical}/${r.chunks} identical, ${r.after.wrong} wrong`;
        },
      );
    } finally {
      if (m) await stop(m.mp);
      if (c) await c.close();
    }
  }

  // ---- 2: real vLLM engines ----
  if (!p.vllm) return;
  await check(
    "two vLLM 0.32 engines on --kv-offloading-backend lmcache share LMCache's MP server whose L2 is the cluster: B's prefill of A's prompts comes from the cluster; a primary killed -9 mid-stream: every request answered, B's greedy answers equal an uncached engine's (or part from them only at a bfloat16 tie)",
    async () => {
      const lib = lmcacheForVllm(p, PEERS);
      const procs = [];
      let c;
      try {
        c = await cluster("kv-b");
        const m = await mpServer("lmcache-mp-valkey-vllm", c, [
          ...["--l1-size-gb", "1", "--supported-transfer-mode", "auto"],
        ]);
        procs.push(m.mp);
        const transfer = JSON.stringify({
          kv_connector_extra_config: { "lmcache.mp.host": "tcp://127.0.0.1", "lmcache.mp.port": m.mpPort },
        });
        const [a, b, u] = [await freePort(), await freePort(), await freePort()];
        const engine = (name, port, offload) => {
          const flags = offload
            ? VLLM_SERVE_FLAGS
            : VLLM_SERVE_FLAGS.filter((f) => f !== "--enable-prefix-caching").concat([
                "--no-enable-prefix-caching",
              ]);
          const e = start(
            name,
            p.vllm.vllm,
            [
              "serve",
              p.vllm.model,
              ...flags,
              "--port",
              String(port),
              ...(offload
                ? [
                    "--kv-offloading-backend",
                    "lmcache",
                    "--kv-offloading-size",
                    "1",
                    "--kv-transfer-config",
                    transfer,
                  ]
                : []),
            ],
            { ...VLLM_ENV, PYTHONPATH: lib, LMCACHE_TRACK_USAGE: "false" },
            { group: true },
          );
          procs.push(e);
          return { e, url: `http://127.0.0.1:${port}` };
        };
        const A = engine("vllm-valkey-a", a, true);
        const B = engine("vllm-valkey-b", b, true);
        const U = engine("vllm-uncached", u, false);
        for (const { e, url } of [A, B, U])
          await until(`${e.name} (vllm serve)`, () => fetch(`${url}/health`).then((r) => r.ok), 900_000, e);
        // about 1,000 tokens each (the engines' context is 2,048), no two alike from the first token
        const prompt = (i) => Array.from({ length: 350 }, (_, k) => `w${(k * 7 + i * 131) % 1000}`).join(" ");
        const complete = async (url, i, extra = {}) => {
          const r = await fetch(`${url}/v1/completions`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              model: "tiny",
              prompt: prompt(i),
              max_tokens: 8,
              temperature: 0,
              return_token_ids: true,
              ...extra,
            }),
          });
          if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
          const j = await r.json();
          const top2 = [];
          collectTopTwo(j.choices[0], top2);
          return {
            text: j.choices[0].text,
            ids: j.choices[0].token_ids,
            top2,
            promptTokens: j.usage.prompt_tokens,
          };
        };
        const metric = async (url, name) =>
          (await (await fetch(`${url}/metrics`)).text())
            .split("\n")
            .filter((l) => l.startsWith(name) && (l[name.length] === " " || l[name.length] === "{"))
            .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
        const hitsB = () => metric(B.url, "vllm:external_prefix_cache_hits_total");
        // the node the cluster is asked about: a survivor once a primary is killed
        let seen = c.ports[0];
        const clusterKeys = () =>
          [...c.primaries(seen)].reduce((n, [addr]) => n + c.keys(Number(addr.split(":")[1])), 0);
        /** A computes prompt i, its chunks reach the cluster, L1 is emptied, B asks for it */
        const viaCluster = async (i, waitStore) => {
          const before = clusterKeys();
          await complete(A.url, i);
          if (waitStore)
            await until(`prompt ${i}'s chunks in the cluster`, async () => clusterKeys() > before, 30_000);
          await m.clearL1();
          const h0 = await hitsB();
          const got = await complete(B.url, i);
          return { ...got, hits: (await hitsB()) - h0 };
        };
        const fail = [];
        /** B's greedy answers from the cluster's KV against the uncached engine's: equal, or parted at a tie */
        const ties = [];
        const compare = async (i, got) => {
          const want = await complete(U.url, i, topTwo(false));
          const v = judge(got.ids, want);
          if (v.tie) ties.push(`prompt ${i} at token ${v.at}`);
          else if (!v.same)
            fail.push(
              `prompt ${i}: B said ${JSON.stringify(got.text)}, uncached ${JSON.stringify(want.text)} (${v.why})`,
            );
        };
        // before: six prompts through the cluster
        const before = [];
        for (let i = 0; i < 6; i++) {
          const got = await viaCluster(i, true);
          before.push(got);
          await compare(i, got);
        }
        const perPrimary = [...c.primaries(c.ports[0])].map(([addr]) => [
          addr,
          c.keys(Number(addr.split(":")[1])),
        ]);
        if (perPrimary.length !== 3 || perPrimary.some(([, n]) => n === 0))
          fail.push(`chunks per primary ${JSON.stringify(perPrimary)}`);
        const first = before[0];
        if (!(first.hits >= first.promptTokens / 2))
          fail.push(`B's first hits ${first.hits} of ${first.promptTokens} prompt tokens`);
        // during and after: a primary killed -9 mid-stream
        const victim = perPrimary[0][0];
        const victimNode = c.nodes[c.ports.indexOf(Number(victim.split(":")[1]))];
        const survivor = c.ports.find((q) => q !== Number(victim.split(":")[1]));
        seen = survivor;
        process.kill(victimNode.child.pid, "SIGKILL");
        const killedAt = Date.now();
        const whole = () => {
          const now = c.primaries(survivor);
          return (
            now.size === 3 &&
            !now.has(victim) &&
            kv.clusterState(bins, "127.0.0.1", survivor, PASSWORD).cluster_state === "ok"
          );
        };
        const during = [];
        const after = [];
        let failoverS = null;
        for (let i = 6; i < 30 && after.length < 6; i++) {
          const phase = failoverS === null ? during : after;
          // during the failover a store may not reach the cluster: nothing is waited for
          const got = await viaCluster(i, failoverS !== null);
          phase.push(got);
          await compare(i, got);
          if (failoverS === null && whole()) failoverS = (Date.now() - killedAt) / 1000;
        }
        if (failoverS === null) fail.push("the cluster did not fail over");
        const sum = (xs) =>
          `${xs.reduce((n, x) => n + x.hits, 0)} of ${xs.reduce((n, x) => n + x.promptTokens, 0)} prompt tokens in ${xs.length} requests`;
        if (after.length && !after.some((x) => x.hits > 0))
          fail.push(`no hit after the failover: ${sum(after)}`);
        if (fail.length) throw new Error(fail.join("; "));
        return `chunks per primary ${JSON.stringify(perPrimary)}; B's vllm:external_prefix_cache_hits_total before ${sum(before)} (the first: ${first.hits} of ${first.promptTokens}); primary ${victim} killed -9: during the failover (${failoverS} s) ${sum(during)}; after ${sum(after)}; all ${before.length + during.length + after.length} answered, B's greedy answers equal the uncached engine's${ties.length ? ` (parting only at a bfloat16 tie: ${ties.join(", ")})` : ""}`;
      } finally {
        for (const x of procs.reverse()) await stop(x);
        if (c) await c.close();
      }
    },
  );
}
