#!/usr/bin/env bash
# Pipeline benchmark: one realistic report of BENCH_BYTES (default 1 GB) uncompressed (3,400 usage
# streams billed hour after hour), zipped by Info-ZIP from a pipe (ZIP64 data descriptor, as
# large reports have), read end to end by `dbr-ingest summarize`. Reports
#   - wall time against the time one core needs merely to inflate the member (target: <= 1.5x),
#   - peak RSS (target: <= 100 MB), and the same for a report a tenth the size (memory must not
#     grow with the report),
#   - that the totals equal the generator's own, to the last decimal,
#   - `once` from a directory into PostgreSQL (a fresh database each run),
#   - `once` through S3: the same report served by s3s-fs on 127.0.0.1 (installed once into
#     BENCH_DIR/tools with cargo), judged by the process's own CPU time against the directory
#     source's (the server shares the two cores, so wall time is reported beside it),
#   - the same on a high-cardinality report (BENCH_HC_BYTES, default a third of BENCH_BYTES, most
#     line items distinct daily keys): `summarize`, `once` into a fresh database, `once`
#     rewriting that month, with peak RSS and the dead tuples the rewrite leaves.
# Generated reports are kept in BENCH_DIR (default /tmp/dbr-bench) for the next run.
set -euo pipefail
cd "$(dirname "$0")/.."

bytes=${BENCH_BYTES:-1000000000}
dir=${BENCH_DIR:-/tmp/dbr-bench}
runs=${BENCH_RUNS:-3}
name=123456789012-aws-billing-detailed-line-items-with-resources-and-tags-2017-03.csv
mkdir -p "$dir"

report() { # SIZE RESOURCES ORDER -> path of a zipped report of about SIZE bytes, generated once
  local size=$1 resources=$2 order=$3
  local case="$dir/$size-$resources-$order" zip="$dir/$size-$resources-$order/$name.zip"
  if [ ! -f "$zip" ]; then
    mkdir -p "$case"
    echo "generating a $size-byte report of $resources resources ($order) in $case (once; about 2 minutes per GB)" >&2
    python3 tests/tools/gen_dbr.py --out - --expected "$case/expected.json" --bytes "$size" \
      --resources "$resources" --order "$order" --seed 7 | zip -q - - | cat > "$zip.part"
    mv "$zip.part" "$zip"
  fi
  echo "$zip"
}

# One build of both, so that the benchmark's dev-dependencies do not make cargo rebuild the
# binary with other features on the next call.
cargo build --release --quiet --bin dbr-ingest --bench inflate
binary=target/release/dbr-ingest

median() { # NUMBERS... -> their median
  python3 -c 'import statistics, sys; print(statistics.median(map(float, sys.argv[1:])))' "$@"
}

measure() { # ZIP -> prints "median_seconds max_rss_kb" of summarize over $runs runs, checks the totals
  local zip=$1 times=() rss=0
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$dir/time.txt" "$binary" summarize --json "$zip" > "$dir/summary.json"
    read -r seconds kb < "$dir/time.txt"
    times+=("$seconds")
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
  echo "$(median "${times[@]}") $rss"
}

# The realistic shape: a few thousand usage streams billed hour after hour, as AWS writes them.
big=$(report "$bytes" 3400 hourly)
small=$(report $((bytes / 10)) 3400 hourly)
inflated=$(unzip -Zt "$big" | awk '{print $3}')

inflate_times=()
for _ in $(seq "$runs"); do
  seconds=$(cargo bench --quiet --bench inflate -- "$big" | sed -E 's/.* in ([0-9.]+) s .*/\1/')
  inflate_times+=("$seconds")
done
inflate_median=$(median "${inflate_times[@]}")
read -r big_seconds big_rss < <(measure "$big")
read -r small_seconds small_rss < <(measure "$small")

