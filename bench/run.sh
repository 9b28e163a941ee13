#!/usr/bin/env bash
# Pipeline benchmark. Every figure is judged against the time one core needs merely to inflate
# the same ZIP member, measured in the same run (`cargo bench --bench inflate`). Reports of
# BENCH_BYTES (default 1 GB) uncompressed, zipped by Info-ZIP from a pipe (ZIP64 data
# descriptor, as large reports have), in two shapes:
#   - realistic: 3,400 usage streams billed hour after hour, as AWS writes them (~100k daily keys);
#   - high cardinality: line items spread at random over BENCH_BYTES/20,000 resources and the
#     month's days (~1.25 M distinct daily keys per GB), and a hostile one where nearly every
#     line item is its own key (BENCH_BYTES/100 resources, ~2.4 M keys per GB); and between them
#     BENCH_BYTES/1,000 resources at random (~1 M per GB).
# For each: `summarize`, `once` from a directory into a fresh database (created and migrated by
# `dbr-ingest migrate` beforehand, untimed: a deployment's one-time step), `once` rewriting that
# month (the dead tuples left are counted, and again once the month is written over its earlier
# version), peak RSS of each; the realistic report also
# `once` through S3 (s3s-fs on 127.0.0.1, examples/s3_server.rs),
# judged by the process's own CPU time against the directory source's (the server shares the
# two cores, so wall time is shown beside it), and at 4x the size (memory must stay flat).
# A CUR month of BENCH_BYTES (gzip parts of 250 MB with the ~195 columns koku-nise writes, billed
# hour by hour; rows of a part koku-nise wrote serve as templates) is read through its manifest,
# against the time one core needs to gunzip its parts.
# Totals are checked against the generator's own (for CUR, tests/tools/cur_sums.py's), to the
# last decimal, in every case.
# Medians of BENCH_RUNS runs (default 3). Generated reports are kept in BENCH_DIR
# (default /tmp/dbr-bench) for the next run. BENCH_SHAPES names the cases to run (default all:
# "realistic high-cardinality hostile million-resources realistic-4x cur-hourly s3").
set -euo pipefail
cd "$(dirname "$0")/.."

bytes=${BENCH_BYTES:-1000000000}
dir=${BENCH_DIR:-/tmp/dbr-bench}
runs=${BENCH_RUNS:-3}
server=${BENCH_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
name=123456789012-aws-billing-detailed-line-items-with-resources-and-tags-2017-03.csv
mkdir -p "$dir"

report() { # SIZE RESOURCES ORDER -> path of a zipped report of about SIZE bytes, generated once
  local size=$1 resources=$2 order=$3
  local case="$dir/$size-$resources-$order" zip="$dir/$size-$resources-$order/$name.zip"
  if [ ! -f "$zip" ]; then
    mkdir -p "$case"
    echo "generating a $size-byte report of $resources resources ($order) in $case (once)" >&2
    python3 tests/tools/gen_dbr.py --out - --expected "$case/expected.json" --bytes "$size" \
      --resources "$resources" --order "$order" --seed 7 | zip -q - - | cat > "$zip.part"
    mv "$zip.part" "$zip"
  fi
  echo "$zip"
}

# One build of all three, so that the benchmark's dev-dependencies do not make cargo rebuild the
# binary with other features on the next call.
cargo build --release --quiet --bin dbr-ingest --bench inflate --example s3_server
binary=target/release/dbr-ingest

median() { # NUMBERS... -> their median
  python3 -c 'import statistics, sys; print(statistics.median(map(float, sys.argv[1:])))' "$@"
}

inflate() { # ZIP, or gzip PARTS -> median seconds to inflate them on one core
  local times=()
  for _ in $(seq "$runs"); do
    times+=("$(cargo bench --quiet --bench inflate -- "$@" | sed -E 's/.* in ([0-9.]+) s .*/\1/')")
  done
  median "${times[@]}"
}

summarize() { # ZIP -> "median_seconds max_rss_kb" of summarize; checks the totals
  local zip=$1 times=() rss=0 seconds kb
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

check_stored() { # DATABASE_URL EXPECTED_JSON: the views hold the generator's totals exactly
  psql "$1" -Atc "SELECT json_agg(json_build_object('linked_account_id', linked_account_id,
      'unblended_cost', unblended_cost::text, 'blended_cost', blended_cost::text,
      'usage_quantity', usage_quantity::text, 'line_items', line_items) ORDER BY linked_account_id)
      FROM account_monthly_costs" > "$dir/stored.json"
  python3 - "$dir/stored.json" "$2" <<'PY'
import json, sys
from decimal import Decimal
stored, expected = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for s, e in zip(stored, expected["accounts"], strict=True):
    assert s["line_items"] == e["line_items"], (s, e)
    for field in ("unblended_cost", "blended_cost", "usage_quantity"):
        assert Decimal(s[field]) == Decimal(e[field]), (s["linked_account_id"], field, s[field], e[field])
PY
}

