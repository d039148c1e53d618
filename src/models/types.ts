// What a GPU and a model are to every layer that sizes or times an engine: the figures the capacity
// and timing models need, each with its source. Plain values, read by the engine model, the sim, the
// router (context lengths, tokenizer families), routing's predictive policies, the fleet simulator
// and the planner.

export interface GpuProfile {
  /** short lowercase id used by --gpu: h100, h200, a100, l40s, l4 */
  id: string;
  name: string;
  hbmBytes: number;
  /** dense bf16 FLOP/s (no sparsity) */
  bf16Flops: number;
  /** HBM bandwidth, bytes/s */
  hbmBandwidth: number;
  /** host<->GPU link bandwidth one way, bytes/s (PCIe or C2C) */
  hostLinkBandwidth: number;
  /** GPU<->GPU bandwidth one way for tensor parallel all-reduce, bytes/s (NVLink); PCIe figure when absent */
  interconnectBandwidth?: number;
  /**
   * the fixed per-step cost on this machine (scheduling, input prep, sampling), seconds; the engine
   * model's STEP_OVERHEAD_S when absent (a `switchyard calibrate` fit sets it)
   */
  stepOverheadS?: number;
  /**
   * the cost each sequence in a step adds beside the forward pass (its input preparation, sampling and
   * output processing), seconds; none when absent. A GPU hides it behind the forward pass; on a CPU
   * engine it is a large part of a decode step (`switchyard calibrate` fits it)
   */
  seqOverheadS?: number;
  /**
   * the cost of a prompt token's attention FLOP (QKᵀ and AV over its context, in a prefill) relative to
   * a dense one, on this machine's prefill attention kernel; 1 when absent. A CPU engine's prefill
   * attention runs far below its matrix multiplies' rate, which bends its prefill time upward with the
   * prompt's length (`switchyard calibrate` fits it); decode attention is another kernel, not scaled
   */
  prefillAttentionCostFactor?: number;
  /**
   * the cost each sequence that prefills in a step adds beside the forward pass (a new request's input
   * preparation, its attention metadata), seconds; none when absent (`switchyard calibrate` fits it)
   */
  prefillSeqOverheadS?: number;
  source: string;
}

export interface ModelProfile {
  /** Hugging Face id as given to `vllm serve` */
  id: string;
  aliases: string[];
  params: number;
  /**
   * parameters one token passes through, when fewer than params (a mixture of experts: only
   * num_experts_per_tok experts run per token); compute follows this, weight memory follows params
   */
  activeParams?: number;
  layers: number;
  hiddenSize: number;
  numHeads: number;
  kvHeads: number;
  headDim: number;
  /** bytes per weight and KV element (2 for bf16/fp16) */
  dtypeBytes: number;
  dtype: string;
  maxContext: number;
  /** the real vocabulary size of the model (token ids accepted below this) */
  vocabSize: number;
  /** which tokenizer family src/tokenizer uses for it */
  tokenizer: string;
  source: string;
}
