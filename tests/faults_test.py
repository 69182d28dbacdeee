"""Fault tests: storage nodes killed before and during transfers, the metadata service restarted,
fragments corrupted on disk, a put interrupted. Nothing committed may be lost and nothing partial may
ever become visible."""

import json
import os
import re
import signal
import subprocess
import threading
import time

import harness


def node_rows(cluster):
    return [r for r in cluster.status() if r["name"] != "metadata"]


def kill_node(cluster, name):
    """SIGKILL one storage node by name (a fault the test expects)."""
    row = next(r for r in cluster.status() if r["name"] == name)
    cluster.expected_exits.add(name)
    os.kill(row["pid"], signal.SIGKILL)


def partial_writes(cluster):
    """Names of nodes with a fragment being written right now (a file in their tmp/)."""
    busy = []
    for row in node_rows(cluster):
        tmp = cluster.path(row["name"], "data", "tmp")
        try:
            if any(not f.startswith("node.id") for f in os.listdir(tmp)):
                busy.append(row["name"])
        except FileNotFoundError:
            pass
    return busy


def kill_when_writing(cluster, done):
    """In a thread: wait until some node is mid-write, SIGKILL it; returns [name] when it did."""
    killed = []

    def run():
        while not done.is_set():
            busy = partial_writes(cluster)
            if busy:
                kill_node(cluster, busy[0])
                killed.append(busy[0])
                return
            time.sleep(0.002)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, killed


def stat(tc, path):
    _, out, _ = tc.dfs("stat", "--json", path)
    return json.loads(out)


