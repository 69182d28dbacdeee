#!/bin/sh
# Builds one libFuzzer target with clang (Debian's clang-14), outside Bazel's gcc toolchain:
#
#   fuzz/build.sh OUT GENDIR LIBS SOURCE...
#
# OUT the binary; GENDIR Bazel's genfiles root (for the generated protobuf-c headers under
# GENDIR/protos); LIBS the system libraries to link ("-lprotobuf-c -lisal"); SOURCE... every
# source and header of the target (headers are only there so that the sandbox holds them). Our
# own code is compiled with the suite's warnings as errors; generated protobuf-c code is not ours
# to hold to -Werror. Run by the genrules of fuzz/BUILD (see fuzz/fuzz.bzl); a gcc build is not
# touched by it.
set -eu
out=$1
gendir=$2
libs=$3
shift 3
cc=${DFS_FUZZ_CC:-clang}
flags="-std=c17 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I. -I$gendir/protos"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dfs-fuzz-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
objs=""
n=0
for src in "$@"; do
  case "$src" in
    *.pb-c.c) extra="-Wno-error" ;;
    *.c) extra="-Wall -Wextra -Werror" ;;
    *) continue ;;
  esac
  n=$((n + 1))
  obj="$tmp/$n.o"
  # shellcheck disable=SC2086  # flags are words
  "$cc" $flags $extra -c "$src" -o "$obj"
  objs="$objs $obj"
done
# shellcheck disable=SC2086
"$cc" $flags -o "$out" $objs $libs -lm -lpthread