dead_tuples() { # DATABASE_URL -> the dead tuples of every table, as the statistics have them
  # (they are sent at the end of each transaction: give them a moment)
  sleep 1
  psql "$1" -Atc "SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables"
}

once() { # ZIP SOURCE -> "fresh_s fresh_rss fresh_cpu rewrite_s rewrite_rss dead_tuples rows grown_dead"
  # medians over the runs of `once` from SOURCE (dir, or s3 for the s3s-fs server) into a fresh
  # database, then of the same month rewritten (REWRITE=0 skips it); rows: what the month
  # stored (full grain, usages, rollups, accounts); grown_dead: the dead tuples of the month
  # written again after its earlier version (the ZIP's earlier.zip, DBR only), in the first run
  local zip=$1 from=$2 url run seconds kb user system
  local fresh=() fresh_cpu=() fresh_rss=0 rewrite=() rewrite_rss=0 dead=0 rows=0 grown_dead=-1
  local source=(--source "dir:${SOURCE_DIR:-$(dirname "$zip")}")
  [ "$from" = s3 ] && source=(--source s3)
  for run in $(seq "$runs"); do
    url="$server/dbr_bench_$$_$run"
    DATABASE_URL="$url" RUST_LOG=warn "$binary" migrate > /dev/null
    for pass in fresh rewrite; do
      [ "$pass" = rewrite ] && [ "${REWRITE:-1}" = 0 ] && break
      # A rewrite: the same report with a new version (the directory source's ETag is the
      # mtime; a CUR's version is its manifest's assemblyId).
      [ "$pass" = rewrite ] && "${REWRITE_WITH:-touch}" "$zip"
      /usr/bin/time -f "%e %M %U %S" -o "$dir/time.txt" env DATABASE_URL="$url" DBR_CONFIG=/dev/null \
        DBR_MONITORED_ACCOUNTS='*' RUST_LOG=warn "${s3_env[@]}" "$binary" once "${source[@]}" > /dev/null
      read -r seconds kb user system < "$dir/time.txt"
      if [ "$pass" = fresh ]; then
        fresh+=("$seconds"); [ "$kb" -gt "$fresh_rss" ] && fresh_rss=$kb
        fresh_cpu+=("$(python3 -c "print($user + $system)")")
      else
        rewrite+=("$seconds"); [ "$kb" -gt "$rewrite_rss" ] && rewrite_rss=$kb
        # Dead tuples the rewrite (and the fresh ingest before it) left anywhere in the database.
        dead=$(dead_tuples "$url")
      fi
      check_stored "$url" "$(dirname "$zip")/expected.json"
    done
    rows=$(psql "$url" -Atc "SELECT (SELECT count(*) FROM daily_costs) + (SELECT count(*) FROM daily_usages)
      + (SELECT count(*) FROM usage_kinds) + (SELECT count(*) FROM service_daily_costs) + (SELECT count(*) FROM resource_costs)
      + (SELECT count(*) FROM tag_costs) + (SELECT count(*) FROM account_months)")
    if [ "$run" = 1 ] && [ "$from" = dir ] && [ "${REWRITE:-1}" != 0 ] && [[ "$zip" == *.zip ]]; then
      # AWS's next version of a month: the earlier version first, then this one over it. The
      # earlier version is the report's first 97 % of bytes (in hour-by-hour order, the month
      # through its 30th day), cut at a line's end, without the footer (unzip stops when head
      # has its bytes).
      local earlier grown="$dir/grown"
      earlier="$(dirname "$zip")/earlier.zip"
      if [ ! -f "$earlier" ]; then
        { unzip -p "$zip" || true; } | head -c $(($(unzip -Zt "$zip" | awk '{print $3}') * 97 / 100)) | sed '$d' \
          | zip -q - - | cat > "$earlier.part"
        mv "$earlier.part" "$earlier"
      fi
      rm -rf "$grown" && mkdir -p "$grown"
      for version in "$earlier" "$zip"; do
        cp "$version" "$grown/$(basename "$zip")"
        [ "$version" = "$zip" ] && psql "$url" -qAtc "SELECT pg_stat_reset()" > /dev/null
        DATABASE_URL="$url" DBR_CONFIG=/dev/null DBR_MONITORED_ACCOUNTS='*' RUST_LOG=warn \
          "$binary" once --source "dir:$grown" > /dev/null
      done
      grown_dead=$(dead_tuples "$url")
      check_stored "$url" "$(dirname "$zip")/expected.json"
      rm -rf "$grown"
    fi
    psql "$server/postgres" -qc "DROP DATABASE \"dbr_bench_$$_$run\""
  done
  [ ${#rewrite[@]} -gt 0 ] || rewrite=(0)
  echo "$(median "${fresh[@]}") $fresh_rss $(median "${fresh_cpu[@]}") $(median "${rewrite[@]}") $rewrite_rss $dead $rows $grown_dead"
}

results="$dir/results.txt"
: > "$results"
shapes=" ${BENCH_SHAPES:-realistic high-cardinality hostile million-resources realistic-4x cur-hourly s3} "
wanted() { [[ "$shapes" == *" $1 "* ]]; }
shape() { # LABEL ZIP: every measure of one report, appended to the results
  local label=$1 zip=$2 inflated inflate_s
  inflated=$(unzip -Zt "$zip" | awk '{print $3}')
  inflate_s=$(inflate "$zip")
  read -r sum_s sum_rss < <(summarize "$zip")
  read -r once_s once_rss once_cpu rewrite_s rewrite_rss dead rows grown_dead < <(once "$zip" dir)
  echo "$label $inflated $inflate_s $sum_s $sum_rss $once_s $once_rss $once_cpu $rewrite_s $rewrite_rss $dead $rows $grown_dead" >> "$results"
}

s3_env=()
! wanted realistic || shape realistic "$(report "$bytes" 3400 hourly)"
! wanted high-cardinality || shape high-cardinality "$(report "$bytes" $((bytes / 20000)) random)"
! wanted hostile || shape hostile "$(report "$bytes" $((bytes / 100)) random)"
! wanted million-resources || shape million-resources "$(report "$bytes" $((bytes / 1000)) random)"
# Memory must not grow with the report: the realistic shape at four times the size, once each.
! wanted realistic-4x || runs=1 REWRITE=0 shape realistic-4x "$(report $((bytes * 4)) 3400 hourly)"

# A CUR month, generated once: a template part from koku-nise (2 days, 12-digit accounts), then
# BENCH_BYTES of hour-by-hour line items from its rows; the expected totals by cur_sums.py.
cur_month() { # -> the manifest's path
  local case="$dir/cur-$bytes" key=cur/hourly/20240501-20240601/hourly-Manifest.json
  if [ ! -f "$case/bucket/$(dirname "$key")/expected.json" ]; then
    echo "generating a $bytes-byte CUR month in $case (once)" >&2
    [ -x target/nise/bin/nise ] || tests/tools/install-nise.sh target/nise
    rm -rf "$case" && mkdir -p "$case/nise" "$case/work"
    printf 'generators:\n' > "$case/static.yml"
    for generator in EC2Generator EBSGenerator S3Generator RDSGenerator DataTransferGenerator; do
      printf '  - %s:\n      start_date: 2024-05-01\n      end_date: 2024-05-03\n' "$generator" >> "$case/static.yml"
    done
    printf 'accounts:\n  payer: 111122223333\n  user:\n    - 111122223333\n    - 444455556666\n' >> "$case/static.yml"
    (cd "$case/work" && "$OLDPWD/target/nise/bin/nise" report aws --static-report-file ../static.yml \
      --aws-s3-bucket-name "$case/nise" --aws-s3-report-name cur --aws-s3-report-prefix nise > /dev/null)
    python3 tests/tools/gen_cur.py "$case/bucket" --prefix cur/ --report hourly --period 2024-05 \
      --payer 111122223333 --accounts 111122223333,444455556666,077788889999 --seed 7 \
      --template "$(find "$case/nise" -name '*.csv.gz' | sort | head -n 1)" \
      --bytes "$bytes" --streams $((bytes / 670000)) > /dev/null
    python3 tests/tools/cur_sums.py "$case/bucket" "$key" '*' --as-generator > "$case/expected.part"
    mv "$case/expected.part" "$case/bucket/$(dirname "$key")/expected.json"
  fi
  echo "$case/bucket/$key"
}

new_assembly() { # MANIFEST: AWS delivers the month again (same parts, a new assemblyId)
  python3 - "$1" <<'PY'
import json, sys, uuid
manifest = json.load(open(sys.argv[1]))
manifest["assemblyId"] = str(uuid.uuid4())
json.dump(manifest, open(sys.argv[1], "w"))
PY
}

cur_shape() { # LABEL MANIFEST: every measure of a CUR month, appended to the results
  local label=$1 manifest=$2 bucket parts inflated inflate_s
  bucket=${manifest%/cur/hourly/*}
  mapfile -t parts < <(python3 -c 'import json, sys; [print(sys.argv[2] + "/" + k) for k in json.load(open(sys.argv[1]))["reportKeys"]]' "$manifest" "$bucket")
  inflated=$(cat "${parts[@]}" | gzip -dc | wc -c)
  inflate_s=$(inflate "${parts[@]}")
  read -r sum_s sum_rss < <(summarize "$manifest")
  read -r once_s once_rss once_cpu rewrite_s rewrite_rss dead rows grown_dead < <(SOURCE_DIR=$bucket REWRITE_WITH=new_assembly once "$manifest" dir)
  echo "$label $inflated $inflate_s $sum_s $sum_rss $once_s $once_rss $once_cpu $rewrite_s $rewrite_rss $dead $rows $grown_dead" >> "$results"
}
! wanted cur-hourly || cur_shape cur-hourly "$(cur_month)"

# The realistic report through S3: s3s-fs serving a directory on 127.0.0.1 (bucket = subdirectory).
s3_s=0 s3_rss=0 s3_cpu=0
if wanted s3; then
  realistic=$(report "$bytes" 3400 hourly)
  s3_server=$PWD/target/release/examples/s3_server
  s3_root="$dir/s3-root"
  mkdir -p "$s3_root/billing"
  cp -f "$realistic" "$s3_root/billing/"
  cp -f "$(dirname "$realistic")/expected.json" "$s3_root/billing/expected.json"
  s3_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$s3_server" --host 127.0.0.1 --port "$s3_port" --access-key bench --secret-key bench-secret-key "$s3_root" \
    > "$dir/s3-server.log" 2>&1 &
  s3_pid=$!
  trap 'kill $s3_pid 2>/dev/null || true' EXIT
  for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$s3_port") 2>/dev/null && break; sleep 0.1; done
  s3_env=(AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1
    AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port" AWS_EC2_METADATA_DISABLED=true
    DBR_BUCKET=billing DBR_S3_FORCE_PATH_STYLE=true)
  read -r s3_s s3_rss s3_cpu _ < <(REWRITE=0 once "$s3_root/billing/$name.zip" s3)
  kill "$s3_pid"
fi

python3 - "$results" "$s3_s" "$s3_rss" "$s3_cpu" "$runs" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    label, *values = line.split()
    rows[label] = [float(v) for v in values]
s3_s, s3_rss, s3_cpu = (float(x) for x in sys.argv[2:5])
mb = lambda kb: f"{kb / 1024:.0f} MB"
print(f"medians of {sys.argv[5]} runs; x = times the inflate of the same report in this run")
print(f"{'report':<17} {'GB':>5} {'inflate':>8} | {'summarize':>16} {'RSS':>7} | {'once, fresh db':>16} {'RSS':>7} | {'once, rewrite':>16} {'RSS':>7} | {'rows':>9} {'dead':>13} {'a day later':>13}")
share = lambda dead, stored: f"{int(dead)} {100 * dead / stored:4.1f}%" if dead >= 0 else "-"
for label, (inflated, inflate, sum_s, sum_rss, once_s, once_rss, once_cpu, rewrite_s, rewrite_rss, dead, stored, grown) in rows.items():
    rewrite = f"{rewrite_s:6.2f} s {rewrite_s / inflate:5.2f}x" if rewrite_s else f"{'-':>16}"
    print(f"{label:<17} {inflated / 1e9:5.2f} {inflate:6.2f} s | {sum_s:6.2f} s {sum_s / inflate:5.2f}x {mb(sum_rss):>7} | "
          f"{once_s:6.2f} s {once_s / inflate:5.2f}x {mb(once_rss):>7} | {rewrite} {mb(rewrite_rss) if rewrite_s else '-':>7} | "
          f"{int(stored):>9} {share(dead, stored):>13} {share(grown, stored):>13}")
print("rows: what the month stored; dead: the dead tuples of every table after the fresh ingest and the")
print("rewrite of the same month; a day later: after the month written again over its earlier version")
if s3_s:
    once_cpu = rows["realistic"][6]
    print(f"once via S3 (realistic): {s3_s:.2f} s wall = {s3_s / rows['realistic'][1]:.2f}x inflate; CPU {s3_cpu:.2f} s = "
          f"{s3_cpu / once_cpu:.2f}x the directory source's {once_cpu:.2f} s (target <= 1.10x); peak RSS {mb(s3_rss)}")
print("totals: equal to the generator's, to the last decimal, in every case")
PY
