"""End to end: the placement policies on a real cluster of 7 nodes (not a multiple of k = 3).

Each policy puts ~60 small files through `dfs put --policy P`; the layouts (`dfs stat --json`) are
checked against the policy's definition (metadata/placement.h) and against the copysets and buddy
groups the metadata service keeps in its catalog (read here with Python's sqlite3, read-only).
"""

import concurrent.futures
import json
import os
import sqlite3

import harness

NODES = 7
K = 3
FILES = 60
# Buddy groups of 3 (..5) nodes: with the default 2k = 6, 7 nodes would make a single group.
GROUPS = ["--group-size", "3"]
# For least_used the test replays the service's choices from the nodes' reported free space, so
# the figures must not move during the test: nodes report once a minute and are never late, and
# nothing is rebalanced (the nodes share one file system, so on a busy machine their reported free
# space can differ by more than the threshold, and a rebalance moves copies the replay expects).
QUIET = ["--heartbeat-ms", "60000", "--suspect-after-ms", "600000", "--dead-after-ms", "600000",
         "--rebalance-threshold", "0"]


class Placement(harness.TestCase):
    # ---- helpers -----------------------------------------------------------------------------

    def sources(self, count, low, high, seed):
        """`count` local files of sizes spread over [low, high); returns their paths."""
        out = []
        for i in range(count):
            size = low + (high - low) * i // max(count, 1)
            out.append(harness.random_file(self.tmp("src-%d-%d" % (seed, i)), size, seed=seed + i))
        return out

    def put_files(self, policy, count, prefix, extra=(), sizes=(1000, 40000), parallel=True):
        """Put `count` files with `dfs put --policy`; returns the remote paths in put order."""
        srcs = self.sources(min(count, 12), sizes[0], sizes[1], seed=len(prefix) * 101 + count)
        jobs = [(srcs[i % len(srcs)], "%s/%03d" % (prefix, i)) for i in range(count)]

        # Four fragments each, named: files this small would otherwise be one fragment (64 KiB and
        # under), and the statistics below count placements of fragments.
        frags = () if "--ec" in extra or "--fragments" in extra else ("--fragments", "4")

        def put(job):
            self.dfs("put", "--policy", policy, *frags, *extra, job[0], job[1])
            return job[1]

        if not parallel:
            return [put(j) for j in jobs]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return list(pool.map(put, jobs))

    def stat(self, paths):
        """{path: `dfs stat --json` of it}."""
        def one(p):
            _, out, _ = self.dfs("stat", "--json", p)
            return p, json.loads(out)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return dict(pool.map(one, paths))

    def placements(self, paths):
        """The node sets of every placement: one per replicated fragment, one per erasure-coded file."""
        out = []
        for p, st in self.stat(paths).items():
            frags = st["fragments"]
            if st["redundancy"]["scheme"] == "erasure":
                ids = [fr["replicas"][0]["node_id"] for fr in frags]
                self.assertTrue(all(len(fr["replicas"]) == 1 for fr in frags), p)
                self.assertEqual(len(set(ids)), len(ids), "%s: fragments share a node" % p)
                out.append(ids)
                continue
            for fr in frags:
                ids = [r["node_id"] for r in fr["replicas"]]
                self.assertEqual(len(ids), st["redundancy"]["replicas"], p)
                self.assertEqual(len(set(ids)), len(ids), "%s fragment %d: copies share a node" % (p, fr["index"]))
                out.append(ids)
        return out

    def nodes(self):
        _, out, _ = self.dfs("nodes", "--json")
        return json.loads(out)

    def catalog(self):
        db = sqlite3.connect("file:%s?mode=ro" % self.cluster.path("metadata", "catalog.db"), uri=True)
        db.execute("PRAGMA busy_timeout = 5000")
        return db

    def family(self, name):
        """(families row, [set as a list of node ids]) of a placement family in the catalog."""
        db = self.catalog()
        try:
            fam = db.execute("SELECT family, policy, width, param, perms, updated_ms FROM placement_families "
                             "WHERE family = ?", (name,)).fetchone()
            sets = {}
            for set_id, pos, node in db.execute("SELECT set_id, pos, node_id FROM placement_sets "
                                                "WHERE family = ? ORDER BY set_id, pos", (name,)):
                sets.setdefault(set_id, []).append(node)
                self.assertEqual(len(sets[set_id]) - 1, pos)
        finally:
            db.close()
        self.assertIsNotNone(fam, "no placement family %s in the catalog" % name)
        return fam, [sets[i] for i in sorted(sets)]

    def assert_all_nodes_used(self, placements, what):
        used = {n for p in placements for n in p}
        every = {n["id"] for n in self.nodes()}
        self.assertEqual(len(every), NODES)
        self.assertEqual(used, every, "%s: %d of %d nodes used" % (what, len(used), NODES))

    # ---- the policies ------------------------------------------------------------------------

    def test_random(self):
        self.start_cluster(nodes=NODES)
        paths = self.put_files("random", FILES, "/random")
        got = self.placements(paths)
        self.assertEqual(len(got), FILES * 4)
        # 240 placements of 3 among 7: P(a node unused) = (4/7)^240, about 1e-58.
        self.assert_all_nodes_used(got, "random")
        for p, st in self.stat(paths[:3]).items():
            self.assertEqual(st["policy"], "random")

    def test_min_copy(self):
        self.start_cluster(nodes=NODES)
        paths = self.put_files("min_copy", FILES, "/mc")
        got = self.placements(paths)
        fam, sets = self.family("min_copy/3")
        self.assertEqual(fam[1:5], ("min_copy", 3, 2, 1))  # S = k - 1 = 2, one permutation
        # 7 nodes, k = 3: two copysets cut from the permutation, and the 7th node's copyset
        # completed with two others. Every copyset has 3 distinct nodes; together they cover all 7.
        self.assertEqual(len(sets), 3)
        for s in sets:
            self.assertEqual(len(set(s)), 3)
        self.assertEqual(len({n for s in sets for n in s}), NODES)
        copysets = {frozenset(s) for s in sets}
        self.assertEqual(len(copysets), 3)
        replica_sets = {frozenset(p) for p in got}
        # Every fragment is on exactly one copyset; over 240 placements every copyset was used
        # (each is chosen with probability >= 1/14 per placement: (13/14)^240 < 1e-7).
        self.assertTrue(replica_sets <= copysets, "a fragment outside the copysets: %s" % (replica_sets - copysets))
        self.assertEqual(replica_sets, copysets)
        self.assert_all_nodes_used(got, "min_copy")
        for st in self.stat(paths[:3]).values():
            self.assertEqual(st["policy"], "min_copy")
        # Erasure code 2+1 is a placement of width 3: it uses the same copysets; 4+2 has its own
        # family of width 6 (one copyset cut from 7 nodes, the 7th completed with 5 others).
        ec3 = self.put_files("min_copy", 6, "/mc-ec3", extra=("--ec", "2+1"))
        for p in self.placements(ec3):
            self.assertIn(frozenset(p), copysets)
        ec6 = self.put_files("min_copy", 6, "/mc-ec6", extra=("--ec", "4+2"))
        fam6, sets6 = self.family("min_copy/6")
        self.assertEqual(len(sets6), 2)
        for p in self.placements(ec6):
            self.assertIn(frozenset(p), {frozenset(s) for s in sets6})
        self.dfs("get", ec6[0], self.tmp("ec6.out"))

    def test_buddy(self):
        self.start_cluster(nodes=NODES, metadata_flags=GROUPS)
        paths = self.put_files("buddy", FILES, "/buddy")
        got = self.placements(paths)
        fam, groups = self.family("buddy/3")
        self.assertEqual(fam[1:5], ("buddy", 3, 3, 1))
        # 7 nodes in groups of G = 3: two groups, the 7th node spread onto one: sizes 4 and 3.
        self.assertEqual(sorted(len(g) for g in groups), [3, 4])
        members = [n for g in groups for n in g]
        self.assertEqual(len(members), NODES)
        self.assertEqual(len(set(members)), NODES)
        group_of = {n: i for i, g in enumerate(groups) for n in g}
        for p in got:
            self.assertEqual(len({group_of[n] for n in p}), 1, "placement %s spans buddy groups" % p)
        self.assert_all_nodes_used(got, "buddy")
        ec = self.put_files("buddy", 6, "/buddy-ec", extra=("--ec", "2+1"))
        for p in self.placements(ec):
            self.assertEqual(len({group_of[n] for n in p}), 1)

    def test_least_used(self):
        self.start_cluster(nodes=NODES, metadata_flags=QUIET)
        before = {n["id"]: n for n in self.nodes()}
        # One at a time, so that the order of the placements is known; 256..768 KiB files, so
        # that the bytes planned (~13 MiB per node) dwarf the differences between the nodes'
        # reported free space (the nodes share one file system).
        paths = self.put_files("least_used", FILES, "/lu", sizes=(256 << 10, 768 << 10), parallel=False)
        after = {n["id"]: n for n in self.nodes()}
        for i, n in before.items():
            self.assertEqual(n["last_heartbeat_ms"], after[i]["last_heartbeat_ms"],
                             "a node reported again during the test: the replay below is void")
        layouts = self.stat(paths)
        free = {i: n["free_bytes"] for i, n in before.items()}
        planned = {i: 0 for i in free}
        got = []
        # Replay: each placement takes the 3 nodes with the most free space, that is the reported
        # figure less what the service planned onto the node since (ties broken at random).
        for p in paths:
            for fr in layouts[p]["fragments"]:
                chosen = [r["node_id"] for r in fr["replicas"]]
                eff = {i: free[i] - planned[i] for i in free}
                least_chosen = min(eff[c] for c in chosen)
                most_other = max(eff[i] for i in free if i not in chosen)
                self.assertGreaterEqual(least_chosen, most_other,
                                        "%s fragment %d: chose %s, free %s" % (p, fr["index"], chosen, eff))
                for c in chosen:
                    planned[c] += fr["size"]
                got.append(chosen)
        # With the nodes about equally free, the reservations rotate the choice over all of them.
        # (The nodes share one file system, so their reports differ only by what was written
        # between them; when something else wrote a lot meanwhile, the replay above is the check.)
        spread = max(free.values()) - min(free.values())
        if spread < sum(planned.values()) / len(free) / 2:
            self.assert_all_nodes_used(got, "least_used (free space spread %d bytes at the start, %d planned)" % (
                spread, sum(planned.values())))

    # ---- zones --------------------------------------------------------------------------------

    def test_zones(self):
        self.start_cluster(nodes=NODES, zones=3, metadata_flags=GROUPS + QUIET)
        zone = {n["id"]: n["zone"] for n in self.nodes()}
        self.assertEqual(sorted(set(zone.values())), ["z0", "z1", "z2"])
        for policy in ("random", "min_copy", "buddy", "least_used"):
            sizes = (256 << 10, 768 << 10) if policy == "least_used" else (1000, 40000)
            paths = self.put_files(policy, 20, "/z-" + policy, sizes=sizes)
            got = self.placements(paths)
            for p in got:
                self.assertEqual(len({zone[n] for n in p}), K, "%s: placement %s is in zones %s" % (
                    policy, p, sorted(zone[n] for n in p)))
            # least_used follows the free space the nodes report; they share this machine's disk
            # with whatever else runs, so which nodes it favours is not this test's business
            # (test_least_used replays its choices exactly).
            if policy != "least_used":
                self.assert_all_nodes_used(got, policy)
        # The copysets and groups themselves span the zones (3 zones of 3, 2 and 2 nodes).
        _, sets = self.family("min_copy/3")
        for s in sets:
            self.assertEqual(len({zone[n] for n in s}), 3, "copyset %s" % s)
        _, groups = self.family("buddy/3")
        for g in groups:
            self.assertEqual(len({zone[n] for n in g}), 3, "buddy group %s" % g)

    # ---- stability ----------------------------------------------------------------------------

    def test_sets_survive_metadata_restart(self):
        self.start_cluster(nodes=NODES, metadata_flags=GROUPS)
        self.put_files("min_copy", 10, "/a-mc")
        self.put_files("buddy", 10, "/a-bd")
        mc, mc_sets = self.family("min_copy/3")
        bd, bd_groups = self.family("buddy/3")
        self.cluster.restart_metadata()
        with open(self.cluster.path("metadata", "log")) as f:
            log = f.read()
        self.assertIn('msg="placement sets loaded" policy=min_copy width=3 sets=3', log)
        self.assertIn('msg="placement sets loaded" policy=buddy width=3 sets=2', log)
        after_mc = self.put_files("min_copy", 10, "/b-mc")
        after_bd = self.put_files("buddy", 10, "/b-bd")
        # The same rows, not even saved again (updated_ms unchanged).
        self.assertEqual(self.family("min_copy/3"), (mc, mc_sets))
        self.assertEqual(self.family("buddy/3"), (bd, bd_groups))
        copysets = {frozenset(s) for s in mc_sets}
        for p in self.placements(after_mc):
            self.assertIn(frozenset(p), copysets)
        group_of = {n: i for i, g in enumerate(bd_groups) for n in g}
        for p in self.placements(after_bd):
            self.assertEqual(len({group_of[n] for n in p}), 1)
        # Old files still read back after the restart.
        self.dfs("get", "/a-mc/000", self.tmp("a.out"))


if __name__ == "__main__":
    harness.main()
