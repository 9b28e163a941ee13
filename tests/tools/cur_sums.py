#!/usr/bin/env python3
"""The independent computation CUR months are checked against: per usage account, the sums of
`lineItem/UnblendedCost` and `lineItem/BlendedCost` and the count of line items over every part
a manifest names, in Python's `decimal`, read with Python's own gzip, zipfile and csv.

    cur_sums.py BUCKET MANIFEST_KEY [ACCOUNT,ACCOUNT] [--as-generator]

`--as-generator` prints the per-account totals as `gen_dbr.py` writes its expected totals
(the benchmark checks both formats' results alike). Otherwise it prints {"accounts": {"<account>": {"unblended_cost": "…", "blended_cost": "…", "amortized_cost":
"…", "line_items": n}},
"days": {"<account> <YYYY-MM-DD>": "<unblended>"}, "resources": {"<account> <resource>": "…"},
"tags": {"<account> <tag key> <tag value>": "…"}}: tags are the `resourceTags/` columns (named
after that prefix) and the `costCategory/` columns (named by their column), non-empty values.
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


def number(row, column):
    """The column's value, or None where it is absent, empty or not a number."""
    try:
        return Decimal(row[column]) if row.get(column) else None
    except ArithmeticError:
        return None


def amortized(row, unblended):
    """The amortized cost by AWS's formula (cur-format.md), the unblended cost where a column
    it needs is absent or not a number."""
    kind = row["lineItem/LineItemType"]
    if kind in ("SavingsPlanNegation", "SavingsPlanUpfrontFee"):
        return Decimal(0)
    if kind == "Fee" and row.get("reservation/ReservationARN"):
        return Decimal(0)
    if kind == "SavingsPlanCoveredUsage":
        value = number(row, "savingsPlan/SavingsPlanEffectiveCost")
    elif kind == "SavingsPlanRecurringFee":
        total, used = number(row, "savingsPlan/TotalCommitmentToDate"), number(row, "savingsPlan/UsedCommitment")
        value = None if total is None or used is None else total - used
    elif kind == "DiscountedUsage":
        value = number(row, "reservation/EffectiveCost")
    elif kind == "RIFee":
        upfront = number(row, "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod")
        recurring = number(row, "reservation/UnusedRecurringFee")
        value = None if upfront is None or recurring is None else upfront + recurring
    else:
        return unblended
    return unblended if value is None else value


def main():
    as_generator = "--as-generator" in sys.argv
    argv = [a for a in sys.argv if a != "--as-generator"]
    bucket, manifest_key = argv[1], argv[2]
    only = set(argv[3].split(",")) if len(argv) > 3 and argv[3] not in ("", "*") else None
    with open(os.path.join(bucket, manifest_key)) as handle:
        manifest = json.load(handle)
    sums, days, resources, tags = {}, {}, {}, {}

    def add(table, key, value):
        table[key] = table.get(key, Decimal(0)) + value

    for key in manifest["reportKeys"]:
        for row in csv.DictReader(io.StringIO(part_text(os.path.join(bucket, key.lstrip("/"))))):
            account = row["lineItem/UsageAccountId"]
            if only is not None and account not in only:
                continue
            cost = Decimal(row["lineItem/UnblendedCost"] or "0")
            entry = sums.setdefault(account, {"unblended_cost": Decimal(0), "blended_cost": Decimal(0), "amortized_cost": Decimal(0), "usage_quantity": Decimal(0), "line_items": 0})
            entry["unblended_cost"] += cost
            entry["usage_quantity"] += Decimal(row["lineItem/UsageAmount"] or "0")
            entry["amortized_cost"] += amortized(row, cost)
            entry["blended_cost"] += Decimal(row["lineItem/BlendedCost"] or "0")
            entry["line_items"] += 1
            add(days, f"{account} {row['lineItem/UsageStartDate'][:10]}", cost)
            if row.get("lineItem/ResourceId"):
                add(resources, f"{account} {row['lineItem/ResourceId']}", cost)
            for column, value in row.items():
                if not value:
                    continue
                if column.startswith("resourceTags/"):
                    add(tags, f"{account} {column[len('resourceTags/'):]} {value}", cost)
                elif column.startswith("costCategory/"):
                    add(tags, f"{account} {column} {value}", cost)
    if as_generator:
        accounts = [{"linked_account_id": a, **{k: str(v) if isinstance(v, Decimal) else v for k, v in e.items()}}
                    for a, e in sorted(sums.items())]
        print(json.dumps({"rows": {"line_items": sum(e["line_items"] for e in sums.values())}, "accounts": accounts}))
        return
    text = lambda table: {k: str(v) for k, v in sorted(table.items())}
    accounts = {a: {k: str(v) if isinstance(v, Decimal) else v for k, v in e.items()} for a, e in sorted(sums.items())}
    print(json.dumps({"accounts": accounts, "days": text(days), "resources": text(resources), "tags": text(tags)}))


if __name__ == "__main__":
    main()
