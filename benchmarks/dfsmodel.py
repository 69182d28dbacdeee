"""The transfer model of dfs: how long a put or get takes when every link runs at the same rate R.

Shared by benchmarks/transfer_model and benchmarks/experiment (Python 3 stdlib only). A layout is
what `dfs stat --json` prints: {"fragments": [{"size": bytes, "replicas": [{"address", ...}, ...]},
...]}. The model of a transfer is the largest number of bytes any one link must carry, divided by R
(DESIGN.md, "Throttling"):
  fanout put   link client->n carries every copy placed on n;
  chain put    link client->head carries each fragment whose chain starts there, and each hop a->b
               of a chain carries that fragment once more;
  get          each fragment's bytes spread evenly over its copies, so link n carries size/k of every
               fragment with a copy on n (model_get_balanced: the least any schedule can reach).
"""

import collections


def model_put(layout, mode="fanout"):
    """Bytes on the busiest link of a put of this layout (mode "fanout" or "chain")."""
    links = collections.Counter()
    for fr in layout["fragments"]:
        nodes = [r["address"] for r in fr["replicas"]]
        if mode == "fanout":
            for n in nodes:
                links[("client", n)] += fr["size"]
        else:
            links[("client", nodes[0])] += fr["size"]
            for a, b in zip(nodes, nodes[1:]):
                links[(a, b)] += fr["size"]
    return max(links.values()) if links else 0


def model_get(layout):
    """Bytes on the busiest link of a get of this layout."""
    links = collections.Counter()
    for fr in layout["fragments"]:
        for r in fr["replicas"]:
            links[r["address"]] += fr["size"] / len(fr["replicas"])
    return max(links.values()) if links else 0


def model_get_balanced(layout):
    """Bytes on the busiest link of a get whose links share out every fragment as evenly as the
    layout allows: the least any schedule can reach, which is what a get that lets every idle link
    take over ranges approaches (client/get.c, throttled). At most model_get(layout). It is the least
    T for which each fragment's bytes can be split over its copies with no link above T: a
    transportation problem, solved here by bisection on T with a max-flow check."""
    frags = [(fr["size"], sorted({r["address"] for r in fr["replicas"]})) for fr in layout["fragments"]]
    frags = [(s, n) for s, n in frags if s > 0 and n]
    if not frags:
        return 0
    total = sum(s for s, _ in frags)
    lo, hi = 0.0, float(max(s for s, _ in frags) + total)
    hi = min(hi, model_get(layout))
    for _ in range(60):
        mid = (lo + hi) / 2
        if _max_flow(frags, mid) >= total * (1 - 1e-12):
            hi = mid
        else:
            lo = mid
    return hi


def _max_flow(frags, cap):
    """Bytes that can flow source -> fragment (its size) -> its nodes -> sink (cap per node)."""
    nodes = sorted({n for _, ns in frags for n in ns})
    idx = {n: len(frags) + 1 + i for i, n in enumerate(nodes)}
    size = len(frags) + len(nodes) + 2
    src, sink = 0, size - 1
    res = [dict() for _ in range(size)]

    def edge(a, b, c):
        res[a][b] = res[a].get(b, 0) + c
        res[b].setdefault(a, 0)

    for i, (s, ns) in enumerate(frags):
        edge(src, 1 + i, float(s))
        for n in ns:
            edge(1 + i, idx[n], float(s))
    for n in nodes:
        edge(idx[n], sink, cap)
    flow = 0.0
    while True:  # Edmonds-Karp: shortest augmenting paths
        prev = {src: None}
        queue = collections.deque([src])
        while queue and sink not in prev:
            a = queue.popleft()
            for b, c in res[a].items():
                if c > 1e-9 and b not in prev:
                    prev[b] = a
                    queue.append(b)
        if sink not in prev:
            return flow
        push, b = float("inf"), sink
        while prev[b] is not None:
            push = min(push, res[prev[b]][b])
            b = prev[b]
        b = sink
        while prev[b] is not None:
            res[prev[b]][b] -= push
            res[b][prev[b]] += push
            b = prev[b]
        flow += push
