#!/usr/bin/env bash
# Writes examples/bucket: a billing bucket as AWS lays it out, with small generated reports of two
# payers (several months, both variants), and objects that are not detailed billing reports.
# Deterministic; the result is committed, so running this is only needed to change it.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf bucket && mkdir -p bucket
gen() { # NAME ARGS… -> bucket/NAME.zip
  local name=$1; shift
  python3 ../tests/tools/gen_dbr.py --out "bucket/$name" --rows 300 --resources 40 "$@"
  (cd bucket && zip -q -m -X "$name.zip" "$name")
}
gen 111111111111-aws-billing-detailed-line-items-with-resources-and-tags-2017-01.csv \
  --payer 111111111111 --accounts 111111111111,222233334444,555566667777 --period 2017-01 --seed 1
# The same month's line items without resources and tags: the with-resources-and-tags report
# above wins.
gen 111111111111-aws-billing-detailed-line-items-2017-01.csv --variant plain \
  --payer 111111111111 --accounts 111111111111,222233334444,555566667777 --period 2017-01 --seed 1
# AWS's AccountTotal of 222233334444 is a cent above its line items here, as rounding sometimes
# makes it: account_reconciliation shows it.
gen 111111111111-aws-billing-detailed-line-items-with-resources-and-tags-2017-02.csv \
  --payer 111111111111 --accounts 111111111111,222233334444,555566667777 --period 2017-02 --seed 2 \
  --invoice estimated --preamble --off-by-a-cent 222233334444
gen 999999999999-aws-billing-detailed-line-items-2017-02.csv --variant plain --billing single \
  --payer 999999999999 --period 2017-02 --seed 3
printf 'InvoiceID,PayerAccountId,LinkedAccountId,RecordType\n"Estimated","111111111111","","PayerLineItem"\n' \
  > bucket/111111111111-aws-billing-csv-2017-01.csv
: > bucket/aws-programmatic-access-test-object

# A Cost and Usage Report month for `summarize` (README): a copied bucket with one billing
# period's manifest and two gzip parts in an assembly folder, every line item type. Apart from
# bucket/, so that the example bucket's polls stay as the README tells them.
rm -rf cur && mkdir -p cur/billing
python3 ../tests/tools/gen_cur.py cur/billing --prefix cur/ --report hourly --period 2024-05 \
  --payer 111111111111 --accounts 111111111111,222233334444 --parts 2 --rows 120 --seed 5 > /dev/null
