"""Expected data loss when s of N storage nodes fail at once (Python 3 stdlib only).

Used by benchmarks/experiment (Task 2). Every failure set of s nodes is equally likely. A replicated
fragment sits on k distinct nodes and is lost when all k failed; a file of F fragments is lost when
any of its fragments is.

Three levels of expectation, from the most general to the most specific:

1. The policy model, before any file is placed (analytic()):
   random      each fragment takes k distinct nodes uniformly, independently of the others. For a
               given failure set S, each fragment is lost with probability
                   p = C(s,k) / C(N,k)       (= C(N-k, s-k) / C(N, s): the k nodes all in S)
               whatever S is, so fragments are independent and
                   P(file lost) = 1 - (1 - p)^F.
   least_used  the k nodes with the most free space. On one machine all nodes report the same file
               system, so each placement lowers its k nodes' free space and the next ones go
               elsewhere: every fragment still has k distinct nodes, each k-set about equally
               likely over time, hence approximately the random formula.
   min_copy    a fragment goes to a copyset c with probability q_c (a primary uniform among the
               members, then one of its copysets uniformly: q_c = sum over n in c of
               1/(members * copysets(n))). Given S, a fragment is lost with probability
                   L(S) = sum of q_c over the copysets c inside S,
               fragments are independent given S, so P(file lost) = E_S[1 - (1 - L(S))^F].
               One copyset is inside S with probability C(N-k, s-k)/C(N, s), so E[L] = p again: the
               same expected fraction of FRAGMENTS as random, but concentrated in a few failure
               sets, so FILES (and any loss at all) are lost far less often.
   buddy       a group g with probability |g|/members, then k distinct nodes inside it: with t_g
               failed nodes in g, L(S) = sum_g |g|/members * C(t_g, k)/C(|g|, k), and again
               P(file lost) = E_S[1 - (1 - L(S))^F]; t_g follows the hypergeometric law.
   E_S is exact: a dynamic programme over disjoint sets (copysets of one permutation when N is a
   multiple of k, buddy groups always), counting the failure sets by how many nodes fail in each
   set; exact enumeration of every failure set when the sets overlap and C(N,s) is small; else a
   Monte Carlo estimate with a fixed seed (said so in the result's "method").

2. The layout expectation (layout_expectation()): the files actually stored, with their actual
   replica sets R_1..R_F, and a uniformly random S. A file is lost when some R_i is inside S; by
   inclusion-exclusion over its distinct replica sets,
       P(lost) = sum over non-empty subsets I of (-1)^(|I|+1) C(N - |U_I|, s - |U_I|) / C(N, s),
   U_I the union of the sets in I. Exact.

3. The prediction for one run (predict_lost()): the actual layout and the actual killed nodes. A
   file is lost exactly when one of its fragments has every replica on a killed node: no
   probability left, it must equal what reading the files back finds.
"""

import itertools
import math
import random
from fractions import Fraction


def p_fragment(n, k, s):
    """Probability that a given set of k of n nodes is inside a uniform s-subset: C(s,k)/C(n,k)."""
    if s < k or k > n:
        return 0.0
    return math.comb(s, k) / math.comb(n, k)


def file_loss_independent(n, k, s, fragments):
    """1 - (1 - C(s,k)/C(n,k))^F: random placement (and least_used, approximately)."""
    return 1.0 - (1.0 - p_fragment(n, k, s)) ** fragments


def _blocks_dp(n, blocks, k, s, fragments):
    """E_S[1 - (1 - L(S))^F] for DISJOINT blocks [(size, weight)], exactly.

    ways[(r, L)] counts the choices of r failed nodes among the blocks seen so far that give
    per-fragment loss L (a Fraction); the nodes in no block take the remaining s - r failures.
    """
    ways = {(0, Fraction(0)): 1}
    covered = 0
    for size, weight in blocks:
        covered += size
        nxt = {}
        for (r, loss), cnt in ways.items():
            for t in range(0, min(size, s - r) + 1):
                add = Fraction(math.comb(t, k), math.comb(size, k)) * weight if t >= k else 0
                key = (r + t, loss + add)
                nxt[key] = nxt.get(key, 0) + cnt * math.comb(size, t)
        ways = nxt
    free = n - covered
    total = math.comb(n, s)
    acc = Fraction(0)
    for (r, loss), cnt in ways.items():
        rest = s - r
        if rest < 0 or rest > free:
            continue
        acc += cnt * math.comb(free, rest) * (1 - (1 - loss) ** fragments)
    return float(acc / total)


