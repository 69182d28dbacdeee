#!/bin/sh
# Entrypoint of every metadata pod: dfs-metadata as the replica whose Raft id is the pod's
# StatefulSet ordinal plus one (dfs-metadata-0 is replica 1 of --peers; ids start at 1), with the
# container's arguments. The hostname of a StatefulSet pod is its name, NAME-ORDINAL.
set -eu
ordinal=${HOSTNAME##*-}
case $ordinal in
'' | *[!0-9]*)
    echo "dfs: the pod name ${HOSTNAME} does not end in a StatefulSet ordinal" >&2
    exit 1
    ;;
esac
exec dfs-metadata --replica-id "$((ordinal + 1))" "$@"
