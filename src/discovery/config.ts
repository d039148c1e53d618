// The discovery slice of the router's configuration (`discovery:` in its YAML, the --discovery and
// --k8s-* flags): where engines come from besides the static `backends`, and how often the registry
// re-reads what each engine serves and how loaded it is.
import { z } from "zod";
import { duration, size } from "../config/values.js";
import { VLLM_PORT } from "../config/vllm-defaults.js";
import { flag } from "../config/schema-flags.js";

export const discoveryConfigSchema = z
  .strictObject({
    modelsInterval: duration.default(10_000),
    metricsInterval: duration.default(1_000),
    metricsTimeout: duration.default(1_000),
    maxMetricsBytes: size.default(4 * 2 ** 20),
    /** where engines come from besides `backends`: static (only them), kubernetes, file */
    mode: flag(z.enum(["static", "kubernetes", "file"]).default("static"), {
      flag: "discovery",
      help: "where engines come from besides --backend: static, kubernetes (pods), file (--discovery-file)",
    }),
    /** pods by namespace + label selector (src/discovery/kubernetes.ts); in-cluster unless apiUrl */
    kubernetes: z
      .strictObject({
        namespace: flag(z.string().optional(), {
          flag: "k8s-namespace",
          help: "namespace of the engine pods (default: the router's own)",
        }),
        selector: flag(z.string().default("switchyard.dev/engine=true"), {
          flag: "k8s-selector",
          help: "label selector of the engine pods",
        }),
        apiUrl: flag(z.string().optional(), {
          flag: "k8s-api-url",
          help: "API server URL (default: in-cluster KUBERNETES_SERVICE_HOST/PORT with the service account)",
        }),
        tokenFile: flag(z.string().optional(), {
          flag: "k8s-token-file",
          help: "bearer token file for --k8s-api-url",
        }),
        caFile: flag(z.string().optional(), {
          flag: "k8s-ca-file",
          help: "CA bundle for an https --k8s-api-url",
        }),
        resyncInterval: flag(duration.default(300_000), {
          flag: "k8s-resync",
          help: "full pod re-list interval besides the watch",
          kind: "duration",
        }),
        defaultPort: z.number().int().min(1).max(65535).default(VLLM_PORT),
      })
      .prefault({}),
    /** YAML/JSON list of backends, re-read on change (src/discovery/file.ts) */
    file: flag(z.string().optional(), {
      flag: "discovery-file",
      help: "YAML/JSON list of backends, re-read on change",
      implies: { mode: "file" },
    }),
  })
  .prefault({});

export type DiscoveryConfig = z.output<typeof discoveryConfigSchema>;
