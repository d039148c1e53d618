// LMCache settings the way a real vLLM + LMCache deployment is configured: the engine turns LMCache on
// with `--kv-offloading-backend lmcache` (vLLM ≥ 0.14) or `--kv-transfer-config` naming
// LMCacheConnectorV1, and LMCache itself reads LMCACHE_CONFIG_FILE (YAML, lower-case keys) and then
// LMCACHE_<KEY> environment variables, which win over the file.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { CliError } from "../../config/args.js";
import { DISAGG_CONNECTORS } from "./disagg-config.js";
import { LMCACHE_CHUNK_TOKENS } from "../../config/vllm-defaults.js";

export interface LmcacheSettings {
  /** tokens per chunk (LMCache's chunk_size, 256) */
  chunkTokens: number;
  /** keep the in-engine local CPU tier (LMCache's local_cpu) */
  localCpu: boolean;
  /** local CPU bytes per TP rank (max_local_cpu_size GB × 1024³, as LMCache allocates it) */
  localCpuBytesPerRank: number;
  /** lm://host:port of a shared cache server, or null */
  remoteUrl: string | null;
  remoteSerde: "naive";
  /** bound on a remote lookup before the request is computed instead (LMCache's blocking_timeout_secs) */
  blockingTimeoutSecs: number;
  /** bytes actually sent per chunk = modelled bytes × this (sim only: timing uses the modelled size) */
  payloadScale: number;
  /** bytes/s a remote load delivers to this engine, all TP ranks together (sim only) */
  remoteLoadBandwidth: number;
  /**
   * LMCache's pre_caching_hash_algorithm as configured (default "builtin", Python's hash()). The sim
   * always computes sha256_cbor chunk hashes, the one algorithm reproducible outside Python.
   */
  hashAlgorithm: string;
}

/** The pre_caching_hash_algorithm names that give the chunk hashes the sim computes. */
export const SHA256_CBOR_NAMES = ["sha256_cbor", "sha256_cbor_64bit"];

/**
 * Remote load rate: one 100 GbE NIC (12.5 GB/s line rate) at the ~80% a single TCP stream keeps up
 * with large sequential reads: 10 GB/s per engine. Our own cache server is not the bound on a real
 * deployment (its loopback GET rate, docs/cache-server.md, is a 2-core VM figure); the NIC is.
 */
export const LMCACHE_REMOTE_LOAD_BPS = 10e9;
/** 1/1024: a 32 MiB Llama-3.1-8B chunk travels as 32 KiB, so tests move megabytes, not gigabytes. */
export const DEFAULT_PAYLOAD_SCALE = 1 / 1024;
/** LMCache's defaults (lmcache/v1/config.py): 256-token chunks, 5 GB local CPU, 10 s blocking timeout. */
const DEFAULTS = {
  chunk_size: LMCACHE_CHUNK_TOKENS,
  local_cpu: true,
  max_local_cpu_size: 5,
  blocking_timeout_secs: 10,
  pre_caching_hash_algorithm: "builtin",
};
const GiB = 2 ** 30;

const KNOWN_KEYS = new Set([
  "chunk_size",
  "local_cpu",
  "max_local_cpu_size",
  "remote_url",
  "remote_serde",
  "blocking_timeout_secs",
  // accepted and ignored: tiers and features the sim does not model
  "local_disk",
  "max_local_disk_size",
  "save_unfull_chunk",
  "enable_p2p",
  "enable_controller",
  "lmcache_instance_id",
  "controller_url",
  "cache_policy",
  "pre_caching_hash_algorithm",
  "use_layerwise",
  "save_decode_cache",
]);

export interface LmcacheSources {
  /** --kv-offloading-backend */
  backend: string;
  /** --kv-offloading-size GiB (with backend lmcache: LMCache's local CPU size, split over the TP ranks) */
  offloadGiB: number | undefined;
  /** --kv-transfer-config JSON */
  kvTransferConfig: string | undefined;
  tensorParallelSize: number;
  payloadScale: number;
  remoteBandwidthGBps: number | undefined;
  env: NodeJS.ProcessEnv;
}

function parseBool(key: string, v: unknown): boolean {
  if (typeof v === "boolean") return v;
  const s = String(v).trim().toLowerCase();
  if (s === "true" || s === "1" || s === "yes") return true;
  if (s === "false" || s === "0" || s === "no") return false;
  throw new CliError(`LMCache ${key}: expected True or False, got '${String(v)}'`);
}