def _sets_expectation(n, nodes, sets, k, s, fragments, seed, samples):
    """E_S[1 - (1 - L(S))^F] for overlapping sets [(frozenset, q, size)] by enumeration or MC."""
    total = math.comb(n, s)
    members = list(nodes)

    def value(failed):
        loss = 0.0
        for members_c, q, size in sets:
            t = len(members_c & failed)
            if t >= k:
                loss += q * math.comb(t, k) / math.comb(size, k)
        return 1.0 - (1.0 - loss) ** fragments

    if total <= 200000:
        acc = 0.0
        for combo in itertools.combinations(members, s):
            acc += value(frozenset(combo))
        return acc / total, "exact enumeration of %d failure sets" % total
    rng = random.Random(seed)
    acc = 0.0
    for _ in range(samples):
        acc += value(frozenset(rng.sample(members, s)))
    return acc / samples, "Monte Carlo, %d failure sets (seed %d)" % (samples, seed)


def analytic(policy, n, k, s, fragments, sets=None, seed=1, samples=20000):
    """The policy model's expected fraction of files lost: {"value", "method"}.

    sets: for min_copy and buddy, the family's sets as a list of lists of node ids (copysets of k,
    or buddy groups), covering the members; None when unknown (then min_copy assumes N/k disjoint
    copysets and buddy groups of 2k, as placement.h builds them for N a multiple of k and of 2k).
    """
    if s > n:
        raise ValueError("cannot fail %d of %d nodes" % (s, n))
    if policy in ("random", "least_used"):
        return {"value": file_loss_independent(n, k, s, fragments),
                "method": "1-(1-C(s,k)/C(N,k))^F" + (" (least_used taken as random)" if policy == "least_used"
                                                       else "")}
    if policy not in ("min_copy", "buddy"):
        raise ValueError("unknown policy %r" % policy)
    assumed = sets is None
    if sets is None:
        g = k if policy == "min_copy" else 2 * k
        count = max(1, n // g)
        sizes = [g] * count
        for i in range(n - g * count):
            sizes[i % count] += 1
        if policy == "min_copy" and n % k:
            sizes = [k] * (n // k)  # the completed leftover set overlaps: ignored (approximation)
        ids = iter(range(n))
        sets = [[next(ids) for _ in range(sz)] for sz in sizes]
    members = set()
    degree = {}
    for st in sets:
        for v in st:
            members.add(v)
            degree[v] = degree.get(v, 0) + 1
    m = len(members)
    weighted = []
    for st in sets:
        if policy == "min_copy":
            q = sum(Fraction(1, m * degree[v]) for v in st)
        else:
            q = Fraction(len(st), m)
        weighted.append((frozenset(st), q, len(st)))
    disjoint = all(d == 1 for d in degree.values())
    note = " (sets assumed from N, not read from the catalog)" if assumed else ""
    if disjoint:
        blocks = [(size, q) for _, q, size in weighted]
        return {"value": _blocks_dp(n, blocks, k, s, fragments),
                "method": "exact: DP over %d disjoint %s%s" % (
                    len(blocks), "copysets" if policy == "min_copy" else "groups", note)}
    nodes = list(members) + ["(outside %d)" % i for i in range(n - m)]
    value, how = _sets_expectation(n, nodes, [(st, float(q), size) for st, q, size in weighted], k, s,
                                   fragments, seed, samples)
    return {"value": value, "method": how + note}


def layout_expectation(n, s, fragment_sets):
    """Exact P(file lost) for one file under a uniform failure set of s nodes.

    fragment_sets: one collection of node ids per fragment (its replicas).
    """
    distinct = list({frozenset(x) for x in fragment_sets})
    total = math.comb(n, s)
    p = Fraction(0)
    for size in range(1, len(distinct) + 1):
        for combo in itertools.combinations(distinct, size):
            u = len(frozenset().union(*combo))
            if u <= s:
                p += (-1) ** (size + 1) * Fraction(math.comb(n - u, s - u), total)
    return float(p)


def predict_lost(fragment_sets, killed):
    """True when some fragment has every replica among the killed node ids."""
    killed = set(killed)
    return any(set(x) <= killed for x in fragment_sets)
