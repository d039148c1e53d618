// Programmatic entry: start a router in this process (used by `switchyard up` and by tests).
import type { AddressInfo } from "node:net";
import { logger } from "../obs/log.js";
import { loadConfig, type RouterConfigInput } from "./config/config.js";
import { Router } from "./edge/server.js";
import { RouterAssembly } from "./assembly.js";
import { startEndpointPicker } from "./edge/epp-glue.js";
import { KeysDirWatcher } from "../tenancy/keys-watch.js";
import { watchConfigFile } from "./config/watch.js";
import { startLonePeers } from "./cluster/lone.js";

export { Router } from "./edge/server.js";
/** how many listening sockets `limits.listenSockets: auto` gives each of N processes on one port */
export { autoListenSockets } from "./edge/accept.js";
/** the Node flags each router worker starts with, and the cores the count is taken from */
export { usableCores, workerExecArgv } from "./cluster/worker-count.js";
export {
  loadConfig,
  parseConfig,
  routerConfigSchema,
  ConfigError,
  type RouterConfig,
  type RouterConfigInput,
} from "./config/config.js";
export {
  StaticDiscovery,
  type DiscoverySource,
  type DiscoverySink,
  type EngineSpec,
} from "../discovery/index.js";

const log = logger("router");

export interface StartOptions {
  /** YAML file to read and watch; `config` is layered on top of it (flags win over the file) */
  configFile?: string;
  /** called before the router starts (a router worker links itself to its primary here) */
  prepare?: (router: Router) => void;
  /** log the listening line at debug (a router worker: its primary says it once for the group) */
  quiet?: boolean;
  /**
   * a router worker that binds sockets of its own on the port (its primary proved it free:
   * edge/accept.ts): how many processes listen on it together, which share `listenSockets: auto` out
   */
  socketGroup?: number;
}

export interface RunningRouter {
  url: string;
  router: Router;
  /** the endpoint picker's gRPC port, when `epp.port` is set */
  eppPort: number | undefined;
  /** re-reads the config file now (also done on file change) */
  reload(): void;
  /** applies this config (flags and file already merged); returns why it was refused, if it was */
  apply(config: RouterConfigInput): string | undefined;
  /** graceful: in-flight requests get up to `drainMs` (default the config's drainTimeout) */
  close(drainMs?: number): Promise<void>;
}

export async function startRouter(
  config: RouterConfigInput = {},
  opts: StartOptions = {},
): Promise<RunningRouter> {
  // VLLM_API_KEY and PYTHONHASHSEED are read with the schema (parseConfig)
  const cfg = loadConfig(config, opts.configFile);
  const router = new Router(new RouterAssembly(cfg));
  opts.prepare?.(router);
  await router.start();
  try {
    await router.listen(cfg.port, cfg.host, opts.socketGroup);
  } catch (err) {
    // the port is taken (or not ours to bind): nothing of this router may keep running
    await router.close(0);
    throw err;
  }
  const addr = router.server.address() as AddressInfo;
  const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  const shownHost = host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host;
  const url = `http://${shownHost}:${addr.port}`;
  let epp;
  try {
    epp = await startEndpointPicker(router);
  } catch (err) {
    await router.close(0);
    throw err;
  }

  // a lone replica's peers (a router worker's are its primary's)
  let peers: { close(): Promise<void> } | null = null;
  try {
    if (!router.group) peers = await startLonePeers(router);
  } catch (err) {
    await Promise.all([epp?.close(0), router.close(0)]);
    throw err;
  }

  const keys = new KeysDirWatcher(router.tenancy);
  keys.sync();
  /** returns why a reload was refused (the previous config stays), undefined when applied */
  const apply = (input: RouterConfigInput, file: string | undefined): string | undefined => {
    try {
      router.reconfigure(loadConfig({ ...input, port: cfg.port, host: cfg.host }, file));
      keys.sync();
      return undefined;
    } catch (err) {
      log.error({ err: (err as Error).message }, "config reload failed; keeping the previous configuration");
      return (err as Error).message;
    }
  };
  const tryReload = () => apply(config, opts.configFile);
  const reload = () => void tryReload();
  if (opts.configFile) router.onReload = tryReload;
  const unwatch = opts.configFile ? watchConfigFile(opts.configFile, reload) : undefined;
  const said = { url, backends: cfg.backends.length, policy: cfg.policy };
  if (opts.quiet) log.debug(said, "router listening");
  else log.info(said, "router listening");
  return {
    url,
    router,
    eppPort: epp?.port,
    reload,
    apply: (input) => apply(input, undefined),
    close: async (drainMs?: number) => {
      unwatch?.();
      keys.stop();
      await peers?.close();
      await Promise.all([epp?.close(drainMs ?? router.config.drainTimeout), router.close(drainMs)]);
      await router.tenancy.close();
    },
  };
}
