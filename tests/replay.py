"""A holder of a put's tickets replaying PutFragment after the commit, as a program of its own (the
crash loop forks `dfs` all the time and must not hold gRPC channels itself).

    python3 replay.py METADATA_ADDR TOKEN_FILE CATALOG_DB REMOTE...

For every copy of every fragment of each committed REMOTE, sends a PutFragment of other bytes of
the same size with a valid write ticket (signed, as a plan's would be, from the catalog's master
key, read as an operator could). Prints one line per copy, "<fragment> <node> <STATUS>": a stored
fragment must answer ALREADY_EXISTS (or be unreachable). A put can land only where the fragment is
no longer stored: repairs and rebalancing move copies while this runs, and a copy dropped from a
node may be gone by the time the replay comes. So an OK is looked at again: OK-MOVED when the
catalog no longer lists the copy there (what landed is an orphan the node's next inventory
removes) or the node holds the committed bytes again (a repair made it anew); OK-REPLACED, the
failure, when the catalog lists the copy there and the node holds the replayed bytes. Exit 0
unless a call could not be made at all.
"""

import hashlib
import hmac
import sqlite3
import struct
import sys
import time

import grpcinspect  # first: may re-run this under /usr/bin/python3
import grpc


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def ticket(S, master, op, fragment_id, node_id):
    key = hmac.new(master, b"dfs-node-key-v1\0" + node_id.encode(), hashlib.sha256).digest()
    expires = int(time.time() * 1000) + 3600 * 1000
    canon = b"\0".join([b"dfs-ticket-v1", str(op).encode(), fragment_id[:32].encode(), fragment_id.encode(),
                        node_id.encode(), str(expires).encode()])
    return S("Ticket")(op=op, file_id=fragment_id[:32], fragment_id=fragment_id, node_id=node_id,
                       expires_ms=expires, mac=hmac.new(key, canon, hashlib.sha256).digest())


def main(argv):
    meta, token_file, db_path = argv[1:4]
    with open(token_file) as f:
        token = f.read().strip()
    db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
    master = db.execute("SELECT value FROM secrets WHERE name = 'ticket_master_key'").fetchone()[0]
    db.close()
    # Every dfs server describes both services over reflection.
    mpool = grpcinspect.Reflection(meta).pool_for("dfs.v1.Metadata", "dfs.v1.Storage")
    Get = grpcinspect.message_class(mpool, "dfs.v1.GetFileRequest")

    def S(name):
        return grpcinspect.message_class(mpool, "dfs.v1." + name)
    for remote in argv[4:]:
        try:
            info = grpcinspect.call_unary(meta, mpool, "dfs.v1.Metadata.GetFile", Get(path=remote),
                                          token=token).file
        except grpc.RpcError as e:
            print("%s - %s" % (remote, e.code().name))
            continue
        for frag in info.fragments:
            size = frag.size
            if size == 0 or size > 70000:
                continue  # no other bytes of size 0; small fragments are enough (one message here)
            data = bytes((i * 7 + 1) & 0xFF for i in range(size)) if size else b""
            if crc32c(data) == frag.checksum:
                data = bytes(b ^ 0xFF for b in data)
            for r in frag.replicas:
                try:
                    t = ticket(S, master, 1, frag.fragment_id, r.node_id)
                    h = S("FragmentHeader")(fragment_id=frag.fragment_id, size=size, ticket=t)
                    crcs = [crc32c(data[i:i + 65536]) for i in range(0, len(data), 65536)]
                    msgs = [S("PutFragmentRequest")(header=h, data=data, crc32c=crcs)]
                    with grpc.insecure_channel(r.address) as ch:
                        fn = ch.stream_unary("/dfs.v1.Storage/PutFragment",
                                             request_serializer=lambda m: m.SerializeToString(),
                                             response_deserializer=lambda b: b)
                        fn(iter(msgs), timeout=10)
                    code = "OK-" + look_again(meta, token, mpool, S, master, remote, frag, r)
                except grpc.RpcError as e:
                    code = e.code().name
                print("%s %s %s" % (frag.fragment_id, r.node_id, code), flush=True)
    return 0


def look_again(meta, token, mpool, S, master, remote, frag, r):
    """After a replay answered OK: MOVED or REPLACED (see the module's text)."""
    Get = grpcinspect.message_class(mpool, "dfs.v1.GetFileRequest")
    info = grpcinspect.call_unary(meta, mpool, "dfs.v1.Metadata.GetFile", Get(path=remote), token=token).file
    now = next(f for f in info.fragments if f.fragment_id == frag.fragment_id)
    if r.node_id not in [x.node_id for x in now.replicas]:
        return "MOVED"
    with grpc.insecure_channel(r.address) as ch:
        fn = ch.unary_unary("/dfs.v1.Storage/StatFragment", request_serializer=lambda m: m.SerializeToString(),
                            response_deserializer=S("StatFragmentResponse").FromString)
        st = fn(S("StatFragmentRequest")(fragment_id=frag.fragment_id,
                                         ticket=ticket(S, master, 4, frag.fragment_id, r.node_id)), timeout=10)
    return "MOVED" if st.checksum == now.checksum else "REPLACED"


if __name__ == "__main__":
    sys.exit(main(sys.argv))
