# What a real vLLM + LMCache engine would find on a shared server for a prompt: the chunk keys LMCache
# 0.5.x's own ChunkedTokenDatabase computes (pre_caching_hash_algorithm sha256_cbor, vLLM's hash functions
# importable), each asked with LMCache's own LMCServerConnector.exists. Arguments: HOST PORT MODEL SEED
# TOKENS_JSON OUT_JSON. Writes {"keys": n, "found": m, "first_key": ...}.
import asyncio
import json
import os
import sys
import types

import torch
import vllm  # noqa: F401  (LMCache takes its hash functions from vLLM)
from lmcache.v1.config import LMCacheEngineConfig
from lmcache.v1.memory_allocators.ad_hoc_memory_allocator import AdHocMemoryAllocator
from lmcache.v1.memory_management import MemoryFormat
from lmcache.v1.metadata import LMCacheMetadata
from lmcache.v1.storage_backend.connector.lm_connector import LMCServerConnector
from lmcache.v1.token_database import ChunkedTokenDatabase


def main():
    host, port, model, seed, tokens_file, out = sys.argv[1:7]
    os.environ["PYTHONHASHSEED"] = seed
    os.environ["LMCACHE_PRE_CACHING_HASH_ALGORITHM"] = "sha256_cbor"
    cfg = LMCacheEngineConfig.from_env()
    md = LMCacheMetadata(
        model_name=model, world_size=1, local_world_size=1, worker_id=0, local_worker_id=0,
        kv_dtype=torch.bfloat16, kv_shape=(2, 2, cfg.chunk_size, 1, 64),
    )
    db = ChunkedTokenDatabase(cfg, md)
    with open(tokens_file) as f:
        tokens = json.load(f)
    keys = [key for _, _, key in db.process_tokens(tokens=tokens)]
    alloc = AdHocMemoryAllocator("cpu")
    backend = types.SimpleNamespace(
        config=cfg, metadata=md,
        allocate=lambda shape, dtype, fmt=MemoryFormat.KV_2LTD: alloc.allocate(shape, dtype, fmt),
    )
    loop = asyncio.new_event_loop()
    conn = LMCServerConnector(host, int(port), loop, backend)
    found = sum(1 for k in keys if loop.run_until_complete(conn.exists(k)))
    loop.run_until_complete(conn.close())
    with open(out, "w") as f:
        json.dump({"keys": len(keys), "found": found, "first_key": keys[0].to_string() if keys else None}, f)


if __name__ == "__main__":
    main()
