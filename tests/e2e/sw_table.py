"""The e2e distillation table and its checks (sourced rows from sw_rows.sh).

    sw_table.py ROWS CHECK...

ROWS holds "NAME NFE SW" lines, one of them "fresh-data 0 SW" (the floor). Prints the markdown
table (SW and SW / floor), then each CHECK "NAME:NFE <= FACTOR REF:NFE" (SW of the row at most
FACTOR times the reference row's SW; REF "fresh-data:0" is the floor) as ok or FAIL; exits 1 when
any check fails.
"""
import sys

rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
sw = {(r[0], int(r[1])): float(r[2]) for r in rows}
floor = sw[("fresh-data", 0)]
print("| method | NFE | sliced Wasserstein (mean of 4 draws) | / fresh data |")
print("|---|---|---|---|")
for (name, nfe), v in sw.items():
    print(f"| {name} | {nfe} | {v:.4f} | {v / floor:.2f} |")


def key(text):
    name, nfe = text.rsplit(":", 1)
    return name, int(nfe)


ok = True
for check in sys.argv[2:]:
    lhs, rhs = check.split("<=")
    factor, ref = rhs.split()
    a, b = key(lhs.strip()), key(ref)
    good = sw[a] <= float(factor) * sw[b]
    print(f"{'ok  ' if good else 'FAIL'} {a[0]} with {a[1]} steps: {sw[a]:.4f} <= {factor} x {b[0]} ({sw[b]:.4f})")
    ok = ok and good
sys.exit(0 if ok else 1)
