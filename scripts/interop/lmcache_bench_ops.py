# One store and one read-back through LMCache's own MP client (the ServerBenchClient behind `lmcache
# bench server`), shared by the interop scripts that drive LMCache's multiprocess server
# (lmcache_mp.py: its L2 on switchyard cache-server; lmcache_valkey.py: its L2 on a Valkey Cluster).
import time


def request(client, seq, kind):
    # an id of its own per call: a read-back after a failover must not be taken for a retry
    return client.create_request(seq, request_id=f"req-{seq}-{kind}-{time.monotonic_ns()}", request_kind=kind)


def store(client, seq):
    """LOOKUP (a cold miss), checksums of the blocks about to be stored, STORE."""
    r = request(client, seq, "cold")
    look = client.lookup(r)
    sums = client.compute_checksums(r, start_token=0, token_count=r.num_full_tokens)
    st = client.store(r, start_token=0, token_count=r.num_full_tokens)
    client.end_session(r)
    return look.hit_chunks, sums, bool(st and st.succeeded)


def retrieve(client, seq):
    """LOOKUP (prefetching from L2 into L1), zero the blocks, RETRIEVE, checksums after."""
    r = request(client, seq, "warm")
    look = client.lookup(r)
    hit = look.hit_chunks * r.chunk_size
    sums = None
    ok = True
    if hit > 0:
        client.zero_destination(r, start_token=0, token_count=hit)
        rt = client.retrieve(r, start_token=0, token_count=hit)
        ok = bool(rt and rt.succeeded)
        sums = client.compute_checksums(r, start_token=0, token_count=hit)
    client.end_session(r)
    return look.hit_chunks, sums, ok
