"""Integrity end to end: wrong copies are skipped, reported, checked and repaired; what readers,
repairs and scrubbers see reaches the catalog; a read survives the catalog moving its copy.

A "wrong copy" here is the hard kind: a fragment file rewritten consistently with other data (the
data, every block CRC, the CRC table, the header's checksum and the header's own CRC), so that the
node's own checks all pass and only the catalog's fragment checksum tells it apart.
"""

import json
import os
import signal
import struct
import subprocess

import harness

FAST = ["--heartbeat-ms", "200", "--suspect-after-ms", "600", "--dead-after-ms", "1500"]

# ---- fragment files (storage/frag_header.h) ------------------------------------------------------

_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ (0x82F63B78 if _c & 1 else 0)
    _TABLE.append(_c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


BLOCK = 65536
_ZERO_BLOCK_CRC = crc32c(bytes(BLOCK))


def header_checksum(path):
    """The fragment checksum a fragment file's header holds."""
    with open(path, "rb") as f:
        return struct.unpack_from("<I", f.read(128), 28)[0]


def rewrite_consistently(path):
    """Replace a fragment file's data with zeros and make the file consistent again: block CRCs,
    table, header checksum and header CRC all recomputed. Returns the new checksum."""
    with open(path, "r+b") as f:
        hdr = bytearray(f.read(128))
        size = struct.unpack_from("<Q", hdr, 16)[0]
        crcs = [_ZERO_BLOCK_CRC] * (size // BLOCK)
        if size % BLOCK:
            crcs.append(crc32c(bytes(size % BLOCK)))
        f.seek(128)
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            f.write(bytes(n))
            left -= n
        table = b"".join(struct.pack("<I", c) for c in crcs)
        f.write(table)
        checksum = crc32c(table)
        struct.pack_into("<I", hdr, 28, checksum)
        struct.pack_into("<I", hdr, 124, crc32c(bytes(hdr[:124])))
        f.seek(0)
        f.write(hdr)
    return checksum


def stat(tc, remote):
    return json.loads(tc.dfs("stat", "--json", remote)[1])


def status(tc):
    return json.loads(tc.dfs("status", "--json")[1])


def node_name_of(cluster, path):
    """The cluster node whose data dir holds path."""
    for row in cluster.status():
        if row["name"] != "metadata" and path.startswith(cluster.path(row["name"], "data") + os.sep):
            return row["name"]
    raise AssertionError("no node holds " + path)


def copies_match_catalog(tc, cluster, remote, copies):
    """Every fragment has `copies` files on the nodes, each holding the catalog's checksum, and
    the catalog lists exactly that many."""
    st = stat(tc, remote)
    for fr in st["fragments"]:
        files = harness.fragment_files(cluster, [fr["fragment_id"]])
        if len(files) != copies or len(fr["replicas"]) != copies:
            return False
        if any("%08x" % header_checksum(p) != fr["checksum"] for p in files):
            return False
    return True


class WrongCopies(harness.TestCase):
    def test_wrong_copy_is_skipped_reported_and_repaired(self):
        # One copy of a 16 MiB fragment rewritten consistently: every get reads its 4 ranges from
        # all 3 copies, so before any fix each get met the wrong copy and failed at the end
        # ("checksum ..., the catalog says ..."). Now the copy's checksum, which its node sends
        # first, gets it skipped, the reader reports it, the service has the node check it, drops
        # it and repairs the fragment elsewhere.
        c = self.start_cluster(nodes=4)
        src = harness.random_file(self.tmp("f"), 16 << 20, seed=61)
        self.dfs("put", "--replicas", "3", "--fragments", "1", src, "/w")
        (fr,) = stat(self, "/w")["fragments"]
        bad = sorted(harness.fragment_files(c, [fr["fragment_id"]]))[0]
        rewrite_consistently(bad)
        bad_node = node_name_of(c, bad)
        for extra in ([], ["--throttle", "64M"], []):
            out = self.tmp("w.out")
            self.dfs("get", *extra, "/w", out)
            self.assertEqual(harness.sha256(out), harness.sha256(src))
            os.unlink(out)
        harness.wait_until(lambda: copies_match_catalog(self, c, "/w", 3), 60,
                           "the wrong copy was not replaced by a good one")
        st = stat(self, "/w")
        with open(c.path(bad_node, "data", "node.id")) as f:
            bad_id = f.read().strip()
        self.assertNotIn(bad_id, [r["node_id"] for r in st["fragments"][0]["replicas"]])
        s = status(self)
        self.assertGreaterEqual(s["damage"]["confirmed"], 1)
        self.assertEqual(s["health"]["healthy"], 1)
        with open(next(r["log"] for r in c.status() if r["name"] == "metadata")) as f:
            self.assertIn("reported damage confirmed by the node", f.read())

    def test_erasure_wrong_data_fragment_is_rebuilt_from_parity(self):
        # --ec 3+2 with one data fragment rewritten consistently: before, every get failed
        # although parity could rebuild it; now it is rebuilt, reported and repaired.
        c = self.start_cluster(nodes=5)
        src = harness.random_file(self.tmp("e"), (6 << 20) + 12345, seed=62)
        self.dfs("put", "--ec", "3+2", src, "/ec")
        fr = stat(self, "/ec")["fragments"][1]
        (path,) = harness.fragment_files(c, [fr["fragment_id"]])
        rewrite_consistently(path)
        for extra in ([], ["--throttle", "64M"]):
            out = self.tmp("ec.out")
            _, text, _ = self.dfs("get", *extra, "/ec", out)
            self.assertEqual(harness.sha256(out), harness.sha256(src))
            os.unlink(out)
        self.assertIn("rebuilt from parity", text)
        # Streamed to standard output too.
        _, data, _ = self.dfs("get", "/ec", "-", text=False)
        with open(src, "rb") as f:
            self.assertEqual(data, f.read())
        harness.wait_until(lambda: copies_match_catalog(self, c, "/ec", 1), 60,
                           "the wrong fragment was not rebuilt")
        self.assertGreaterEqual(status(self)["damage"]["confirmed"], 1)

    def test_scrubber_compares_each_fragment_with_the_catalog(self):
        # No reader at all: the scrubber reads every fragment, finds each good in itself, and
        # sends its checksum; the service, which holds the catalog, finds the wrong one.
        c = self.start_cluster(nodes=3, storage_flags=["--scrub-interval", "1"])
        src = harness.random_file(self.tmp("s"), 1 << 20, seed=63)
        self.dfs("put", "--replicas", "2", "--fragments", "2", src, "/s")
        fr = stat(self, "/s")["fragments"][0]
        bad = sorted(harness.fragment_files(c, [fr["fragment_id"]]))[0]
        rewrite_consistently(bad)
        harness.wait_until(lambda: copies_match_catalog(self, c, "/s", 2), 60,
                           "the scrubber did not find the copy that differs from the catalog")
        self.assertGreaterEqual(status(self)["damage"]["confirmed"], 1)
        with open(next(r["log"] for r in c.status() if r["name"] == "metadata")) as f:
            self.assertIn("scrubbed copy differs from the catalog", f.read())


class Reporting(harness.TestCase):
    def test_fragment_deleted_under_a_running_node(self):
        # A copy's file removed behind the node's back (a running node, no re-registration): the
        # first read that asks for it tells the catalog (the node itself, and the reader), which
        # confirms, drops and repairs it. Before, it went unnoticed until the node registered
        # again, and `dfs status` said healthy.
        c = self.start_cluster(nodes=3)
        src = harness.random_file(self.tmp("d"), 12 << 20, seed=64)
        self.dfs("put", "--replicas", "2", "--fragments", "1", src, "/del")
        (fr,) = stat(self, "/del")["fragments"]
        gone = sorted(harness.fragment_files(c, [fr["fragment_id"]]))[0]
        os.unlink(gone)
        out = self.tmp("del.out")
        self.dfs("get", "/del", out)  # 3 ranges over both copies: the missing one is asked for
        self.assertEqual(harness.sha256(out), harness.sha256(src))
        harness.wait_until(lambda: copies_match_catalog(self, c, "/del", 2), 60,
                           "the missing copy was not repaired")
        self.assertGreaterEqual(status(self)["damage"]["confirmed"], 1)

    def test_fragment_deleted_under_a_running_node_found_without_a_reader(self):
        # Nobody reads it: the node's inventory, which now follows every scrub pass (not only a
        # registration), tells the catalog the copy is gone.
        c = self.start_cluster(nodes=3, storage_flags=["--scrub-interval", "1"])
        src = harness.random_file(self.tmp("d2"), 1 << 20, seed=67)
        self.dfs("put", "--replicas", "2", "--fragments", "1", src, "/del2")
        (fr,) = stat(self, "/del2")["fragments"]
        os.unlink(sorted(harness.fragment_files(c, [fr["fragment_id"]]))[0])
        harness.wait_until(lambda: copies_match_catalog(self, c, "/del2", 2), 60,
                           "the missing copy was not found and repaired")

    def test_repair_reports_a_corrupt_source_and_does_not_retry_it(self):
        # k=2: one holder dies, the other's copy has a corrupt block. Before, the repair pulled
        # from the corrupt source again and again, for ever, and the file counted as degraded.
        # Now the source is reported (by the repairing node, and by the source's node itself),
        # dropped, and never used again: the fragment has no good copy left, and status says lost.
        c = self.start_cluster(nodes=3, metadata_flags=FAST)
        src = harness.random_file(self.tmp("r"), 1 << 20, seed=65)
        self.dfs("put", "--replicas", "2", "--fragments", "1", src, "/rs")
        (fr,) = stat(self, "/rs")["fragments"]
        a, b = sorted(harness.fragment_files(c, [fr["fragment_id"]]))
        with open(b, "r+b") as f:
            f.seek(128 + 70000)
            byte = f.read(1)
            f.seek(128 + 70000)
            f.write(bytes([byte[0] ^ 0x40]))
        dead = node_name_of(c, a)
        c.expected_exits.add(dead)
        os.kill(next(r["pid"] for r in c.status() if r["name"] == dead), signal.SIGKILL)

        def settled():
            s = status(self)
            return (s["health"]["lost"] == 1 and s["repair"]["queued"] == 0 and
                    s["repair"]["running"] == 0 and s["damage"]["confirmed"] >= 1)
        harness.wait_until(settled, 60, "the corrupt source is still tried, or the loss not shown")
        with open(c.path(node_name_of(c, b), "data", "node.id")) as f:
            b_id = f.read().strip()
        self.assertNotIn(b_id, [r["node_id"] for r in stat(self, "/rs")["fragments"][0]["replicas"]])
        self.assertTrue(os.path.exists(b), "the last (corrupt) bytes must stay for salvage")
        text = self.dfs("status")[1]
        self.assertIn("1 lost", text)
        self.assertIn("damaged cop", text)


class MovedCopies(harness.TestCase):
    def test_read_survives_the_catalog_moving_its_copy(self):
        # The gateway flake: a rebalance (here a drain, the same move) dropped the only copy a
        # 1 GiB download was streaming from, and the download was cut. The move here removes the
        # old copy at once (no grace): the reader must find the copy where it went.
        c = self.start_cluster(nodes=3, metadata_flags=["--delete-grace-ms", "0"])
        src = harness.random_file(self.tmp("m"), 24 << 20, seed=66)
        self.dfs("put", "--replicas", "1", "--fragments", "1", src, "/mv")
        (fr,) = stat(self, "/mv")["fragments"]
        (old,) = harness.fragment_files(c, [fr["fragment_id"]])
        holder = fr["replicas"][0]["node_id"]
        out, progress = self.tmp("mv.out"), self.tmp("mv.progress")
        p = subprocess.Popen([c.binaries()["dfs"], "get", "--throttle", "2M", "--progress-log",
                              progress, "/mv", out], env=c.env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)

        def started():
            try:
                with open(progress) as f:
                    return any(int(line.split()[1]) > 0 for line in f)
            except (OSError, IndexError, ValueError):
                return p.poll() is not None
        harness.wait_until(started, 60, "the get did not start")
        self.dfs("node", "drain", holder)
        harness.wait_until(lambda: not os.path.exists(old) or p.poll() is not None, 60,
                           "the copy was not moved")
        self.assertIsNone(p.poll(), "the get ended before its copy moved: the test proves nothing")
        _, stderr = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, stderr)
        self.assertEqual(harness.sha256(out), harness.sha256(src))
        (moved,) = stat(self, "/mv")["fragments"][0]["replicas"]
        self.assertNotEqual(moved["node_id"], holder)


if __name__ == "__main__":
    harness.main()
