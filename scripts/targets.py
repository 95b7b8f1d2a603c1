#!/usr/bin/env python3
"""Issue 4's targets from one device call: the device check's tables (bench.log) against the
PyTorch baseline run in the same call (torch.json); with a third file, the whole-model targets:
the model check's table (`--model-check`, in bench.log) against bench/torch/model_baseline.py's
JSON (model-torch.json).

    python3 scripts/targets.py OUT/bench.log OUT/torch.json [OUT/model-torch.json]

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


def main(bench_path, torch_path, model_torch_path=None):
    found = tables(open(bench_path, encoding="utf-8").read())
    if model_torch_path:
        model_targets(found, model_torch_path)
    main_table = next((rows for _, header, rows in found if header[:2] == ["ids", "record median"]), None)
    if main_table is None or not torch_path:
        return
    torch = {row["n"]: row for row in json.load(open(torch_path))}
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


# The whole-model issue's targets on an H200.
DECODE = (58, 256, 8, 256)     # one step under 10 µs
PREFILL = (58, 256, 8, 16384)  # the step's read rate at 80 % or more of the copy's, same run
FASTER = 20                    # times faster than the per-layer PyTorch recording (vLLM's scatter_add_)


def model_targets(found, model_torch_path):
    """The model check's rows against model_baseline.py's, then the three targets."""
    model = next((rows for _, header, rows in found if header[:4] == ["L", "E", "k", "tokens"] and "step median" in header), None)
    if model is None:
        print("No whole-model table (MoeGpuStats.Bench --model-check) in the log: the model targets are not measured.")
        print()
        return
    try:
        torch = {(r["layers"], r["experts"], r["topk"], r["tokens"]): r for r in json.load(open(model_torch_path))}
    except (OSError, ValueError) as error:
        print(f"No model baseline ({model_torch_path}: {error}): the comparison with PyTorch is not measured.")
        torch = {}
    print("Whole model, per step of L layers: RecordStep (one launch) against L single-layer records and PyTorch's per-layer recording, same ids, same call.")
    print("| L × E × k | tokens | RecordStep | L single-layer records | torch scatter_add (vLLM), per layer | faster | torch bincount, per layer | faster | read / copy | checksums | targets |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    verdicts = {}
    for r in model:
        key = tuple(int(r[c]) for c in ("L", "E", "k", "tokens"))
        step = micros(r["step median"])
        records = micros(r["L single-layer records"])
        share = float(r["read/copy"].rstrip("%").replace(",", "")) / 100
        base = torch.get(key)
        vllm = base["scatter_add_ms"] * 1e3 if base else float("nan")
        bincount = base["bincount_ms"] * 1e3 if base else float("nan")
        same = r["layers checksum"] == "equal" and (base is None or (base["checksums_agree"] and int(r["step checksum"]) == base["checksum"]))
        held = []
        if base:
            held.append(f"≥ {FASTER}× vLLM-style: {'yes' if vllm / step >= FASTER else 'no'}")
            verdicts.setdefault("faster", []).append((key, vllm / step))
        if key == DECODE:
            held.append(f"< 10 µs: {'yes' if step < 10 else 'no'}")
            verdicts["decode"] = step
        if key == PREFILL:
            held.append(f"≥ 80 % of copy: {'yes' if share >= 0.8 else 'no'}")
            verdicts["prefill"] = share
        vllm_cells = f"{vllm:.1f} µs | {vllm / step:.1f}× | {bincount:.1f} µs | {bincount / step:.1f}×" if base else "- | - | - | -"
        print(f"| {key[0]} × {key[1]} × {key[2]} | {key[3]} | {step:.1f} µs | {records:.1f} µs ({records / step:.1f}×) | "
              f"{vllm_cells} | {share:.0%} | "
              f"{'equal' if same else 'DIFFER'} | {'; '.join(held)} |")
    print()
    print("| whole-model target | measured | held |")
    print("| --- | --- | --- |")
    decode = verdicts.get("decode")
    print(f"| decode step, L = 58, E = 256, k = 8, T = 256, under 10 µs | {f'{decode:.1f} µs' if decode is not None else 'not in the table'} | "
          f"{'-' if decode is None else 'yes' if decode < 10 else 'no'} |")
    faster = verdicts.get("faster", [])
    missed = [f"{k[0]}×{k[1]}×{k[2]} T={k[3]} ({x:.1f}×)" for k, x in faster if x < FASTER]
    span = f"{min(x for _, x in faster):.1f}× to {max(x for _, x in faster):.1f}×" if faster else "no baseline"
    print(f"| at least {FASTER}× faster than per-layer PyTorch recording (vLLM's scatter_add_) | {span} | "
          f"{'-' if not faster else 'yes, every shape' if not missed else 'not at ' + ', '.join(missed)} |")
    prefill = verdicts.get("prefill")
    print(f"| prefill step, L = 58, T = 16,384, at 80 % or more of the copy | {f'{prefill:.0%}' if prefill is not None else 'not in the table'} | "
          f"{'-' if prefill is None else 'yes' if prefill >= 0.8 else 'no'} |")
    print()


if __name__ == "__main__":
    main(*sys.argv[1:4])
