"""Turns cargo-tarpaulin's JSON report into the per-module table of docs/coverage.md.

Usage: coverage_table.py tarpaulin-report.json docs/coverage.md

A module is a directory under src/ (client, controller, …) or a top-level file (crypto.rs,
lib.rs); the section between the coverage:begin and coverage:end markers is replaced.
"""

import collections
import datetime
import json
import subprocess
import sys

report = json.load(open(sys.argv[1]))
covered = collections.Counter()
coverable = collections.Counter()
for f in report["files"]:
    path = "/".join(f["path"])
    rel = path.split("/src/", 1)[1] if "/src/" in path else path
    parts = rel.split("/")
    module = parts[0] if len(parts) > 1 else parts[0].removesuffix(".rs")
    covered[module] += f["covered"]
    coverable[module] += f["coverable"]

total_cov, total = sum(covered.values()), sum(coverable.values())
rows = ["| module | lines covered | lines | coverage |", "|---|---|---|---|"]
for module in sorted(
    (m for m in coverable if coverable[m]), key=lambda m: covered[m] / coverable[m]
):
    pct = 100.0 * covered[module] / max(coverable[module], 1)
    rows.append(f"| `{module}` | {covered[module]} | {coverable[module]} | {pct:.1f} % |")
rows.append(f"| **all of src/** | {total_cov} | {total} | **{100.0 * total_cov / max(total, 1):.1f} %** |")
commit = subprocess.run(
    ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
).stdout.strip()
section = (
    f"Measured {datetime.date.today().isoformat()} at {commit} with `scripts/coverage` "
    "(cargo-tarpaulin 0.37.5, LLVM engine).\n\n"
    + "\n".join(rows)
    + "\n"
)
doc_path = sys.argv[2]
doc = open(doc_path).read()
begin, end = "<!-- coverage:begin -->\n", "<!-- coverage:end -->"
a, b = doc.index(begin) + len(begin), doc.index(end)
open(doc_path, "w").write(doc[:a] + section + doc[b:])
print("\n".join(rows))
