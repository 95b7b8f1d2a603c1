#!/usr/bin/env python3
"""Issue 4's targets from one device call: the device check's tables (bench.log) against the
PyTorch baseline run in the same call (torch.json).

    python3 scripts/targets.py OUT/bench.log OUT/torch.json

Prints, per size: the record's median, its read rate against the copy measured in the same run,
PyTorch's bincount+totals+util+var, the ratio, whether the checksums agree, and which targets
hold; then, where the device check timed candidate countings, each candidate on the baseline's
data against the copy and against the library's default counting on that accelerator.
"""
import json
import re
import sys


def tables(text):
    """Every markdown table in the log, as (the line before it, rows of cells)."""
    found, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("| ---"):
            title = lines[i - 1] if i > 0 else ""
            header = cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("| "):
                rows.append(dict(zip(header, cells(lines[i]))))
                i += 1
            found.append((title, header, rows))
        else:
            i += 1
    return found


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def micros(cell):
    return float(re.match(r"[\d.]+", cell.replace(",", "")).group())


def size(n):
    return f"{n // 1048576} Mi" if n >= 1048576 else f"{n // 1024} Ki"


def main(bench_path, torch_path):
    found = tables(open(bench_path, encoding="utf-8").read())
    torch = {row["n"]: row for row in json.load(open(torch_path))}
    main_table = next(rows for _, header, rows in found if header[:2] == ["ids", "record median"])
    copy = {int(r["ids"]): float(r["d2d copy GB/s"]) for r in main_table}

    print("| ids | record | read / copy | torch bincount+totals+util+var | device faster | checksums | targets |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in main_table:
        n = int(r["ids"])
        record = micros(r["record median"])
        share = n * 4 / (record * 1e3) / copy[n]
        base = torch.get(n)
        faster = base["record_ms"] * 1e3 / record if base else float("nan")
        same = "equal" if base and int(r["checksum"]) == base["checksum"] else "DIFFER"
        held = [f"≥10× torch: {'yes' if faster >= 10 else 'no'}"]
        if n <= 32768:
            held.append(f"< 8 µs: {'yes' if record < 8 else 'no'}")
        if n >= 16 * 1048576:
            held.append(f"≥ 80 % of copy: {'yes' if share >= 0.8 else 'no'}")
        torch_us = f"{base['record_ms'] * 1e3:.1f} µs" if base else "-"
        print(f"| {size(n)} | {record:.1f} µs | {share:.0%} | {torch_us} | {faster:.1f}× | {same} | {'; '.join(held)} |")

    padding = next((rows for _, header, rows in found if header[:2] == ["ids", "no padding"]), None)
    if padding:
        print()
        print("Padding (issue 18's aim: at most 5 % on the GPU record): each padded batch against the same batch without padding.")
        print("| ids | last 5 % of tokens padded | every 16th slot empty | within 5 % |")
        print("| --- | --- | --- | --- |")
        for r in padding:
            padded, empty = (float(r[k].rstrip("x")) for k in ("padded / none", "empty / none"))
            print(f"| {size(int(r['ids']))} | {r['last 5 % of tokens padded']} µs, {padded:.2f}× | {r['every 16th slot empty']} µs, {empty:.2f}× | {'yes' if max(padded, empty) <= 1.05 else 'no'} |")

    candidates = next(((header, rows) for title, header, rows in found if title.startswith("Countings, the library's default")), None)
    if candidates is None:
        return
    header, rows = candidates
    names = header[2:-1]
    print()
    print("Countings on the baseline's data (the library's default first): record, read / copy, and time against the library's default.")
    print(f"| ids |{''.join(f' {name} |' for name in names)}")
    print(f"| --- |{' --- |' * len(names)}")
    for r in rows:
        if r["load"] != "baseline data":
            continue
        n = int(r["ids"])
        library = micros(r[names[0]])
        out = []
        for name in names:
            t = micros(r[name])
            share = f", {n * 4 / (t * 1e3) / copy[n]:.0%}" if n in copy else ""
            out.append(f" {t:.1f} µs{share}, {t / library:.2f}× |")
        print(f"| {size(n)} |{''.join(out)}")
    if any(" ≠ " in r["checksum"] for r in rows):
        print("CHECKSUMS DIFFER in the candidate table: a candidate counted wrong.")


if __name__ == "__main__":
    main(*sys.argv[1:3])
