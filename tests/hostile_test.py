"""Hostile and malformed gRPC traffic against real daemons: every bad request gets its status code
(INVALID_ARGUMENT, mostly) and one log line, never a crash or a hang, and the daemons keep serving.

The client is Debian's python3-grpcio speaking raw bytes (identity serializers), so nothing of
dfs's own client code stands between the test and the servers: garbage, truncated protobuf, wrong
wire types, oversize strings and repeated fields, paths with `..`, NUL bytes and bad UTF-8, k=1000,
K=0, sizes that overflow, bad ids, and streams that stall. Well-formed messages are built from the
types the servers themselves describe over reflection (tests/grpcinspect.py).
"""

import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import threading
import time

import grpcinspect  # first: may re-run this test under /usr/bin/python3
import grpc
import harness
import logfmt

IDLE_MS = 1500  # the storage nodes' --stream-idle-ms
NODE = "0123456789abcdef0123456789abcdef"
FILE_ID = "00112233445566778899aabbccddeeff"
FRAG = FILE_ID + "00000001"


varint = grpcinspect.varint
f_varint = grpcinspect.field_varint


def f_bytes(field, b):
    return grpcinspect.field_bytes(field, b.encode() if isinstance(b, str) else b)


def f_fixed32(field, n):
    return varint(field << 3 | 5) + struct.pack("<I", n)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# Ticket operations (dfs.v1.TicketOp).
PUT, GET, DELETE, STAT = 1, 2, 3, 4


def make_ticket(master, op, fragment_id, node_id, ttl_ms=3600 * 1000):
    """A dfs.v1.Ticket's bytes, signed as common/ticket.h says (an independent implementation)."""
    key = hmac.new(master, b"dfs-node-key-v1\0" + node_id.encode(), hashlib.sha256).digest()
    expires = int(time.time() * 1000) + ttl_ms
    file_id = fragment_id[:32]
    canon = b"\0".join([b"dfs-ticket-v1", str(op).encode(), file_id.encode(), fragment_id.encode(),
                        node_id.encode(), str(expires).encode()])
    mac = hmac.new(key, canon, hashlib.sha256).digest()
    return (f_varint(1, op) + f_bytes(2, file_id) + f_bytes(3, fragment_id) + f_bytes(4, node_id) +
            f_varint(5, expires) + f_bytes(6, mac))


def put_header(fragment_id=FRAG, size=5, forward=(), forward_rate=0, ticket=b""):
    h = f_bytes(1, fragment_id) + f_varint(2, size)
    for a in forward:
        h += f_bytes(3, a)
    if forward_rate:
        h += f_varint(4, forward_rate)
    if ticket:
        h += f_bytes(5, ticket)
    for _ in forward:  # one (unchecked here) ticket and hop ticket per forward entry, as the form requires
        h += f_bytes(6, ticket) + f_bytes(7, ticket)
    return f_bytes(1, h)


def put_chunk(data):
    crcs = b"".join(struct.pack("<I", crc32c(data[i:i + 65536])) for i in range(0, len(data), 65536))
    return f_bytes(2, data) + (f_bytes(3, crcs) if crcs else b"")


