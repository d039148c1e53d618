#!/usr/bin/env python3
"""A vLLM-shaped KV-event publisher using only pyzmq and msgpack, for interop tests.

Usage: py_publisher.py TOPIC [--replay-with-topic]
Binds an XPUB (wire-compatible with vLLM's PUB; it lets us wait for the subscription instead of
sleeping) and a replay ROUTER on ephemeral loopback ports, prints {"endpoint", "replay"} as a JSON
line, waits for a subscriber, then publishes seqs 0, 1 and 3 (2 is "lost" live but replayable) in the
shapes vLLM has shipped: array form, map form, raw 32-byte digests, extra trailing fields, no
data_parallel_rank. It answers replay requests as vLLM does until stdin closes or 30 s pass.
"""
import json
import sys
import time

import msgpack
import zmq


def H(i):
    return (1 << 63) + i


def digest(h):
    return b"\xab" * 24 + h.to_bytes(8, "big")


BATCHES = {
    0: [1763700000.5, [["BlockStored", [H(0), H(1)], None, list(range(32)), 16, None, "GPU"]], 0],
    1: [
        1763700001.0,
        [
            {
                "type": "BlockStored",
                "block_hashes": [H(2)],
                "parent_block_hash": H(1),
                "token_ids": list(range(32, 48)),
                "block_size": 16,
                "lora_id": None,
                "medium": "GPU",
                "lora_name": None,
            }
        ],
        0,
    ],
    2: [1763700001.5, [["BlockRemoved", [digest(H(0))], "GPU"]], 0],
    3: [1763700002.0, [["BlockRemoved", [H(1)], "GPU", 1, "LOCAL", "newer"], ["AllBlocksCleared"]]],
}
LIVE = [0, 1, 3]


def main():
    topic = sys.argv[1].encode()
    with_topic = "--replay-with-topic" in sys.argv
    payloads = {s: msgpack.packb(b, use_bin_type=True) for s, b in BATCHES.items()}
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind("tcp://127.0.0.1:*")
    replay = ctx.socket(zmq.ROUTER)
    replay.setsockopt(zmq.LINGER, 0)
    replay.bind("tcp://127.0.0.1:*")
    print(
        json.dumps(
            {
                "endpoint": pub.getsockopt_string(zmq.LAST_ENDPOINT),
                "replay": replay.getsockopt_string(zmq.LAST_ENDPOINT),
            }
        ),
        flush=True,
    )
    poller = zmq.Poller()
    poller.register(pub, zmq.POLLIN)
    poller.register(replay, zmq.POLLIN)
    poller.register(sys.stdin, zmq.POLLIN)
    deadline = time.monotonic() + 30
    sent = False
    while time.monotonic() < deadline:
        events = dict(poller.poll(200))
        if pub in events:
            msg = pub.recv()
            if msg[:1] == b"\x01" and not sent:
                for s in LIVE:
                    pub.send_multipart([topic, s.to_bytes(8, "big"), payloads[s]])
                sent = True
        if replay in events:
            ident, _empty, start = replay.recv_multipart()
            first = int.from_bytes(start, "big")
            for s in sorted(payloads):
                if s >= first:
                    head = [ident, b"", topic] if with_topic else [ident, b""]
                    replay.send_multipart(head + [s.to_bytes(8, "big"), payloads[s]])
            replay.send_multipart([ident, b"", b"\xff" * 8, b""])
        if sys.stdin.fileno() in events or sys.stdin in events:
            if not sys.stdin.readline():
                break
    pub.close()
    replay.close()


if __name__ == "__main__":
    main()
