// What every endpoint handler of the sim shares: options, the real-time engine, the tokenizer, the
// metrics, the LoRA registry and the server's state (ready, sleeping, requests seen).
import { HttpError } from "../../http/errors.js";
import { CLAMP_SINCE, type ContextRules } from "../../http/context-length.js";
import { versionAtLeast } from "../../kvevents/versions.js";
import type { EngineConfig, EngineLora } from "../../engine/types.js";
import type { ModelProfile } from "../../models/types.js";
import type { Tokenizer } from "../../tokenizer/types.js";
import type { SimOptions } from "../config/config.js";
import type { AbortRegistry } from "./abort-registry.js";
import type { DisaggConnector } from "../connectors/disagg.js";
import type { KvEventSources } from "../config/kv-sources.js";
import type { LoraRegistry } from "./lora.js";
import type { ResponseStore } from "./response-store.js";
import type { SimMetrics, SleepState } from "../metrics/metrics.js";
import type { SimRuntime } from "../runtime/runtime.js";

export interface SimState {
  ready: boolean;
  sleepState: SleepState;
  /** generation requests received, for --crash-after */
  generationRequests: number;
  /** requests being answered (vLLM's server_load) */
  serverLoad: number;
  /** draining (shutdown): new POSTs get vLLM's shutdown 500, reads answer; requests in flight finish */
  draining: boolean;
  nextRequestNumber: number;
  /** uniform [0,1) stream for fault injection, seeded by --seed */
  faultRandom: () => number;
}

export interface SimContext {
  options: SimOptions;
  model: ModelProfile;
  engineConfig: EngineConfig;
  runtime: SimRuntime;
  tokenizer: Tokenizer;
  metrics: SimMetrics;
  loras: LoraRegistry;
  state: SimState;
  /** the name reported in responses for the base model */
  servedName: string;
  startedAt: number;
  /** output token id -> JSON literal of its text (the pool plus EOS as "") */
  tokenLiteral: Map<number, string>;
  tokenText: Map<number, string>;
  /** NixlConnector (disaggregated prefill/decode), when configured */
  disagg?: DisaggConnector | null;
  /** what GET /kv_event_sources answers: the KV-events config per DP rank, as bound ({} without events) */
  kvEventSources?: KvEventSources;
  /** Responses API answers (kept only with VLLM_ENABLE_RESPONSES_API_STORE=1; empty otherwise) */
  responseStore?: ResponseStore;
  /** token-in/token-out generations in flight, by the id /inference/v1/abort_requests names */
  tokenRequests?: AbortRegistry;
}

export interface ModelChoice {
  /** the name to report in responses */
  name: string;
  loraName: string | null;
  /** the adapter, with its folder and size, when the model named one */
  lora: EngineLora | null;
}

/** vLLM resolves `model` against served names and loaded adapters; absent means the base model. */
export function resolveRequestModel(ctx: SimContext, model: string | null | undefined): ModelChoice {
  if (model === undefined || model === null || model === "")
    return { name: ctx.servedName, loraName: null, lora: null };
  // vLLM reports the first served name whichever alias the client used.
  if (ctx.options.servedModelNames.includes(model))
    return { name: ctx.servedName, loraName: null, lora: null };
  const lora = ctx.loras.get(model);
  if (lora)
    return {
      name: lora.name,
      loraName: lora.name,
      lora: { name: lora.name, path: lora.path, bytes: lora.bytes },
    };
  // vLLM 0.32 with LoRA on names the base model's aliases (measured: "Valid aliases: tiny.")
  const aliases = ctx.engineConfig.lora ? ` Valid aliases: ${ctx.options.servedModelNames.join(", ")}.` : "";
  throw new HttpError(404, `The model \`${model}\` does not exist.${aliases}`, "model");
}

/** How max_tokens fits the context here: as the vLLM release the sim claims (--vllm-version) fits it. */
export function contextRules(ctx: SimContext): ContextRules {
  return versionAtLeast(ctx.options.vllmVersion, CLAMP_SINCE) ? "clamp" : "reserve";
}
