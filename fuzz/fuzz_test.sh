#!/usr/bin/env bash
# The normal suite's fuzzing: for each libFuzzer target given (its binary's path; the target's
# name is the binary's without "_fuzzer"), two cases in the cmocka format tools/testcount.py
# counts:
#
#   <target>.corpus   every input of fuzz/corpus/<target>/ once (the seeds, and the reproducer of
#                     every bug the fuzzers found: they must stay fixed)
#   <target>.fuzz     DFS_FUZZ_SECONDS (default 10) of fuzzing from that corpus, in a scratch copy
#
# A crash, a leak, a sanitizer report or a broken promise fails the case; its input is kept in
# the test's undeclared outputs (bazel-testlogs/fuzz/fuzz_test/test.outputs/) with the log tail
# printed. Each run prints its figures: executions, executions per second, coverage (edges) and
# features, corpus size. fuzz/run does the same for longer (see docs/validation.md).
set -u

secs=${DFS_FUZZ_SECONDS:-10}
tmp=${TEST_TMPDIR:-$(mktemp -d)}
out=${TEST_UNDECLARED_OUTPUTS_DIR:-$tmp/outputs}
mkdir -p "$out"
here=$(dirname "$0")
corpus_root=
for c in "${TEST_SRCDIR:-}/${TEST_WORKSPACE:-dfs}/fuzz/corpus" "$here/corpus"; do
  if [[ -d $c ]]; then
    corpus_root=$c
    break
  fi
done
failed=0

# The line libFuzzer ends a run with: "#N DONE cov: C ft: F corp: K/S lim: L exec/s: E rss: R".
figures() {
  local line
  line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$1" | tail -1)
  if [[ -z $line ]]; then
    line=$(grep -E '^#[0-9]+' "$1" | tail -1)
  fi
  awk '{
    runs = substr($1, 2); cov = ft = corp = eps = "?"
    for (i = 2; i <= NF; i++) {
      if ($i == "cov:") cov = $(i + 1)
      if ($i == "ft:") ft = $(i + 1)
      if ($i == "corp:") corp = $(i + 1)
      if ($i == "exec/s:") eps = $(i + 1)
    }
    printf "execs=%s exec_per_s=%s cov=%s ft=%s corpus=%s", runs, eps, cov, ft, corp
  }' <<<"$line"
}

case_begin() { echo "[ RUN      ] $1"; }
case_end() {
  if [[ $2 -eq 0 ]]; then
    echo "[       OK ] $1"
  else
    echo "[  FAILED  ] $1"
    failed=1
  fi
}

for bin in "$@"; do
  name=$(basename "$bin")
  name=${name%_fuzzer}
  seeds="$corpus_root/$name"
  log="$tmp/$name.log"

  case_begin "$name.corpus"
  files=()
  if [[ -d $seeds ]]; then
    while IFS= read -r -d '' f; do files+=("$f"); done < <(find -L "$seeds" -type f -print0 | sort -z)
  fi
  rc=0
  if [[ ${#files[@]} -eq 0 ]]; then
    echo "fuzz: no corpus in $seeds"
    rc=1
  else
    "$bin" -artifact_prefix="$out/$name-" "${files[@]}" >"$log" 2>&1 || rc=$?
    echo "fuzz: $name: replayed ${#files[@]} corpus inputs"
  fi
  [[ $rc -eq 0 || ! -f $log ]] || tail -40 "$log"
  case_end "$name.corpus" "$rc"

  case_begin "$name.fuzz"
  work="$tmp/corpus-$name"
  mkdir -p "$work"
  rc=0
  # -timeout: one input taking more than 10 s is a hang; -rss_limit_mb: a blow-up is a finding.
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/$name-" "$work" "$seeds" >"$log" 2>&1 || rc=$?
  echo "fuzz: $name: ${secs}s $(figures "$log")"
  [[ $rc -eq 0 ]] || tail -60 "$log"
  case_end "$name.fuzz" "$rc"
done
exit "$failed"
