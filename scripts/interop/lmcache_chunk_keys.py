# LMCache 0.5.x's own chunk keys for vLLM with pre_caching_hash_algorithm sha256_cbor: the cases of
# test/fixtures/vectors/lmcache-chunk-keys.json, computed by LMCache's ChunkedTokenDatabase with vLLM's
# hash functions (vllm.utils.hashing, vllm.v1.core.kv_cache_utils.init_none_hash) importable.
# Writes the vectors as JSON to the file named by the first argument (vLLM logs to stdout). Run by
# scripts/interop.mjs inside the peers' venv.
import json
import os
import random
import sys

import torch
import vllm  # noqa: F401  (LMCache looks vLLM's hash functions up; without vLLM it falls back to hash())
from lmcache.v1.config import LMCacheEngineConfig
from lmcache.v1.metadata import LMCacheMetadata
from lmcache.v1 import token_database
from lmcache.v1.token_database import ChunkedTokenDatabase

DTYPES = {"bfloat16": torch.bfloat16, "half": torch.float16}


def tokens(n, seed, vocab):
    r = random.Random(seed)
    return [r.randrange(vocab) for _ in range(n)]


CASES = [
    dict(name="llama_tp1_seed0", python_hash_seed="0", chunk_size=256, model_name="meta-llama/Llama-3.1-8B-Instruct",
         world_size=1, dtype="bfloat16", token_ids=tokens(600, 1, 128256)),
    dict(name="llama_tp2_seed0", python_hash_seed="0", chunk_size=256, model_name="meta-llama/Llama-3.1-8B-Instruct",
         world_size=2, dtype="bfloat16", token_ids=tokens(530, 2, 128256)),
    dict(name="qwen_half_chunk16_seed42", python_hash_seed="42", chunk_size=16, model_name="Qwen/Qwen2.5-0.5B-Instruct",
         world_size=1, dtype="half", token_ids=tokens(70, 3, 151936)),
    dict(name="small_ids_seed7", python_hash_seed="7", chunk_size=4, model_name="m",
         world_size=1, dtype="bfloat16", token_ids=[0, 1, 2, 23, 24, 255, 256, 65535, 65536, 1, 2, 3]),
]


def main():
    out = []
    for c in CASES:
        os.environ["PYTHONHASHSEED"] = c["python_hash_seed"]
        os.environ["LMCACHE_PRE_CACHING_HASH_ALGORITHM"] = "sha256_cbor"
        os.environ["LMCACHE_CHUNK_SIZE"] = str(c["chunk_size"])
        cfg = LMCacheEngineConfig.from_env()
        keys = []
        none_hash = None
        for worker in range(c["world_size"]):
            md = LMCacheMetadata(
                model_name=c["model_name"], world_size=c["world_size"], local_world_size=c["world_size"],
                worker_id=worker, local_worker_id=worker, kv_dtype=DTYPES[c["dtype"]],
                kv_shape=(2, 2, c["chunk_size"], 1, 64),
            )
            db = ChunkedTokenDatabase(cfg, md)
            none_hash = token_database.NONE_HASH
            for start, end, key in db.process_tokens(tokens=c["token_ids"]):
                keys.append(dict(start=start, end=end, worker_id=worker, key=key.to_string()))
        out.append(dict(c, none_hash=str(none_hash), keys=keys))
    what = (
        "LMCache 0.5.x chunk keys (CacheEngineKey.to_string) for vLLM with pre_caching_hash_algorithm "
        "sha256_cbor: computed by LMCache's own ChunkedTokenDatabase.process_tokens with vLLM's hash "
        "functions importable. NONE_HASH = first 8 bytes (big-endian) of vLLM's sha256_cbor(PYTHONHASHSEED); "
        "chunk hash = first 8 bytes of sha256(cbor2.dumps((prefix, tuple(chunk_tokens), ()), canonical=True)); "
        "full chunks only (save_unfull_chunk off, LMCache's default)."
    )
    lines = ",\n".join("  " + json.dumps(c, separators=(",", ":")) for c in out)
    with open(sys.argv[1], "w") as f:
        f.write('{"what": ' + json.dumps(what) + ',\n "cases": [\n' + lines + "\n]}\n")


if __name__ == "__main__":
    main()
