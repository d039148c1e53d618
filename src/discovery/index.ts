// Builds the discovery sources a router configuration asks for (beyond its static `backends`).
import type { DiscoverySource } from "../router/discovery.js";
import type { RouterConfig } from "../router/config.js";
import { FileDiscovery } from "./file.js";
import { KubernetesDiscovery, inClusterOptions } from "./kubernetes.js";

export { FileDiscovery, readBackendsFile } from "./file.js";
export { KubernetesDiscovery, engineOfPod, inClusterOptions, type Pod } from "./kubernetes.js";

export function discoverySources(cfg: RouterConfig): DiscoverySource[] {
  const d = cfg.discovery;
  if (d.mode === "file") {
    if (!d.file) throw new Error("discovery mode 'file' needs discovery.file (--discovery-file)");
    return [new FileDiscovery(d.file)];
  }
  if (d.mode === "kubernetes") {
    const k = d.kubernetes;
    const cluster = k.apiUrl ? undefined : inClusterOptions();
    const namespace = k.namespace ?? cluster?.namespace ?? process.env.POD_NAMESPACE;
    if (!namespace) throw new Error("Kubernetes discovery needs a namespace (--k8s-namespace)");
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
