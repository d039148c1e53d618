// The local stack the deploy tests scrape, started as users would (the CLI, loopback ports): a sim, a
// cache server with its metrics port, a router in front of the sim (its endpoint picker on, so its
// metrics are exported too) and, when asked, a second sim with LMCache on whose remote tier is that
// cache server.
import { freePorts, spawnCli, waitForHttp, type Spawned } from "../../bench/support/cli.js";

export interface LocalStack {
  simPort: number;
  routerPort: number;
  cacheMetricsPort: number;
  lmcacheSimPort: number | undefined;
  stop(): Promise<void>;
}

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";

export async function startLocalStack(
  opts: { simArgs?: string[]; lmcacheSim?: boolean } = {},
): Promise<LocalStack> {
  const [simPort, lmcachePort, routerPort, cachePort, cacheMetricsPort, eppPort] = await freePorts(6);
  const procs: Spawned[] = [];
  const stop = async () => {
    await Promise.all(procs.map((p) => p.stop()));
  };
  const sim = (port: number, args: string[], env: Record<string, string> = {}) =>
    spawnCli(["sim", MODEL, "--host=127.0.0.1", `--port=${port}`, ...args], env);
  try {
    procs.push(
      sim(simPort!, opts.simArgs ?? []),
      spawnCli([
        "cache-server",
        "--host=127.0.0.1",
        `--port=${cachePort}`,
        `--metrics-port=${cacheMetricsPort}`,
        "--max-memory=64MiB",
      ]),
    );
    if (opts.lmcacheSim)
      procs.push(
        sim(lmcachePort!, ["--kv-offloading-backend=lmcache"], {
          LMCACHE_REMOTE_URL: `lm://127.0.0.1:${cachePort}`,
        }),
      );
    await waitForHttp(`http://127.0.0.1:${simPort}/health`, 30_000);
    if (opts.lmcacheSim) await waitForHttp(`http://127.0.0.1:${lmcachePort}/health`, 30_000);
    procs.push(
      spawnCli([
        "router",
        "--host=127.0.0.1",
        `--port=${routerPort}`,
        `--epp-port=${eppPort}`,
        `--backend=http://127.0.0.1:${simPort}`,
      ]),
    );
    await waitForHttp(`http://127.0.0.1:${routerPort}/ready`, 30_000);
    await waitForHttp(`http://127.0.0.1:${cacheMetricsPort}/metrics`, 30_000);
  } catch (err) {
    // a half-started stack is stopped here: the caller never gets a handle to it
    const logs = procs.map((p) => p.output().slice(-2000)).join("\n---\n");
    await stop();
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
  return {
    simPort: simPort!,
    routerPort: routerPort!,
    cacheMetricsPort: cacheMetricsPort!,
    lmcacheSimPort: opts.lmcacheSim ? lmcachePort : undefined,
    stop,
  };
}
