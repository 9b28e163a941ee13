#!/usr/bin/env python3
"""Writes a synthetic legacy AWS Detailed Billing Report (CSV) and, beside it, the totals that
dbr-ingest must find, computed here independently (integer arithmetic in units of 1e-14).

Used by the tests (small reports in every format variant), the benchmark (a 1 GB report) and
the bundled examples. Deterministic for a given --seed.
"""

import argparse
import json
import random
import sys

SCALE = 14  # amounts are integers of 1e-14 here, exact whatever the printed precision

FIXED = ["InvoiceID", "PayerAccountId", "LinkedAccountId", "RecordType", "RecordId", "ProductName",
         "RateId", "SubscriptionId", "PricingPlanId", "UsageType", "Operation", "AvailabilityZone",
         "ReservedInstance", "ItemDescription", "UsageStartDate", "UsageEndDate", "UsageQuantity"]
PRODUCTS = [
    ("Amazon Elastic Compute Cloud", "BoxUsage:m4.large", "RunInstances", "$0.10 per On Demand Linux m4.large Instance Hour"),
    ("Amazon Elastic Compute Cloud", "DataTransfer-Out-Bytes", "RunInstances", "$0.090 per GB - first 10 TB / month data transfer out"),
    ("Amazon Simple Storage Service", "Requests-Tier1", "PutObject", "$0.005 per 1,000 PUT, COPY, POST, or LIST requests"),
    ("Amazon Simple Storage Service", "TimedStorage-ByteHrs", "StandardStorage", "$0.023 per GB - first 50 TB / month of storage used"),
    ("Amazon Relational Database Service", "InstanceUsage:db.t2.micro", "CreateDBInstance:0002", "$0.017 per RDS db.t2.micro instance hour (or partial hour) running MySQL"),
    ("Amazon CloudFront", "EU-Requests-Tier2-HTTPS", "GET", "$0.0120 per 10,000 HTTPS Requests"),
    ("AWS Key Management Service", "KMS-Requests", "GenerateDataKey", "$0.03 per 10,000 requests, \"quoted\" in the description"),
]
ZONES = ["us-east-1a", "us-east-1b", "eu-west-1c", ""]


def fmt(units, digits):
    """Formats an amount held in 1e-14 units with `digits` fractional digits (exactly)."""
    assert digits <= SCALE
    step = 10 ** (SCALE - digits)
    assert units % step == 0
    sign = "-" if units < 0 else ""
    units = abs(units) // step
    whole, frac = divmod(units, 10 ** digits)
    return f"{sign}{whole}.{frac:0{digits}d}" if digits else f"{sign}{whole}"


