#!/usr/bin/env bash
# FOCUS export benchmark: `dbr-ingest export focus` of a month of BENCH_LINE_ITEMS line items
# (default 2.5 M, spread at random over 50,000 resources and the month's days, so that most
# line items are a FOCUS row of their own), as Parquet and as CSV, against what PostgreSQL itself
# takes to produce the same rows: `COPY (SELECT * FROM focus_costs WHERE …) TO STDOUT`, written
# to a file by psql. Runs alternate (COPY, CSV, Parquet) BENCH_RUNS times (default 3); medians,
# and each export's peak RSS. Each export's manifest must count the rows COPY wrote.
# The month is generated once into BENCH_DIR (default /tmp/dbr-bench) and ingested once into a
# fresh database, untimed.
set -euo pipefail
cd "$(dirname "$0")/.."

line_items=${BENCH_LINE_ITEMS:-2500000}
dir=${BENCH_DIR:-/tmp/dbr-bench}
runs=${BENCH_RUNS:-3}
server=${BENCH_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
name=123456789012-aws-billing-detailed-line-items-with-resources-and-tags-2017-03.csv
case="$dir/export-$line_items"
mkdir -p "$case"

if [ ! -f "$case/$name.zip" ]; then
  echo "generating a report of $line_items line items in $case (once)" >&2
  python3 tests/tools/gen_dbr.py --out - --rows "$line_items" --resources 50000 --order random \
    --seed 11 | zip -q - - | cat > "$case/$name.zip.part"
  mv "$case/$name.zip.part" "$case/$name.zip"
fi

# As bench/run.sh builds it: the inflate benchmark's dev-dependencies change the features, and
# building the binary alone would rebuild it each time one bench follows the other.
cargo build --release --quiet --bin dbr-ingest --bench inflate
binary=target/release/dbr-ingest
url="$server/dbr_bench_export_$$"
trap 'psql "$server/postgres" -qc "DROP DATABASE IF EXISTS \"dbr_bench_export_$$\"" || true' EXIT
DATABASE_URL="$url" RUST_LOG=warn "$binary" migrate > /dev/null
DATABASE_URL="$url" DBR_CONFIG=/dev/null DBR_MONITORED_ACCOUNTS='*' RUST_LOG=warn \
  "$binary" once --source "dir:$case" > /dev/null
psql "$url" -qc "VACUUM ANALYZE"
where="\"BillingPeriodStart\" = '2017-03-01'"
focus_rows=$(psql "$url" -Atc "SELECT count(*) FROM focus_costs WHERE $where")
stored=$(psql "$url" -Atc "SELECT sum(line_items) FROM account_monthly_costs")
echo "month: $stored line items, $focus_rows focus_costs rows" >&2

median() { python3 -c 'import statistics, sys; print(statistics.median(map(float, sys.argv[1:])))' "$@"; }
copy=() csv=() parquet=() csv_rss=0 parquet_rss=0
out="$case/out"
for _ in $(seq "$runs"); do
  rm -rf "$out" && mkdir -p "$out"
  /usr/bin/time -f "%e" -o "$case/time.txt" \
    psql "$url" -Atc "COPY (SELECT * FROM focus_costs WHERE $where) TO STDOUT" > "$out/copy.txt"
  copy+=("$(cat "$case/time.txt")")
  [ "$(wc -l < "$out/copy.txt")" = "$focus_rows" ] || { echo "COPY wrote other rows" >&2; exit 1; }
  rm -f "$out/copy.txt"
  for format in csv parquet; do
    /usr/bin/time -f "%e %M" -o "$case/time.txt" env DATABASE_URL="$url" DBR_CONFIG=/dev/null \
      RUST_LOG=warn "$binary" export focus --period 2017-03 --format "$format" --out "$out/$format" > /dev/null
    read -r seconds kb < "$case/time.txt"
    rows=$(python3 -c 'import json, sys; print(sum(f["rows"] for f in json.load(open(sys.argv[1]))["files"]))' \
      "$out/$format/focus-2017-03-manifest.json")
    [ "$rows" = "$focus_rows" ] || { echo "$format: $rows rows, not $focus_rows" >&2; exit 1; }
    if [ "$format" = csv ]; then
      csv+=("$seconds"); [ "$kb" -gt "$csv_rss" ] && csv_rss=$kb
    else
      parquet+=("$seconds"); [ "$kb" -gt "$parquet_rss" ] && parquet_rss=$kb
    fi
  done
  sizes="csv $(du -m "$out"/csv/*.csv | cut -f1) MB, parquet $(du -m "$out"/parquet/*.parquet | cut -f1) MB"
done
rm -rf "$out"

python3 - "$(median "${copy[@]}")" "$(median "${csv[@]}")" "$csv_rss" \
  "$(median "${parquet[@]}")" "$parquet_rss" "$stored" "$focus_rows" "$runs" "$sizes" <<'PY'
import sys
copy, csv, csv_rss, parquet, parquet_rss = map(float, sys.argv[1:6])
line_items, rows, runs, sizes = sys.argv[6:10]
print(f"FOCUS export of a month of {int(line_items):,} line items ({int(rows):,} focus_costs rows; "
      f"{sizes}); medians of {runs} runs")
print("| | time | x COPY | peak RSS |")
print("|---|---|---|---|")
print(f"| COPY (SELECT * FROM focus_costs …) TO STDOUT | {copy:.2f} s | 1.00x | |")
print(f"| export focus --format csv | {csv:.2f} s | {csv / copy:.2f}x | {csv_rss / 1024:.0f} MB |")
print(f"| export focus --format parquet | {parquet:.2f} s | {parquet / copy:.2f}x | {parquet_rss / 1024:.0f} MB |")
PY
