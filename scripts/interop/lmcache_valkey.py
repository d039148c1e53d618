# LMCache 0.5.6's multiprocess server, its L2 a Valkey/Redis Cluster through LMCache's valkey adapter
# in cluster mode, driven by LMCache's own MP client (the ServerBenchClient behind `lmcache bench
# server`, the engine-driven transfer path vLLM's CPU workers use). Stores SEQS sequences, waits until
# the cluster's primaries hold every chunk, records how many each primary holds, clears LMCache's L1
# and reads everything back from the cluster into zeroed KV blocks (per-chunk checksums against the
# ones taken before the store). Then kills -9 the primary on VICTIM_PORT, reads back while the cluster
# fails over (during) and once it is whole again (after): every chunk is a hit with the stored bytes or
# a miss, never other bytes.
# Usage: lmcache_valkey.py RPC_URL HTTP_URL CLI HOST PORTS VICTIM_PORT CHUNK_TOKENS CHUNKS_PER_SEQ SEQS SHAPE OUT
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from lmcache.cli.commands.bench.server_bench.client import ServerBenchClient
from lmcache.cli.commands.bench.server_bench.config import BenchConfig

import lmcache_bench_ops as ops

rpc_url, http_url, cli, host, ports, victim, chunk_tokens, per_seq, seqs, shape, out = sys.argv[1:12]
ports = [int(p) for p in ports.split(",")]
victim = int(victim)
chunk_tokens, per_seq, seqs = int(chunk_tokens), int(per_seq), int(seqs)
n = seqs * per_seq

logs = []
client = ServerBenchClient(
    BenchConfig(
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
    ),
    logs.append,
)
client.start()


def redis(port, *args):
    r = subprocess.run([cli, "-h", host, "-p", str(port), *args], capture_output=True, text=True, timeout=10)
    return r.stdout if r.returncode == 0 else ""


def primaries(port):
    """the primaries serving slots, seen from one node: {port: keys}"""
    got = {}
    for line in redis(port, "cluster", "nodes").splitlines():
        f = line.split()
        if len(f) >= 9 and "master" in f[2] and "fail" not in f[2]:
            p = int(f[1].split("@")[0].rsplit(":", 1)[1])
            got[p] = int(redis(p, "dbsize").strip() or 0)
    return got


def request(seq, kind):
    return ops.request(client, seq, kind)


def store(seq):
    return ops.store(client, seq)


def retrieve(seq):
    return ops.retrieve(client, seq)


def clear_l1():
    req = urllib.request.Request(
        http_url + "/cache/clear",
        data=json.dumps({"force": True}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=30).read()


def read_all(before, seq_range):
    hits = identical = wrong = 0
    for s in seq_range:
        h, sums, _ok = retrieve(s)
        hits += h
        if sums is not None:
            same = sum(1 for a, b in zip(sums, before[s]) if a == b)
            identical += same
            wrong += len(sums) - same
    return {"chunks": len(seq_range) * per_seq, "hits": hits, "identical": identical, "wrong": wrong}


result = {"chunks": n}
try:
    before = {}
    cold = ok = 0
    for s in range(seqs):
        h, sums, stored = store(s)
        cold += h
        ok += stored
        before[s] = sums
    result["cold_hits"] = cold
    result["stores_ok"] = ok
    end = time.time() + 300
    while sum(primaries(ports[0]).values()) < n:
        if time.time() > end:
            raise RuntimeError(f"the cluster's primaries hold {primaries(ports[0])} of {n} chunks")
        time.sleep(0.5)
    result["keys_per_primary"] = primaries(ports[0])
    clear_l1()
    result["before"] = read_all(before, range(seqs))

    # kill -9 the victim primary, then read while the cluster fails over and once it is whole again
    pid = int(next(l for l in redis(victim, "info", "server").splitlines() if l.startswith("process_id:")).split(":")[1])
    survivor = next(p for p in ports if p != victim)
    os.kill(pid, signal.SIGKILL)
    t0 = time.time()
    during = {"chunks": 0, "hits": 0, "identical": 0, "wrong": 0, "rounds": 0}
    while True:
        now = primaries(survivor)
        whole = victim not in now and len(now) == 3 and "cluster_state:ok" in redis(survivor, "cluster", "info")
        if whole or time.time() - t0 > 120:
            break
        clear_l1()
        r = read_all(before, range(0, seqs, max(1, seqs // 10)))
        for k in ("chunks", "hits", "identical", "wrong"):
            during[k] += r[k]
        during["rounds"] += 1
    result["failover_s"] = round(time.time() - t0, 2)
    result["failed_over"] = whole
    result["during"] = during
    result["primaries_after"] = primaries(survivor)
    clear_l1()
    result["after"] = read_all(before, range(seqs))
finally:
    client.close()
    result["log_tail"] = logs[-20:]
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
