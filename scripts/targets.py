#!/usr/bin/env python3
"""Issue 4's targets from one device call: the device check's tables (`MoeGpuStats.Bench
--device-check --json`) against the PyTorch baseline run in the same call (torch.json); and the
whole-model targets: the model check's table (`--model-check --json`) against
bench/torch/model_baseline.py's JSON. The checks' JSON is bench/MoeGpuStats.Bench/CheckReport.cs's:
{"check", "device", "accelerator_type", "complete", "run": {..}, "tables": {"record": [rows], ..}};
docs/performance.md lists the tables and their keys.

    python3 scripts/targets.py --device-check device-check.json --torch torch.json \
        [--model-check model-check.json --model-torch model-torch.json]

(scripts/device-check.sh runs it on the JSON it then packs into $OUT/json.tgz.) Each check's tables
are headed by the device it ran on, and one that is not CUDA is named as such.

Prints, when the model check or its baseline is given, the whole model's rows and targets; then,
per size: the record's median, its read rate against the copy measured in the same run, PyTorch's
bincount+totals+util+var, the ratio, whether the checksums agree, and which targets hold; then the
padding table against issue 18's aim and, where the device check timed candidate countings, each
candidate on the baseline's data against the copy and against the library's default counting on
that accelerator.
"""
import argparse
import json


def load(path):
    """The JSON at `path`, or the reason it cannot be read."""
    if not path:
        return None, "not given"
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f), None
    except (OSError, ValueError) as error:
        return None, f"{path}: {error}"


def check_tables(path, option):
    """A check's tables by key, or None after a line that says why there are none."""
    check, error = load(path)
    if check is None:
        print(f"No {option} JSON ({error}): its targets are not measured.")
        print()
        return None
    print(f"{option[2:]}: {check.get('device')} ({check.get('accelerator_type')})"
          + ("" if check.get("accelerator_type") == "Cuda" else ": NOT A CUDA DEVICE, the targets below are not the GPU's"))
    print()
    if not check.get("complete"):
        # The check writes its document after every row: one killed by its timeout leaves what it measured.
        print(f"{path}: the {option[2:]} stopped before its end; its last tables may miss rows.")
        print()
    return check["tables"]


def size(n):
    return f"{n // 1048576} Mi" if n >= 1048576 else f"{n // 1024} Ki"


