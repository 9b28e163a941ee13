#!/usr/bin/env python3
"""Zips a report with Python's zipfile, the way a given writer lays the archive out.

modes:
  header         deflate, sizes in the local header (seekable output)
  header-zip64   deflate, ZIP64 extra field in the local header (force_zip64)
  stream         deflate, sizes in a 32-bit data descriptor (unseekable output)
  stream-zip64   deflate, ZIP64 extra field and a 64-bit data descriptor
  stored         no compression, sizes in the local header
  two-members    the report, then a second member named extra.csv
"""

import sys
import zipfile


class Unseekable:
    """A write-only file: zipfile then streams, writing data descriptors."""

    def __init__(self, raw):
        self.raw = raw

    def write(self, data):
        return self.raw.write(data)

    def flush(self):
        self.raw.flush()

    def tell(self):
        raise OSError("unseekable")

    def seek(self, *args):
        raise OSError("unseekable")


def main():
    mode, source, target = sys.argv[1:4]
    name = sys.argv[4] if len(sys.argv) > 4 else source.rsplit("/", 1)[-1]
    method = zipfile.ZIP_STORED if mode == "stored" else zipfile.ZIP_DEFLATED
    with open(target, "wb") as raw:
        out = Unseekable(raw) if mode.startswith("stream") else raw
        with zipfile.ZipFile(out, "w", compression=method) as archive:
            with open(source, "rb") as src, archive.open(name, "w", force_zip64=mode.endswith("zip64")) as member:
                while chunk := src.read(1 << 20):
                    member.write(chunk)
            if mode == "two-members":
                archive.writestr("extra.csv", "a,b\n")


if __name__ == "__main__":
    main()
