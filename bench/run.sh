#!/usr/bin/env bash
# Pipeline benchmark: one report of BENCH_BYTES (default 1 GB) uncompressed, zipped by Info-ZIP
# from a pipe (ZIP64 data descriptor, as large reports have), read end to end by
# `dbr-ingest summarize`. Reports
#   - wall time against the time one core needs merely to inflate the member (target: <= 1.5x),
#   - peak RSS (target: <= 100 MB), and the same for a report a tenth the size (memory must not
#     grow with the report),
#   - that the totals equal the generator's own, to the last decimal,
#   - `once` from a directory into PostgreSQL (a fresh database each run).
# Generated reports are kept in BENCH_DIR (default /tmp/dbr-bench) for the next run.
set -euo pipefail
cd "$(dirname "$0")/.."

bytes=${BENCH_BYTES:-1000000000}
dir=${BENCH_DIR:-/tmp/dbr-bench}
runs=${BENCH_RUNS:-3}
name=123456789012-aws-billing-detailed-line-items-with-resources-and-tags-2017-03.csv
mkdir -p "$dir"

report() { # SIZE -> path of a zipped report of about SIZE bytes, generated once
  local size=$1 zip="$dir/$1/$name.zip"
  if [ ! -f "$zip" ]; then
    mkdir -p "$dir/$size"
    echo "generating a $size-byte report in $dir/$size (once; about 2 minutes per GB)" >&2
    python3 tests/tools/gen_dbr.py --out - --expected "$dir/$size/expected.json" --bytes "$size" --seed 7 \
      | zip -q - - | cat > "$zip.part"
    mv "$zip.part" "$zip"
  fi
  echo "$zip"
}

# One build of both, so that the benchmark's dev-dependencies do not make cargo rebuild the
# binary with other features on the next call.
cargo build --release --quiet --bin dbr-ingest --bench inflate
binary=target/release/dbr-ingest

measure() { # ZIP -> prints "best_seconds max_rss_kb" over $runs runs, checks the totals
  local zip=$1 best="" rss=0
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$dir/time.txt" "$binary" summarize --json "$zip" > "$dir/summary.json"
    read -r seconds kb < "$dir/time.txt"
    best=$(python3 -c "print(min(float('$seconds'), float('${best:-inf}')))")
    [ "$kb" -gt "$rss" ] && rss=$kb
  done
  python3 - "$dir/summary.json" "$(dirname "$zip")/expected.json" <<'PY'
import json, sys
from decimal import Decimal
actual, expected = (json.load(open(p)) for p in sys.argv[1:3])
assert actual["rows"]["line_items"] == expected["rows"]["line_items"], "line item count differs"
for a, e in zip(actual["accounts"], expected["accounts"], strict=True):
    for field in ("unblended_cost", "blended_cost", "usage_quantity"):
        assert Decimal(a[field]) == Decimal(e[field]), (a["linked_account_id"], field, a[field], e[field])
PY
  echo "$best $rss"
}

big=$(report "$bytes")
small=$(report $((bytes / 10)))
inflated=$(unzip -Zt "$big" | awk '{print $3}')

inflate_best=""
for _ in $(seq "$runs"); do
  seconds=$(cargo bench --quiet --bench inflate -- "$big" | sed -E 's/.* in ([0-9.]+) s .*/\1/')
  inflate_best=$(python3 -c "print(min(float('$seconds'), float('${inflate_best:-inf}')))")
done
read -r big_seconds big_rss < <(measure "$big")
read -r small_seconds small_rss < <(measure "$small")

# The same report from a directory into PostgreSQL (`once`), into a fresh database each run.
server=${BENCH_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
once_best="" once_rss=0
for run in $(seq "$runs"); do
  url="$server/dbr_bench_$$_$run"
  /usr/bin/time -f "%e %M" -o "$dir/time.txt" env DATABASE_URL="$url" DBR_CONFIG=/dev/null \
    DBR_MONITORED_ACCOUNTS='*' RUST_LOG=warn "$binary" once --source "dir:$(dirname "$big")" > /dev/null
  read -r seconds kb < "$dir/time.txt"
  once_best=$(python3 -c "print(min(float('$seconds'), float('${once_best:-inf}')))")
  [ "$kb" -gt "$once_rss" ] && once_rss=$kb
  stored=$(psql "$url" -Atc "SELECT sum(line_items) FROM account_monthly_costs")
  expected=$(python3 -c "import json; print(json.load(open('$(dirname "$big")/expected.json'))['rows']['kept'])")
  [ "$stored" = "$expected" ] || { echo "once stored $stored line items, expected $expected" >&2; exit 1; }
  psql "$server/postgres" -qc "DROP DATABASE \"dbr_bench_$$_$run\""
done

python3 - "$inflated" "$inflate_best" "$big_seconds" "$big_rss" "$small_seconds" "$small_rss" "$once_best" "$once_rss" <<'PY'
import sys
inflated, inflate, big, big_rss, small, small_rss, once, once_rss = sys.argv[1:]
inflated, inflate, big, small, once = int(inflated), float(inflate), float(big), float(small), float(once)
print(f"report:        {inflated / 1e9:.2f} GB uncompressed (best of runs)")
print(f"inflate only:  {inflate:.2f} s  (one core, zlib-rs)")
print(f"summarize:     {big:.2f} s  = {big / inflate:.2f}x inflate   (target <= 1.5x)  {inflated / big / 1e6:.0f} MB/s")
print(f"peak RSS:      {int(big_rss) / 1024:.1f} MB at full size, {int(small_rss) / 1024:.1f} MB at a tenth ({small:.2f} s)  (target <= 100 MB)")
print(f"once:          {once:.2f} s  = {once / inflate:.2f}x inflate, directory to PostgreSQL, peak RSS {int(once_rss) / 1024:.1f} MB")
print("totals:        equal to the generator's, to the last decimal")
PY