server=${BENCH_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
once() { # ZIP REWRITE SOURCE -> prints "median_seconds max_rss_kb dead_tuples median_cpu_seconds":
  # `once` from SOURCE (dir, or s3 for the s3s-fs server) into a fresh database each run, then
  # (REWRITE=1) the same month rewritten once more; checks the line items stored
  local zip=$1 rewrite=$2 from=$3 times=() cpu_times=() rss=0 dead=0 run url stored expected
  local seconds kb user system
  expected=$(python3 -c "import json; print(json.load(open('$(dirname "$zip")/expected.json'))['rows']['kept'])")
  local source=(--source "dir:$(dirname "$zip")")
  [ "$from" = s3 ] && source=(--source s3)
  for run in $(seq "$runs"); do
    url="$server/dbr_bench_$$_$run"
    for pass in $(seq $((1 + rewrite))); do
      # A rewrite: the same report with a new version (the directory source's ETag is the mtime).
      [ "$pass" = 2 ] && touch "$zip"
      /usr/bin/time -f "%e %M %U %S" -o "$dir/time.txt" env DATABASE_URL="$url" DBR_CONFIG=/dev/null \
        DBR_MONITORED_ACCOUNTS='*' RUST_LOG=warn "${s3_env[@]}" "$binary" once "${source[@]}" > /dev/null
      read -r seconds kb user system < "$dir/time.txt"
      [ "$kb" -gt "$rss" ] && rss=$kb
    done
    times+=("$seconds")
    cpu_times+=("$(python3 -c "print(float('$user') + float('$system'))")")
    stored=$(psql "$url" -Atc "SELECT sum(line_items) FROM account_monthly_costs")
    [ "$stored" = "$expected" ] || { echo "once stored $stored line items, expected $expected" >&2; exit 1; }
    dead=$(psql "$url" -Atc "SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE relname = 'daily_costs'")
    psql "$server/postgres" -qc "DROP DATABASE \"dbr_bench_$$_$run\""
  done
  echo "$(median "${times[@]}") $rss $dead $(median "${cpu_times[@]}")"
}
s3_env=()
read -r once_median once_rss _ once_cpu < <(once "$big" 0 dir)

# The same report through S3: s3s-fs serving a directory on 127.0.0.1 (bucket = subdirectory).
s3s_fs="$dir/tools/bin/s3s-fs"
[ -x "$s3s_fs" ] || cargo install --quiet s3s-fs@0.14.1 --features binary --root "$dir/tools"
s3_root="$dir/s3-root"
mkdir -p "$s3_root/billing"
cp -f "$big" "$s3_root/billing/"
cp -f "$(dirname "$big")/expected.json" "$s3_root/billing/expected.json"
s3_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$s3s_fs" --host 127.0.0.1 --port "$s3_port" --access-key bench --secret-key bench-secret-key "$s3_root" \
  > "$dir/s3s-fs.log" 2>&1 &
s3_pid=$!
trap 'kill $s3_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$s3_port") 2>/dev/null && break; sleep 0.1; done
s3_env=(AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1
  AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port" AWS_EC2_METADATA_DISABLED=true
  DBR_BUCKET=billing DBR_S3_FORCE_PATH_STYLE=true)
read -r s3_median s3_rss _ s3_cpu < <(once "$s3_root/billing/$name.zip" 0 s3)
kill "$s3_pid"
s3_env=()



hc_bytes=${BENCH_HC_BYTES:-$((bytes / 3))}
hc=$(report "$hc_bytes" $((hc_bytes / 100)) random)
read -r hc_seconds hc_rss < <(measure "$hc")
read -r hc_once hc_once_rss _ _ < <(once "$hc" 0 dir)
read -r hc_rewrite hc_rewrite_rss hc_dead _ < <(once "$hc" 1 dir)

python3 - "$inflated" "$inflate_median" "$big_seconds" "$big_rss" "$small_seconds" "$small_rss" "$once_median" "$once_rss" \
  "$hc_bytes" "$hc_seconds" "$hc_rss" "$hc_once" "$hc_once_rss" "$hc_rewrite" "$hc_rewrite_rss" "$hc_dead" \
  "$once_cpu" "$s3_median" "$s3_rss" "$s3_cpu" <<'PY'
import sys
inflated, inflate, big, big_rss, small, small_rss, once, once_rss = sys.argv[1:9]
hc_bytes, hc, hc_rss, hc_once, hc_once_rss, hc_rewrite, hc_rewrite_rss, hc_dead = sys.argv[9:17]
once_cpu, s3, s3_rss, s3_cpu = (float(x) for x in sys.argv[17:])
inflated, inflate, big, small, once = int(inflated), float(inflate), float(big), float(small), float(once)
print(f"report:        {inflated / 1e9:.2f} GB uncompressed (medians of the runs)")
print(f"inflate only:  {inflate:.2f} s  (one core, zlib-rs)")
print(f"summarize:     {big:.2f} s  = {big / inflate:.2f}x inflate   (target <= 1.5x)  {inflated / big / 1e6:.0f} MB/s")
print(f"peak RSS:      {int(big_rss) / 1024:.1f} MB at full size, {int(small_rss) / 1024:.1f} MB at a tenth ({small:.2f} s)  (target <= 100 MB)")
print(f"once:          {once:.2f} s  = {once / inflate:.2f}x inflate, directory to PostgreSQL, peak RSS {int(once_rss) / 1024:.1f} MB")
print(f"once via S3:   {s3:.2f} s wall = {s3 / inflate:.2f}x inflate, CPU {s3_cpu:.2f} s = {s3_cpu / once_cpu:.2f}x the directory source's {once_cpu:.2f} s (target <= 1.10x), peak RSS {s3_rss / 1024:.1f} MB")
print(f"high cardinality, {int(hc_bytes) / 1e9:.2f} GB, most line items distinct daily keys (no inflate baseline of its own):")
print(f"  summarize:   {float(hc):.2f} s, peak RSS {int(hc_rss) / 1024:.1f} MB")
print(f"  once:        {float(hc_once):.2f} s, peak RSS {int(hc_once_rss) / 1024:.1f} MB (fresh database)")
print(f"  rewrite:     {float(hc_rewrite):.2f} s for the second pass, peak RSS {int(hc_rewrite_rss) / 1024:.1f} MB, {hc_dead} dead tuples left in daily_costs")
print("totals:        equal to the generator's, to the last decimal")
PY
