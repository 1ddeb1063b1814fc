#!/usr/bin/env python3
"""Seeds for the netlink and nft fuzz targets: real kernel replies.

Run inside a network namespace that holds something worth dumping (a bridge,
veths, addresses, routes, rules, a qdisc, nftables tables), as
`ip netns exec <ns> python3 fuzz/seedgen.py fuzz/seeds`; each datagram the
kernel answers with becomes one seed file. scripts/fuzz-smoke.sh --reseed
builds such a namespace with cnibox itself and runs this.
"""
import os, socket, struct, sys

NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 1, 4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK = 270, 10, 11

def sock(proto):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto)
    s.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
    s.bind((0, 0))
    return s

def ask(s, ty, flags, body, seq):
    s.send(struct.pack("=LHHLL", 16 + len(body), ty, flags, seq, 0) + body)
    out = []
    while True:
        d = s.recv(1 << 16)
        out.append(d)
        off, done = 0, False
        while off + 16 <= len(d):
            ln, t = struct.unpack_from("=LH", d, off)
            if t in (NLMSG_DONE, NLMSG_ERROR) or ln < 16:
                done = True
            off += (ln + 3) & ~3
        if done or not flags & NLM_F_DUMP:
            return out

def main(root):
    seeds = {"netlink": [], "nft": []}
    r = sock(0)
    for i, (ty, fam, hdr) in enumerate([(18, 0, 16), (22, 0, 8), (26, 2, 12), (26, 10, 12), (34, 2, 12), (38, 0, 20)]):
        seeds["netlink"] += ask(r, ty, NLM_F_REQUEST | NLM_F_DUMP, bytes([fam]) + bytes(hdr - 1), 10 + i)
    # An error with extended ack: a link of an unknown kind.
    kind = b"nosuchkind\0"
    linkinfo = struct.pack("=HH", 4 + 4 + len(kind) + 1, 18) + struct.pack("=HH", 4 + len(kind), 1) + kind + b"\0"
    name = b"x0\0\0"
    body = bytes(16) + struct.pack("=HH", 4 + 3, 3) + name + linkinfo
    seeds["netlink"] += ask(r, 16, NLM_F_REQUEST | NLM_F_ACK | 0x400 | 0x200, body, 99)
    n = sock(12)
    for i, ty in enumerate([1, 4, 7, 16]):  # GETTABLE, GETCHAIN, GETRULE, GETGEN
        seeds["nft"] += ask(n, (10 << 8) | ty, NLM_F_REQUEST | (NLM_F_DUMP if ty != 16 else 0), bytes(4), 20 + i)
    for target, datagrams in seeds.items():
        d = os.path.join(root, target)
        os.makedirs(d, exist_ok=True)
        for i, b in enumerate(datagrams):
            with open(os.path.join(d, "kernel-%02d" % i), "wb") as f:
                f.write(b)
        print("%s: %d seeds" % (target, len(datagrams)))

main(sys.argv[1] if len(sys.argv) > 1 else "fuzz/seeds")
