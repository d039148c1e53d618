// `switchyard up --kv-cluster N`: N real Valkey/Redis primaries with a replica each, joined as a cluster
// before the engines start; the sims model it as one shared tier of the primaries' summed memory (a
// cache server of that size) whose events the router does not read; refused below 3 primaries and
// beside --cache-server. A live stack: the cluster whole, a primary killed -9 and its replica promoted
// while the stack keeps answering, and every node stopped with the stack.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { parseFlags } from "../../src/config/args.js";
import { UP_OPTIONS } from "../../src/cli/up-options.js";
import { kvClusterPorts, kvClusterWiring } from "../../src/cli/up-kv-cluster.js";
import { clusterPrimaries, clusterState, findKvServer, kvNodeArgs } from "../../src/ops/kv-cluster.js";
import { freePortBlock, freePorts, spawnCli, upArgs, waitForHttp } from "../../bench/support/cli.js";
import { missingTool } from "../deploy/tools.js";

const bins = findKvServer();
const skip = bins ? false : missingTool("neither valkey-server nor redis-server (with its cli) installed");
const flagsOf = (argv: string[]) => parseFlags(argv, UP_OPTIONS.specs).flags;

test(
  "up --kv-cluster: the sims model the cluster as one cache server of the primaries' summed memory, unread by the router; fewer than 3 primaries or a second shared tier is refused",
  { skip },
  () => {
    const w = kvClusterWiring(
      flagsOf(["--kv-cluster", "3", "--kv-cluster-base-port", "7100", "--kv-cluster-max-memory", "64MiB"]),
      "127.0.0.1",
      [],
      false,
    )!;
    assert.equal(w.options.primaries, 3);
    assert.equal(w.options.replicasPerPrimary, 1);
    // a replica may take over however long it lost touch with its primary: a cache of chunks
    assert.match(kvNodeArgs(w.options, 7100).join(" "), /--cluster-replica-validity-factor 0/);
    assert.equal(w.seeds, [7100, 7101, 7102, 7103, 7104, 7105].map((p) => `127.0.0.1:${p}`).join(","));
    const mem = w.model.serverArgs[w.model.serverArgs.indexOf("--max-memory") + 1];
    assert.equal(mem, String(3 * 64 * 2 ** 20));
    assert.equal(w.model.engineEnv.LMCACHE_REMOTE_URL, "lm://127.0.0.1:65432");
    assert.deepEqual(w.model.routerArgs, [], "no tier index: every engine reads the cluster alike");
    assert.match(
      w.summary[0]!,
      /--l2-adapter '\{"type":"valkey","startup_nodes":"127\.0\.0\.1:7100,.*","cluster_mode":true\}'/,
    );
    assert.equal(kvClusterPorts(flagsOf(["--kv-cluster", "3", "--kv-cluster-base-port", "7100"])).length, 12);
    assert.throws(
      () => kvClusterWiring(flagsOf(["--kv-cluster", "2"]), "127.0.0.1", [], false),
      /at least 3 primaries \(2 given\)/,
    );
    assert.throws(
      () => kvClusterWiring(flagsOf(["--kv-cluster", "3", "--cache-server"]), "127.0.0.1", [], false),
      /one shared tier/,
    );
    assert.equal(kvClusterWiring(flagsOf([]), "127.0.0.1", [], false), null);
  },
);

test(
  "up --kv-cluster 3: the cluster is whole before the engines serve; the stack answers after a primary is killed -9, whose nodes may fail over however stale; SIGINT stops every node",
  { skip, timeout: 180_000 },
  async () => {
    const offsets = [0, 1, 2, 3, 4, 5].flatMap((i) => [i, 10000 + i]);
    const base = await freePortBlock(offsets);
    const [lm, events, metrics] = await freePorts(3);
    const up = await upArgs(2, [
      ...["--model", "Qwen/Qwen2.5-0.5B-Instruct", "--time-scale", "0.1"],
      ...["--kv-cluster", "3", "--kv-cluster-base-port", String(base), "--kv-cluster-max-memory", "32MiB"],
      ...["--cache-server-port", String(lm), "--cache-server-events-port", String(events)],
      ...["--cache-server-metrics-port", String(metrics)],
    ]);
    const stack = spawnCli(up.args);
    const router = `http://127.0.0.1:${up.port}`;
    const ask = async () => {
      const r = await fetch(`${router}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "Qwen/Qwen2.5-0.5B-Instruct",
          prompt: "Rivers. ".repeat(300),
          max_tokens: 2,
        }),
      });
      await r.arrayBuffer();
      return r.status;
    };
    try {
      await waitForHttp(`${router}/ready`, 60_000, 200, stack);
      const info = clusterState(bins!, "127.0.0.1", base);
      assert.equal(info.cluster_state, "ok", stack.output().slice(-2000));
      assert.equal(info.cluster_known_nodes, "6");
      assert.equal(info.cluster_size, "3");
      assert.equal(await ask(), 200);
      // kill -9 the primary serving slot 0
      const primaries = clusterPrimaries(bins!, "127.0.0.1", base);
      assert.equal(primaries.size, 3);
      const victim = [...primaries.keys()][0]!;
      const victimPort = Number(victim.split(":")[1]);
      const pid = Number(
        /process_id:(\d+)/.exec(
          (await import("node:child_process")).spawnSync(
            bins!.cli,
            ["-p", String(victimPort), "info", "server"],
            {
              encoding: "utf8",
            },
          ).stdout,
        )![1],
      );
      process.kill(pid, "SIGKILL");
      // how soon its replica takes over is Redis's, and a busy machine's: the interop suite's valkey
      // group measures it with LMCache on the cluster; here the stack must only keep answering
      assert.equal(await ask(), 200, "the stack keeps serving after a node's death");
      // printed once the router is ready, so surely by now
      assert.match(stack.output(), /kv cluster 3 (valkey|redis) primaries \+ 3 replicas/);
    } finally {
      const code = await stack.stop("SIGINT");
      assert.equal(code, 0, stack.output().slice(-2000));
    }
    for (const port of [base, base + 1, base + 2, base + 3, base + 4, base + 5]) {
      const free = await new Promise<boolean>((resolve) => {
        const s = createServer();
        s.once("error", () => resolve(false));
        s.listen({ port, host: "127.0.0.1", exclusive: true }, () => s.close(() => resolve(true)));
      });
      assert.ok(free, `cluster port ${port} still bound`);
    }
  },
);
