#!/usr/bin/env python3
"""Writes one billing period of a Cost and Usage Report (CUR 1.0, CSV) into a directory laid out
like a billing bucket: the period's manifest and its parts, as AWS delivers them.

What koku-nise does not write, this does: every line item type (tax, credits, refunds, fees,
RI fees, savings plan fees and negations, discounts, marketplace, support, and a type AWS may add
later), `NetUnblendedCost`, both versioning modes (`--mode create` puts the parts in an assembly
folder; `overwrite` beside the manifest), zip or gzip parts, several parts with their columns in
different orders, final months (`--final`: invoice IDs), and restatements (run it again with
another `--assembly`).

    gen_cur.py BUCKET --prefix billing/ --report hourly --period 2024-05 --payer 111122223333 \\
        --accounts 111122223333,444455556666 --parts 2 --packing gz --mode create --seed 1

With `--template PART` (a part koku-nise wrote: its ~195 columns and product attributes), it
writes instead a month of `--bytes` of CSV billed hour after hour, as AWS writes a CUR: every
hour, one line item for each of `--streams` usage streams (a template row each, with its own
resource, account, times and amounts), in gzip parts of `--part-bytes`. For the benchmark.

Prints the manifest's key.
"""

import argparse
import csv
import gzip
import io
import json
import os
import random
import uuid
import zipfile
from datetime import date, timedelta

# (line item type, product code, product name, usage type, operation, sign, billing entity)
KINDS = [
    ("Usage", "AmazonEC2", "Amazon Elastic Compute Cloud", "BoxUsage:m5.large", "RunInstances", 1, "AWS"),
    ("Usage", "AmazonS3", "Amazon Simple Storage Service", "TimedStorage-ByteHrs", "StandardStorage", 1, "AWS"),
    ("Usage", "AWSDataTransfer", "AWS Data Transfer", "DataTransfer-Out-Bytes", "", 1, "AWS"),
    ("Usage", "AmazonCloudFront", "Amazon CloudFront", "EU-DataTransfer-Out-Bytes", "GET", 1, "AWS"),
    ("Usage", "AmazonEC2", "Amazon Elastic Compute Cloud", "SpotUsage:c5.xlarge", "RunInstances:SV001", 1, "AWS"),
    ("DiscountedUsage", "AmazonEC2", "Amazon Elastic Compute Cloud", "BoxUsage:m5.large", "RunInstances", 1, "AWS"),
    ("SavingsPlanCoveredUsage", "AmazonEC2", "Amazon Elastic Compute Cloud", "BoxUsage:c5.large", "RunInstances", 1, "AWS"),
    ("SavingsPlanNegation", "AmazonEC2", "Amazon Elastic Compute Cloud", "BoxUsage:c5.large", "RunInstances", -1, "AWS"),
    ("SavingsPlanRecurringFee", "ComputeSavingsPlans", "Savings Plans for AWS Compute usage", "ComputeSP:1yrNoUpfront", "", 1, "AWS"),
    ("SavingsPlanUpfrontFee", "ComputeSavingsPlans", "Savings Plans for AWS Compute usage", "ComputeSP:1yrAllUpfront", "", 1, "AWS"),
    ("RIFee", "AmazonEC2", "Amazon Elastic Compute Cloud", "HeavyUsage:m5.large", "RunInstances", 1, "AWS"),
    ("Fee", "AmazonRoute53", "Amazon Route 53", "Route53-Domains", "renewDomain", 1, "AWS"),
    ("Fee", "AWSSupportBusiness", "AWS Support (Business)", "Dollar", "", 1, "AWS"),
    ("Tax", "AmazonEC2", "Amazon Elastic Compute Cloud", "", "", 1, "AWS"),
    ("Credit", "AmazonEC2", "Amazon Elastic Compute Cloud", "", "", -1, "AWS"),
    ("Refund", "AmazonS3", "Amazon Simple Storage Service", "", "", -1, "AWS"),
    ("Discount", "AmazonEC2", "Amazon Elastic Compute Cloud", "", "", -1, "AWS"),
    ("BundledDiscount", "AmazonEC2", "Amazon Elastic Compute Cloud", "", "", -1, "AWS"),
    ("EdpDiscount", "AmazonEC2", "Amazon Elastic Compute Cloud", "", "", -1, "AWS"),
    ("Usage", "prod-abc123", "Trend Micro Deep Security", "SoftwareUsage:m5.large", "", 1, "AWS Marketplace"),
    ("FutureLineItemType", "AmazonEC2", "Amazon Elastic Compute Cloud", "BoxUsage:t3.micro", "RunInstances", 1, "AWS"),
]