class Hostile(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster_ = harness.Cluster(nodes=3, storage_flags=["--stream-idle-ms", str(IDLE_MS)]).start()
        rows = cls.cluster_.status()
        cls.meta = cls.cluster_.address
        cls.meta_log = next(r["log"] for r in rows if r["name"] == "metadata")
        cls.node = next(r for r in rows if r["name"] == "node-0")
        cls.channels = {}
        with open(cls.cluster_.admin_token_file) as f:
            cls.token = f.read().strip()
        # The catalog's master key (the test reads it as an operator could): tickets of our own.
        db = sqlite3.connect("file:%s?mode=ro" % cls.cluster_.path("metadata", "catalog.db"), uri=True)
        cls.master = db.execute("SELECT value FROM secrets WHERE name = 'ticket_master_key'").fetchone()[0]
        db.close()
        with open(cls.cluster_.path("node-0", "data", "node.id")) as f:
            cls.node_id = f.read().strip()
        # Node-0's own token (what it presents for its registration, heartbeats and reports).
        with open(cls.cluster_.path("node-0", "data", "node.token")) as f:
            cls.node_token = f.read().strip()

    def ticket(self, op, fragment_id=FRAG):
        return make_ticket(self.master, op, fragment_id, self.node_id)

    @classmethod
    def tearDownClass(cls):
        for ch in cls.channels.values():
            ch.close()
        problems = cls.cluster_.stop()
        if problems:
            raise AssertionError("cluster problems:\n" + "\n".join(problems))

    def setUp(self):
        self.cluster = self.cluster_
        self.addCleanup(self.still_serving)

    def channel(self, target):
        if target not in self.channels:
            self.channels[target] = grpc.insecure_channel(target, options=[
                ("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)])
        return self.channels[target]

    def unary(self, target, method, body, timeout=20, token=None):
        """Call with raw request bytes; returns (code, details, response bytes or None)."""
        call = self.channel(target).unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            return grpc.StatusCode.OK, "", call(body, timeout=timeout,
                                                metadata=[("authorization", "Bearer " + (token or self.token))])
        except grpc.RpcError as e:
            return e.code(), e.details() or "", None

    def expect(self, target, method, body, code=grpc.StatusCode.INVALID_ARGUMENT, says=None, token=None):
        # What nodes call is authorised only with a node's own token.
        if token is None and method.rsplit("/", 1)[1] in ("Heartbeat", "ReportFragments"):
            token = self.node_token
        got, details, _ = self.unary(target, method, body, token=token)
        self.assertEqual(got, code, "%s: %s %r" % (method, got, details))
        if says is not None:
            self.assertIn(says, details, method)
        self.assertNotIn("\n", details)
        return details

    def meta_call(self, name, body, **kw):
        return self.expect(self.meta, "/dfs.v1.Metadata/" + name, body, **kw)

    def storage_call(self, name, body, **kw):
        return self.expect(self.node["address"], "/dfs.v1.Storage/" + name, body, **kw)

    def still_serving(self):
        """After every case: each daemon answers its health check and real work still works."""
        for r in self.cluster.status():
            self.assertEqual(r["state"], "running", "%s died" % r["name"])
            self.assertEqual(grpcinspect.health_check(r["address"], ""), "SERVING", r["name"])
        _, out, _ = self.dfs("ls")
        self.assertIsInstance(out, str)

    def log_has(self, path, text):
        with open(path, encoding="utf-8", errors="replace") as f:
            return text in f.read()

    # ---- the Metadata service ----

    def test_garbage_and_truncated_messages(self):
        for method in ("CreateFile", "CommitFile", "ReportFragments", "GetFile"):
            with self.subTest(method=method):
                self.meta_call(method, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", says="does not parse")
        good = f_bytes(1, "/a/b") + f_varint(2, 1000)
        for cut in (1, 3, len(good) - 1):
            with self.subTest(cut=cut):
                self.meta_call("CreateFile", good[:cut], says="does not parse")
        # A string field sent as a varint, a group, a field number 0.
        self.meta_call("GetFile", f_varint(1, 7), says="does not parse")
        self.meta_call("GetFile", b"\x0b\x0c", says="does not parse")
        self.meta_call("GetFile", b"\x00\x01", says="does not parse")
        line = 'msg="request rejected" method=/dfs.v1.Metadata/GetFile'
        harness.wait_until(lambda: self.log_has(self.meta_log, line), 10, "a log line for each rejected request")

    def test_hostile_paths(self):
        for path, says in ((b"/a/../../etc/passwd", "'..'"), (b"/a/./b", "'.'"), (b"", "empty path"),
                           (b"/a\x00/../../b", "holds a NUL byte"), (b"/caf\xe9", "not valid UTF-8"),
                           (b"/\xc0\xaf", "not valid UTF-8"), (b"/a\x1bb", "control character"),
                           (b"/" + b"x" * 100000, "longer than"), (b"/" + b"d/" * 600 + b"f", "longer than")):
            with self.subTest(path=path[:40]):
                self.meta_call("CreateFile", f_bytes(1, path) + f_varint(2, 1), says=says)
                self.meta_call("GetFile", f_bytes(1, path), says=says)
                self.meta_call("DeleteFile", f_bytes(1, path), says=says)
        self.meta_call("ListFiles", f_bytes(1, b"/a/../"), says="'..'")
        self.meta_call("ListFiles", f_bytes(3, b"not//canonical"), says="page_token")

    def test_redundancy_bounds(self):
        create = lambda red, size=1000: f_bytes(1, "/r") + f_varint(2, size) + f_bytes(3, red)
        cases = [
            (f_varint(1, 1) + f_varint(2, 1000), "replicas must be 1..16, not 1000"),
            (f_varint(1, 1) + f_varint(2, 3) + f_varint(3, 100000), "fragments must be 1..256"),
            (f_varint(1, 2) + f_varint(4, 0) + f_varint(5, 2), "need at least 1 data fragment"),
            (f_varint(1, 2) + f_varint(4, 1000) + f_varint(5, 1), "at most 32 in all"),
            (f_varint(1, 2) + f_varint(4, 4) + f_varint(5, 2 ** 32 - 1), "at most 32 in all"),  # wraps to 3
            (f_varint(1, 2) + f_varint(2, 3) + f_varint(4, 4) + f_varint(5, 2), "takes no replica"),
            (f_varint(1, 7), "unknown redundancy scheme 7"),
        ]
        for red, says in cases:
            with self.subTest(says=says):
                self.meta_call("CreateFile", create(red), says=says)
        self.meta_call("CreateFile", f_bytes(1, "/p") + f_varint(4, 99), says="unknown placement policy 99")
        # Sizes: above INT64_MAX; a fragment no node stores (F=1, and with the cluster's F=4); a
        # total that overflows (F=256 x k=16 of the largest fragments).
        self.meta_call("CreateFile", f_bytes(1, "/s") + f_varint(2, 2 ** 63), says="too large")
        self.meta_call("CreateFile", create(f_varint(2, 3) + f_varint(3, 1), size=2 ** 60),
                       says="a storage node takes at most")
        self.meta_call("CreateFile", f_bytes(1, "/s") + f_varint(2, 2 ** 62), says="a storage node takes at most")
        # k=0 and F=0 are the cluster's defaults (proto3 has no "unset"): a plan of 4 fragments x 3.
        code, details, resp = self.unary(self.meta, "/dfs.v1.Metadata/CreateFile",
                                         create(f_varint(1, 1) + f_varint(2, 0) + f_varint(3, 0)))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        pool = grpcinspect.Reflection(self.meta).pool_for("dfs.v1.Metadata")
        info = grpcinspect.message_class(pool, "dfs.v1.CreateFileResponse").FromString(resp).file
        self.assertEqual((info.redundancy.replicas, info.redundancy.fragments, len(info.fragments)), (3, 4, 4))
        self.assertTrue(all(len(f.replicas) == 3 for f in info.fragments))
        self.meta_call("AbortFile", f_bytes(1, info.file_id), code=grpc.StatusCode.OK)

    def test_ids_counts_and_sizes(self):
        frag = lambda i, nodes=(NODE,): f_bytes(3, f_varint(1, i) + b"".join(f_bytes(4, n) for n in nodes))
        commit = lambda frags, sha=bytes(32): f_bytes(1, FILE_ID) + f_bytes(2, sha) + frags
        self.meta_call("CommitFile", commit(frag(0), sha=b"short"), says="sha256 must be 32 bytes")
        self.meta_call("CommitFile", commit(frag(0) + frag(0)), says="listed twice")
        self.meta_call("CommitFile", commit(frag(0, (NODE, NODE))), says="listed twice")
        self.meta_call("CommitFile", commit(frag(0, ("../../x",))), says="is not an id")
        # 100,000 fragments in one commit (a 2 MB message): counted and refused, not stored.
        self.meta_call("CommitFile", commit(frag(1) * 100000), says="1..256 fragments")
        # 200,000 corrupt ids in one report (8 MB).
        report = f_bytes(2, FRAG) * 200000
        self.meta_call("ReportFragments", report, says="at most 100000")
        self.meta_call("ReportFragments", f_bytes(2, "zz"), says="invalid fragment id")
        self.meta_call("AbortFile", f_bytes(1, FILE_ID.upper()), says="is not an id")
        self.meta_call("ReplaceTarget", f_bytes(1, FILE_ID) + f_varint(2, 2 ** 32 - 1) + f_bytes(3, NODE),
                       says="fragment_index")
        self.meta_call("RegisterNode", f_bytes(1, NODE) + f_bytes(2, "127.0.0.1:1") + f_bytes(3, "z\tone"),
                       says="control character")
        self.meta_call("RegisterNode", f_bytes(1, NODE) + f_bytes(2, "no port"), says="host:port")
        self.meta_call("Heartbeat", f_varint(2, 2 ** 64 - 1), says="usage figure")
        self.meta_call("SetNodeState", f_bytes(1, "00") + f_varint(2, 3), says="not NODE_DEAD")
        self.meta_call("SetNodeState", f_bytes(1, "") + f_varint(2, 1), says="prefix of one")
        self.meta_call("GetHealth", f_varint(2, 2 ** 32 - 1), says="at most 10000")
        # Larger than any message the servers take (32 MiB): gRPC's own limit answers.
        self.meta_call("GetFile", f_bytes(1, b"x" * (33 << 20)), code=grpc.StatusCode.RESOURCE_EXHAUSTED)

    def test_damage_reports_need_proof_and_are_checked(self):
        """ReportDamage: a reader's claim that a copy is bad. Without a read ticket for that copy
        it is refused; with one, the service still does not take the reader's word: the copy's
        node checks it against the catalog, and a good copy stays however often it is reported."""
        src = harness.random_file(self.tmp("dmg"), 300000, seed=12)
        self.dfs("put", "--replicas", "3", "--fragments", "1", src, "/dmg")
        st = json.loads(self.dfs("stat", "--json", "/dmg")[1])
        frag = st["fragments"][0]["fragment_id"]
        holder = st["fragments"][0]["replicas"][0]["node_id"]
        copy = lambda ticket, damage=1, detail="block 0 arrived corrupt": f_bytes(1, f_bytes(
            1, ticket) + f_varint(2, damage) + f_bytes(3, detail))
        good = make_ticket(self.master, GET, frag, holder)
        # Form: no copy, no ticket, an unknown damage, a detail too long, too many copies.
        self.meta_call("ReportDamage", b"", says="1 to 256 copies")
        self.meta_call("ReportDamage", f_bytes(1, f_varint(2, 1)), says="has no ticket")
        self.meta_call("ReportDamage", copy(good, damage=0), says="not a damage")
        self.meta_call("ReportDamage", copy(good, damage=99), says="not a damage")
        self.meta_call("ReportDamage", copy(good, detail="x" * 300), says="over 256 bytes")
        self.meta_call("ReportDamage", copy(good) * 257, says="not 257")
        # Proof: a forged MAC, a ticket for another operation, an expired one, a foreign key.
        forged = good[:-32] + bytes(32)
        deny = grpc.StatusCode.PERMISSION_DENIED
        self.meta_call("ReportDamage", copy(forged), code=deny, says="copies[0]")
        self.meta_call("ReportDamage", copy(make_ticket(self.master, STAT, frag, holder)), code=deny)
        self.meta_call("ReportDamage", copy(make_ticket(self.master, GET, frag, holder, ttl_ms=-120000)),
                       code=deny, says="expired")
        self.meta_call("ReportDamage", copy(make_ticket(bytes(32), GET, frag, holder)), code=deny)
        # A good copy reported again and again: checked once, found good, kept; later reports are
        # not even checked.
        pool = grpcinspect.Reflection(self.meta).pool_for("dfs.v1.Metadata")
        answer = grpcinspect.message_class(pool, "dfs.v1.ReportDamageResponse")
        code, details, resp = self.unary(self.meta, "/dfs.v1.Metadata/ReportDamage", copy(good))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        self.assertEqual(answer.FromString(resp).accepted, 1)
        harness.wait_until(lambda: self.log_has(self.meta_log, "reported damage not confirmed"), 60,
                           "the node's check of the reported copy")
        for _ in range(20):
            code, details, resp = self.unary(self.meta, "/dfs.v1.Metadata/ReportDamage",
                                             copy(good) + copy(forged))
            self.assertEqual(code, grpc.StatusCode.OK, details)
            a = answer.FromString(resp)
            self.assertEqual((a.accepted, a.ignored), (0, 2))
        st = json.loads(self.dfs("stat", "--json", "/dmg")[1])
        self.assertIn(holder, [r["node_id"] for r in st["fragments"][0]["replicas"]])
        status = json.loads(self.dfs("status", "--json")[1])
        self.assertEqual(status["damage"]["confirmed"], 0)
        self.assertEqual(status["health"]["degraded"], 0)
        self.dfs("get", "/dmg", self.tmp("dmg.out"))
        self.assertEqual(harness.sha256(self.tmp("dmg.out")), harness.sha256(src))
        self.dfs("rm", "/dmg")

    # ---- the Storage service ----

    def test_storage_unary_requests(self):
        for fid, says in (("../../../../etc/passwd", "invalid fragment id"), (FRAG.upper(), "invalid fragment id"),
                          ("", "invalid fragment id"), (FRAG + "\x00/../x", "holds a NUL byte")):
            with self.subTest(id=fid):
                for method in ("DeleteFragment", "StatFragment", "GetFragment"):
                    self.storage_call(method, f_bytes(1, fid), says=says)
                self.storage_call("RepairFragment", f_bytes(1, fid), says=says.replace("invalid fragment id",
                                                                                         "is not a fragment id"))
        # A range past the end of a fragment that is not there; far past any end.
        self.storage_call("GetFragment", f_bytes(1, FRAG) + f_varint(2, 2 ** 64 - 1) + f_bytes(4, self.ticket(GET)),
                          code=grpc.StatusCode.NOT_FOUND)
        repair = f_bytes(1, FRAG) + f_varint(2, 1 << 20)
        self.storage_call("RepairFragment", repair + f_bytes(4, "127.0.0.1:1") * 300, says="at most 256")
        self.storage_call("RepairFragment", repair + f_bytes(4, "bad host:1") + f_bytes(7, b""),
                          says="is not a host:port")
        rebuild = f_varint(1, 4) + f_varint(2, 2 ** 32 - 1) + f_varint(3, 1 << 18) + f_varint(4, 1)
        self.storage_call("RepairFragment", repair + f_bytes(5, rebuild), says="K+M <= 32")
        self.storage_call("DeleteFragment", b"\x12\x05", says="does not parse")

    def put(self, messages, timeout=30):
        """A PutFragment stream of raw messages; returns (code, details)."""
        call = self.channel(self.node["address"]).stream_unary(
            "/dfs.v1.Storage/PutFragment", request_serializer=None, response_deserializer=None)
        try:
            call(iter(messages), timeout=timeout)
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as e:
            return e.code(), e.details() or ""

    def test_put_fragment_streams(self):
        hello = put_chunk(b"hello")
        tk = self.ticket(PUT)  # form errors are found before the ticket is looked at

        def hdr(**kw):
            return put_header(ticket=tk, **kw)

        cases = [
            ([hello], "carries no header"),
            ([hdr(fragment_id="../x") + hello], "invalid fragment id"),
            ([hdr(fragment_id=FRAG + "\x00x") + hello], "holds a NUL byte"),
            ([hdr(size=2 ** 64 - 1)], "is above the largest"),
            ([hdr(forward=["127.0.0.1:%d" % (7000 + i) for i in range(17)]) + hello], "at most 16"),
            ([hdr(forward=["127.0.0.1:7001", "127.0.0.1:7001"]) + hello], "twice"),
            ([hdr(forward=["127.0.0.1:7001"], forward_rate=1) + hello], "forward_rate 1"),
            ([hdr(size=2 << 20) + put_chunk(b"\0" * (2 << 20))], "at most 1048576"),
            ([hdr() + f_bytes(2, b"hello")], "need 1 crcs"),
            ([hdr() + hello, hdr() + hello], "only the first may"),
            ([hdr() + b"\x12\x64abc"], "does not parse"),
            ([hdr() + hello + f_bytes(3, b"\0" * 4 * 600)], "more than"),
        ]
        for messages, says in cases:
            with self.subTest(says=says):
                code, details = self.put(messages)
                self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, details)
                self.assertIn(says, details)
        # Without a ticket, or with one for another operation, the well-formed put is refused.
        for t in (b"", self.ticket(GET)):
            code, details = self.put([put_header(ticket=t) + hello])
            self.assertEqual(code, grpc.StatusCode.PERMISSION_DENIED, details)
        # With its ticket the well-formed put works, and stores exactly that.
        self.assertEqual(self.put([hdr() + hello])[0], grpc.StatusCode.OK)
        _, _, resp = self.unary(self.node["address"], "/dfs.v1.Storage/StatFragment",
                                f_bytes(1, FRAG) + f_bytes(2, self.ticket(STAT)))
        self.assertIn(f_varint(2, 5), resp)
        self.storage_call("DeleteFragment", f_bytes(1, FRAG) + f_bytes(2, self.ticket(DELETE)),
                          code=grpc.StatusCode.OK)

    def test_put_that_stalls_is_cut_off(self):
        """Header and a chunk, then nothing, no half-close and no deadline: the node gives the call up
        after its idle limit (DEADLINE_EXCEEDED), keeps nothing, and takes the next put at once."""
        release = threading.Event()

        def stalling():
            yield put_header(size=3 << 20, ticket=self.ticket(PUT)) + put_chunk(b"\1" * (1 << 20))
            release.wait(120)

        call = self.channel(self.node["address"]).stream_unary(
            "/dfs.v1.Storage/PutFragment", request_serializer=None, response_deserializer=None)
        future = call.future(stalling())  # no timeout: the client sets no deadline
        try:
            err = future.exception(timeout=60)
        finally:
            release.set()
        self.assertIsNotNone(err, "the stalled put was not cut off")
        self.assertEqual(err.code(), grpc.StatusCode.DEADLINE_EXCEEDED, err.details())
        self.assertIn("sent nothing for %d ms" % IDLE_MS, err.details())
        self.storage_call("StatFragment", f_bytes(1, FRAG) + f_bytes(2, self.ticket(STAT)),
                          code=grpc.StatusCode.NOT_FOUND)
        line = 'msg="stalled stream cancelled" method=/dfs.v1.Storage/PutFragment'
        self.assertTrue(self.log_has(self.node["log"], line))

    def test_reader_that_stalls_is_cut_off(self):
        """A GetFragment nobody reads: once the windows are full the node stops waiting for the
        reader and drops the call (its file with it); reading later ends early, not with OK."""
        src = harness.random_file(self.tmp("big"), 48 << 20, seed=9)
        self.dfs("put", "--replicas", "1", "--fragments", "1", src, "/big")
        pool = grpcinspect.Reflection(self.meta).pool_for("dfs.v1.Metadata")
        _, _, resp = self.unary(self.meta, "/dfs.v1.Metadata/GetFile", f_bytes(1, "/big"))
        info = grpcinspect.message_class(pool, "dfs.v1.GetFileResponse").FromString(resp).file
        rep = info.fragments[0].replicas[0]
        log = next(r["log"] for r in self.cluster.status() if r["address"] == rep.address)
        stream = self.channel(rep.address).unary_stream(
            "/dfs.v1.Storage/GetFragment", request_serializer=None, response_deserializer=None)(
            f_bytes(1, info.fragments[0].fragment_id) + f_bytes(4, rep.ticket.SerializeToString()))
        line = 'msg="stalled stream cancelled" method=/dfs.v1.Storage/GetFragment'
        harness.wait_until(lambda: self.log_has(log, line), 60, "the node to give the stalled reader up")
        got = 0
        with self.assertRaises(grpc.RpcError) as cm:
            for msg in stream:
                got += len(msg)
        self.assertIn(cm.exception.code(), (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED))
        self.assertLess(got, 48 << 20)
        # The file itself is intact for a reader that reads.
        self.dfs("get", "/big", self.tmp("big.out"))
        self.assertEqual(harness.sha256(self.tmp("big.out")), harness.sha256(src))
        self.dfs("rm", "/big")

    # ---- the logs ----

    def log_fields(self, path):
        """Every line of a daemon's log, parsed strictly (a line that does not parse fails the test)."""
        with open(path, "rb") as f:
            lines = [l for l in f.read().split(b"\n") if l and not l.startswith(logfmt.HARNESS_PREFIX)]
        return [dict(logfmt.parse(l)) for l in lines]

    def test_log_lines_cannot_be_forged(self):
        """What a caller sends stays one value in the daemons' logs: a name with quotes adds no field,
        "permission denied" is one value, and a hostile fragment id from a caller without a ticket
        is not logged at info at all (and never as more than one value)."""
        node_log = self.node["log"]
        forged = 'ab cd" status=OK peer=trusted\nts=2026-01-01T00:00:00.000Z level=error msg="forged'
        self.storage_call("GetFragment", f_bytes(1, forged), says="invalid fragment id")
        self.storage_call("StatFragment", f_bytes(1, forged), says="invalid fragment id")
        name = 'x" role=admin expires_ms=0 y="'
        _, tok, _ = self.dfs("token", "create", "--role", "ro", "--name", name)
        ro = self.tmp("ro.token")
        with open(os.open(ro, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(tok.strip() + "\n")
        rc, _, err = self.dfs("rm", "/nothing-here", env={"DFS_TOKEN_FILE": ro}, check=False)
        self.assertEqual(rc, 1, err)
        self.assertIn("may not call", err)

        def created():
            return [f for f in self.log_fields(self.meta_log) if f["msg"] == b"token created"
                    and f.get("name") == name.encode()]
        harness.wait_until(lambda: created(), 10, "the token's log line")
        line = created()[0]
        self.assertEqual(line["role"], b"read_only")
        self.assertEqual(sorted(line), sorted(["ts", "level", "prog", "msg", "id", "name", "role", "expires_ms"]))

        def refused():
            return [f for f in self.log_fields(self.meta_log) if f["msg"] == b"refused"
                    and f.get("method") == b"/dfs.v1.Metadata/DeleteFile"]
        harness.wait_until(lambda: refused(), 10, "the refusal's log line")
        self.assertEqual(refused()[-1]["code"], b"permission denied")
        self.assertIn(b"may not call", refused()[-1]["reason"])
        # The node runs at info: the unauthenticated requests leave nothing of their ids there.
        for f in self.log_fields(node_log):
            self.assertNotIn(b"trusted", b" ".join(f.values()), f)
        self.assertEqual(logfmt.problems([node_log, self.meta_log]), [])



def table_checksum(data):
    """A fragment's checksum: the CRC32C of its block CRCs (little-endian u32 each)."""
    crcs = b"".join(struct.pack("<I", crc32c(data[i:i + 65536])) for i in range(0, len(data), 65536))
    return crc32c(crcs)


class Impostors(harness.TestCase):
    """Holders of real credentials (a put's tickets, the nodes' token, a read_write token) who use
    them for more than they were given: every such use is refused, and nothing stored changes."""

    @classmethod
    def setUpClass(cls):
        cls.cluster_ = harness.Cluster(nodes=4).start()
        cls.meta = cls.cluster_.address
        with open(cls.cluster_.admin_token_file) as f:
            cls.token = f.read().strip()
        with open(cls.cluster_.node_token_file) as f:
            cls.node_token = f.read().strip()
        cls.mpool = grpcinspect.Reflection(cls.meta).pool_for("dfs.v1.Metadata")
        node0 = next(r for r in cls.cluster_.status() if r["name"] == "node-0")
        cls.spool = grpcinspect.Reflection(node0["address"]).pool_for("dfs.v1.Storage")
        db = sqlite3.connect("file:%s?mode=ro" % cls.cluster_.path("metadata", "catalog.db"), uri=True)
        cls.master = db.execute("SELECT value FROM secrets WHERE name = 'ticket_master_key'").fetchone()[0]
        db.close()

    @classmethod
    def tearDownClass(cls):
        problems = cls.cluster_.stop()
        if problems:
            raise AssertionError("cluster problems:\n" + "\n".join(problems))

    def setUp(self):
        self.cluster = self.cluster_

    def M(self, name):
        return grpcinspect.message_class(self.mpool, "dfs.v1." + name)

    def S(self, name):
        return grpcinspect.message_class(self.spool, "dfs.v1." + name)

    def meta_rpc(self, method, req, token=None):
        """(code, details, response message or None) of a Metadata call."""
        m = self.mpool.FindServiceByName("dfs.v1.Metadata").FindMethodByName(method)
        resp_cls = grpcinspect.message_class(self.mpool, m.output_type.full_name)
        with grpc.insecure_channel(self.meta) as ch:
            fn = ch.unary_unary("/dfs.v1.Metadata/" + method, request_serializer=lambda x: x.SerializeToString(),
                                response_deserializer=resp_cls.FromString)
            try:
                return grpc.StatusCode.OK, "", fn(req, timeout=20, metadata=[
                    ("authorization", "Bearer " + (token or self.token))])
            except grpc.RpcError as e:
                return e.code(), e.details() or "", None

    def unary(self, target, method, body, token):
        """A raw call: (code, details, response bytes or None)."""
        with grpc.insecure_channel(target) as ch:
            fn = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
            try:
                return grpc.StatusCode.OK, "", fn(body, timeout=20, metadata=[("authorization", "Bearer " + token)])
            except grpc.RpcError as e:
                return e.code(), e.details() or "", None

    def put_fragment(self, address, header, data):
        """One PutFragment stream: (code, details, response or None)."""
        crcs = [crc32c(data[i:i + 65536]) for i in range(0, len(data), 65536)]
        with grpc.insecure_channel(address) as ch:
            fn = ch.stream_unary("/dfs.v1.Storage/PutFragment", request_serializer=lambda x: x.SerializeToString(),
                                 response_deserializer=self.S("PutFragmentResponse").FromString)
            Put = self.S("PutFragmentRequest")
            try:
                return grpc.StatusCode.OK, "", fn(iter([Put(header=header), Put(data=data, crc32c=crcs)]),
                                                  timeout=20)
            except grpc.RpcError as e:
                return e.code(), e.details() or "", None

    def header(self, fragment_id, size, ticket):
        h = self.S("FragmentHeader")(fragment_id=fragment_id, size=size)
        h.ticket.CopyFrom(self.S("Ticket").FromString(ticket.SerializeToString()))
        return h

    def read_copy(self, replica, fragment_id):
        Get = self.S("GetFragmentRequest")
        with grpc.insecure_channel(replica.address) as ch:
            fn = ch.unary_stream("/dfs.v1.Storage/GetFragment", request_serializer=lambda x: x.SerializeToString(),
                                 response_deserializer=self.S("GetFragmentResponse").FromString)
            t = self.S("Ticket").FromString(replica.ticket.SerializeToString())
            return b"".join(r.data for r in fn(Get(fragment_id=fragment_id, ticket=t), timeout=20))

    def create(self, path, size, k=2):
        red = self.M("Redundancy")(scheme=1, replicas=k, fragments=1)
        code, details, resp = self.meta_rpc("CreateFile", self.M("CreateFileRequest")(
            path=path, size=size, redundancy=red))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        return resp.file

    def commit(self, info, data, node_ids, receipts=()):
        cf = self.M("CommitFragment")(index=0, size=len(data), checksum=table_checksum(data), node_ids=node_ids,
                                      receipts=receipts)
        return self.meta_rpc("CommitFile", self.M("CommitFileRequest")(
            file_id=info.file_id, sha256=hashlib.sha256(data).digest(), fragments=[cf]))

    def layout(self, path):
        code, details, resp = self.meta_rpc("GetFile", self.M("GetFileRequest")(path=path))
        self.assertEqual(code, grpc.StatusCode.OK, details)
        return resp.file

    def test_put_ticket_replayed_after_commit(self):
        """A put's tickets outlive its commit (they last as long as the pending file could have): a
        replay with other bytes must not replace the committed copies."""
        data = bytes(range(256)) * 40
        info = self.create("/replay", len(data))
        frag = info.fragments[0]
        receipts = []
        for r in frag.replicas:
            code, details, resp = self.put_fragment(r.address, self.header(frag.fragment_id, len(data), r.ticket),
                                                    data)
            self.assertEqual(code, grpc.StatusCode.OK, details)
            receipts.append(resp.receipt)
        code, details, _ = self.commit(info, data, [r.node_id for r in frag.replicas], receipts)
        self.assertEqual(code, grpc.StatusCode.OK, details)
        evil = b"\xee" * len(data)
        for r in frag.replicas:
            code, details, _ = self.put_fragment(r.address, self.header(frag.fragment_id, len(evil), r.ticket), evil)
            self.assertEqual(code, grpc.StatusCode.ALREADY_EXISTS, details)
            # Another size is refused too; the very same bytes (a retry whose answer was lost)
            # are the same copy, with the same receipt.
            code, details, _ = self.put_fragment(r.address, self.header(frag.fragment_id, 7, r.ticket), b"x" * 7)
            self.assertEqual(code, grpc.StatusCode.ALREADY_EXISTS, details)
            code, details, resp = self.put_fragment(r.address, self.header(frag.fragment_id, len(data), r.ticket),
                                                    data)
            self.assertEqual(code, grpc.StatusCode.OK, details)
            self.assertIn(resp.receipt, receipts)
        for r in self.layout("/replay").fragments[0].replicas:
            self.assertEqual(self.read_copy(r, frag.fragment_id), data)
        self.dfs("get", "/replay", self.tmp("replay.out"))
        with open(self.tmp("replay.out"), "rb") as f:
            self.assertEqual(f.read(), data)

    def test_commit_without_data(self):
        """A commit that names copies nobody wrote is refused: the file never becomes visible. So
        is one with receipts made up, or one whose receipts are for other bytes."""
        data = b"never sent" * 100
        info = self.create("/ghost", len(data))
        nodes = [r.node_id for r in info.fragments[0].replicas]
        code, details, _ = self.commit(info, data, nodes)
        self.assertNotEqual(code, grpc.StatusCode.OK, "a commit of copies nobody stored was accepted")
        self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION, details)
        self.assertIn("no receipt", details)
        code, details, _ = self.commit(info, data, nodes, [bytes(32)] * len(nodes))
        self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION, details)
        # Real receipts, for what was really stored, do not cover a commit of other bytes.
        frag = info.fragments[0]
        receipts = []
        for r in frag.replicas:
            code, details, resp = self.put_fragment(r.address, self.header(frag.fragment_id, len(data), r.ticket),
                                                    data)
            self.assertEqual(code, grpc.StatusCode.OK, details)
            receipts.append(resp.receipt)
        other = b"x" * len(data)
        code, details, _ = self.commit(info, other, nodes, receipts)
        self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION, details)
        _, out, _ = self.dfs("ls", "/ghost")
        self.assertNotIn("/ghost", out)
        self.meta_rpc("AbortFile", self.M("AbortFileRequest")(file_id=info.file_id))

    def test_node_token_cannot_be_another_node(self):
        """The nodes' shared (enrollment) token, or another node's own token, registering node-0's
        id (to learn its ticket key, or to move it to another address), and reporting in its name
        (an empty inventory), is refused."""
        src = harness.random_file(self.tmp("victim"), 100000, seed=11)
        self.dfs("put", "--replicas", "2", src, "/victim")
        nodes = {r["name"]: r for r in self.cluster.status()}
        with open(self.cluster.path("node-0", "data", "node.id")) as f:
            victim = f.read().strip()
        with open(self.cluster.path("node-1", "data", "node.token")) as f:
            other_node = f.read().strip()
        fresh = hashlib.sha256(b"a token of my own").digest()
        for token, extra in ((self.node_token, {}),
                             (self.node_token, {"node_token_id": "0123456789abcdef", "node_token_sha256": fresh}),
                             (other_node, {}), (self.token, {"node_token_id": "1123456789abcdef",
                                                            "node_token_sha256": fresh})):
            code, details, resp = self.meta_rpc("RegisterNode", self.M("RegisterNodeRequest")(
                node_id=victim, address="127.0.0.1:1", **extra), token=token)
            self.assertIn(code, (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED),
                          "registered node-0's id with another token: %r" % (resp,))
        # A report names no node (it is the token's); an old-style one naming node-0 (field 1) is
        # refused with the enrollment token, and with node-1's own token it speaks for node-1
        # only, and then only with node-1's current registration.
        report = f_bytes(1, victim) + f_varint(3, 1) + f_varint(6, 1)
        for token, want in ((self.node_token, grpc.StatusCode.PERMISSION_DENIED),
                            (other_node, grpc.StatusCode.FAILED_PRECONDITION)):
            code, details, _ = self.unary(self.meta, "/dfs.v1.Metadata/ReportFragments", report, token=token)
            self.assertEqual(code, want, details)
        code, details, _ = self.unary(self.meta, "/dfs.v1.Metadata/Heartbeat", b"", token=other_node)
        self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION, details)
        _, out, _ = self.dfs("nodes", "--json")
        row = next(n for n in json.loads(out) if n["id"] == victim)
        self.assertEqual(row["address"], nodes["node-0"]["address"])
        _, out, _ = self.dfs("status", "--json")
        self.assertEqual(json.loads(out)["health"]["lost"], 0)
        self.assertEqual(json.loads(out)["health"]["degraded"], 0)

    def test_forward_list_is_no_port_scanner(self):
        """A chain put's forward list names addresses the node would dial: without a forward ticket
        from the metadata service it dials nothing, and its answer says nothing about ports."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        node0 = next(r for r in self.cluster.status() if r["name"] == "node-0")
        with open(self.cluster.path("node-0", "data", "node.id")) as f:
            node_id = f.read().strip()
        frag = "ab" * 16 + "00000000"
        tk = self.S("Ticket").FromString(make_ticket(self.master, PUT, frag, node_id))
        texts = []
        # The put's own ticket is real; the hop's is missing, or a put ticket in its place.
        for target in ("127.0.0.1:%d" % port, "127.0.0.1:1", self.meta):
            for hop in (None, tk):
                h = self.S("FragmentHeader")(fragment_id=frag, size=5, forward=[target])
                h.ticket.CopyFrom(tk)
                h.forward_tickets.add().CopyFrom(tk)
                if hop is not None:
                    h.hop_tickets.add().CopyFrom(hop)
                code, details, resp = self.put_fragment(node0["address"], h, b"hello")
                texts.append(details + " " + (str(resp) if resp is not None else ""))
                want = grpc.StatusCode.INVALID_ARGUMENT if hop is None else grpc.StatusCode.PERMISSION_DENIED
                self.assertEqual(code, want, "forwarded to %s: %s" % (target, texts[-1]))
        accepted = 0
        try:
            while True:
                conn, _ = listener.accept()
                accepted += 1
                conn.close()
        except socket.timeout:
            pass
        listener.close()
        self.assertEqual(accepted, 0, "the node connected to an address a client chose")
        for t in texts:
            self.assertNotIn("connection", t.lower())
            self.assertNotIn("ipv4", t.lower())
            self.assertNotIn(":%d" % port, t)



class Clone(harness.TestCase):
    """An operator copies a running node's data directory and starts the copy beside it."""

    def test_cloned_node_directory(self):
        c = self.start_cluster(nodes=4, metadata_flags=["--heartbeat-ms", "200", "--suspect-after-ms", "1500",
                                                        "--dead-after-ms", "3000"])
        src = harness.random_file(self.tmp("src"), 300000, seed=12)
        self.dfs("put", "--replicas", "2", "--fragments", "4", src, "/c")
        node0 = next(r for r in c.status() if r["name"] == "node-0")
        data = c.path("node-0", "data")
        with open(os.path.join(data, "node.id")) as f:
            node_id = f.read().strip()
        clone = self.tmp("clone")
        shutil.copytree(data, clone)

        def start_clone(timeout_ms):
            log = open(self.tmp("clone.log"), "ab")
            p = subprocess.Popen([c.binaries()["dfs-storage"], "--data", clone, "--listen", "127.0.0.1:0",
                                  "--metadata", c.metadata_address, "--token-file", c.node_token_file,
                                  "--ready-file", self.tmp("clone.ready"), "--register-timeout-ms",
                                  str(timeout_ms)], stdout=log, stderr=subprocess.STDOUT)
            log.close()
            self.addCleanup(lambda: (p.poll() is None and (p.terminate(), p.wait(30))))
            return p

        def node_row():
            _, out, _ = self.dfs("nodes", "--json")
            return next(n for n in json.loads(out) if n["id"] == node_id)

        # Beside a live original the copy is refused, says why, and gives up; the original stays.
        p = start_clone(6000)
        self.assertEqual(p.wait(60), 1, "the clone of a live node was not refused")
        with open(self.tmp("clone.log"), encoding="utf-8", errors="replace") as f:
            self.assertIn("alive at %s" % node0["address"], f.read())
        row = node_row()
        self.assertEqual((row["address"], row["state"]), (node0["address"], "alive"))
        self.dfs("get", "/c", self.tmp("c1"))
        # The original stops: the copy may take over at once (the old address no longer answers as
        # the node, though the catalog still counts it alive), and every file stays whole.
        c.stop_node(0)
        if os.path.exists(self.tmp("clone.ready")):
            os.unlink(self.tmp("clone.ready"))
        p = start_clone(0)
        harness.wait_until(lambda: os.path.exists(self.tmp("clone.ready")), 30, "the clone to register")
        row = node_row()
        with open(self.tmp("clone.ready")) as f:
            self.assertEqual(row["address"], f.read().strip())
        self.dfs("get", "/c", self.tmp("c2"))
        self.assertEqual(harness.sha256(self.tmp("c2")), harness.sha256(src))
        # The copy dies too: the node is declared dead and its copies are repaired elsewhere.
        p.kill()
        p.wait(10)

        def healthy():
            _, out, _ = self.dfs("status", "--json")
            h = json.loads(out)["health"]
            return h["degraded"] == 0 and h["lost"] == 0 and node_row()["state"] == "dead"
        harness.wait_until(healthy, 90, "the dead node's copies to be repaired")
        self.dfs("get", "/c", self.tmp("c3"))
        self.assertEqual(harness.sha256(self.tmp("c3")), harness.sha256(src))


    def test_replaced_process_learns_it(self):
        """The original stops answering (SIGSTOP) while a copy of its directory starts: the copy
        takes the registration over. When the original wakes up its heartbeats are refused as
        stale, it says so, and it cannot take the registration back while the copy lives; once
        the copy is gone, it can."""
        c = self.start_cluster(nodes=3, metadata_flags=["--heartbeat-ms", "200", "--suspect-after-ms", "1500",
                                                        "--dead-after-ms", "60000"])
        node0 = next(r for r in c.status() if r["name"] == "node-0")
        data = c.path("node-0", "data")
        with open(os.path.join(data, "node.id")) as f:
            node_id = f.read().strip()
        clone = self.tmp("clone")
        shutil.copytree(data, clone)

        def node_row():
            _, out, _ = self.dfs("nodes", "--json")
            return next(n for n in json.loads(out) if n["id"] == node_id)

        os.kill(node0["pid"], signal.SIGSTOP)
        self.addCleanup(lambda: os.kill(node0["pid"], signal.SIGCONT))
        log = open(self.tmp("clone.log"), "ab")
        p = subprocess.Popen([c.binaries()["dfs-storage"], "--data", clone, "--listen", "127.0.0.1:0",
                              "--metadata", c.metadata_address, "--token-file", c.node_token_file,
                              "--ready-file", self.tmp("clone.ready")], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.addCleanup(lambda: (p.poll() is None and (p.kill(), p.wait(30))))
        harness.wait_until(lambda: os.path.exists(self.tmp("clone.ready")), 60, "the clone to take over")
        with open(self.tmp("clone.ready")) as f:
            clone_addr = f.read().strip()
        self.assertEqual(node_row()["address"], clone_addr)
        os.kill(node0["pid"], signal.SIGCONT)
        harness.wait_until(lambda: self.log_has(node0["log"], "registration was replaced"), 30,
                           "the original to learn it was replaced")
        harness.wait_until(lambda: self.log_has(node0["log"], "alive at %s" % clone_addr), 30,
                           "the original to be refused while the copy lives")
        self.assertEqual(node_row()["address"], clone_addr)
        # The copy goes: the original (still retrying) gets its registration back.
        p.terminate()
        self.assertEqual(p.wait(30), 0)
        harness.wait_until(lambda: node_row()["address"] == node0["address"], 30,
                           "the original to register again")
        self.assertEqual(node_row()["state"], "alive")

    def log_has(self, path, text):
        with open(path, encoding="utf-8", errors="replace") as f:
            return text in f.read()


if __name__ == "__main__":
    harness.main()
