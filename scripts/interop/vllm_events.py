# vLLM's own msgspec classes (vllm.distributed.kv_events, the release installed) against our KV events.
#   vectors FILE OUT      every frame of a vectors file decodes strictly and re-encodes to the same bytes
#   live ENDPOINT N OUT   subscribe to a publisher (OUT.ready says when), decode N batches strictly;
#                         count events by type
import json
import sys
import time

import msgspec
import zmq
from vllm.distributed.kv_events import KVEventBatch

decoder = msgspec.msgpack.Decoder(KVEventBatch)
encoder = msgspec.msgpack.Encoder()


def vectors(path, _out=None):
    with open(path) as f:
        frames = json.load(f)["frames"]
    res = {"frames": len(frames), "identical": 0, "failures": []}
    for fr in frames:
        payload = bytes.fromhex(fr["frames_hex"][2])
        try:
            if encoder.encode(decoder.decode(payload)) == payload:
                res["identical"] += 1
            else:
                res["failures"].append(fr["name"] + ": re-encoded bytes differ")
        except Exception as e:  # noqa: BLE001
            res["failures"].append(f"{fr['name']}: {e}")
    return res


def live(endpoint, n, ready_file, timeout_ms=60000):
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVTIMEO, timeout_ms)
    sub.connect(endpoint)
    time.sleep(0.5)  # the subscription reaches the publisher
    with open(ready_file, "w") as f:
        f.write("ready\n")
    res = {"batches": 0, "events": {}, "failures": [], "group_idx": []}
    while res["batches"] < n:
        try:
            topic, seq, payload = sub.recv_multipart()
        except zmq.Again:
            res["failures"].append("timed out waiting for batches")
            break
        try:
            batch = decoder.decode(payload)
        except Exception as e:  # noqa: BLE001
            res["failures"].append(str(e))
            continue
        res["batches"] += 1
        for ev in batch.events:
            name = type(ev).__name__
            res["events"][name] = res["events"].get(name, 0) + 1
            g = getattr(ev, "group_idx", None)
            if g not in res["group_idx"]:
                res["group_idx"].append(g)
    sub.close(0)
    return res


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "vectors":
        out, res = sys.argv[3], vectors(sys.argv[2], None)
    else:
        out = sys.argv[4]
        res = live(sys.argv[2], int(sys.argv[3]), out + ".ready")
    with open(out, "w") as f:
        json.dump(res, f)