COLUMNS = [
    "identity/LineItemId", "identity/TimeInterval", "bill/InvoiceId", "bill/InvoicingEntity",
    "bill/BillingEntity", "bill/BillType", "bill/PayerAccountId", "bill/BillingPeriodStartDate",
    "bill/BillingPeriodEndDate", "lineItem/UsageAccountId", "lineItem/LineItemType",
    "lineItem/UsageStartDate", "lineItem/UsageEndDate", "lineItem/ProductCode",
    "lineItem/UsageType", "lineItem/Operation", "lineItem/AvailabilityZone", "lineItem/ResourceId",
    "lineItem/UsageAmount", "lineItem/CurrencyCode", "lineItem/UnblendedRate",
    "lineItem/UnblendedCost", "lineItem/BlendedRate", "lineItem/BlendedCost",
    "lineItem/NetUnblendedCost", "lineItem/LineItemDescription", "product/ProductName",
    "product/region", "product/servicecode", "pricing/publicOnDemandCost",
    "pricing/publicOnDemandRate", "pricing/unit", "pricing/term",
    "reservation/EffectiveCost", "reservation/ReservationARN",
    "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod", "reservation/UnusedRecurringFee",
    "savingsPlan/SavingsPlanARN", "savingsPlan/SavingsPlanEffectiveCost",
    "savingsPlan/TotalCommitmentToDate", "savingsPlan/UsedCommitment",
    "resourceTags/user:Name", "resourceTags/aws:createdBy", "costCategory/Team Name",
]

REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]


def amount(rng, sign, places=10):
    value = rng.randint(0, 10 ** (places + 2)) / 10 ** places
    text = f"{value:.{places}f}".rstrip("0").rstrip(".") or "0"
    return text if sign > 0 or text == "0" else "-" + text


