// vLLM's and LMCache's defaults that more than one part of the stack must agree on, each said once with
// the upstream file it comes from: the sim and the engine model start from them, the router, the fleet
// simulator and the planner assume them of engines they are not told otherwise about.

/**
 * Tokens per KV block: what a GPU engine takes without `--block-size` (vLLM's
 * `CacheConfig.DEFAULT_BLOCK_SIZE`, vllm/config/cache.py; set by vllm/platforms/cuda.py).
 */
export const VLLM_BLOCK_SIZE = 16;

/** Share of GPU memory an engine claims (`--gpu-memory-utilization`; vllm/config/cache.py). */
export const VLLM_GPU_MEMORY_UTILIZATION = 0.9;

/** `vllm serve`'s HTTP port (`--port`; vllm/entrypoints/openai/cli_args.py). */
export const VLLM_PORT = 8000;

// The block-hash seed and extra-key form differ by release: src/protocol/vllm-releases.ts says them.

/** Tokens per LMCache chunk (`chunk_size`, LMCache's default; lmcache/v1/config.py). */
export const LMCACHE_CHUNK_TOKENS = 256;

/**
 * `switchyard cache-server`'s `lm://` port: this stack's choice (LMCache's `remote_url: lm://HOST:PORT`
 * names the port and assumes none), which `switchyard up`, the planner's engine settings and the chart
 * all reach.
 */
export const CACHE_SERVER_PORT = 65432;
