"""Security end to end, against real daemons: bearer tokens and their roles through the CLI, tickets
that keep clients (here a hostile one speaking gRPC directly, with Debian's python3-grpcio) from
writing, reading or deleting fragments they were not given, and clusters whose every link is TLS
(certificates from tools/devca), mutual TLS included."""

import os

# This test forks `dfs` and tools/devca while its own gRPC channels are open. gRPC's fork support
# would make each fork wait for gRPC's threads to go idle (seen hanging under ASan timing); the
# children exec at once, so it is not needed.
os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"

import grpcinspect  # noqa: E402,I100  (before grpc: may re-run this file under Debian's python3)

import json  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import grpc  # noqa: E402

import harness  # noqa: E402

PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED


def read_token(path):
    with open(path) as f:
        return f.read().strip()


class Roles(harness.TestCase):
    def test_tokens_roles_and_revocation(self):
        c = self.start_cluster(nodes=3)
        src = harness.random_file(self.tmp("src"), 300000, seed=1)
        self.dfs("put", src, "/a")
        _, out, _ = self.dfs("whoami", "--json")
        self.assertEqual(json.loads(out)["role"], "admin")
        # Without a token nothing works, with a clear one-line error.
        rc, _, err = self.dfs("ls", check=False, env={"DFS_TOKEN_FILE": None, "HOME": self.tmp()})
        self.assertEqual(rc, 1)
        self.assertIn("no bearer token", err)
        self.assertEqual(len(err.strip().splitlines()), 1)
        # A read-only token reads but cannot write; its secret is shown once, on stdout alone.
        _, tok, _ = self.dfs("token", "create", "--role", "ro", "--name", "reader", "--ttl", "1h")
        tok = tok.strip()
        self.assertRegex(tok, r"^dfs1\.[0-9a-f]{16}\.[0-9a-f]{64}$")
        ro = {"DFS_TOKEN_FILE": None, "DFS_TOKEN": tok}
        self.dfs("get", "/a", self.tmp("a.out"), env=ro)
        self.assertEqual(harness.sha256(self.tmp("a.out")), harness.sha256(src))
        rc, _, err = self.dfs("put", src, "/b", check=False, env=ro)
        self.assertEqual(rc, 1)
        self.assertIn("may not call /dfs.v1.Metadata/CreateFile", err)
        rc, _, err = self.dfs("rm", "/a", check=False, env=ro)
        self.assertEqual(rc, 1)
        rc, _, err = self.dfs("token", "ls", check=False, env=ro)
        self.assertIn("may not call", err)
        _, out, _ = self.dfs("token", "ls", "--json")
        rows = {t["name"]: t for t in json.loads(out)}
        self.assertEqual(rows["reader"]["role"], "read_only")
        self.assertTrue(rows["reader"]["valid"])
        self.assertGreater(rows["reader"]["expires_ms"], 0)
        self.assertNotIn(tok.split(".")[2], out)  # secrets never come back
        # Revoked: refused from then on, listed only with --all; a file's token cannot come back.
        self.dfs("token", "revoke", tok.split(".")[1][:8])
        rc, _, err = self.dfs("ls", check=False, env=ro)
        self.assertEqual(rc, 1)
        self.assertIn("was revoked", err)
        _, out, _ = self.dfs("token", "ls", "--json")
        self.assertNotIn("reader", [t["name"] for t in json.loads(out)])
        _, out, _ = self.dfs("token", "ls", "--all", "--json")
        self.assertFalse({t["name"]: t for t in json.loads(out)}["reader"]["valid"])
        # Bad input: an unknown role, a revoke of nothing, a malformed token.
        rc, _, err = self.dfs("token", "create", "--role", "root", check=False)
        self.assertEqual(rc, 2)
        rc, _, err = self.dfs("token", "revoke", "ffffffff", check=False)
        self.assertEqual(rc, 1)
        self.assertIn("no token", err)
        rc, _, err = self.dfs("ls", check=False, env={"DFS_TOKEN_FILE": None, "DFS_TOKEN": "dfs1.nope"})
        self.assertEqual(rc, 1)
        self.assertIn("malformed token", err)
        # The admin token still works and the file is intact.
        self.dfs("get", "/a", self.tmp("a2"))
        self.assertEqual(harness.sha256(self.tmp("a2")), harness.sha256(src))
        self.assertTrue(c.running())


