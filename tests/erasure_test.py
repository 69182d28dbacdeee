"""Erasure code end to end: puts with --ec K+M, reads with fragments lost or corrupt, and the limit
beyond which the file cannot be rebuilt."""

import json
import os
import signal
import threading

import harness
from faults_test import kill_node, kill_when_writing, node_rows


def stat(tc, path):
    return json.loads(tc.dfs("stat", "--json", path)[1])


def holder(cluster, st, index):
    """Name of the node holding fragment `index` of a file (stat --json output)."""
    addr = st["fragments"][index]["replicas"][0]["address"]
    return next(r["name"] for r in node_rows(cluster) if r["address"] == addr)


class Erasure(harness.TestCase):
    def setUp(self):
        self.start_cluster(nodes=8)

    def roundtrip(self, size, code, name):
        src = harness.random_file(self.tmp(name), size, seed=size + 7)
        self.dfs("put", "--ec", code, src, "/ec/" + name)
        out = self.tmp(name + ".out")
        self.dfs("get", "/ec/" + name, out)
        self.assertEqual(harness.sha256(out), harness.sha256(src))
        return src

    def test_round_trips(self):
        for code in ("4+2", "2+1", "5+3"):
            for size in (0, 1, 100, 65536, (4 << 20) + 1, (13 << 20) + 5):
                with self.subTest(code=code, size=size):
                    self.roundtrip(size, code, "f%s-%d" % (code.replace("+", "_"), size))

    def test_layout(self):
        self.roundtrip((9 << 20) + 3, "4+2", "lay")
        st = stat(self, "/ec/lay")
        self.assertEqual(st["redundancy"], {"scheme": "erasure", "data": 4, "parity": 2})
        self.assertEqual(len(st["fragments"]), 6)
        nodes = [fr["replicas"][0]["node_id"] for fr in st["fragments"]]
        self.assertEqual(len(set(nodes)), 6, "two fragments share a node")
        # 9 MiB + 3 bytes over 4 data fragments of 1 MiB cells: 3 stripes, 3 MiB per fragment.
        self.assertTrue(all(fr["size"] == 3 << 20 for fr in st["fragments"]))
        _, text, _ = self.dfs("stat", "/ec/lay")
        self.assertIn("erasure 4+2", text)

    def test_any_k_fragments_restore_the_file(self):
        c = self.cluster
        src = self.roundtrip((10 << 20) + 11, "4+2", "lost")
        st = stat(self, "/ec/lost")
        # Lose two data fragments (the worst case: both must be rebuilt from parity).
        for i in (0, 2):
            kill_node(c, holder(c, st, i))
        out = self.tmp("lost.out")
        _, text, _ = self.dfs("get", "/ec/lost", out)
        self.assertEqual(harness.sha256(out), harness.sha256(src))
        self.assertIn("rebuilt from parity", text)
        _, js, _ = self.dfs("get", "--json", "/ec/lost", out)
        self.assertGreater(json.loads(js)["rebuilt_cells"], 0)

    def test_more_than_m_lost_is_data_loss(self):
        c = self.cluster
        self.roundtrip(3 << 20, "4+2", "gone")
        st = stat(self, "/ec/gone")
        for i in (1, 4, 5):
            kill_node(c, holder(c, st, i))
        out = self.tmp("gone.again")
        rc, _, err = self.dfs("get", "/ec/gone", out, check=False)
        self.assertEqual(rc, 1)
        self.assertIn("only 3 of the 4 fragments needed are readable", err)
        self.assertFalse(os.path.exists(out))
        self.assertFalse(os.path.exists(out + ".dfs-part"))

    def test_corrupt_fragment_is_rebuilt(self):
        c = self.cluster
        src = self.roundtrip((6 << 20) + 1, "4+2", "rot")
        st = stat(self, "/ec/rot")
        (path,) = harness.fragment_files(c, [st["fragments"][1]["fragment_id"]])
        with open(path, "r+b") as f:
            f.seek(128 + (1 << 20) + 5000)  # the second cell of fragment 1
            b = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([b[0] ^ 1]))
        out = self.tmp("rot.out")
        _, text, _ = self.dfs("get", "/ec/rot", out)
        self.assertEqual(harness.sha256(out), harness.sha256(src))
        self.assertIn("rebuilt from parity", text)

    def test_node_killed_during_put(self):
        c = self.cluster
        src = harness.random_file(self.tmp("big"), 48 << 20, seed=77)
        done = threading.Event()
        t, killed = kill_when_writing(c, done)
        rc, out, err = self.dfs("put", "--ec", "4+2", src, "/ec/during", check=False)
        done.set()
        t.join()
        self.assertEqual(len(killed), 1, "the put finished before a node could be killed")
        self.assertEqual(rc, 0, err)
        self.assertIn("went to other nodes", out)
        self.dfs("get", "/ec/during", self.tmp("during.out"))
        self.assertEqual(harness.sha256(self.tmp("during.out")), harness.sha256(src))

    def test_bad_codes(self):
        src = harness.random_file(self.tmp("s"), 10, seed=1)
        for code in ("4+0", "0+2", "30+3", "4", "4+2+1", "-1+2"):
            with self.subTest(code=code):
                rc, _, err = self.dfs("put", "--ec", code, src, "/bad", check=False)
                self.assertEqual(rc, 2, err)
                self.assertIn("--ec takes K+M", err)
        # More fragments than nodes.
        rc, _, err = self.dfs("put", "--ec", "8+2", src, "/bad", check=False)
        self.assertEqual(rc, 1)
        self.assertIn("need 10 distinct live storage nodes, 8 are available", err)


if __name__ == "__main__":
    harness.main()
