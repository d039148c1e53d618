// The roofline step-time model: one forward pass over THIS step's batch, never per request.
//   compute = FLOPs / (peak × COMPUTE_EFFICIENCY)
//   memory  = bytes / (HBM bandwidth × MEMORY_EFFICIENCY)
//   step    = max(compute, memory) + TP all-reduce time + STEP_OVERHEAD + sequences × the profile's
//             per-sequence cost + prefilling sequences × its per-prefill cost (both none unless
//             calibrated) + LoRA's addon per distinct adapter + offload, external and adapter load
//             time; prompt tokens' attention FLOPs are scaled by
//             the profile's prefill attention cost factor (1 unless calibrated)
// Every constant and its source is listed in docs/engine-model.md.
import type { EngineConfig } from "./types.js";
import { kvBytesPerToken } from "../models/kv-shape.js";
import { LORA_LAYER_OVERHEAD_S, LORA_SEGMENT_S } from "./lora.js";

/** fraction of dense peak FLOP/s a serving forward pass sustains (MFU); see docs/engine-model.md */
export const COMPUTE_EFFICIENCY = 0.5;
/** fraction of HBM bandwidth achieved: an H100 SXM device-to-device copy reaches 3.0 of 3.35 TB/s */
export const MEMORY_EFFICIENCY = 0.9;
/** fixed per-step cost not hidden behind the GPU: scheduling, input prep, sampling, output processing */
export const STEP_OVERHEAD_S = 0.002;
/** latency of one tensor-parallel all-reduce (vLLM's custom all-reduce on NVLink, small messages) */
export const ALL_REDUCE_LATENCY_S = 8e-6;
/** fallback GPU-to-GPU bandwidth per direction when the profile has none (PCIe Gen4 practical) */
export const DEFAULT_INTERCONNECT_BPS = 25e9;

export interface StepWork {
  /** tokens computed this step that are prompt (or recomputed) tokens */
  prefillTokens: number;
  /** sequences producing their next token from one new token */
  decodeSeqs: number;
  /** Σ over every computed token of the context it attends to (itself included) */
  attentionContext: number;
  /** of attentionContext, the prompt (prefill) tokens' part; optional: none when absent */
  prefillAttentionContext?: number;
  /** Σ over scheduled sequences of KV tokens read (their context before this step) */
  kvReadTokens: number;
  /** bytes per GPU loaded from the CPU offload tier before the forward pass */
  loadBytesPerGpu: number;
  /**
   * seconds of transfers at other rates on the step's critical path: external-tier loads and blocking
   * offload stores (LMCache and native); optional so that callers of the loads-only shape keep working
   */
  extraTransferSeconds?: number;
  /**
   * sequences scheduled this step (decoding or prefilling); optional: callers that time one prefill
   * and a decode batch leave it to be counted as the decode sequences plus one for any prefill
   */
  seqs?: number;
  /** distinct LoRA adapters in the batch (their addon kernels' segments); none when absent */
  loraAdapters?: number;
  /** bytes of those adapters' weights, read from HBM once per step */
  loraWeightBytes?: number;
}

export interface StepTime {
  duration: number;
  compute: number;
  memory: number;
  comm: number;
  transfer: number;
}

export class StepTimer {
  private readonly flopsPerToken: number;
  private readonly attnFlopsPerCtx: number;
  private readonly weightBytes: number;
  private readonly kvBytesPerToken: number;
  private readonly peak: number;
  private readonly bw: number;
  private readonly tp: number;
  private readonly allReduceBytesPerToken: number;
  private readonly interconnect: number;
  private readonly hostLink: number;
  private readonly layers: number;
  private readonly overhead: number;
  private readonly seqOverhead: number;
  /** the extra cost of a prefill attention FLOP beyond a dense one's (profile's factor − 1) */
  private readonly prefillAttnExtra: number;
  private readonly prefillSeqOverhead: number;

  constructor(config: EngineConfig) {
    const m = config.model;
    this.tp = config.tensorParallelSize;
    this.flopsPerToken = (2 * (m.activeParams ?? m.params)) / this.tp;
    // QKᵀ and AV: 2 FLOPs per multiply-add each, over the query heads (= hidden for most models)
    this.attnFlopsPerCtx = (4 * m.layers * m.numHeads * m.headDim) / this.tp;
    this.weightBytes = (m.params * m.dtypeBytes) / this.tp;
    this.kvBytesPerToken = kvBytesPerToken(m, this.tp);
    this.peak = config.gpu.bf16Flops * COMPUTE_EFFICIENCY;
    this.bw = config.gpu.hbmBandwidth * MEMORY_EFFICIENCY;
    this.layers = m.layers;
    // two all-reduces of the hidden state per layer; a ring moves 2(tp-1)/tp of the message per GPU
    this.allReduceBytesPerToken =
      2 * m.layers * m.hiddenSize * m.dtypeBytes * ((2 * (this.tp - 1)) / this.tp);
    this.interconnect = config.gpu.interconnectBandwidth ?? DEFAULT_INTERCONNECT_BPS;
    this.hostLink = config.gpu.hostLinkBandwidth;
    // a calibrated profile carries its machine's own
    this.overhead = config.gpu.stepOverheadS ?? STEP_OVERHEAD_S;
    this.seqOverhead = config.gpu.seqOverheadS ?? 0;
    this.prefillAttnExtra = (config.gpu.prefillAttentionCostFactor ?? 1) - 1;
    this.prefillSeqOverhead = config.gpu.prefillSeqOverheadS ?? 0;
  }

  time(w: StepWork): StepTime {
    const tokens = w.prefillTokens + w.decodeSeqs;
    const attention = w.attentionContext + this.prefillAttnExtra * (w.prefillAttentionContext ?? 0);
    const flops = this.flopsPerToken * tokens + this.attnFlopsPerCtx * attention;
    const compute = flops / this.peak;
    const bytes = this.weightBytes + this.kvBytesPerToken * (w.kvReadTokens + tokens);
    const memory = bytes / this.bw;
    const comm =
      this.tp > 1
        ? 2 * this.layers * ALL_REDUCE_LATENCY_S + (this.allReduceBytesPerToken * tokens) / this.interconnect
        : 0;
    const transfer = w.loadBytesPerGpu / this.hostLink + (w.extraTransferSeconds ?? 0);
    const seqs = w.seqs ?? w.decodeSeqs + (w.prefillTokens > 0 ? 1 : 0);
    // LoRA's addon (Punica's SGMV shrink and expand): a fixed launch cost per layer, a segment per
    // distinct adapter, and the adapters' weights read once; its FLOPs (2 × rank × (in + out) per
    // token and projection) are under 1% of the base model's and are left out
    const n = w.loraAdapters ?? 0;
    const lora =
      n > 0
        ? this.layers * (LORA_LAYER_OVERHEAD_S + n * LORA_SEGMENT_S) +
          (w.loraWeightBytes ?? 0) / this.tp / this.bw
        : 0;
    const prefillSeqs = Math.max(0, seqs - w.decodeSeqs);
    const duration =
      Math.max(compute, memory) +
      comm +
      this.overhead +
      this.seqOverhead * seqs +
      this.prefillSeqOverhead * prefillSeqs +
      lora +
      transfer;
    return { duration, compute, memory, comm, transfer };
  }
}