def amount(rng, digits, low, high):
    """A random amount in 1e-14 units with at most `digits` fractional digits."""
    step = 10 ** (SCALE - digits)
    return rng.randint(low * 10 ** digits, high * 10 ** digits) * step


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True, help="CSV path, or - for stdout")
    p.add_argument("--expected", help="where to write the expected totals (JSON)")
    p.add_argument("--payer", default="123456789012")
    p.add_argument("--accounts", default="123456789012,000987654321,555555555555",
                   help="linked account IDs (consolidated billing)")
    p.add_argument("--monitored", default="*", help="accounts the expected totals keep, or *")
    p.add_argument("--period", default="2017-03")
    p.add_argument("--rows", type=int, default=200, help="line items")
    p.add_argument("--bytes", type=int, help="write line items until this many bytes instead")
    p.add_argument("--resources", type=int, default=300, help="distinct resources the line items use")
    p.add_argument("--order", choices=["random", "hourly"], default="random",
                   help="line items in random order, or hourly: every resource's usage billed hour after hour, as AWS writes it")
    p.add_argument("--variant", choices=["plain", "with-resources-and-tags"], default="with-resources-and-tags")
    p.add_argument("--billing", choices=["consolidated", "single"], default="consolidated")
    p.add_argument("--tags", default="user:Name,user:cost-center,aws:createdBy,user:team/app.tier")
    p.add_argument("--header", choices=["quoted", "unquoted"], default="quoted")
    p.add_argument("--preamble", action="store_true", help="a 'Don't see your tags' line first")
    p.add_argument("--eol", choices=["crlf", "lf"], default="crlf")
    p.add_argument("--empty", choices=["quoted", "bare"], default="quoted", help='empty fields as "" or nothing')
    p.add_argument("--date-sep", choices=["-", "/"], default="-")
    p.add_argument("--invoice", choices=["estimated", "final"], default="final")
    p.add_argument("--footer", choices=["full", "none"], default="full")
    p.add_argument("--off-by-a-cent", help="account whose AccountTotal is 0.01 too high")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()

    rng = random.Random(a.seed)
    consolidated = a.billing == "consolidated"
    accounts = a.accounts.split(",") if consolidated else [a.payer]
    resources = a.variant == "with-resources-and-tags"
    # Tags are drawn for both variants, so that a seed gives both the same line items (as AWS's
    # two reports of a month hold); the plain one just does not show them.
    all_tags = [t for t in a.tags.split(",") if t]
    tags = all_tags if resources else []
    year, month = map(int, a.period.split("-"))
    days = 28
    eol = "\r\n" if a.eol == "crlf" else "\n"
    invoice = "Estimated" if a.invoice == "estimated" else str(rng.randint(10 ** 7, 10 ** 8))
    second_invoice = "Estimated" if a.invoice == "estimated" else str(int(invoice) + 1)

    header = FIXED[:]
    if not resources:
        header.remove("RecordId")
    header += ["BlendedRate", "BlendedCost", "UnBlendedRate", "UnBlendedCost"] if consolidated else ["Rate", "Cost"]
    if resources:
        header += ["ResourceId"] + tags

    out = sys.stdout if a.out == "-" else open(a.out, "w", encoding="utf-8", newline="")

    def field(value):
        if value == "" and a.empty == "bare":
            return ""
        return '"' + value.replace('"', '""') + '"'

    def write(row):
        line = ",".join(field(row.get(h, "")) for h in header) + eol
        out.write(line)
        return len(line)

    if a.preamble:
        out.write('"Don\'t see your tags in the report? New tags are excluded by default - go to https://portal.aws.amazon.com/gp/aws/developer/account?action=cost-allocation-report to update your cost allocation keys."' + eol)
    if a.header == "quoted":
        out.write(",".join(f'"{h}"' for h in header) + eol)
    else:
        out.write(",".join(header) + eol)

    monitored = None if a.monitored == "*" else set(a.monitored.split(","))
    sums = {acct: [0, 0, 0, 0] for acct in accounts}  # unblended, blended, quantity, line items
    record_id = 10 ** 25  # 26 digits, beyond u64
    written = 0
    count = 0
    sep = a.date_sep

    def date(day, hour, minute=0, second=0):
        return f"{year:04d}{sep}{month:02d}{sep}{day:02d} {hour:02d}:{minute:02d}:{second:02d}"

    # Like real reports, line items are hourly usage of a fixed set of resources.
    resources = []
    for _ in range(a.resources):
        resource_tags = {t: rng.choice(["web", "db", "équipe-données", "batch, nightly"]) for t in all_tags if rng.random() < 0.5}
        if not resources:
            resource_tags = {}
        resources.append((rng.choice(accounts), rng.choice(PRODUCTS), rng.choice(ZONES),
                          f"i-{rng.randint(0, 16 ** 8):08x}", resource_tags))

    while (count < a.rows) if a.bytes is None else (written < a.bytes):
        count += 1
        record_id += rng.randint(1, 10 ** 6)
        if a.order == "hourly":  # each hour, one line item per resource, through the month and again
            slot, at = divmod(count - 1, len(resources))
            stream = resources[at]
        else:
            stream = rng.choice(resources)
        acct, (product, usage_type, operation, description), zone, resource_id, resource_tags = stream
        kind = rng.random()
        if a.order == "hourly":
            day, hour = slot // 23 % days + 1, slot % 23
        else:
            day, hour = rng.randint(1, days), rng.randint(0, 22)
        start, end = date(day, hour), date(day, hour + 1)
        inv = invoice
        rid = str(record_id)
        quantity = amount(rng, 8, 0, 100)
        if kind < 0.03:  # tax: empty ProductName, RecordId 0, no dates
            product, usage_type, operation, description = "", "", "", "Tax of type VAT"
            start = end = ""
            rid = "0"
            quantity = 0
            unblended = blended = amount(rng, 2, 0, 20)
        elif kind < 0.06:  # credit or refund
            unblended = blended = -amount(rng, 8, 0, 5)
            description = "AWS Credits, promotional"
        elif kind < 0.08:  # monthly fee, day-less dates
            start, end = "", ""
            unblended = blended = amount(rng, 2, 0, 50)
            inv = second_invoice
        elif kind < 0.10:  # fourteen fractional digits
            unblended = amount(rng, 14, 0, 1)
            blended = amount(rng, 14, 0, 1)
        else:
            unblended = amount(rng, 8, 0, 3)
            blended = unblended if rng.random() < 0.7 else amount(rng, 8, 0, 3)
        if not consolidated:
            blended = unblended
        row = {
            "InvoiceID": inv, "PayerAccountId": a.payer, "LinkedAccountId": acct if consolidated else "",
            "RecordType": "LineItem", "RecordId": rid, "ProductName": product,
            "RateId": str(rng.randint(1, 10 ** 8)), "SubscriptionId": str(rng.randint(1, 10 ** 9)),
            "PricingPlanId": str(rng.randint(1, 10 ** 6)), "UsageType": usage_type, "Operation": operation,
            "AvailabilityZone": zone, "ReservedInstance": "N", "ItemDescription": description,
            "UsageStartDate": start, "UsageEndDate": end, "UsageQuantity": fmt(quantity, 8),
            "BlendedRate": "0.0440000000", "BlendedCost": fmt(blended, 14 if abs(blended) % 10 ** 6 else 8),
            "UnBlendedRate": "0.0440000000", "UnBlendedCost": fmt(unblended, 14 if abs(unblended) % 10 ** 6 else 8),
            "Rate": "0.0440000000", "Cost": fmt(unblended, 14 if abs(unblended) % 10 ** 6 else 8),
            "ResourceId": resource_id if product else "",
            **resource_tags,
        }
        written += write(row)
        s = sums[acct]
        s[0] += unblended
        s[1] += blended
        s[2] += quantity
        s[3] += 1

    total_unblended = sum(s[0] for s in sums.values())
    total_blended = sum(s[1] for s in sums.values())
    account_totals = {}
    if a.footer == "full":
        rounding_u, rounding_b = amount(rng, 6, 0, 1), 0
        base = {"PayerAccountId": a.payer}
        write({**base, "InvoiceID": invoice, "RecordType": "Rounding", "ItemDescription": "This line contains rounding error due to the consolidated billing and hourly line item calculation processes.",
               "BlendedCost": fmt(rounding_b, 8), "UnBlendedCost": fmt(rounding_u, 8), "Cost": fmt(rounding_u, 8)})
        for inv in sorted({invoice, second_invoice}):
            write({**base, "InvoiceID": inv, "RecordType": "InvoiceTotal", "ItemDescription": f"Total amount for invoice {inv}",
                   "BlendedCost": "0.00", "UnBlendedCost": "0.00", "Cost": "0.00"})
        for acct in accounts:
            total_u, total_b = sums[acct][0], sums[acct][1]
            if acct == a.off_by_a_cent:
                total_u += 10 ** 12
            account_totals[acct] = total_u
            write({**base, "LinkedAccountId": acct if consolidated else "", "RecordType": "AccountTotal",
                   "ItemDescription": f"Total for linked account# {acct}",
                   "BlendedCost": fmt(total_b, SCALE), "UnBlendedCost": fmt(total_u, SCALE), "Cost": fmt(total_u, SCALE)})
        write({**base, "RecordType": "StatementTotal", "ItemDescription": "Total statement amount for period",
               "BlendedCost": fmt(total_blended, SCALE), "UnBlendedCost": fmt(total_unblended, SCALE), "Cost": fmt(total_unblended, SCALE)})
    if out is not sys.stdout:
        out.close()

    kept = [acct for acct in accounts if monitored is None or acct in monitored]
    line_items = sum(s[3] for s in sums.values())
    kept_items = sum(sums[acct][3] for acct in kept)
    expected = {
        "report": {"payer_account_id": a.payer, "billing_period": a.period, "variant": a.variant,
                   "invoice_status": a.invoice},
        "rows": {"line_items": line_items, "kept": kept_items, "dropped_unmonitored": line_items - kept_items},
        "accounts": [
            {"linked_account_id": acct,
             "unblended_cost": fmt(sums[acct][0], SCALE), "blended_cost": fmt(sums[acct][1], SCALE),
             "usage_quantity": fmt(sums[acct][2], SCALE), "line_items": sums[acct][3],
             "account_total_unblended": fmt(account_totals[acct], SCALE) if acct in account_totals else None,
             "reconciled": (account_totals[acct] == sums[acct][0]) if acct in account_totals else None}
            for acct in sorted(kept) if sums[acct][3] or acct in account_totals
        ],
    }
    if a.expected:
        with open(a.expected, "w") as f:
            json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main()
