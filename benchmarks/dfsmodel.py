"""The transfer model of dfs: how long a put or get takes when every link runs at the same rate R.

Shared by benchmarks/transfer_model and benchmarks/experiment (Python 3 stdlib only). A layout is
what `dfs stat --json` prints: {"fragments": [{"size": bytes, "replicas": [{"address", ...}, ...]},
...]}. The model of a transfer is the largest number of bytes any one link must carry, divided by R
(DESIGN.md, "Throttling"):
  fanout put   link client->n carries every copy placed on n;
  chain put    link client->head carries each fragment whose chain starts there, and each hop a->b
               of a chain carries that fragment once more;
  get          the client reads each fragment's ranges from all its copies in turn, so link n carries
               size/k of every fragment with a copy on n.
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
