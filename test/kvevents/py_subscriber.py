#!/usr/bin/env python3
"""A vLLM-style KV-event consumer using only pyzmq and msgpack, for interop tests.

Usage: py_subscriber.py ENDPOINT TOPIC COUNT [TIMEOUT_S]
Prints one JSON line per received message: {"topic", "seq", "batch"}, where batch is the payload as
msgpack decodes it (vLLM's array form), with integers beyond 2^53 written as decimal strings (the
shared vectors' convention) so that JavaScript can read them exactly. Exits 0 after COUNT messages,
2 on timeout.
"""
import json
import sys
import time

import msgpack
import zmq

SAFE = 2**53


def jsonable(x):
    if isinstance(x, bool) or x is None:
        return x
    if isinstance(x, int):
        return str(x) if abs(x) > SAFE else x
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, bytes):
        return {"bytes": x.hex()}
    return x


def main():
    endpoint, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timeout_s = float(sys.argv[4]) if len(sys.argv) > 4 else 20.0
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt_string(zmq.SUBSCRIBE, topic)
    sub.connect(endpoint)
    print(json.dumps({"ready": True}), flush=True)
    deadline = time.monotonic() + timeout_s
    got = 0
    while got < count:
        left = deadline - time.monotonic()
        if left <= 0 or not sub.poll(int(left * 1000)):
            print(json.dumps({"error": "timeout", "received": got}), flush=True)
            sys.exit(2)
        frames = sub.recv_multipart()
        t, seq, payload = frames
        batch = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        print(json.dumps({"topic": t.decode(), "seq": int.from_bytes(seq, "big"), "batch": jsonable(batch)}), flush=True)
        got += 1
    sub.close()


if __name__ == "__main__":
    main()
