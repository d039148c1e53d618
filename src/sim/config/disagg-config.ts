// Disaggregated prefill/decode settings the way vLLM reads them: `--kv-transfer-config` naming
// NixlConnector with a kv_role, NIXL's environment variables (side-channel host, abort timeout), and
// the sim-only bandwidth of the modelled KV pull.
import { CliError } from "../../config/args.js";

export type KvRole = "kv_producer" | "kv_consumer" | "kv_both";
const ROLES: readonly KvRole[] = ["kv_producer", "kv_consumer", "kv_both"];

/** The connectors whose P/D flow the sim models (vLLM's kv_transfer_params protocol). */
export const DISAGG_CONNECTORS = ["NixlConnector"] as const;

/**
 * Bytes/s one TP rank pulls KV from a prefill engine: NIXL over GPUDirect RDMA on one 400 Gb/s
 * ConnectX-7 NIC per GPU (the DGX/HGX H100 compute fabric: 50 GB/s line rate) at the ~80% large
 * RDMA reads keep in practice, 40 GB/s. Ranks pull in parallel over their own NICs, so an engine
 * pulls at this × its tensor-parallel size. Within one node (NVLink) the real rate is higher.
 */
export const NIXL_RDMA_BPS_PER_RANK = 40e9;
/** vLLM's VLLM_NIXL_ABORT_REQUEST_TIMEOUT default: a producer frees unread blocks after 480 s. */
export const NIXL_ABORT_TIMEOUT_SECS = 480;

export interface DisaggSettings {
  connector: "NixlConnector";
  role: KvRole;
  /** kv_transfer_config.engine_id, or null: derived at startup from the model, address and seed */
  engineId: string | null;
  /** bytes/s of the modelled KV pull per TP rank */
  bandwidthPerRank: number;
  /** seconds a producer keeps prefilled KV for a decode engine to read (VLLM_NIXL_ABORT_REQUEST_TIMEOUT) */
  abortTimeoutSecs: number;
  /** the host a decode engine reaches this one at (VLLM_NIXL_SIDE_CHANNEL_HOST), or null: the bind host */
  sideChannelHost: string | null;
}

export interface DisaggSources {
  /** --kv-transfer-config JSON */
  kvTransferConfig: string | undefined;
  /** --kv-transfer-bandwidth GB/s per rank */
  bandwidthGBps: number | undefined;
  env: NodeJS.ProcessEnv;
}

function parseObject(json: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    throw new CliError(`--kv-transfer-config: ${(err as Error).message}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    throw new CliError("--kv-transfer-config: expected a JSON object");
  return doc as Record<string, unknown>;
}

/** True when the connector JSON names a P/D connector (so the LMCache reader leaves it alone). */
export function isDisaggConnector(kvTransferConfig: string | undefined): boolean {
  if (!kvTransferConfig) return false;
  const c = parseObject(kvTransferConfig).kv_connector;
  return typeof c === "string" && (DISAGG_CONNECTORS as readonly string[]).includes(c);
}

/** null unless the connector is NixlConnector; throws CliError on what vLLM would refuse. */
export function resolveDisagg(s: DisaggSources): DisaggSettings | null {
  if (!isDisaggConnector(s.kvTransferConfig)) {
    if (s.bandwidthGBps !== undefined)
      throw new CliError("--kv-transfer-bandwidth needs --kv-transfer-config naming NixlConnector");
    return null;
  }
  const doc = parseObject(s.kvTransferConfig!);
  const role = doc.kv_role;
  if (typeof role !== "string" || !(ROLES as readonly string[]).includes(role))
    throw new CliError(
      `--kv-transfer-config: kv_role must be one of ${ROLES.join(", ")} with a kv_connector, got '${String(role)}'`,
    );
  const engineId = doc.engine_id;
  if (engineId !== undefined && engineId !== null && typeof engineId !== "string")
    throw new CliError("--kv-transfer-config: engine_id must be a string");
  const bw = s.bandwidthGBps;
  if (bw !== undefined && !(bw > 0)) throw new CliError(`--kv-transfer-bandwidth must be > 0, got ${bw}`);
  const rawTimeout = s.env.VLLM_NIXL_ABORT_REQUEST_TIMEOUT;
  const timeout = rawTimeout ? Number(rawTimeout) : NIXL_ABORT_TIMEOUT_SECS;
  if (!Number.isFinite(timeout) || timeout <= 0)
    throw new CliError(`VLLM_NIXL_ABORT_REQUEST_TIMEOUT must be a positive number, got '${rawTimeout}'`);
  return {
    connector: "NixlConnector",
    role: role as KvRole,
    engineId: typeof engineId === "string" && engineId !== "" ? engineId : null,
    bandwidthPerRank: bw !== undefined ? bw * 1e9 : NIXL_RDMA_BPS_PER_RANK,
    abortTimeoutSecs: timeout,
    sideChannelHost: s.env.VLLM_NIXL_SIDE_CHANNEL_HOST || null,
  };
}
