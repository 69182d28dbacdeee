#!/bin/sh
# Init container of every storage pod: write the zone of the node the pod runs on (its
# topology.kubernetes.io/zone label) to $1, for dfs-storage --zone-file.
#
# The downward API exposes the pod's own fields, not its node's labels, so this asks the API server
# for the node object with the pod's service account (ClusterRole dfs-node-reader: get nodes) and the
# node name from the downward API (NODE_NAME = spec.nodeName). A node without the label gives an
# empty zone (placement then ignores zones); an API error fails the init container, so the kubelet
# retries it and the pod never starts with a wrong zone.
set -eu
out=${1:-/var/run/dfs/zone}
sa=/var/run/secrets/kubernetes.io/serviceaccount
: "${NODE_NAME:?NODE_NAME must come from the downward API (spec.nodeName)}"
url="https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}/api/v1/nodes/${NODE_NAME}"
json=$(curl --fail --silent --show-error --max-time 10 --cacert "$sa/ca.crt" \
  -H "Authorization: Bearer $(cat "$sa/token")" "$url")
zone=$(printf '%s' "$json" | tr -d '\n' |
  sed -n 's/.*"topology\.kubernetes\.io\/zone" *: *"\([^"]*\)".*/\1/p')
printf '%s\n' "$zone" >"$out"
echo "dfs zone: node=${NODE_NAME} zone=${zone:-<none>}"
