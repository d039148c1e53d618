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

/**
 * The PYTHONHASHSEED that engines and router assume when none is set. vLLM seeds its block hashes'
 * NONE_HASH from PYTHONHASHSEED and draws a random one when it is unset (`init_none_hash`,
 * vllm/v1/core/kv_cache_utils.py), so a router can predict block hashes only where it is pinned; the
 * production stack's chart pins it, and so does this stack, to "0".
 */
export const DEFAULT_HASH_SEED = "0";

/** Tokens per LMCache chunk (`chunk_size`, LMCache's default; lmcache/v1/config.py). */
export const LMCACHE_CHUNK_TOKENS = 256;

/**
 * `switchyard cache-server`'s `lm://` port: this stack's choice (LMCache's `remote_url: lm://HOST:PORT`
 * names the port and assumes none), which `switchyard up`, the planner's engine settings and the chart
 * all reach.
 */
export const CACHE_SERVER_PORT = 65432;
