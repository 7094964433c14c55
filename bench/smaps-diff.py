#!/usr/bin/env python3
"""Where a process's resident set grew between two /proc/PID/smaps copies (bench/memory.sh
with SMAPS=DIR keeps them): the Rss of each mapping, matched by start address and name, and
the difference, largest first. Usage: bench/smaps-diff.py BEFORE AFTER [PEERS]."""
import sys


def read(path):
    maps, key = {}, None
    for line in open(path):
        parts = line.split()
        if "-" in parts[0] and len(parts) >= 5 and ":" not in parts[0]:
            name = parts[5] if len(parts) > 5 else "[anon]"
            key = (parts[0].split("-")[0], name)
            maps[key] = 0
        elif parts[0] == "Rss:":
            maps[key] = int(parts[1])
    return maps


before, after = read(sys.argv[1]), read(sys.argv[2])
peers = int(sys.argv[3]) if len(sys.argv) > 3 else 0
rows = []
for key in set(before) | set(after):
    d = after.get(key, 0) - before.get(key, 0)
    if d:
        rows.append((d, key, before.get(key, 0), after.get(key, 0)))
rows.sort(reverse=True)
total = sum(r[0] for r in rows)
for d, (start, name), b, a in rows:
    per = f"  {d * 1024 / peers:7.0f} B/peer" if peers else ""
    print(f"{d:+8d} KiB  {start:>12} {name:<20} {b:>8} -> {a:>8} KiB{per}")
per = f"  {total * 1024 / peers:7.0f} B/peer" if peers else ""
print(f"{total:+8d} KiB  total{per}")
