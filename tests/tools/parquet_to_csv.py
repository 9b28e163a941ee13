"""Prints a Parquet file as CSV, for the tests' checks, read by an independent reader (pyarrow,
installed with the FOCUS validator): decimals exact, NULL as an empty field.
usage: parquet_to_csv.py FILE.parquet SCHEMA.json  (each column's Arrow type into SCHEMA.json)"""
import json
import sys

import pyarrow.csv
import pyarrow.parquet

table = pyarrow.parquet.read_table(sys.argv[1])
with open(sys.argv[2], "w") as schema:
    json.dump({field.name: str(field.type) for field in table.schema}, schema)
pyarrow.csv.write_csv(table, sys.stdout.buffer)
