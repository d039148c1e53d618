# LMCache 0.5.6's multiprocess server driven by its own client: the ServerBenchClient behind
# `lmcache bench server` (CPU KV tensors, the engine-driven transfer path vLLM's CPU workers use),
# over ZMQ to `lmcache server`, whose RESP L2 adapter points at switchyard cache-server.
# Phase 1 stores sequences [0, n) (each CHUNKS_PER_SEQ chunks), waits until the cache server has
# received them all (the MP server writes L1 to L2 in the background), clears LMCache's L1 (its HTTP
# API), then reads them all back into zeroed KV blocks and compares per-chunk checksums with the ones
# taken before the store: every chunk comes back from the L2, over RESP. Phase 2 stores sequences
# [n, 2n), enough to overflow the cache server's budget, clears L1 again, then looks the first
# sequences up (evicted: misses) and reads the newest back.
# Usage: lmcache_mp.py RPC_URL HTTP_URL CACHE_METRICS_URL CHUNK_TOKENS CHUNKS_PER_SEQ SEQS SHAPE OUT
import json
import sys
import time
import urllib.request

from lmcache.cli.commands.bench.server_bench.client import ServerBenchClient
from lmcache.cli.commands.bench.server_bench.config import BenchConfig

import lmcache_bench_ops as ops

rpc_url, http_url, metrics_url, chunk_tokens, per_seq, seqs, shape, out = sys.argv[1:9]
chunk_tokens, per_seq, seqs = int(chunk_tokens), int(per_seq), int(seqs)

logs = []
config = BenchConfig(
    rpc_url=rpc_url,
    http_url=http_url,
    mode="cpu",
    transfer_mode="engine_driven",
    tp_size=1,
    use_mla=False,
    # the bench prepends one sequence token: this many make exactly per_seq full chunks
    num_tokens=chunk_tokens * per_seq,
    kvcache_shape_spec=shape,
    num_blocks=1024,
    block_size=16,
)
client = ServerBenchClient(config, logs.append)
client.start()


def request(seq, kind):
    return ops.request(client, seq, kind)


def store(seq):
    return ops.store(client, seq)


def retrieve(seq):
    return ops.retrieve(client, seq)


def cache_server_puts():
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith('switchyard_cache_requests_total{command="put"}'):
            return int(float(line.split()[-1]))
    return 0


def wait_puts(n, timeout=300):
    end = time.time() + timeout
    while cache_server_puts() < n:
        if time.time() > end:
            raise RuntimeError(f"the cache server received {cache_server_puts()} of {n} chunks")
        time.sleep(0.5)


def clear_l1():
    req = urllib.request.Request(
        http_url + "/cache/clear",
        data=json.dumps({"force": True}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=30).read()


result = {"chunks_per_seq": per_seq, "seqs": seqs}
try:
    before = {}
    cold_hits = 0
    stored_ok = 0
    for s in range(seqs):
        h, sums, ok = store(s)
        cold_hits += h
        stored_ok += ok
        before[s] = sums
    wait_puts(seqs * per_seq)
    clear_l1()
    identical = 0
    warm_hits = 0
    retrieved_ok = 0
    for s in range(seqs):
        h, sums, ok = retrieve(s)
        warm_hits += h
        retrieved_ok += ok
        if sums is not None:
            identical += sum(1 for a, b in zip(sums, before[s]) if a == b)
    result["phase1"] = {
        "chunks": seqs * per_seq,
        "cold_hits": cold_hits,
        "stores_ok": stored_ok,
        "warm_hits": warm_hits,
        "retrieves_ok": retrieved_ok,
        "identical": identical,
    }
    # phase 2: as many again, past the cache server's budget
    before2 = {}
    for s in range(seqs, 2 * seqs):
        _h, sums, _ok = store(s)
        before2[s] = sums
    wait_puts(2 * seqs * per_seq)
    clear_l1()
    first_hits = 0
    for s in range(5):
        r = request(s, "probe")
        first_hits += client.lookup(r).hit_chunks
        client.end_session(r)
    last = list(range(2 * seqs - 5, 2 * seqs))
    last_identical = 0
    last_hits = 0
    for s in last:
        h, sums, _ok = retrieve(s)
        last_hits += h
        if sums is not None:
            last_identical += sum(1 for a, b in zip(sums, before2[s]) if a == b)
    result["phase2"] = {
        "chunks": seqs * per_seq,
        "first_probe_hits": first_hits,
        "first_probe_chunks": 5 * per_seq,
        "last_hits": last_hits,
        "last_identical": last_identical,
        "last_chunks": len(last) * per_seq,
    }
finally:
    client.close()
    result["log_tail"] = logs[-20:]
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
