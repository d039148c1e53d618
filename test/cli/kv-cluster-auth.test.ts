// A Valkey/Redis Cluster with a password, on real servers (src/ops/kv-cluster.ts, as the interop
// `valkey` group and `switchyard up --kv-cluster` start it): every node requires the password, the
// join and the CLI calls send it through the environment, replicas sync from their primaries with it
// (masterauth), and a client without it is refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePortBlock } from "../../bench/support/cli.js";
import {
  clusterPorts,
  clusterPrimaries,
  findKvServer,
  joinKvCluster,
  kvCli,
  kvCliEnv,
  startKvNodes,
  type KvClusterOptions,
} from "../../src/ops/kv-cluster.js";

const bins = findKvServer();
const skip = bins
  ? false
  : "neither valkey-server nor redis-server installed (.ci/install-tools.sh installs redis-server)";
const PASSWORD = "cluster-pass_1.2~3";

test(
  "a cluster with a password: joined and read with it, replicas synced by masterauth, a client without it refused",
  { skip, timeout: 120_000 },
  async () => {
    const base = await freePortBlock([0, 1, 2, 3, 4, 5].flatMap((i) => [i, 10000 + i]));
    const dir = mkdtempSync(join(tmpdir(), "sy-kv-auth-"));
    const o: KvClusterOptions = {
      bins: bins!,
      host: "127.0.0.1",
      basePort: base,
      primaries: 3,
      replicasPerPrimary: 1,
      maxMemoryBytes: 32 * 2 ** 20,
      dir,
      password: PASSWORD,
    };
    let nodes: Map<number, ChildProcess> | undefined;
    const cli = (args: string[], password?: string) => {
      const r = spawnSync(bins!.cli, ["-p", String(base), ...args], {
        encoding: "utf8",
        env: kvCliEnv(password),
        timeout: 10_000,
      });
      return `${r.stdout}${r.stderr}`;
    };
    try {
      nodes = startKvNodes(o);
      await joinKvCluster(o, Date.now() + 90_000);
      assert.equal(clusterPrimaries(bins!, "127.0.0.1", base, PASSWORD).size, 3);
      assert.match(kvCli(bins!, "127.0.0.1", base, ["ping"], PASSWORD), /PONG/);
      assert.equal(kvCli(bins!, "127.0.0.1", base, ["ping"]), "", "no answer without the password");
      assert.match(cli(["ping"]), /NOAUTH/);
      // every replica linked to its primary: it authenticated with masterauth
      const replicas = clusterPorts(o).filter((p) =>
        /role:slave/.test(kvCli(bins!, "127.0.0.1", p, ["info", "replication"], PASSWORD)),
      );
      assert.equal(replicas.length, 3);
      for (const p of replicas) {
        let info = "";
        for (let i = 0; i < 100 && !/master_link_status:up/.test(info); i++) {
          await new Promise((r) => setTimeout(r, 100));
          info = kvCli(bins!, "127.0.0.1", p, ["info", "replication"], PASSWORD);
        }
        assert.match(info, /master_link_status:up/, `replica ${p}`);
      }
      assert.match(cli(["-c", "set", "k", "v"], PASSWORD), /OK/);
      assert.match(cli(["flushall"]), /NOAUTH/, "FLUSHALL without the password is refused");
    } finally {
      for (const n of nodes?.values() ?? []) if (n.pid !== undefined) process.kill(-n.pid, "SIGKILL");
      await new Promise((r) => setTimeout(r, 200));
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
