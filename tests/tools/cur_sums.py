#!/usr/bin/env python3
"""The independent computation CUR months are checked against: per usage account, the sums of
`lineItem/UnblendedCost` and `lineItem/BlendedCost` and the count of line items over every part
a manifest names, in Python's `decimal`, read with Python's own gzip, zipfile and csv.

    cur_sums.py BUCKET MANIFEST_KEY [ACCOUNT,ACCOUNT]

Prints {"<account>": {"unblended_cost": "…", "blended_cost": "…", "line_items": n}, …}.
"""

import csv
import gzip
import io
import json
import os
import sys
import zipfile
from decimal import Decimal


def part_text(path):
    with open(path, "rb") as handle:
        data = handle.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    elif path.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            data = archive.read(archive.namelist()[0])
    return data.decode("utf-8")


def main():
    bucket, manifest_key = sys.argv[1], sys.argv[2]
    only = set(sys.argv[3].split(",")) if len(sys.argv) > 3 else None
    with open(os.path.join(bucket, manifest_key)) as handle:
        manifest = json.load(handle)
    sums = {}
    for key in manifest["reportKeys"]:
        for row in csv.DictReader(io.StringIO(part_text(os.path.join(bucket, key.lstrip("/"))))):
            account = row["lineItem/UsageAccountId"]
            if only is not None and account not in only:
                continue
            entry = sums.setdefault(account, {"unblended_cost": Decimal(0), "blended_cost": Decimal(0), "line_items": 0})
            entry["unblended_cost"] += Decimal(row["lineItem/UnblendedCost"] or "0")
            entry["blended_cost"] += Decimal(row["lineItem/BlendedCost"] or "0")
            entry["line_items"] += 1
    print(json.dumps({a: {k: str(v) if isinstance(v, Decimal) else v for k, v in e.items()} for a, e in sorted(sums.items())}))


if __name__ == "__main__":
    main()
