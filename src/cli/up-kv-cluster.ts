// `switchyard up --kv-cluster N`: the shared KV tier beyond one process. N Valkey/Redis primaries, each
// with a replica, joined as a cluster (src/ops/kv-cluster.ts), the L2 an LMCache multiprocess server
// reaches with its valkey adapter in cluster mode (the summary prints the adapter's JSON). The sims
// speak lm:// only: they model the cluster as one shared tier of the summed primaries' memory, a cache
// server of that size, whose events the router does not read: every engine reads the cluster alike,
// so it tells engines apart by nothing (docs/routing.md). Everything here is the wiring; up.ts starts
// and stops the processes.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { CliError, type FlagValues } from "../config/args.js";
import { flag } from "../config/schema-flags.js";
import { clusterPorts, findKvServer, type KvClusterOptions } from "../ops/kv-cluster.js";
import type { StackPort } from "./ports.js";
import { cacheServerWiring, connectHost, type CacheServerWiring } from "./up-cache-server.js";

/** The Valkey/Redis Cluster flags of `switchyard up`: fields of its option schema (src/cli/up-options.ts). */
export const KV_CLUSTER_OPTIONS = {
  kvCluster: flag(z.number().int().min(0).max(16).default(0), {
    flag: "kv-cluster",
    help: "also run a Valkey/Redis Cluster of this many primaries (at least 3), each with a replica, as the shared KV tier (valkey-server or Debian's redis-server); the sims model it as one shared tier of the primaries' summed memory",
  }),
  kvClusterBasePort: flag(z.number().int().min(1).max(55535).default(7000), {
    flag: "kv-cluster-base-port",
    help: "the cluster's first node port, with --kv-cluster: primaries then replicas on consecutive ports, each node's cluster bus 10000 above",
  }),
  kvClusterMaxMemory: flag(z.number().default(256 * 2 ** 20), {
    flag: "kv-cluster-max-memory",
    kind: "size",
    help: "each cluster node's memory for keys (allkeys-lru past it), with --kv-cluster",
  }),
};

export interface KvClusterWiring {
  options: KvClusterOptions;
  /** "host:port,..." of every node: the adapter's startup_nodes */
  seeds: string;
  /** the sims' model of the tier: a cache server of the summed memory, its events unread */
  model: CacheServerWiring;
  summary: string[];
}

/** The cluster and the sims' model of it, or null without --kv-cluster. */
export function kvClusterWiring(
  flags: FlagValues,
  host: string,
  engineArgs: readonly string[],
  disaggregated: boolean,
): KvClusterWiring | null {
  const primaries = flags["kv-cluster"] as number;
  if (!primaries) return null;
  if (primaries < 3)
    throw new CliError(`--kv-cluster: a cluster needs at least 3 primaries (${primaries} given)`);
  if (flags["cache-server"])
    throw new CliError("--kv-cluster and --cache-server: the engines have one shared tier, choose one");
  const bins = findKvServer();
  if (!bins)
    throw new CliError(
      "--kv-cluster: neither valkey-server nor redis-server (with its -cli) is on PATH; install Debian's redis-server (apt-get install redis-server)",
    );
  const perNode = flags["kv-cluster-max-memory"] as number;
  const options: KvClusterOptions = {
    bins,
    host: connectHost(host).replace(/^\[|\]$/g, ""),
    basePort: flags["kv-cluster-base-port"] as number,
    primaries,
    replicasPerPrimary: 1,
    maxMemoryBytes: perNode,
    dir: mkdtempSync(join(tmpdir(), "switchyard-kv-cluster-")),
  };
  const model = cacheServerWiring(
    { ...flags, "cache-server": true, "cache-server-max-memory": perNode * primaries },
    host,
    engineArgs,
    disaggregated,
  )!;
  // the router is blind to the tier, as to the real cluster
  model.routerArgs = [];
  const seeds = clusterPorts(options)
    .map((p) => `${options.host}:${p}`)
    .join(",");
  const adapter = JSON.stringify({ type: "valkey", startup_nodes: seeds, cluster_mode: true });
  return {
    options,
    seeds,
    model,
    summary: [
      `  kv cluster ${primaries} ${bins.name} primaries + ${primaries} replicas on ${seeds}   (each ${perNode} bytes; for LMCache's MP server: --l2-adapter '${adapter}')`,
      `  the sims model it as one shared tier of ${perNode * primaries} bytes: ${model.lmUrl}`,
    ],
  };
}

/** The ports the cluster binds (client and bus), for the up-front check (ports.ts). */
export function kvClusterPorts(flags: Record<string, unknown>): StackPort[] {
  const primaries = flags["kv-cluster"] as number;
  if (!primaries) return [];
  const ports = clusterPorts({
    basePort: flags["kv-cluster-base-port"] as number,
    primaries,
    replicasPerPrimary: 1,
  });
  return ports.flatMap((p, i) => [
    { port: p, what: `kv cluster node ${i}`, flag: "--kv-cluster-base-port" },
    { port: p + 10000, what: `kv cluster node ${i}'s bus`, flag: "--kv-cluster-base-port" },
  ]);
}
