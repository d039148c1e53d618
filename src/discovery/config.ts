// The discovery slice of the router's configuration (`discovery:` in its YAML, the --discovery and
// --k8s-* flags): where engines come from besides the static `backends`, and how often the registry
// re-reads what each engine serves and how loaded it is.
import { z } from "zod";
import { duration, size } from "../config/values.js";
import { VLLM_PORT } from "../config/vllm-defaults.js";

export const discoveryConfigSchema = z
  .strictObject({
    modelsInterval: duration.default(10_000),
    metricsInterval: duration.default(1_000),
    metricsTimeout: duration.default(1_000),
    maxMetricsBytes: size.default(4 * 2 ** 20),
    /** where engines come from besides `backends`: static (only them), kubernetes, file */
    mode: z.enum(["static", "kubernetes", "file"]).default("static"),
    /** pods by namespace + label selector (src/discovery/kubernetes.ts); in-cluster unless apiUrl */
    kubernetes: z
      .strictObject({
        namespace: z.string().optional(),
        selector: z.string().default("switchyard.dev/engine=true"),
        apiUrl: z.string().optional(),
        tokenFile: z.string().optional(),
        caFile: z.string().optional(),
        resyncInterval: duration.default(300_000),
        defaultPort: z.number().int().min(1).max(65535).default(VLLM_PORT),
      })
      .prefault({}),
    /** YAML/JSON list of backends, re-read on change (src/discovery/file.ts) */
    file: z.string().optional(),
  })
  .prefault({});

export type DiscoveryConfig = z.output<typeof discoveryConfigSchema>;
