#!/usr/bin/env bash
# Scale benchmark for many integrations in one deployment: BENCH_INTEGRATIONS (default 500)
# integrations, each a bucket of its own on one S3 server on 127.0.0.1 (s3s-fs, in
# examples/s3_server.rs: s3s-fs's own binary waits out a delayed ACK per object read), with one
# to three payers and three months of reports each (every 100th bucket crowded with 20,000 other
# objects, every 5th integration monitoring only some accounts). Two replicas (`once` twice at
# the same time, concurrency 2 each) against one database. It reports:
#   - the first full ingest: wall time until both replicas are done;
#   - a poll after 5% of the reports changed, and one where nothing changed;
#   - S3 requests per poll (both replicas), and reports ingested (each exactly once);
#   - that every integration's monthly totals equal the generator's, to the last digit.
# The world is generated afresh each run in BENCH_DIR/integrations (default /tmp/dbr-bench).
set -euo pipefail
cd "$(dirname "$0")/.."

count=${BENCH_INTEGRATIONS:-500}
base=${BENCH_DIR:-/tmp/dbr-bench}
dir="$base/integrations"
server=${BENCH_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
root="$dir/s3-root"

cargo build --release --quiet --bin dbr-ingest --example s3_server
binary=$PWD/target/release/dbr-ingest
s3_server=$PWD/target/release/examples/s3_server

rm -rf "$dir"
mkdir -p "$root"
echo "generating $count integrations' buckets in $root" >&2
started=$(date +%s.%N)
python3 bench/integrations.py layout "$root" "$count"
echo "generated in $(python3 -c "import time; print(f'{time.time() - $started:.0f}')") s: $(find "$root" -name '*.csv.zip' | wc -l) reports, $(find "$root" -type f | wc -l) objects" >&2

s3_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$s3_server" --host 127.0.0.1 --port "$s3_port" --access-key bench --secret-key bench-secret-key "$root" \
  > "$dir/s3-server.log" 2>&1 &
s3_pid=$!
database="dbr_bench_integrations_$$"
export DATABASE_URL="$server/$database"
cleanup() {
  kill "$s3_pid" 2>/dev/null || true
  psql "$server/postgres" -qc "DROP DATABASE IF EXISTS \"$database\"" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$s3_port") 2>/dev/null && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1 \
  AWS_EC2_METADATA_DISABLED=true DBR_CONFIG=/dev/null RUST_LOG=warn

"$binary" migrate >/dev/null
echo "adding $count integrations with \`dbr-ingest integrations add\`" >&2
python3 bench/integrations.py integrations "$root" |
  xargs -P 4 -L 1 sh -c '"$0" integrations add "$1" --bucket "$2" --monitored "$3" \
    --endpoint-url "http://127.0.0.1:'"$s3_port"'" --force-path-style --region us-east-1 >/dev/null' "$binary"

poll() { # LABEL: both replicas poll once; prints "LABEL seconds ingested failed s3_requests"
  local label=$1 started ended
  started=$(date +%s.%N)
  "$binary" once > "$dir/$label-1.out" 2> "$dir/$label-1.err" &
  local first=$!
  "$binary" once > "$dir/$label-2.out" 2> "$dir/$label-2.err" &
  local second=$!
  local status=0
  wait "$first" || status=1
  wait "$second" || status=1
  ended=$(date +%s.%N)
  [ "$status" = 0 ] || { echo "a replica failed: see $dir/$label-*.out" >&2; exit 1; }
  python3 - "$label" "$started" "$ended" "$dir/$label-1.out" "$dir/$label-2.out" <<'PY'
import re, sys
label, started, ended = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
ingested = failed = requests = 0
for path in sys.argv[4:]:
    for line in open(path):
        m = re.match(r"\[[^]]+\] (\d+) ingested, (\d+) failed, .* (\d+) S3 requests$", line.strip())
        if m:
            ingested += int(m[1]); failed += int(m[2]); requests += int(m[3])
print(label, f"{ended - started:.1f}", ingested, failed, requests)
PY
}

reports=$(find "$root" -name '*.csv.zip' | wc -l)
results="$dir/results.txt"
poll first >> "$results"
python3 bench/integrations.py verify "$root" >> "$dir/verify.txt"
changed=$(python3 bench/integrations.py change "$root" 0.05)
poll changed >> "$results"
python3 bench/integrations.py verify "$root" >> "$dir/verify.txt"
poll unchanged >> "$results"
partitions=$(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM pg_inherits l JOIN pg_inherits i ON i.inhrelid = l.inhparent WHERE i.inhparent = 'daily_costs'::regclass")

python3 - "$results" "$count" "$reports" "$changed" "$partitions" <<'PY'
import sys
results, count, reports, changed, partitions = sys.argv[1], *map(int, sys.argv[2:])
print(f"{count} integrations, {reports} reports, 2 replicas (concurrency 2 each)")
print(f"{'poll':<10} {'wall':>8} {'ingested':>9} {'failed':>7} {'S3 requests':>12}")
for line in open(results):
    label, seconds, ingested, failed, requests = line.split()
    print(f"{label:<10} {float(seconds):6.1f} s {int(ingested):>9} {int(failed):>7} {int(requests):>12}")
print(f"changed before the second poll: {changed} reports (5%); statements stored: {partitions}")
PY
cat "$dir/verify.txt"