function parseNum(key: string, v: unknown, min: number): number {
  const n = typeof v === "number" ? v : Number(String(v).trim());
  if (!Number.isFinite(n) || n < min)
    throw new CliError(`LMCache ${key}: expected a number >= ${min}, got '${String(v)}'`);
  return n;
}

function connectorName(json: string): string | null {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    throw new CliError(`--kv-transfer-config: ${(err as Error).message}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    throw new CliError("--kv-transfer-config: expected a JSON object");
  const c = (doc as Record<string, unknown>).kv_connector;
  return typeof c === "string" ? c : null;
}

function readConfigFile(file: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, "utf8"));
  } catch (err) {
    throw new CliError(`LMCACHE_CONFIG_FILE ${file}: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc))
    throw new CliError(`LMCACHE_CONFIG_FILE ${file}: expected a mapping`);
  for (const k of Object.keys(doc)) {
    if (!KNOWN_KEYS.has(k)) throw new CliError(`LMCACHE_CONFIG_FILE ${file}: unknown key '${k}'`);
  }
  return doc as Record<string, unknown>;
}

/** null when LMCache is not in use; throws CliError on settings vLLM or LMCache would refuse. */
export function resolveLmcache(s: LmcacheSources): LmcacheSettings | null {
  let connector = s.kvTransferConfig ? connectorName(s.kvTransferConfig) : null;
  const viaBackend = s.backend === "lmcache";
  // a P/D connector (src/sim/config/disagg-config.ts) is not LMCache; vLLM takes one connector at a time
  if (connector !== null && (DISAGG_CONNECTORS as readonly string[]).includes(connector)) {
    if (viaBackend)
      throw new CliError(`--kv-offloading-backend lmcache cannot be combined with kv_connector ${connector}`);
    connector = null;
  }
  if (connector !== null && connector !== "LMCacheConnectorV1")
    throw new CliError(
      `--kv-transfer-config: the sim models kv_connector LMCacheConnectorV1 or ${DISAGG_CONNECTORS.join(", ")}, got '${connector}'`,
    );
  if (!viaBackend && connector === null) return null;

  const raw: Record<string, unknown> = { ...DEFAULTS };
  const file = s.env.LMCACHE_CONFIG_FILE;
  if (file) Object.assign(raw, readConfigFile(file));
  for (const k of KNOWN_KEYS) {
    const v = s.env[`LMCACHE_${k.toUpperCase()}`];
    if (v !== undefined && v !== "") raw[k] = v;
  }
  // vLLM's --kv-offloading-size is the engine's total; LMCache allocates its size in every rank
  if (viaBackend && s.offloadGiB !== undefined) raw.max_local_cpu_size = s.offloadGiB / s.tensorParallelSize;

  const chunkTokens = parseNum("chunk_size", raw.chunk_size, 1);
  if (!Number.isInteger(chunkTokens))
    throw new CliError(`LMCache chunk_size must be an integer, got ${chunkTokens}`);
  const remote = raw.remote_url === undefined || raw.remote_url === null ? "" : String(raw.remote_url).trim();
  if (remote !== "" && !/^lm:\/\/[^:/]+:\d+\/?$/.test(remote))
    throw new CliError(`LMCache remote_url: the sim speaks lm://host:port only, got '${remote}'`);
  const serde = raw.remote_serde === undefined ? "naive" : String(raw.remote_serde);
  if (serde !== "naive")
    throw new CliError(`LMCache remote_serde: the sim models naive only, got '${serde}'`);
  if (!(s.payloadScale > 0 && s.payloadScale <= 1))
    throw new CliError(`--lmcache-payload-scale must be in (0, 1], got ${s.payloadScale}`);
  const bw = s.remoteBandwidthGBps;
  if (bw !== undefined && !(bw > 0)) throw new CliError(`--lmcache-remote-bandwidth must be > 0, got ${bw}`);
  return {
    chunkTokens,
    localCpu: parseBool("local_cpu", raw.local_cpu),
    localCpuBytesPerRank: Math.round(parseNum("max_local_cpu_size", raw.max_local_cpu_size, 0) * GiB),
    remoteUrl: remote === "" ? null : remote,
    remoteSerde: "naive",
    blockingTimeoutSecs: parseNum("blocking_timeout_secs", raw.blocking_timeout_secs, 0),
    payloadScale: s.payloadScale,
    remoteLoadBandwidth: bw !== undefined ? bw * 1e9 : LMCACHE_REMOTE_LOAD_BPS,
    hashAlgorithm: String(raw.pre_caching_hash_algorithm).trim(),
  };
}
