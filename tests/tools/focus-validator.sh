#!/bin/bash
# Runs the FinOps Foundation's FOCUS validator (PyPI focus-validator 2.2.1, which bundles the FOCUS
# 1.2 rules) on this machine's Python 3.11. The package declares Python >= 3.12; three things make it
# run on 3.11: one f-string in PEP 701 syntax is rewritten, NumPy 2 comes as a wheel, and the ISO 4217
# currency list it would download is written locally.
# usage: focus-validator.sh DATA_FILE(.csv|.parquet) [MORE focus-validator ARGS]
#        focus-validator.sh --install
# Installs once into $FOCUS_VALIDATOR_HOME (default ~/.cache/focus-validator). Prints the validator's
# report; exits 1 when any rule fails, 2 when the validator could not run.
# (A copy of the project's shared tool, so that a clean clone has it; `--install` is ours: .ci/run
# installs before the tests, so that no test's time goes to pip.)
set -uo pipefail
V=${FOCUS_VALIDATOR_HOME:-$HOME/.cache/focus-validator}
if [[ ! -x $V/bin/focus-validator ]]; then
  python3 -m venv "$V" >/dev/null || exit 2
  "$V/bin/pip" install -q --ignore-requires-python focus-validator==2.2.1 >/dev/null 2>&1 || exit 2
  "$V/bin/pip" install -q --only-binary=:all: "numpy>=2,<2.3" >/dev/null 2>&1 || exit 2
  F=$(echo "$V"/lib/python3*/site-packages/focus_validator/config_objects/focus_to_duckdb_converter.py)
  python3 - "$F" <<'PY' || exit 2
import sys
p = sys.argv[1]; s = open(p).read()
s = s.replace('''+ ", ".join(f"'{k.replace('\\"', '\\"\\"')}'" for k in ignore_keys)''',
              '''+ ", ".join("'" + k.replace('"', '""') + "'" for k in ignore_keys)''')
open(p, "w").write(s)
PY
fi
[[ ${1:-} == --install ]] && exit 0
mkdir -p "$V/run/focus_validator/rules"
python3 - "$V/run/focus_validator/rules/currency_codes.csv" <<'PY'
import sys
codes = ("USD EUR GBP JPY CNY INR AUD CAD CHF SEK NOK DKK BRL KRW SGD HKD NZD MXN ZAR PLN CZK HUF ILS "
         "AED SAR TRY IDR THB MYR PHP").split()
open(sys.argv[1], "w").write(",currency_codes\n" + "".join("%d,%s\n" % (i, c) for i, c in enumerate(codes)))
PY
data=$(realpath "$1"); shift
out=$(cd "$V/run" && "$V/bin/focus-validator" --data-file "$data" --validate-version 1.2 --block-download --show-violations "$@" 2>&1)
rc=$?
echo "$out"
grep -q "=== Validation Results ===" <<<"$out" || exit 2
grep -q "^❌" <<<"$out" && exit 1
exit $rc
