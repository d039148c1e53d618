// `switchyard up`'s options: one zod schema whose fields declare their flags (type, bounds, default,
// help), its own and those of the parts beside it (P/D, the cache server, the KV cluster, autoscaling),
// in the order --help lists them. The flags not named here pass through to every engine.
import { z } from "zod";
import { commandFlags } from "../config/command.js";
import { ROUTER_PORT } from "../config/defaults.js";
import { flag } from "../config/schema-flags.js";
import { GPU_IDS_TEXT } from "../models/index.js";
import { DEFAULT_POLICY, POLICY_HELP } from "../routing/index.js";
import { AUTOSCALE_OPTIONS } from "./up-autoscale.js";
import { CACHE_SERVER_OPTIONS } from "./up-cache-server.js";
import { KV_CLUSTER_OPTIONS } from "./up-kv-cluster.js";
import { PD_OPTIONS } from "./up-pd.js";

export const upOptions = z.object({
  engines: flag(z.number().int().min(1).max(64).default(2), {
    flag: "engines",
    help: "number of simulated engines",
  }),
  model: flag(z.string().default("meta-llama/Llama-3.1-8B-Instruct"), {
    flag: "model",
    help: "model id (Hugging Face) every engine serves",
  }),
  gpu: flag(z.string().default("h100"), {
    flag: "gpu",
    help: `GPU profile of the simulated engines (${GPU_IDS_TEXT})`,
  }),
  policy: flag(z.string().default(DEFAULT_POLICY), { flag: "policy", help: `router policy: ${POLICY_HELP}` }),
  port: flag(z.number().int().min(0).max(65535).default(ROUTER_PORT), { flag: "port", help: "router port" }),
  host: flag(z.string().default("127.0.0.1"), {
    flag: "host",
    help: "address the router and the engines listen on",
  }),
  engineBasePort: flag(z.number().int().min(1).max(65000).default(8100), {
    flag: "engine-base-port",
    help: "first engine port (engine i listens on base+i)",
  }),
  kvEventsBasePort: flag(z.number().int().min(0).max(65000).default(5557), {
    flag: "kv-events-base-port",
    help: "first KV-event PUB port (engine i publishes on base+i); 0 turns KV events off",
  }),
  kvCurve: flag(z.boolean().default(false), {
    flag: "kv-curve",
    help: "authenticate and encrypt the KV events (ZMQ CURVE): a keypair per engine, one for the router and one for the cache server (--cache-server), made for this run in a private temporary directory and removed when the stack stops",
  }),
  readyTimeout: flag(z.number().default(60), {
    flag: "ready-timeout",
    help: "seconds to wait for the stack to become ready",
  }),
  loraDir: flag(z.string().optional(), {
    flag: "lora-dir",
    help: "LoRA adapters the router loads on demand (each subfolder a PEFT adapter, named by its folder): the engines run with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, the router with --lora-dir",
  }),
  monitoring: flag(z.boolean().default(false), {
    flag: "monitoring",
    help: "also run Prometheus (installed by scripts/install-prometheus.sh when absent) scraping the router, the engines and the cache server (--cache-server), with deploy/prometheus's alert rules",
  }),
  prometheusPort: flag(z.number().int().min(1).max(65535).default(9090), {
    flag: "prometheus-port",
    help: "Prometheus port, with --monitoring",
  }),
  prometheusInterval: flag(z.number().min(0.1).max(60).default(2), {
    flag: "prometheus-interval",
    help: "seconds between Prometheus scrapes and rule evaluations, with --monitoring",
  }),
  ...PD_OPTIONS,
  ...CACHE_SERVER_OPTIONS,
  ...KV_CLUSTER_OPTIONS,
  ...AUTOSCALE_OPTIONS,
});

/** `up`'s flags, read once from its schema. */
export const UP_OPTIONS = commandFlags(upOptions);
