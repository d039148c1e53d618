// Builds the discovery sources a configuration asks for (beyond the router's static `backends`).
import type { DiscoverySource } from "./types.js";
import type { DiscoveryConfig } from "./config.js";
import { FileDiscovery } from "./file.js";
import { KubernetesDiscovery, inClusterOptions } from "./kubernetes.js";
import { InvalidConfigError } from "../errors/index.js";

export { StaticDiscovery } from "./static.js";
export { discoveryConfigSchema, type DiscoveryConfig } from "./config.js";
export type { DiscoverySink, DiscoverySource, EngineSpec } from "./types.js";
export { FileDiscovery, readBackendsFile } from "./file.js";
export { KubernetesDiscovery, engineOfPod, inClusterOptions, type Pod } from "./kubernetes.js";

export function discoverySources(d: DiscoveryConfig): DiscoverySource[] {
  if (d.mode === "file") {
    if (!d.file)
      throw new InvalidConfigError("discovery mode 'file' needs discovery.file (--discovery-file)");
    return [new FileDiscovery(d.file)];
  }
  if (d.mode === "kubernetes") {
    const k = d.kubernetes;
    const cluster = k.apiUrl ? undefined : inClusterOptions();
    const namespace = k.namespace ?? cluster?.namespace ?? process.env.POD_NAMESPACE;
    if (!namespace) throw new InvalidConfigError("Kubernetes discovery needs a namespace (--k8s-namespace)");
    return [
      new KubernetesDiscovery({
        apiUrl: k.apiUrl ?? cluster!.apiUrl,
        tokenFile: k.tokenFile ?? cluster?.tokenFile,
        caFile: k.caFile ?? cluster?.caFile,
        namespace,
        selector: k.selector,
        resyncInterval: k.resyncInterval,
        defaultPort: k.defaultPort,
      }),
    ];
  }
  return [];
}