class NodeFailures(harness.TestCase):
    def test_nodes_killed_before_get(self):
        c = self.start_cluster(nodes=4)
        src = harness.random_file(self.tmp("f"), 5 << 20, seed=11)
        self.dfs("put", src, "/f")
        # Each fragment has 3 copies on 4 nodes: with any 2 nodes dead, one copy of each is left.
        # Throttled, every link pulls its own ranges (client/get.c): a dead node's lane must not
        # keep its ranges from the others.
        for n in (1, 1):
            for name in c.kill_nodes(n, seed=n):
                c.expected_exits.add(name)
            for extra in ([], ["--throttle", "64M"]):
                out = self.tmp("f.out")
                _, text, _ = self.dfs("get", *extra, "/f", out)
                self.assertEqual(harness.sha256(out), harness.sha256(src))
                os.unlink(out)

    def test_node_killed_during_put_completes_on_other_nodes(self):
        c = self.start_cluster(nodes=6)
        src = harness.random_file(self.tmp("big"), 64 << 20, seed=12)
        done = threading.Event()
        t, killed = kill_when_writing(c, done)
        rc, out, err = self.dfs("put", src, "/during", check=False)
        done.set()
        t.join()
        self.assertEqual(len(killed), 1, "the put finished before a node could be killed")
        self.assertEqual(rc, 0, "put failed: " + err)
        self.assertIn("went to other nodes after failures", out)
        killed_addr = next(r["address"] for r in c.status() if r["name"] == killed[0])
        st = stat(self, "/during")
        for fr in st["fragments"]:
            self.assertEqual(len(fr["replicas"]), 3)
            self.assertNotIn(killed_addr, [r["address"] for r in fr["replicas"]])
        self.dfs("get", "/during", self.tmp("during.out"))
        self.assertEqual(harness.sha256(self.tmp("during.out")), harness.sha256(src))

    def test_node_killed_during_put_without_spare_fails_cleanly(self):
        c = self.start_cluster(nodes=3)
        src = harness.random_file(self.tmp("big"), 64 << 20, seed=13)
        done = threading.Event()
        t, killed = kill_when_writing(c, done)
        rc, out, err = self.dfs("put", src, "/nospare", check=False)
        done.set()
        t.join()
        self.assertEqual(len(killed), 1, "the put finished before a node could be killed")
        self.assertEqual(rc, 1)
        self.assertIn("no other node can take it", err)
        self.assertEqual(len(err.strip().splitlines()), 1, "the error is not one line: " + err)
        _, out, _ = self.dfs("ls")
        self.assertEqual(out, "")
        rc, _, err = self.dfs("stat", "/nospare", check=False)
        self.assertEqual(rc, 1)
        _, out, _ = self.dfs("status", "--json")
        self.assertEqual(json.loads(out)["pending_files"], 0, "the pending put was not aborted")

    def test_interrupted_put_leaves_nothing_visible(self):
        c = self.start_cluster(nodes=3)
        src = harness.random_file(self.tmp("big"), 64 << 20, seed=14)
        exe = c.binaries()["dfs"]
        p = subprocess.Popen([exe, "put", src, "/interrupted"], env=c.env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        harness.wait_until(lambda: partial_writes(c) or p.poll() is not None, 60, "no write started")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        if p.returncode == 0:
            self.skipTest("the put completed before the interrupt arrived")
        self.assertEqual(p.returncode, 130)
        self.assertIn("interrupted", err)
        rc, _, _ = self.dfs("stat", "/interrupted", check=False)
        self.assertEqual(rc, 1)
        _, out, _ = self.dfs("status", "--json")
        self.assertEqual(json.loads(out)["pending_files"], 0)
        # Its fragments are collected from the nodes.
        harness.wait_until(lambda: json.loads(self.dfs("status", "--json")[1])["pending_deletions"] == 0,
                           30, "fragment copies of the aborted put were not removed")


class AbandonedPut(harness.TestCase):
    def test_abandoned_put_expires_with_its_fragments(self):
        # A client killed mid-put never aborts: the pending file must expire on its own and every
        # copy it left on the nodes must be collected.
        c = self.start_cluster(nodes=3, metadata_flags=["--pending-timeout-ms", "1500"])
        src = harness.random_file(self.tmp("big"), 64 << 20, seed=15)
        p = subprocess.Popen([c.binaries()["dfs"], "put", src, "/abandoned"], env=c.env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_until(lambda: partial_writes(c) or p.poll() is not None, 60, "no write started")
        p.kill()
        p.wait()
        if p.returncode == 0:
            self.skipTest("the put completed before it could be killed")
        status = lambda: json.loads(self.dfs("status", "--json")[1])  # noqa: E731
        self.assertEqual(status()["pending_files"], 1)

        def nothing_left():
            st = status()
            if st["pending_files"] != 0 or st["pending_deletions"] != 0:
                return False
            for row in node_rows(c):
                data = c.path(row["name"], "data")
                for sub in ("fragments", "tmp"):
                    for _, _, files in os.walk(os.path.join(data, sub)):
                        if files:
                            return False
            return True

        harness.wait_until(nothing_left, 30, "the abandoned put left a pending file or fragments")
        rc, _, _ = self.dfs("stat", "/abandoned", check=False)
        self.assertEqual(rc, 1)


class MetadataRestart(harness.TestCase):
    def check_all(self, files):
        _, out, _ = self.dfs("ls")
        self.assertEqual(sorted(out.split()), sorted(files))
        for path, src in files.items():
            out = self.tmp(path.strip("/").replace("/", "_") + ".out")
            self.dfs("get", path, out)
            self.assertEqual(harness.sha256(out), harness.sha256(src))
            os.unlink(out)

    def test_committed_files_survive_restarts(self):
        c = self.start_cluster(nodes=3)
        files = {}
        for i, size in enumerate((0, 1000, 3 << 20)):
            src = harness.random_file(self.tmp("f%d" % i), size, seed=20 + i)
            self.dfs("put", src, "/m/f%d" % i)
            files["/m/f%d" % i] = src
        c.restart_metadata()
        self.check_all(files)
        # A crash, not a clean stop: what was committed is still there.
        c.expected_exits.add("metadata")
        c.restart_metadata(kill=True)
        self.check_all(files)
        # The nodes heartbeat to the new process: new puts work.
        src = harness.random_file(self.tmp("after"), 2 << 20, seed=29)
        self.dfs("put", src, "/m/after")
        files["/m/after"] = src
        self.check_all(files)


def chain_positions(cluster, logs_from):
    """{"first"|"middle"|"last": node name} of the chain put under way, from the nodes' debug logs
    ("chain start ... next=ADDR hops=N" on the nodes that forward), or None while not all known."""
    rows = node_rows(cluster)
    by_addr = {r["address"]: r["name"] for r in rows}
    pos = {}
    for r in rows:
        with open(r["log"], errors="replace") as f:
            f.seek(logs_from.get(r["name"], 0))
            for line in f:
                m = re.search(r'chain start.*\bnext="?([^"\s]+)"?.*\bhops="?(\d+)', line)
                if m and m.group(2) == "2":
                    pos["first"] = r["name"]
                elif m and m.group(2) == "1":
                    pos["middle"] = r["name"]
                    pos["last"] = by_addr.get(m.group(1))
    return pos if len(pos) == 3 and None not in pos.values() else None


class ChainFailures(harness.TestCase):
    def test_chain_member_killed_mid_put(self):
        # 4 nodes, k=3, chain replication: whichever member of the chain dies mid-put (first,
        # middle or last), the put completes as a fanout put would: the copy that did not land goes
        # to the spare node, the healthy members keep theirs (sent again directly when the chain
        # broke before them).
        c = self.start_cluster(nodes=4, storage_flags=["--log-level", "debug"])
        src = harness.random_file(self.tmp("chain"), 24 << 20, seed=21)
        for position in ("first", "middle", "last"):
            with self.subTest(position=position):
                offsets = {r["name"]: os.path.getsize(r["log"]) for r in node_rows(c)}
                p = subprocess.Popen([c.binaries()["dfs"], "put", "--replication", "chain",
                                      "--replicas", "3", "--fragments", "1", "--throttle", "8M", src,
                                      "/chain-" + position], env=c.env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
                pos = {}
                harness.wait_until(lambda: pos.update(chain_positions(c, offsets) or {}) or pos or
                                   p.poll() is not None, 60, "no chain started")
                # Mid-put: the last node is writing, so data flows through the whole chain.
                last = pos.get("last")
                harness.wait_until(lambda: last in partial_writes(c) or p.poll() is not None, 60,
                                   "the last node of the chain wrote nothing")
                self.assertIsNone(p.poll(), "the put ended before a chain member could be killed")
                victim = pos[position]
                victim_addr = next(r["address"] for r in c.status() if r["name"] == victim)
                kill_node(c, victim)
                # The node comes back (same data, same id) for the next position, whatever happens.
                try:
                    out, err = p.communicate(timeout=120)
                finally:
                    c.start_node(int(victim.split("-")[1]))
                self.assertEqual(p.returncode, 0, "put failed after the %s chain member died: %s" %
                                 (position, err))
                (fr,) = stat(self, "/chain-" + position)["fragments"]
                self.assertEqual(len(fr["replicas"]), 3)
                self.assertNotIn(victim_addr, [r["address"] for r in fr["replicas"]])
                back = self.tmp("chain-%s.out" % position)
                self.dfs("get", "/chain-" + position, back)
                self.assertEqual(harness.sha256(back), harness.sha256(src))


class Corruption(harness.TestCase):
    def flip(self, path, offset):
        with open(path, "r+b") as f:
            f.seek(offset)
            b = f.read(1)
            f.seek(offset)
            f.write(bytes([b[0] ^ 0x10]))

    def test_corrupt_copies_are_detected_and_read_around(self):
        c = self.start_cluster(nodes=3)
        src = harness.random_file(self.tmp("f"), 64 << 20, seed=31)
        for remote, extra in (("/c", []), ("/ct", ["--throttle", "64M"])):
            self.dfs("put", src, remote)
            st = stat(self, remote)
            # Two of the three copies of every fragment are corrupt, a bit flipped in every MiB;
            # the third is good.
            for fr in st["fragments"]:
                copies = sorted(harness.fragment_files(c, [fr["fragment_id"]]))
                self.assertEqual(len(copies), 3)
                for p in copies[:2]:
                    for mib in range(fr["size"] >> 20):
                        self.flip(p, 128 + (mib << 20) + 1000)  # after the 128-byte header
            # Each 16 MiB fragment comes in several ranges spread over its copies (throttled:
            # every link pulls ranges of the fragments it holds), so the corrupt copies are met
            # and read around at the first get; they are reported, and the catalog drops them.
            for i in range(2):
                out = self.tmp("c%d.out" % i)
                _, text, _ = self.dfs("get", *extra, remote, out)
                self.assertEqual(harness.sha256(out), harness.sha256(src))
                if i == 0:
                    self.assertIn("continued from another copy", text)
                os.unlink(out)

    def test_every_copy_corrupt_fails_with_data_loss(self):
        c = self.start_cluster(nodes=3)
        src = harness.random_file(self.tmp("f"), 1 << 20, seed=32)
        self.dfs("put", src, "/c2")
        st = stat(self, "/c2")
        frag1 = st["fragments"][1]["fragment_id"]
        copies = harness.fragment_files(c, [frag1])
        self.assertEqual(len(copies), 3)
        for p in copies:
            self.flip(p, 128 + 70000)
        for extra in ([], ["--throttle", "64M"]):
            rc, _, err = self.dfs("get", *extra, "/c2", self.tmp("c2.out"), check=False)
            self.assertEqual(rc, 1)
            if not extra:
                self.assertIn("no copy could be read", err)
                self.assertIn("corrupt", err)
            else:
                # The first get's reports reached the catalog: it knows the fragment is lost.
                self.assertTrue("no copy could be read" in err or "has no copy left" in err, err)
            self.assertFalse(os.path.exists(self.tmp("c2.out")))
            self.assertFalse(os.path.exists(self.tmp("c2.out.dfs-part")))
        # The damage shows: every copy of fragment 1 was reported and confirmed, the file is lost
        # (its corrupt bytes stay on the nodes for salvage).
        def lost():
            st = json.loads(self.dfs("status", "--json")[1])
            return st["health"]["lost"] == 1 and st["damage"]["confirmed"] >= 3
        harness.wait_until(lost, 30, "the damage does not show in dfs status")
        _, text, _ = self.dfs("status")
        self.assertIn("damaged copies found", text)
        for p in copies:
            self.assertTrue(os.path.exists(p), "a last corrupt copy was removed")
        # Other fragments and the catalog are untouched.
        _, out, _ = self.dfs("ls")
        self.assertEqual(out.split(), ["/c2"])


if __name__ == "__main__":
    harness.main()
