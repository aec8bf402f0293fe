#!/bin/bash
# The runs behind packaging/docs/benchmarks.md, one after another on a quiet machine.
#   tests/bench/run-series.sh OUT_DIR [COORDINATOR_BIN] [SERIES]
# COORDINATOR_BIN: the muster-coordinator to measure (default: this checkout's release build;
# give another commit's to measure it the same way). SERIES: "after" (default: every size, the
# storm, big clusters, two coordinators) or "before" (the sizes an older coordinator can serve).
set -euo pipefail
out=${1:?usage: run-series.sh OUT_DIR [COORDINATOR_BIN] [SERIES]}
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${2:-$here/target/release/muster-coordinator}
series=${3:-after}
mkdir -p "$out"
cargo build --release --manifest-path "$here/Cargo.toml" -p muster-bench -p muster-coordinator >&2
bench=$here/target/release/muster-bench

run() {
    local name=$1
    shift
    echo "=== $name: muster-bench $*" >&2
    if ! "$bench" --coordinator-bin "$bin" --json "$out/$name.json" "$@" >"$out/$name.txt" 2>"$out/$name.log"; then
        echo "=== $name failed; see $out/$name.log" >&2
    fi
    cat "$out/$name.txt"
    sleep 5
}

case $series in
after)
    for n in 1000 2000 5000; do
        run "sqlite-$n" --agents $n --database sqlite
        run "postgres-$n" --agents $n --database postgres
    done
    run sqlite-10000 --agents 10000 --database sqlite --storm
    run postgres-10000 --agents 10000 --database postgres --storm
    run mysql-2000 --agents 2000 --database mysql
    run postgres-2000-two-coordinators --agents 2000 --database postgres --coordinators 2
    run sqlite-big-clusters --big-clusters 100x50 --database sqlite
    run postgres-big-clusters --big-clusters 100x50 --database postgres
    ;;
before)
    for n in 1000 2000 4000; do
        run "sqlite-$n" --agents $n --database sqlite
    done
    # Coordinators before 2026-12 read from a second pooled connection inside the enrollment
    # transaction: 16 enrollments at once starve PostgreSQL's pool of 8. 4 at once do not.
    for n in 2000 4000; do
        run "postgres-$n" --agents $n --database postgres --enroll-concurrency 4
    done
    ;;
*)
    echo "unknown series $series (after or before)" >&2
    exit 2
    ;;
esac
