"""Failure detection, repair, drain, scrubbing and loss accounting, with real processes.

Nodes are killed with SIGKILL (a crash, not a goodbye); the metadata service must notice, count
what is lost and degraded, and bring every file that can be saved back to full redundancy, most
endangered first, without ever reading a wrong byte."""

import json
import os
import time

import harness

# Fast liveness for tests: suspect after 0.6 s of silence, dead after 1.5 s.
FAST = ["--heartbeat-ms", "200", "--suspect-after-ms", "600", "--dead-after-ms", "1500"]


def node_id(cluster, name):
    with open(cluster.path(name, "data", "node.id"), encoding="ascii") as f:
        return f.read().strip()


def status(tc, *extra):
    return json.loads(tc.dfs("status", "--json", *extra)[1])


def stat(tc, path):
    return json.loads(tc.dfs("stat", "--json", path)[1])


def nodes(tc):
    return {n["id"]: n for n in json.loads(tc.dfs("nodes", "--json")[1])}


def put_files(tc, count, size, *flags, prefix="/f", seed=0):
    """Store `count` files of `size` bytes; returns {remote: sha256}."""
    out = {}
    for i in range(count):
        local = harness.random_file(tc.tmp("src-%s-%d" % (prefix.strip("/"), i)), size, seed=seed + i)
        remote = "%s%03d" % (prefix, i)
        tc.dfs("put", "-q", local, remote, *flags)
        out[remote] = harness.sha256(local)
    return out


def check_all_readable(tc, files):
    for remote, digest in files.items():
        local = tc.tmp("back")
        tc.dfs("get", "-q", remote, local)
        tc.assertEqual(harness.sha256(local), digest, remote)
        os.unlink(local)


def wait_healthy(tc, timeout=60):
    """Until every file is at full redundancy and the repair queue is empty; returns the status."""
    last = {}

    def ok():
        last.update(status(tc))
        h, r = last["health"], last["repair"]
        return h["degraded"] == 0 and h["lost"] == 0 and r["queued"] == 0 and r["running"] == 0

    try:
        harness.wait_until(ok, timeout, "files not back to full redundancy")
    except AssertionError:
        raise AssertionError("not healthy after %g s: %s" % (timeout, json.dumps(last)))
    return last


def assert_full_redundancy(tc, files, dead_ids, copies):
    """Every fragment of every file has `copies` copies on distinct live nodes, none on a dead one."""
    for remote in files:
        st = stat(tc, remote)
        for fr in st["fragments"]:
            ids = [r["node_id"] for r in fr["replicas"]]
            tc.assertEqual(len(ids), copies, "%s fragment %d: %s" % (remote, fr["index"], ids))
            tc.assertEqual(len(set(ids)), len(ids), "%s fragment %d twice on a node" % (remote, fr["index"]))
            tc.assertFalse(set(ids) & set(dead_ids), "%s fragment %d still on a dead node" % (remote, fr["index"]))
            for r in fr["replicas"]:
                tc.assertEqual(r["state"], "alive")


def predicted_lost(tc, files, killed_ids):
    """The files the catalog's layout says cannot be read with `killed_ids` gone."""
    lost = set()
    for remote in files:
        st = stat(tc, remote)
        red = st["redundancy"]
        live = [any(r["node_id"] not in killed_ids for r in fr["replicas"]) for fr in st["fragments"]]
        if red["scheme"] == "erasure":
            if sum(live) < red["data"]:
                lost.add(remote)
        elif not all(live):
            lost.add(remote)
    return lost


class LossAccounting(harness.TestCase):
    def check_policy(self, policy, flags, kill, nodes=6, count=24):
        # No repair may change the picture while we count: the dead timeout is long.
        c = self.start_cluster(nodes=nodes, metadata_flags=["--dead-after-ms", "600000",
                                                            "--suspect-after-ms", "300000",
                                                            "--rebalance-threshold", "0"])
        files = put_files(self, count, 20000, "--policy", policy, *flags, prefix="/" + policy)
        victims = c.kill_nodes(kill, seed=len(policy) * 7 + kill)
        c.expected_exits.update(victims)
        killed_ids = {node_id(c, v) for v in victims}
        expect = predicted_lost(self, files, killed_ids)
        st = status(self, "--loss", "-l")
        h = st["health"]
        self.assertTrue(h["verified"])
        self.assertEqual(h["files"], count)
        self.assertEqual(set(h["lost_paths"]), expect)
        self.assertEqual(h["lost"], len(expect))
        self.assertAlmostEqual(h["lost_fraction"], len(expect) / count, places=5)
        self.assertEqual(h["healthy"] + h["degraded"] + h["lost"], count)
        # The count is what reading every file back finds.
        unreadable = set()
        for remote, digest in files.items():
            local = self.tmp("back")
            rc, _, err = self.dfs("get", "-q", remote, local, check=False)
            if rc != 0:
                unreadable.add(remote)
                self.assertEqual(len(err.strip().splitlines()), 1, err)
            else:
                self.assertEqual(harness.sha256(local), digest)
                os.unlink(local)
        self.assertEqual(unreadable, expect)
        return len(expect)

    def test_random(self):
        self.check_policy("random", ["--replicas", "2", "--fragments", "4"], kill=2)

    def test_min_copy(self):
        self.check_policy("min_copy", ["--replicas", "2", "--fragments", "4"], kill=2)

    def test_buddy(self):
        self.check_policy("buddy", ["--replicas", "2", "--fragments", "4"], kill=2)

    def test_least_used(self):
        self.check_policy("least_used", ["--replicas", "2", "--fragments", "2"], kill=2)

    def test_erasure(self):
        self.check_policy("random", ["--ec", "2+1"], kill=2)


