#!/usr/bin/env python3
"""An lm:// client using only the Python standard library, written from the protocol description.

Usage: lm_client.py HOST PORT   -- runs a self-check against a running server and exits 0 on success.
Client header: 9 little-endian int32 [command, length, fmt, dtype, location, shape0..3] + key
(ASCII, right-padded with spaces to 150 bytes). Server header: 9 int32 [code, length, fmt, dtype,
shape0..3, location].
"""
import os
import socket
import struct
import sys

PUT, GET, EXIST, LIST, HEALTH = 1, 2, 3, 4, 5
SUCCESS, FAIL = 200, 400
KEY_BYTES = 150


class LmClient:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _header(self, cmd, key, length=0, fmt=1, dtype=2, location=0, shape=(0, 0, 0, 0)):
        k = key.encode("ascii")
        if len(k) > KEY_BYTES:
            raise ValueError("key too long")
        return struct.pack("<9i", cmd, length, fmt, dtype, location, *shape) + k.ljust(KEY_BYTES, b" ")

    def _recv_exact(self, n):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            r = self.sock.recv_into(view[got:], n - got)
            if r == 0:
                raise ConnectionError("server closed the connection")
            got += r
        return bytes(buf)

    def _reply(self):
        return struct.unpack("<9i", self._recv_exact(36))

    def put(self, key, data, fmt=4, dtype=6, shape=None):
        shape = shape or (len(data), 0, 0, 0)
        self.sock.sendall(self._header(PUT, key, len(data), fmt, dtype, 0, shape))
        self.sock.sendall(data)

    def get(self, key):
        self.sock.sendall(self._header(GET, key))
        code, length, fmt, dtype, s0, s1, s2, s3, _loc = self._reply()
        if code != SUCCESS:
            return None
        return self._recv_exact(length), (fmt, dtype, (s0, s1, s2, s3))

    def exist(self, key):
        self.sock.sendall(self._header(EXIST, key))
        return self._reply()[0] == SUCCESS

    def health(self):
        self.sock.sendall(self._header(HEALTH, ""))
        return self._reply()

    def close(self):
        self.sock.close()


def check(cond, what):
    if not cond:
        print("FAIL: " + what, file=sys.stderr)
        sys.exit(1)
    print("ok: " + what)


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    c = LmClient(host, port)
    check(c.health() == (200, 0, 1, 2, 0, 0, 0, 0, 0), "HEALTH answers 200 with the default header")
    check(c.get("py@absent") is None, "GET miss")
    check(not c.exist("py@absent"), "EXIST miss")
    small = os.urandom(4096)
    c.put("py@small", small, fmt=1, dtype=3, shape=(2, 16, 64, 2))
    got = c.get("py@small")
    check(got is not None and got[0] == small, "GET after PUT on the same connection")
    check(got[1] == (1, 3, (2, 16, 64, 2)), "GET echoes fmt, dtype and shape")
    check(c.exist("py@small"), "EXIST hit")
    big = os.urandom(32 * 1024 * 1024)
    c.put("py@big", big)
    check(c.exist("py@big"), "EXIST after a 32 MiB PUT")
    other = LmClient(host, port)
    got = other.get("py@big")
    check(got is not None and got[0] == big, "32 MiB GET on another connection is byte-identical")
    other.close()
    c.close()
    print("all checks passed")


if __name__ == "__main__":
    main()
