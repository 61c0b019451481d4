#!/usr/bin/env python3
"""Traffic probe the datapath checks run inside a node (standard library only: node python3).

The checks start it with `nsenter -t <pid> -n` in a nested container's network namespace, so it
sends and receives with that container's address, routes and MTU; or in the node's own.

    probe.py serve PORT [--seconds N]     TCP: answer every connection with "peer <address>"
    probe.py connect HOST PORT            TCP: print the server's answer (exit 1: no answer)
    probe.py ping HOST SIZE               ICMP echo, SIZE bytes of IP packet, DF set (exit 1:
                                          no reply, or refused for its size)

Every wait is bounded: --timeout (default 3 s) for connect and ping, --seconds (default 1800)
for a server, which then exits by itself.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import time

IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2  # linux/in.h: set DF, never fragment locally
ICMP_ECHO, ICMP_ECHOREPLY, ICMP_UNREACH, FRAG_NEEDED = 8, 0, 3, 4
IP_HEADER, ICMP_HEADER = 20, 8


def serve(port: int, seconds: float) -> int:
    stop_at = time.monotonic() + seconds
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", port))
        server.listen(16)
        while time.monotonic() < stop_at:
            server.settimeout(max(0.1, stop_at - time.monotonic()))
            try:
                conn, (address, _) = server.accept()
            except TimeoutError:
                break
            with conn:
                conn.sendall(f"peer {address}\n".encode())
    return 0


def connect(host: str, port: int, timeout: float) -> int:
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            answer = conn.recv(256).decode().strip()
    except OSError as exc:
        print(f"connect {host}:{port}: {exc}")
        return 1
    print(answer)
    return 0 if answer.startswith("peer ") else 1


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(host: str, size: int, timeout: float) -> int:
    payload = bytes(max(0, size - IP_HEADER - ICMP_HEADER))
    ident, seq = os.getpid() & 0xFFFF, 1
    header = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", ICMP_ECHO, 0, _checksum(header + payload), ident, seq)
    packet += payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        try:
            s.sendto(packet, (host, 0))
        except OSError as exc:  # EMSGSIZE: larger than the route's MTU, refused before sending
            print(f"ping {host} size {size}: {exc.strerror or exc}")
            return 1
        stop_at = time.monotonic() + timeout
        while time.monotonic() < stop_at:
            s.settimeout(max(0.05, stop_at - time.monotonic()))
            try:
                data, (source, _) = s.recvfrom(65535)
            except TimeoutError:
                break
            ihl = (data[0] & 0x0F) * 4
            kind, code = data[ihl], data[ihl + 1]
            if kind == ICMP_ECHOREPLY and source == host:
                got_ident, got_seq = struct.unpack("!HH", data[ihl + 4 : ihl + 8])
                if (got_ident, got_seq) == (ident, seq):
                    print(f"reply from {source}: {len(data)} bytes")
                    return 0
            if kind == ICMP_UNREACH and code == FRAG_NEEDED:
                mtu = struct.unpack("!H", data[ihl + 6 : ihl + 8])[0]
                print(f"ping {host} size {size}: fragmentation needed (mtu {mtu}) from {source}")
                return 1
    print(f"ping {host} size {size}: no reply within {timeout:g}s")
    return 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="probe.py")
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("serve")
    s.add_argument("port", type=int)
    s.add_argument("--seconds", type=float, default=1800.0)
    c = sub.add_parser("connect")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--timeout", type=float, default=3.0)
    g = sub.add_parser("ping")
    g.add_argument("host")
    g.add_argument("size", type=int)
    g.add_argument("--timeout", type=float, default=3.0)
    args = p.parse_args(argv)
    if args.what == "serve":
        return serve(args.port, args.seconds)
    if args.what == "connect":
        return connect(args.host, args.port, args.timeout)
    return ping(args.host, args.size, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