def device_targets(check_path, torch_path):
    """Issue 4's targets per size, the padding table, the candidate countings."""
    found = check_tables(check_path, "--device-check")
    if found is None:
        return
    rows, error = load(torch_path)
    if rows is None:
        print(f"No baseline ({error}): the comparison with PyTorch is not measured.")
    torch = {row["n"]: row for row in rows or []}
    main_table = found.get("record")
    if not main_table:
        print(f"No rows of the record table in {check_path}: issue 4's targets are not measured.")
        return
    copy = {r["ids"]: r["copy_gbs"] for r in main_table}

    print("| ids | record | read / copy | torch bincount+totals+util+var | device faster | checksums | targets |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in main_table:
        n = r["ids"]
        record = r["record_us"]
        share = n * 4 / (record * 1e3) / copy[n]
        base = torch.get(n)
        faster = base["record_ms"] * 1e3 / record if base else float("nan")
        same = "-" if not base else "equal" if r["checksum"] == base["checksum"] else "DIFFER"
        held = [f"≥10× torch: {'-' if not base else 'yes' if faster >= 10 else 'no'}"]
        if n <= 32768:
            held.append(f"< 8 µs: {'yes' if record < 8 else 'no'}")
        if n >= 16 * 1048576:
            held.append(f"≥ 80 % of copy: {'yes' if share >= 0.8 else 'no'}")
        torch_us = f"{base['record_ms'] * 1e3:.1f} µs" if base else "-"
        print(f"| {size(n)} | {record:.1f} µs | {share:.0%} | {torch_us} | {f'{faster:.1f}×' if base else '-'} | {same} | {'; '.join(held)} |")

    padding = found.get("padding")
    if padding:
        print()
        print("Padding (issue 18's aim: at most 5 % on the GPU record): each padded batch against the same batch without padding.")
        print("| ids | last 5 % of tokens padded | every 16th slot empty | within 5 % |")
        print("| --- | --- | --- | --- |")
        for r in padding:
            padded, empty = r["tail_padded_per_none"], r["slots_empty_per_none"]
            print(f"| {size(r['ids'])} | {r['tail_padded_us']:.1f} µs, {padded:.2f}× | {r['slots_empty_us']:.1f} µs, {empty:.2f}× | {'yes' if max(padded, empty) <= 1.05 else 'no'} |")

    rows = found.get("candidates")
    if not rows:
        return
    names = [c["counting"] + (" (library)" if c["library"] else "") for c in rows[0]["countings"]]
    print()
    print("Countings on the baseline's data (the library's default first): record, read / copy, and time against the library's default.")
    print(f"| ids |{''.join(f' {name} |' for name in names)}")
    print(f"| --- |{' --- |' * len(names)}")
    for r in rows:
        if r["load"] != "baseline data":
            continue
        n = r["ids"]
        library = next(c["record_us"] for c in r["countings"] if c["library"])
        out = []
        for c in r["countings"]:
            t = c["record_us"]
            share = f", {n * 4 / (t * 1e3) / copy[n]:.0%}" if n in copy else ""
            out.append(f" {t:.1f} µs{share}, {t / library:.2f}× |")
        print(f"| {size(n)} |{''.join(out)}")
    if any(len(r["checksums"]) > 1 for r in rows):
        print("CHECKSUMS DIFFER in the candidate table: a candidate counted wrong.")


# The whole-model issue's targets on an H200.
DECODE = (58, 256, 8, 256)     # one step under 10 µs
PREFILL = (58, 256, 8, 16384)  # the step's read rate at 80 % or more of the copy's, same run
FASTER = 20                    # times faster than the per-layer PyTorch recording (vLLM's scatter_add_)


def faster_row(target, ratios, unmeasured):
    """A target row for the step's speed-up over a baseline: (shape key, ratio) per shape, held where every ratio is FASTER or more."""
    if not ratios:
        return f"| {target} | {unmeasured} | - |"
    missed = [f"{k[0]}×{k[1]}×{k[2]} T={k[3]} ({x:.1f}×)" for k, x in ratios if x < FASTER]
    span = f"{min(x for _, x in ratios):.1f}× to {max(x for _, x in ratios):.1f}×"
    return f"| {target} | {span} | {'yes, every shape' if not missed else 'not at ' + ', '.join(missed)} |"


def model_targets(check_path, model_torch_path):
    """The model check's rows against model_baseline.py's, then the three targets."""
    found = check_tables(check_path, "--model-check")
    if found is None:
        return
    model = found.get("model")
    if not model:
        print(f"No rows of the model table in {check_path}: the model targets are not measured.")
        print()
        return
    rows, error = load(model_torch_path)
    if rows is None:
        print(f"No model baseline ({error}): the comparison with PyTorch is not measured.")
    torch = {(r["layers"], r["experts"], r["topk"], r["tokens"]): r for r in rows or []}
    print("Whole model, per step of L layers: RecordStep (one launch) against L single-layer records and PyTorch's per-layer recording, same ids, same call.")
    print("| L × E × k | tokens | RecordStep | L single-layer records | torch scatter_add (vLLM), per layer | faster | the same in a CUDA graph | faster | torch bincount, per layer | faster | read / copy | checksums | targets |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    verdicts = {}
    for r in model:
        key = (r["layers"], r["experts"], r["top_k"], r["tokens"])
        step = r["step_us"]
        records = r["layer_records_us"]
        share = r["read_per_copy"]
        base = torch.get(key)
        vllm = base["scatter_add_ms"] * 1e3 if base else float("nan")
        bincount = base["bincount_ms"] * 1e3 if base else float("nan")
        # Older baselines, and the CPU's, have no graph-replayed recording.
        graph = base["scatter_add_graph_ms"] * 1e3 if base and base.get("scatter_add_graph_ms") is not None else None
        same = r["layers_checksum"] == r["step_checksum"] and (base is None or (base["checksums_agree"] and r["step_checksum"] == base["checksum"]))
        held = []
        if base:
            held.append(f"≥ {FASTER}× vLLM-style: {'yes' if vllm / step >= FASTER else 'no'}")
            verdicts.setdefault("faster", []).append((key, vllm / step))
        if graph is not None:
            verdicts.setdefault("faster_graph", []).append((key, graph / step))
        if key == DECODE:
            held.append(f"< 10 µs: {'yes' if step < 10 else 'no'}")
            verdicts["decode"] = step
        if key == PREFILL:
            held.append(f"≥ 80 % of copy: {'yes' if share >= 0.8 else 'no'}")
            verdicts["prefill"] = share
            # Checks from before the bare read's column have none: the verdict then stands alone.
            verdicts["prefill_bare"] = r.get("bare_read_per_copy")
        graph_cells = f"{graph:.1f} µs | {graph / step:.1f}×" if graph is not None else "- | -"
        vllm_cells = f"{vllm:.1f} µs | {vllm / step:.1f}× | {graph_cells} | {bincount:.1f} µs | {bincount / step:.1f}×" if base else "- | - | - | - | - | -"
        print(f"| {key[0]} × {key[1]} × {key[2]} | {key[3]} | {step:.1f} µs | {records:.1f} µs ({records / step:.1f}×) | "
              f"{vllm_cells} | {share:.0%} | "
              f"{'equal' if same else 'DIFFER'} | {'; '.join(held)} |")
    print()
    print("| whole-model target | measured | held |")
    print("| --- | --- | --- |")
    decode = verdicts.get("decode")
    print(f"| decode step, L = 58, E = 256, k = 8, T = 256, under 10 µs | {f'{decode:.1f} µs' if decode is not None else 'not in the table'} | "
          f"{'-' if decode is None else 'yes' if decode < 10 else 'no'} |")
    print(faster_row(f"at least {FASTER}× faster than per-layer PyTorch recording (vLLM's scatter_add_)",
                     verdicts.get("faster", []), "no baseline"))
    print(faster_row("the same, against that recording replayed in a CUDA graph (as vLLM's decode runs)",
                     verdicts.get("faster_graph", []), "not measured"))
    prefill = verdicts.get("prefill")
    bare = verdicts.get("prefill_bare")
    bare_cell = f" (a bare read of the same ids in one launch, no counting: {bare:.0%})" if bare is not None else ""
    print(f"| prefill step, L = 58, T = 16,384, at 80 % or more of the copy | {f'{prefill:.0%}{bare_cell}' if prefill is not None else 'not in the table'} | "
          f"{'-' if prefill is None else 'yes' if prefill >= 0.8 else 'no'} |")
    print()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device-check", metavar="JSON", help="MoeGpuStats.Bench --device-check --json JSON")
    parser.add_argument("--torch", metavar="JSON", help="torch_baseline.py --json JSON, the same sizes")
    parser.add_argument("--model-check", metavar="JSON", help="MoeGpuStats.Bench --model-check --json JSON")
    parser.add_argument("--model-torch", metavar="JSON", help="bench/torch/model_baseline.py --json JSON, the same shapes")
    args = parser.parse_args(argv)
    if args.model_check or args.model_torch:
        model_targets(args.model_check, args.model_torch)
    if args.device_check or args.torch:
        device_targets(args.device_check, args.torch)


if __name__ == "__main__":
    main()