class Repair(harness.TestCase):
    def test_node_death_is_repaired(self):
        c = self.start_cluster(nodes=5, metadata_flags=FAST)
        files = put_files(self, 6, 300000, "--replicas", "3", "--fragments", "3")
        files.update(put_files(self, 3, 300000, "--ec", "2+2", prefix="/ec"))
        (victim,) = c.kill_nodes(1, seed=5)
        c.expected_exits.add(victim)
        dead = node_id(c, victim)
        harness.wait_until(lambda: nodes(self)[dead]["state"] == "dead", 20, "the killed node is not dead")
        st = wait_healthy(self)
        self.assertGreater(st["repair"]["done"], 0)
        self.assertEqual(st["health"]["healthy"], len(files))
        assert_full_redundancy(self, [f for f in files if not f.startswith("/ec")], [dead], 3)
        assert_full_redundancy(self, [f for f in files if f.startswith("/ec")], [dead], 1)
        check_all_readable(self, files)

    def test_min_copy_repair_stays_in_a_copyset(self):
        c = self.start_cluster(nodes=7, metadata_flags=FAST)
        files = put_files(self, 8, 50000, "--replicas", "3", "--fragments", "2", "--policy", "min_copy")
        (victim,) = c.kill_nodes(1, seed=3)
        c.expected_exits.add(victim)
        dead = node_id(c, victim)
        harness.wait_until(lambda: nodes(self)[dead]["state"] == "dead", 20, "the killed node is not dead")
        wait_healthy(self)
        assert_full_redundancy(self, files, [dead], 3)
        # The replica sets after repair are copysets: each node is in the groups it is listed with.
        sets = {}
        for n in nodes(self).values():
            for g in n["groups"]:
                sets.setdefault(g, set()).add(n["id"])
        self.assertTrue(any(g.startswith("min_copy/3") for g in sets), sets)
        check_all_readable(self, files)

    def test_node_comes_back_and_is_counted_again(self):
        # Three nodes and three copies: nowhere to repair to, so only the node's return can help.
        c = self.start_cluster(nodes=3, metadata_flags=FAST)
        files = put_files(self, 3, 100000)
        c.stop_node(1)
        nid = node_id(c, "node-1")
        harness.wait_until(lambda: nodes(self)[nid]["state"] == "dead", 20, "the stopped node is not dead")
        h = status(self)["health"]
        self.assertEqual(h["degraded"], 3)
        self.assertEqual(h["lost"], 0)
        c.start_node(1)
        st = wait_healthy(self)
        self.assertEqual(st["repair"]["done"], 0, "copies were made although the node came back")
        self.assertEqual(nodes(self)[nid]["state"], "alive")
        assert_full_redundancy(self, files, [], 3)

    def test_metadata_restart_mid_repair(self):
        # The repair is slowed down by the nodes' repair rate so the restart lands in the middle.
        c = self.start_cluster(nodes=4, metadata_flags=FAST, storage_flags=["--repair-rate", "4M"])
        files = put_files(self, 4, 4 << 20, "--replicas", "3", "--fragments", "2")
        (victim,) = c.kill_nodes(1, seed=1)
        c.expected_exits.add(victim)
        dead = node_id(c, victim)
        harness.wait_until(lambda: status(self)["repair"]["running"] > 0, 30, "no repair started")
        c.restart_metadata(kill=True)
        wait_healthy(self, timeout=90)
        assert_full_redundancy(self, files, [dead], 3)
        check_all_readable(self, files)
        # Nothing was copied twice: every node holds exactly what the catalog says it holds.
        harness.wait_until(lambda: all(n["fragment_count"] == n["catalog_fragments"]
                                       for n in nodes(self).values() if n["state"] == "alive"),
                           30, "nodes hold copies the catalog does not know")

    def test_two_nodes_die_during_repair(self):
        # 4 MiB copies at 1 MiB/s per receiving node: each repair runs for seconds, so the second
        # death lands while repairs of the first are running (status is polled by a process).
        c = self.start_cluster(nodes=6, metadata_flags=FAST, storage_flags=["--repair-rate", "1M"])
        files = put_files(self, 6, 8 << 20, "--replicas", "3", "--fragments", "2")
        first = c.kill_nodes(1, seed=2)
        harness.wait_until(lambda: status(self)["repair"]["running"] > 0, 30, "no repair started")
        second = c.kill_nodes(1, seed=9)
        killed = first + second
        c.expected_exits.update(killed)
        self.assertEqual(len(set(killed)), 2)
        harness.wait_until(lambda: all(nodes(self)[node_id(c, k)]["state"] == "dead" for k in killed), 20,
                           "the killed nodes are not dead")
        wait_healthy(self, timeout=120)
        assert_full_redundancy(self, files, [node_id(c, k) for k in killed], 3)
        check_all_readable(self, files)

    def test_corrupt_fragment_found_by_scrubber_and_repaired(self):
        c = self.start_cluster(nodes=4, metadata_flags=FAST, storage_flags=["--scrub-interval", "1"])
        files = put_files(self, 1, 1 << 20, "--replicas", "3", "--fragments", "1")
        (remote,) = files
        fr = stat(self, remote)["fragments"][0]
        (path, *_) = harness.fragment_files(c, [fr["fragment_id"]])
        holder = path.split(os.sep + "data" + os.sep)[0].rsplit(os.sep, 1)[1]
        bad = node_id(c, holder)
        with open(path, "r+b") as f:  # flip one bit in the middle of the data
            f.seek(os.path.getsize(path) // 2)
            b = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([b[0] ^ 0x10]))

        def replaced():
            ids = [r["node_id"] for r in stat(self, remote)["fragments"][0]["replicas"]]
            return bad not in ids and len(ids) == 3

        harness.wait_until(replaced, 60, "the corrupt copy was not replaced")
        wait_healthy(self)
        harness.wait_until(lambda: not os.path.exists(path), 30, "the corrupt copy was not removed")
        check_all_readable(self, files)


