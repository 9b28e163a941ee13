#!/usr/bin/env python3
"""The scale benchmark's world (bench/integrations.sh): N integrations, each a bucket of its
own under ROOT (s3s-fs serves ROOT, a bucket per subdirectory), with one to three payers and
three months of reports each; every 100th bucket is crowded with 20,000 other objects; every
5th integration monitors only its linked accounts (not the payer's own). Reports come from
tests/tools/gen_dbr.py, which also computes the totals the views must hold.

  integrations.py layout ROOT N         write the buckets and ROOT/../world.json
  integrations.py change ROOT FRACTION  rewrite that fraction of the reports (new contents)
  integrations.py verify ROOT           compare account_monthly_costs (psql $DATABASE_URL)
                                        with the expected totals, integration by integration
"""

import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("gen_dbr", os.path.join(HERE, "..", "tests", "tools", "gen_dbr.py"))
gen_dbr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen_dbr)

MONTHS = ["2017-01", "2017-02", "2017-03"]
ROWS = 400
CROWD = 20_000


def world_path(root):
    return os.path.join(os.path.dirname(os.path.abspath(root)), "world.json")


def write_report(root, integration, report, seed):
    """Generates one report into its bucket; returns its expected totals."""
    name = f"{report['payer']}-aws-billing-detailed-line-items-{report['period']}.csv"
    with tempfile.TemporaryDirectory() as tmp:
        csv, expected = os.path.join(tmp, name), os.path.join(tmp, "expected.json")
        sys.argv = ["gen_dbr.py", "--out", csv, "--expected", expected, "--payer", report["payer"],
                    "--accounts", ",".join(report["accounts"]), "--monitored", integration["monitored"],
                    "--period", report["period"], "--rows", str(ROWS), "--variant", "plain",
                    "--seed", str(seed)]
        gen_dbr.main()
        with zipfile.ZipFile(os.path.join(root, integration["bucket"], name + ".zip"), "w",
                             zipfile.ZIP_DEFLATED) as z:
            z.write(csv, name)
        with open(expected) as f:
            return json.load(f)


def layout(root, count):
    world = []
    for i in range(count):
        bucket = f"cust-{i:03d}"
        os.makedirs(os.path.join(root, bucket), exist_ok=True)
        payers = [f"{100000000000 + i * 10 + j}" for j in range(1 + i % 3)]
        linked = {p: [f"{200000000000 + int(p) % 10000 * 10 + k}" for k in range(2)] for p in payers}
        monitored = ",".join(a for p in payers for a in linked[p]) if i % 5 == 4 else "*"
        integration = {"name": f"customer-{i:03d}", "bucket": bucket, "monitored": monitored,
                       "reports": []}
        for payer in payers:
            for period in MONTHS:
                report = {"payer": payer, "period": period, "accounts": [payer] + linked[payer], "seed": 1}
                report["expected"] = write_report(root, integration, report, report["seed"])
                integration["reports"].append(report)
        if i % 100 == 0:
            crowd = os.path.join(root, bucket, "cur", "20170101-20170201")
            os.makedirs(crowd, exist_ok=True)
            for k in range(CROWD):
                with open(os.path.join(crowd, f"part-{k:05d}.csv.gz"), "wb") as f:
                    f.write(b"x")
        world.append(integration)
    save(root, world)


def save(root, world):
    with open(world_path(root), "w") as f:
        json.dump(world, f)


def load(root):
    with open(world_path(root)) as f:
        return json.load(f)


def change(root, fraction):
    world = load(root)
    reports = [(i, r) for i in world for r in i["reports"]]
    chosen = random.Random(len(reports)).sample(reports, max(1, round(len(reports) * fraction)))
    for integration, report in chosen:
        path = os.path.join(root, integration["bucket"],
                            f"{report['payer']}-aws-billing-detailed-line-items-{report['period']}.csv.zip")
        size = os.path.getsize(path)
        # s3s-fs lists files it did not write without an ETag, so a new version must differ in
        # size to be seen as one (real S3 gives every version its ETag).
        while os.path.getsize(path) == size:
            report["seed"] += 1
            report["expected"] = write_report(root, integration, report, report["seed"])
    save(root, world)
    print(len(chosen))


def verify(root):
    world = load(root)
    expected = {}
    for integration in world:
        for report in integration["reports"]:
            for account in report["expected"]["accounts"]:
                key = (integration["name"], account["linked_account_id"], report["period"])
                expected[key] = (account["unblended_cost"], account["blended_cost"], account["line_items"])
    out = subprocess.run(
        ["psql", os.environ["DATABASE_URL"], "-AtF", "\t", "-c",
         "SELECT integration, linked_account_id, to_char(billing_period, 'YYYY-MM'), "
         "unblended_cost, blended_cost, line_items FROM account_monthly_costs"],
        check=True, capture_output=True, text=True).stdout
    from decimal import Decimal
    stored = {}
    for line in out.splitlines():
        integration, account, period, unblended, blended, items = line.split("\t")
        stored[(integration, account, period)] = (Decimal(unblended), Decimal(blended), int(items))
    want = {k: (Decimal(u), Decimal(b), n) for k, (u, b, n) in expected.items()}
    wrong = [k for k in want.keys() | stored.keys() if want.get(k) != stored.get(k)]
    integrations = {k[0] for k in want}
    if wrong:
        print(f"MISMATCH in {len(wrong)} of {len(want)} account months, e.g. {sorted(wrong)[:3]}")
        sys.exit(1)
    print(f"exact: {len(want)} account months of {len(integrations)} integrations equal the generator's")


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "layout":
        layout(sys.argv[2], int(sys.argv[3]))
    elif command == "change":
        change(sys.argv[2], float(sys.argv[3]))
    elif command == "verify":
        verify(sys.argv[2])
    elif command == "integrations":
        for i in load(sys.argv[2]):
            print(i["name"], i["bucket"], i["monitored"])
    else:
        sys.exit(f"unknown command {command}")
