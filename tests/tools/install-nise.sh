#!/usr/bin/env bash
# Installs koku-nise (the CUR generator koku is tested with) into the virtual environment DIR:
# the tests run DIR/bin/nise. 5.4.4 installs cleanly on Python 3.11.
set -euo pipefail
venv="${1:?usage: install-nise.sh DIR}"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check koku-nise==5.4.4