def rows(args, rng, accounts):
    year, month = map(int, args.period.split("-"))
    first = date(year, month, 1)
    days = ((first.replace(day=28) + timedelta(days=4)).replace(day=1) - first).days
    invoice = str(rng.randint(10 ** 8, 10 ** 9)) if args.final else ""
    out = []
    for n in range(args.rows):
        kind = KINDS[n % len(KINDS)] if n < len(KINDS) * 2 else rng.choice(KINDS)
        line_type, code, name, usage_type, operation, sign, entity = kind
        day = first + timedelta(days=rng.randrange(days))
        hour = rng.randrange(24)
        start = f"{day.isoformat()}T{hour:02d}:00:00Z"
        end = f"{day.isoformat()}T{hour:02d}:59:59Z" if hour < 23 else f"{day.isoformat()}T23:59:59Z"
        region = rng.choice(REGIONS) if usage_type else ""
        dated = line_type not in ("Tax", "Credit", "Refund", "Fee", "SavingsPlanUpfrontFee", "RIFee") or rng.random() < 0.5
        unblended = amount(rng, sign)
        row = {
            "identity/LineItemId": uuid.UUID(int=rng.getrandbits(128)).hex,
            "identity/TimeInterval": f"{start}/{end}",
            "bill/InvoiceId": invoice,
            "bill/InvoicingEntity": "Amazon Web Services, Inc.",
            "bill/BillingEntity": entity,
            "bill/BillType": "Purchase" if line_type.endswith("Fee") and "Upfront" in line_type else ("Refund" if line_type == "Refund" else "Anniversary"),
            "bill/PayerAccountId": args.payer,
            "bill/BillingPeriodStartDate": f"{first.isoformat()}T00:00:00Z",
            "bill/BillingPeriodEndDate": f"{(first + timedelta(days=days)).isoformat()}T00:00:00Z",
            "lineItem/UsageAccountId": rng.choice(accounts),
            "lineItem/LineItemType": line_type,
            "lineItem/UsageStartDate": start if dated else f"{first.isoformat()}T00:00:00Z",
            "lineItem/UsageEndDate": end,
            "lineItem/ProductCode": code,
            "lineItem/UsageType": usage_type,
            "lineItem/Operation": operation,
            "lineItem/AvailabilityZone": (region + "a") if region and code == "AmazonEC2" else "",
            "lineItem/ResourceId": f"i-{rng.randrange(16 ** 8):08x}" if code == "AmazonEC2" and usage_type else "",
            "lineItem/UsageAmount": amount(rng, 1, 6) if usage_type else "",
            "lineItem/CurrencyCode": "USD",
            "lineItem/UnblendedRate": amount(rng, 1, 4),
            "lineItem/UnblendedCost": unblended,
            "lineItem/BlendedRate": amount(rng, 1, 4),
            # AWS leaves BlendedCost blank on discounts.
            "lineItem/BlendedCost": "" if "Discount" in line_type else amount(rng, sign),
            "lineItem/NetUnblendedCost": unblended,
            "lineItem/LineItemDescription": f"{line_type} of {name}, \"quoted\", with a comma",
            "product/ProductName": name,
            "product/region": region,
            "product/servicecode": code,
            # Where no public price applies, peers have seen anything in these columns.
            "pricing/publicOnDemandCost": amount(rng, 1) if line_type == "Usage" else rng.choice(["", "None", "convertible"]),
            "pricing/publicOnDemandRate": amount(rng, 1, 4) if line_type == "Usage" else "",
            "pricing/unit": "Hrs" if usage_type else "",
            "pricing/term": "OnDemand" if line_type == "Usage" else "",
            "reservation/EffectiveCost": amount(rng, 1) if line_type == "DiscountedUsage" else "",
            "reservation/ReservationARN": "arn:aws:ec2:us-east-1:111122223333:reserved-instances/abc" if line_type in ("DiscountedUsage", "RIFee") else "",
            "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod": amount(rng, 1) if line_type == "RIFee" else "",
            "reservation/UnusedRecurringFee": amount(rng, 1) if line_type == "RIFee" else "",
            "savingsPlan/SavingsPlanARN": "arn:aws:savingsplans::111122223333:savingsplan/abc" if line_type.startswith("SavingsPlan") else "",
            "savingsPlan/SavingsPlanEffectiveCost": amount(rng, 1) if line_type == "SavingsPlanCoveredUsage" else "None",
            "savingsPlan/TotalCommitmentToDate": amount(rng, 1) if line_type == "SavingsPlanRecurringFee" else "",
            "savingsPlan/UsedCommitment": amount(rng, 1) if line_type == "SavingsPlanRecurringFee" else "",
            "resourceTags/user:Name": rng.choice(["", "web", "db", "batch, nightly", "é-ü"]),
            "resourceTags/aws:createdBy": rng.choice(["", "AssumedRole:ci"]),
            "costCategory/Team Name": rng.choice(["", "Platform", "Data"]),
        }
        out.append(row)
    return out


def templated(args, rng, accounts, part_dir):
    """Writes the hour-by-hour month from a template part; returns the parts' keys."""
    with gzip.open(args.template, "rt", newline="") as template:
        reader = csv.reader(template)
        header = next(reader)
        rows = [row for _, row in zip(range(5000), reader)]
    column = {name: i for i, name in enumerate(header)}
    year, month = map(int, args.period.split("-"))
    first = date(year, month, 1)
    after = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    hours = (after - first).days * 24
    keys, written, part, out, part_bytes = [], 0, 0, None, 0
    for hour in range(hours):
        start = f"{(first + timedelta(days=hour // 24)).isoformat()}T{hour % 24:02d}:00:00Z"
        end = f"{(first + timedelta(days=(hour + 1) // 24)).isoformat()}T{(hour + 1) % 24:02d}:00:00Z"
        for stream in range(args.streams):
            if out is None or part_bytes >= args.part_bytes:
                if out is not None:
                    out.close()
                part += 1
                key = f"{part_dir}/{args.report}-{part:05d}.csv.gz"
                path = os.path.join(args.bucket, key)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                out = gzip.open(path, "wt", compresslevel=6, newline="")
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(header)
                keys.append(key)
                part_bytes = 0
            row = list(rows[stream % len(rows)])
            row[column["identity/LineItemId"]] = f"{rng.getrandbits(160):040x}"
            row[column["identity/TimeInterval"]] = f"{start}/{end}"
            row[column["bill/PayerAccountId"]] = args.payer
            row[column["lineItem/UsageAccountId"]] = accounts[stream % len(accounts)]
            row[column["lineItem/UsageStartDate"]] = start
            row[column["lineItem/UsageEndDate"]] = end
            row[column["lineItem/ResourceId"]] = f"i-{stream:08x}"
            row[column["lineItem/UsageAmount"]] = amount(rng, 1, 6)
            cost = amount(rng, 1, 10)
            row[column["lineItem/UnblendedCost"]] = cost
            row[column["lineItem/BlendedCost"]] = cost
            size = sum(map(len, row)) + len(row)
            written += size
            part_bytes += size
            writer.writerow(row)
            if written >= args.bytes:
                out.close()
                return keys
    out.close()
    return keys


