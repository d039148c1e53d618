# LMCache 0.5.x's own lm:// client, LMCServerConnector, driven without an engine: it is given a socket to
# our cache server and LMCache's own ad-hoc CPU allocator. PUTs KV-shaped chunks, then checks EXIST and that
# GET returns them byte for byte (and a miss as None). Writes a JSON summary to argv[3].
import asyncio
import json
import sys
import types

import torch
from lmcache.utils import CacheEngineKey
from lmcache.v1.config import LMCacheEngineConfig
from lmcache.v1.memory_allocators.ad_hoc_memory_allocator import AdHocMemoryAllocator
from lmcache.v1.memory_management import MemoryFormat
from lmcache.v1.metadata import LMCacheMetadata
from lmcache.v1.storage_backend.connector.lm_connector import LMCServerConnector

CHUNK = 256
SHAPE = torch.Size([2, 4, CHUNK, 128])  # [K/V, layers, tokens, heads × head_dim]


def main():
    host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    cfg = LMCacheEngineConfig.from_env()
    md = LMCacheMetadata(
        model_name="interop/model", world_size=1, local_world_size=1, worker_id=0, local_worker_id=0,
        kv_dtype=torch.bfloat16, kv_shape=(4, 2, CHUNK, 1, 128),
    )
    alloc = AdHocMemoryAllocator("cpu")
    backend = types.SimpleNamespace(
        config=cfg, metadata=md,
        allocate=lambda shape, dtype, fmt=MemoryFormat.KV_2LTD: alloc.allocate(shape, dtype, fmt),
    )
    loop = asyncio.new_event_loop()
    conn = LMCServerConnector(host, port, loop, backend)
    gen = torch.Generator().manual_seed(7)
    sent = {}
    for i in range(8):
        key = CacheEngineKey("interop/model", 1, 0, 0x1000 + i, torch.bfloat16)
        obj = alloc.allocate(SHAPE, torch.bfloat16, MemoryFormat.KV_2LTD)
        obj.tensor.view(torch.uint8).view(-1).copy_(
            torch.randint(0, 256, (obj.tensor.numel() * 2,), dtype=torch.uint8, generator=gen)
        )
        sent[key] = bytes(obj.byte_array)
        loop.run_until_complete(conn.put(key, obj))
    result = {"chunks": len(sent), "chunk_bytes": len(next(iter(sent.values()))), "exists": 0, "identical": 0}
    for key, data in sent.items():
        if loop.run_until_complete(conn.exists(key)):
            result["exists"] += 1
        got = loop.run_until_complete(conn.get(key))
        if got is not None and bytes(got.byte_array) == data and got.get_shape() == SHAPE:
            result["identical"] += 1
    absent = CacheEngineKey("interop/model", 1, 0, 0xDEAD, torch.bfloat16)
    result["absent_exists"] = loop.run_until_complete(conn.exists(absent))
    result["absent_get_is_none"] = loop.run_until_complete(conn.get(absent)) is None
    loop.run_until_complete(conn.close())
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