def refused_metric(rec):
    """dfs_storage_tickets_refused_total of the node whose dfscluster status record is rec."""
    with open(rec["log"], encoding="utf-8", errors="replace") as f:
        found = re.findall(r'msg="(?:serving|listening)".* metrics=(\S+)', f.read())
    with urllib.request.urlopen("http://%s/metrics" % found[-1], timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("dfs_storage_tickets_refused_total"):
                return int(float(line.split()[-1]))
    return 0


class Tickets(harness.TestCase):
    """A client with a valid token, talking to the storage nodes itself."""

    def test_nodes_serve_only_what_a_ticket_allows(self):
        c = self.start_cluster(nodes=4, storage_flags=["--metrics-listen", "127.0.0.1:0"])
        src = harness.random_file(self.tmp("src"), 200000, seed=2)
        self.dfs("put", src, "/t")
        token = read_token(c.admin_token_file)
        pool = grpcinspect.Reflection(c.metadata_address).pool_for("dfs.v1.Metadata")
        m = grpcinspect.message_class
        req = m(pool, "dfs.v1.GetFileRequest")(path="/t")
        fi = grpcinspect.call_unary(c.metadata_address, pool, "dfs.v1.Metadata.GetFile", req, token=token).file
        f0, f1 = fi.fragments[0], fi.fragments[1]
        r0 = f0.replicas[0]
        other = next(r for r in f1.replicas if r.address != r0.address)
        spool = grpcinspect.Reflection(r0.address).pool_for("dfs.v1.Storage")
        Get = m(spool, "dfs.v1.GetFragmentRequest")
        GetResp = m(spool, "dfs.v1.GetFragmentResponse")
        Ticket = m(spool, "dfs.v1.Ticket")

        def ticket(t):
            return Ticket.FromString(t.SerializeToString())

        def get(addr, fragment_id, t):
            with grpc.insecure_channel(addr) as ch:
                fn = ch.unary_stream("/dfs.v1.Storage/GetFragment", request_serializer=lambda x: x.SerializeToString(),
                                     response_deserializer=GetResp.FromString)
                kw = {"fragment_id": fragment_id}
                if t is not None:
                    kw["ticket"] = t
                return b"".join(r.data for r in fn(Get(**kw), timeout=10))

        # The layout's own ticket reads the copy.
        self.assertEqual(len(get(r0.address, f0.fragment_id, ticket(r0.ticket))), f0.size)
        refused = [
            ("no ticket", r0.address, f0.fragment_id, None),
            ("fragment 0's ticket for fragment 1", r0.address, f1.fragment_id, ticket(r0.ticket)),
            ("one node's ticket at another", other.address, f0.fragment_id, ticket(r0.ticket)),
        ]
        forged = ticket(r0.ticket)
        forged.expires_ms += 3600 * 1000
        refused.append(("a ticket with a later expiry", r0.address, f0.fragment_id, forged))
        for why, addr, fid, t in refused:
            with self.subTest(why):
                with self.assertRaises(grpc.RpcError) as e:
                    get(addr, fid, t)
                self.assertEqual(e.exception.code(), PERMISSION_DENIED, e.exception.details())

        # Writing: a fragment nobody planned, or over a stored one with a read ticket.
        Put = m(spool, "dfs.v1.PutFragmentRequest")
        Header = m(spool, "dfs.v1.FragmentHeader")
        PutResp = m(spool, "dfs.v1.PutFragmentResponse")

        def put(addr, fragment_id, t, data=b"x" * 10):
            with grpc.insecure_channel(addr) as ch:
                fn = ch.stream_unary("/dfs.v1.Storage/PutFragment", request_serializer=lambda x: x.SerializeToString(),
                                     response_deserializer=PutResp.FromString)
                h = Header(fragment_id=fragment_id, size=len(data))
                if t is not None:
                    h.ticket.CopyFrom(t)
                return fn(iter([Put(header=h), Put(data=data, crc32c=[0])]), timeout=10)

        for why, t in (("no ticket", None), ("a read ticket", ticket(r0.ticket))):
            with self.subTest(why):
                with self.assertRaises(grpc.RpcError) as e:
                    put(r0.address, f0.fragment_id, t)
                self.assertEqual(e.exception.code(), PERMISSION_DENIED, e.exception.details())
        # Deleting with a read ticket.
        Del = m(spool, "dfs.v1.DeleteFragmentRequest")
        DelResp = m(spool, "dfs.v1.DeleteFragmentResponse")
        with grpc.insecure_channel(r0.address) as ch:
            fn = ch.unary_unary("/dfs.v1.Storage/DeleteFragment", request_serializer=lambda x: x.SerializeToString(),
                                response_deserializer=DelResp.FromString)
            with self.assertRaises(grpc.RpcError) as e:
                fn(Del(fragment_id=f0.fragment_id, ticket=ticket(r0.ticket)), timeout=10)
            self.assertEqual(e.exception.code(), PERMISSION_DENIED)
        # Nothing the hostile client did changed the file; the nodes logged each refusal.
        self.dfs("get", "/t", self.tmp("t.out"))
        self.assertEqual(harness.sha256(self.tmp("t.out")), harness.sha256(src))
        # Every refusal is counted; the log keeps at most a line a second of them, since anyone who
        # reaches the port can present a bad ticket: a flood of 300 more leaves the log short.
        node = next(r for r in c.status() if r.get("address") == r0.address)

        def lines():
            with open(node["log"]) as f:
                return f.read().count("ticket refused")
        before = lines()
        with grpc.insecure_channel(r0.address) as ch:
            fn = ch.unary_stream("/dfs.v1.Storage/GetFragment", request_serializer=lambda x: x.SerializeToString(),
                                 response_deserializer=GetResp.FromString)
            started = time.monotonic()
            for _ in range(300):
                with self.assertRaises(grpc.RpcError):
                    b"".join(r.data for r in fn(Get(fragment_id=f0.fragment_id), timeout=10))
            seconds = time.monotonic() - started
        logs = "".join(open(c.path("node-%d" % i, "log")).read() for i in range(4))
        self.assertGreaterEqual(logs.count("ticket refused"), 1)
        # One line a second (and one for the interval the flood began in).
        self.assertLessEqual(lines() - before, seconds + 2, "refusals flood the log")
        refused_total = sum(refused_metric(r) for r in c.status() if r["name"].startswith("node-"))
        self.assertGreaterEqual(refused_total, len(refused) + 3 + 300)
        # So do calls without valid credentials at the metadata service (a line a second).
        meta_log = next(r["log"] for r in c.status() if r["name"] == "metadata")

        def meta_lines():
            with open(meta_log) as f:
                return f.read().count('msg="refused" method=/dfs.v1.Metadata/GetFile')
        # A token of the right form whose secret is wrong.
        forged_token = token[:-1] + ("0" if token[-1] != "0" else "1")
        time.sleep(1.2)  # past the interval of the last line logged (nodes refused at enrolment)
        before = meta_lines()
        started = time.monotonic()
        for _ in range(100):
            with self.assertRaises(grpc.RpcError) as e:
                grpcinspect.call_unary(c.metadata_address, pool, "dfs.v1.Metadata.GetFile", req, token=forged_token)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        seconds = time.monotonic() - started
        self.assertGreater(meta_lines(), before, "the first refusal after a quiet second is logged")
        self.assertLessEqual(meta_lines() - before, seconds + 2, "refusals flood the log")


class TLS(harness.TestCase):
    def start_tls_cluster(self, nodes=3, mutual=False):
        c = harness.Cluster(nodes=nodes)
        flags = c.tls_flags() + (["--tls-client-auth"] if mutual else [])
        c.metadata_flags = flags
        c.storage_flags = flags
        self._clusters = getattr(self, "_clusters", [])
        self.addCleanup(self._finish, c)
        c.start()
        return c

    def _finish(self, c):
        problems = c.stop()
        self.assertEqual(problems, [], "\n".join(problems))

    def test_every_link_over_tls(self):
        c = self.start_tls_cluster(nodes=3)
        ca = c.path("tls", "ca.pem")
        tls = {"DFS_TLS_CA": ca}
        src = harness.random_file(self.tmp("src"), 3 << 20, seed=3)
        self.dfs("put", src, "/fan", env=tls, cluster=c)
        self.dfs("put", "--replication", "chain", src, "/chain", env=tls, cluster=c)
        for name in ("/fan", "/chain"):
            self.dfs("get", name, self.tmp("out"), env=tls, cluster=c)
            self.assertEqual(harness.sha256(self.tmp("out")), harness.sha256(src))
            os.unlink(self.tmp("out"))
        # Plaintext against TLS, and TLS with another CA, fail with one line and store nothing.
        rc, _, err = self.dfs("ls", check=False, env={"DFS_TLS_CA": None}, cluster=c)
        self.assertEqual(rc, 1)
        self.assertIn("cannot reach the metadata service", err)
        other = self.tmp("other-ca")
        devca = os.path.join(os.path.dirname(os.path.realpath(harness.dfscluster.__file__)), "devca")
        subprocess.run([devca, other], check=True, capture_output=True)
        rc, _, err = self.dfs("ls", check=False, env={"DFS_TLS_CA": os.path.join(other, "ca.pem")}, cluster=c)
        self.assertEqual(rc, 1)
        self.assertIn("certificate verify failed", err)
        # An independent client: reflection and health over TLS; plaintext gets nowhere.
        self.assertEqual(grpcinspect.health_check(c.metadata_address, "dfs.v1.Metadata", tls_ca=ca), "SERVING")
        with self.assertRaises(grpc.RpcError):
            grpcinspect.health_check(c.metadata_address, "", timeout=2)
        # A node that dies: the reads fail over to other copies, over TLS too.
        c.expected_exits.update(c.kill_nodes(1, seed=1))
        self.dfs("get", "/fan", self.tmp("out"), env=tls, cluster=c)
        self.assertEqual(harness.sha256(self.tmp("out")), harness.sha256(src))

    def test_mutual_tls(self):
        c = self.start_tls_cluster(nodes=3, mutual=True)
        d = c.path("tls")
        tls = {"DFS_TLS_CA": os.path.join(d, "ca.pem")}
        src = harness.random_file(self.tmp("src"), 100000, seed=4)
        # Without a client certificate the handshake fails.
        rc, _, err = self.dfs("put", src, "/m", check=False, env=tls, cluster=c)
        self.assertEqual(rc, 1, err)
        self.assertIn("cannot reach the metadata service", err)
        cert = ["--tls-cert", os.path.join(d, "client.pem"), "--tls-key", os.path.join(d, "client.key")]
        self.dfs(*cert, "put", src, "/m", env=tls, cluster=c)
        self.dfs(*cert, "get", "/m", self.tmp("m.out"), env=tls, cluster=c)
        self.assertEqual(harness.sha256(self.tmp("m.out")), harness.sha256(src))


if __name__ == "__main__":
    harness.main()