def packed(name, text, packing):
    data = text.encode("utf-8")
    if packing == "gz":
        return gzip.compress(data, mtime=0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bucket")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--report", default="cur")
    parser.add_argument("--period", required=True)
    parser.add_argument("--payer", required=True)
    parser.add_argument("--accounts", required=True)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--packing", choices=["gz", "zip"], default="gz")
    parser.add_argument("--mode", choices=["create", "overwrite"], default="create")
    parser.add_argument("--assembly", default=None)
    parser.add_argument("--final", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-manifest", action="store_true", help="write the parts only (AWS mid-delivery)")
    parser.add_argument("--template", help="a koku-nise part: write an hour-by-hour month from its rows")
    parser.add_argument("--bytes", type=int, default=10**9, help="with --template: CSV bytes to write")
    parser.add_argument("--streams", type=int, default=1500, help="with --template: usage streams per hour")
    parser.add_argument("--part-bytes", type=int, default=250 * 10**6, help="with --template: CSV bytes per part")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    accounts = args.accounts.split(",")
    year, month = map(int, args.period.split("-"))
    first = date(year, month, 1)
    after = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    span = f"{first:%Y%m%d}-{after:%Y%m%d}"
    period_dir = f"{args.prefix}{args.report}/{span}"
    assembly = args.assembly or str(uuid.UUID(int=rng.getrandbits(128)))
    part_dir = f"{period_dir}/{assembly}" if args.mode == "create" else period_dir
    items = [] if args.template else rows(args, rng, accounts)
    keys = templated(args, rng, accounts, part_dir) if args.template else []
    per_part = -(-len(items) // args.parts)
    for index in range(0 if args.template else args.parts):
        chunk = items[index * per_part:(index + 1) * per_part]
        columns = COLUMNS[:]
        rng.shuffle(columns)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(chunk)
        name = f"{args.report}-{index + 1}.csv"
        key = f"{part_dir}/{name}.{args.packing}"
        path = os.path.join(args.bucket, key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(packed(name, text.getvalue(), args.packing))
        keys.append(key)
    manifest = {
        "assemblyId": assembly,
        "account": args.payer,
        "columns": [{"category": c.split("/")[0], "name": c.split("/")[1]} for c in COLUMNS[:20]],
        "charset": "UTF-8",
        "compression": "GZIP" if args.packing == "gz" else "ZIP",
        "contentType": "text/csv",
        "reportId": "0" * 64,
        "reportName": args.report,
        "billingPeriod": {"start": f"{first:%Y%m%d}T000000.000Z", "end": f"{after:%Y%m%d}T000000.000Z"},
        "bucket": "billing",
        "reportKeys": keys,
        "additionalArtifactKeys": [],
    }
    if not args.no_manifest:
        text = json.dumps(manifest)
        for directory in {period_dir, f"{period_dir}/{assembly}"} if args.mode == "create" else {period_dir}:
            path = os.path.join(args.bucket, directory, f"{args.report}-Manifest.json")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as out:
                out.write(text)
    print(f"{period_dir}/{args.report}-Manifest.json")


if __name__ == "__main__":
    main()