class Drain(harness.TestCase):
    def test_drain_moves_everything_then_decommissions(self):
        c = self.start_cluster(nodes=4, metadata_flags=FAST)
        files = put_files(self, 5, 200000)
        nid = node_id(c, "node-2")
        before = nodes(self)[nid]["catalog_fragments"]
        self.assertGreater(before, 0)
        _, out, _ = self.dfs("node", "drain", nid[:8])
        self.assertIn("draining", out)
        harness.wait_until(lambda: nodes(self)[nid]["state"] == "decommissioned", 60, "drain did not finish")
        self.assertEqual(nodes(self)[nid]["catalog_fragments"], 0)
        wait_healthy(self)
        assert_full_redundancy(self, files, [nid], 3)
        harness.wait_until(lambda: nodes(self)[nid]["fragment_count"] == 0, 30,
                           "the drained node still holds fragments")
        check_all_readable(self, files)
        # New writes avoid it.
        more = put_files(self, 2, 1000, prefix="/after")
        for remote in more:
            for fr in stat(self, remote)["fragments"]:
                self.assertNotIn(nid, [r["node_id"] for r in fr["replicas"]])

    def test_new_node_takes_a_share_of_old_data(self):
        c = self.start_cluster(nodes=3, metadata_flags=FAST)
        files = put_files(self, 6, 200000)
        c.start_node(3)
        nid = node_id(c, "node-3")
        harness.wait_until(lambda: nid in nodes(self) and nodes(self)[nid]["catalog_fragments"] > 0, 60,
                           "the new node took no old data")
        # Bounded and convergent: it settles, and nothing is lost or over-replicated on the way.
        time.sleep(2)
        wait_healthy(self)
        assert_full_redundancy(self, files, [], 3)
        check_all_readable(self, files)

    def test_bad_node_commands(self):
        self.start_cluster(nodes=3)
        rc, _, err = self.dfs("node", "drain", "ffffffffffff", check=False)
        self.assertEqual(rc, 1)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        rc, _, err = self.dfs("node", "explode", "abc", check=False)
        self.assertEqual(rc, 2)
        self.assertIn("drain, undrain or decommission", err)
        rc, _, err = self.dfs("node", "drain", check=False)
        self.assertEqual(rc, 2)


if __name__ == "__main__":
    harness.main()
