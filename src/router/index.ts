// Programmatic entry: start a router in this process (used by `switchyard up` and by tests).
import { watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import type { AddressInfo } from "node:net";
import { logger } from "../obs/log.js";
import {
  mergeConfig,
  parseConfig,
  readConfigFile,
  type RouterConfig,
  type RouterConfigInput,
} from "./config.js";
import { Router } from "./server.js";
import { startEndpointPicker } from "./epp-glue.js";
import { KeysDirWatcher } from "../tenancy/keys-watch.js";
import { endpointFromEnv } from "../obs/tracing.js";

export { Router } from "./server.js";
export {
  parseConfig,
  routerConfigSchema,
  ConfigError,
  type RouterConfig,
  type RouterConfigInput,
} from "./config.js";
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
}

export interface RunningRouter {
  url: string;
  router: Router;
  /** the endpoint picker's gRPC port, when `epp.port` is set */
  eppPort: number | undefined;
  /** re-reads the config file now (also done on file change) */
  reload(): void;
  /** graceful: in-flight requests get up to `drainMs` (default the config's drainTimeout) */
  close(drainMs?: number): Promise<void>;
}

function loadConfig(overrides: RouterConfigInput, file: string | undefined): RouterConfig {
  const base = file ? readConfigFile(file) : {};
  const cfg = parseConfig(mergeConfig(base, overrides as Record<string, unknown>));
  // the standard OTel variable applies when neither the file nor a flag names an endpoint
  cfg.tracing.otlpEndpoint ??= endpointFromEnv();
  return cfg;
}

export async function startRouter(
  config: RouterConfigInput = {},
  opts: StartOptions = {},
): Promise<RunningRouter> {
  const withKey = { ...config };
  if (withKey.engineApiKey === undefined && process.env.VLLM_API_KEY)
    withKey.engineApiKey = process.env.VLLM_API_KEY;
  const cfg = loadConfig(withKey, opts.configFile);
  const router = new Router(cfg);
  await router.start();
  await new Promise<void>((resolve, reject) => {
    router.server.once("error", reject);
    router.server.listen(cfg.port, cfg.host, () => resolve());
  });
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

  const keys = new KeysDirWatcher(router.tenancy);
  keys.sync();
  /** returns why a reload was refused (the previous config stays), undefined when applied */
  const tryReload = (): string | undefined => {
    try {
      router.reconfigure(loadConfig({ ...withKey, port: cfg.port, host: cfg.host }, opts.configFile));
      keys.sync();
      return undefined;
    } catch (err) {
      log.error({ err: (err as Error).message }, "config reload failed; keeping the previous configuration");
      return (err as Error).message;
    }
  };
  const reload = () => void tryReload();
  if (opts.configFile) router.onReload = tryReload;
  let watcher: FSWatcher | undefined;
  let debounce: NodeJS.Timeout | undefined;
  if (opts.configFile) {
    // editors replace files (rename) as often as they write them: debounce and re-read either way
    // (rename over it), so watch the folder and pick out the file's name
    const name = basename(opts.configFile);
    watcher = watch(dirname(opts.configFile), { persistent: false }, (_event, changed) => {
      if (changed !== null && changed !== name) return;
      clearTimeout(debounce);
      debounce = setTimeout(reload, 100);
    });
    watcher.on("error", (err) => log.warn({ err: err.message }, "config watch failed"));
  }
  log.info({ url, backends: cfg.backends.length, policy: cfg.policy }, "router listening");
  return {
    url,
    router,
    eppPort: epp?.port,
    reload,
    close: async (drainMs?: number) => {
      clearTimeout(debounce);
      watcher?.close();
      keys.stop();
      await Promise.all([epp?.close(drainMs ?? router.config.drainTimeout), router.close(drainMs)]);
      await router.tenancy.close();
    },
  };
}
