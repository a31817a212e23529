#!/usr/bin/env bash
# Fuzzes every parser that reads outside data with libFuzzer (issue 7):
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 60); TARGETs among policy-parser, addresses,
# verdict-line-reader, socketmap, received-chain (default all). Each target is built once with
#   swift build -c release --scratch-path .build-fuzz \
#       -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING --product Fuzz<Name>
# and run on its seed corpus (Fuzz/corpus/<name>/, kept small in git, read only); what the
# run learns goes to .build-fuzz/corpus/<name>/. A crash leaves crash-* / leak-* / timeout-* in
# .build-fuzz/findings/<name>/ and makes the script exit 1: turn each into a unit test
# (Tests/ConnectorPolicyTests/HardeningTests.swift) before fixing it.
#
# Limits per input: -max_len=8192, -timeout=10 s, -rss_limit_mb=2048 (a hang or unbounded
# memory is a finding too). FUZZ_JOBS=N forks N workers per target (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(policy-parser addresses verdict-line-reader socketmap received-chain)
jobs=${FUZZ_JOBS:-1}
scratch=.build-fuzz
parallel=()
[ "$jobs" -le 1 ] || parallel=(-fork="$jobs" -ignore_crashes=0)

product() {  # policy-parser -> FuzzPolicyParser
    local out="Fuzz" part
    IFS=- read -ra parts <<< "$1"
    for part in "${parts[@]}"; do out+="${part^}"; done
    echo "$out"
}

status=0
for target in "${targets[@]}"; do
    name=$(product "$target")
    [ -d "Sources/$name" ] || { echo "fuzz.sh: no target $target (Sources/$name)" >&2; exit 64; }
    echo "==> building $name"
    swift build -c release --scratch-path "$scratch" \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING --product "$name" >/dev/null
    binary="$scratch/release/$name"
    corpus="$scratch/corpus/$target"
    findings="$scratch/findings/$target"
    mkdir -p "$corpus" "$findings"
    echo "==> fuzzing $name for $seconds s (corpus $corpus)"
    if ! "$binary" "$corpus" "Fuzz/corpus/$target" -max_total_time="$seconds" -max_len=8192 -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=1 ${parallel[@]+"${parallel[@]}"} \
            -artifact_prefix="$findings/" 2>"$scratch/$target.log"; then
        status=1
        echo "!!> $name found something: $(ls "$findings")" >&2
        grep -E "ERROR|panic|Fatal error|Precondition failed|==[0-9]+==" "$scratch/$target.log" | head -20 >&2 || true
    fi
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|cov: " "$scratch/$target.log" | tail -3 || true
done
exit $status
