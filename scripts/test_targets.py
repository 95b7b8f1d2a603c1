"""targets.py's verdicts from fixed JSON, so that its logic is tested without a GPU:

    python3 -m unittest discover -s scripts -p test_targets.py

The checks' documents use the keys of bench/MoeGpuStats.Bench (CheckReport and the row records);
the baselines', those of torch_baseline.py and bench/torch/model_baseline.py.
"""
import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import targets  # noqa: E402  (beside this file, whichever folder unittest runs from)


def record(ids, record_us, copy_gbs, checksum):
    return {"ids": ids, "record_us": record_us, "read_gbs": ids * 4 / (record_us * 1e3), "copy_gbs": copy_gbs,
            "read_per_copy": ids * 4 / (record_us * 1e3) / copy_gbs, "back_to_back_us": record_us,
            "copy_to_host_managed_ms": 1.0, "managed_per_record": 100.0, "checksum": checksum}


def candidate(load, ids, library_us, other_us, checksums):
    return {"load": load, "ids": ids, "checksums": checksums, "countings": [
        {"counting": "ThreadRuns", "library": True, "record_us": library_us},
        {"counting": "QuadLoadRuns", "library": False, "record_us": other_us}]}


def model_row(layers, experts, top_k, tokens, step_us, read_per_copy, checksum):
    return {"layers": layers, "experts": experts, "top_k": top_k, "tokens": tokens, "step_ids": layers * tokens * top_k,
            "step_us": step_us, "step_back_to_back_us": step_us, "layer_records_us": 20 * step_us, "layer_records_per_step": 20.0,
            "step_read_gbs": 1000.0, "copy_gbs": 4000.0, "read_per_copy": read_per_copy, "host_enqueue_us": 3.0,
            "step_checksum": checksum, "layers_checksum": checksum}


DEVICE_CHECK = {
    "check": "device-check", "device": "test", "accelerator_type": "Cuda", "complete": True, "run": {"experts": 256},
    "tables": {
        # 32 Ki: under 8 µs and 20× torch, every target held; 16 Mi: 75 % of the copy, missed.
        "record": [record(32768, 7.5, 40.0, 2812849), record(16777216, 22.0, 4066.0, 1440259989)],
        "padding": [
            {"ids": 32768, "no_padding_us": 7.5, "tail_padded_us": 7.6, "tail_padded_per_none": 1.01,
             "slots_empty_us": 7.8, "slots_empty_per_none": 1.04},
            {"ids": 16777216, "no_padding_us": 22.0, "tail_padded_us": 22.2, "tail_padded_per_none": 1.01,
             "slots_empty_us": 26.4, "slots_empty_per_none": 1.2},
        ],
        "candidates": [
            candidate("baseline data", 32768, 7.5, 15.0, [2812849]),
            candidate("uniform", 16777216, 22.0, 23.0, [1, 2]),
        ],
    },
}

TORCH = [
    {"n": 32768, "experts": 256, "bincount_ms": 0.066, "record_ms": 0.15, "host_path_ms": 0.07, "checksum": 2812849},
    {"n": 16777216, "experts": 256, "bincount_ms": 0.233, "record_ms": 0.252, "host_path_ms": 34.0, "checksum": 1440259989},
]

MODEL_CHECK = {
    "check": "model-check", "device": "test", "accelerator_type": "Cuda", "complete": True, "run": {},
    # The decode step at 9 µs (held), the prefill at 70 % of the copy (missed).
    "tables": {"model": [model_row(58, 256, 8, 256, 9.0, 0.5, 876845236), model_row(58, 256, 8, 16384, 300.0, 0.7, 55)]},
}

MODEL_TORCH = [
    {"layers": 58, "experts": 256, "topk": 8, "tokens": 256, "scatter_add_ms": 0.9, "index_add_ms": 0.8, "bincount_ms": 3.0,
     "one_scatter_add_ms": 0.02, "checksum": 876845236, "checksums_agree": True},
    {"layers": 58, "experts": 256, "topk": 8, "tokens": 16384, "scatter_add_ms": 3.0, "index_add_ms": 2.9, "bincount_ms": 6.0,
     "one_scatter_add_ms": 0.5, "checksum": 55, "checksums_agree": True},
]


class TargetsTests(unittest.TestCase):
    def run_targets(self, **documents):
        """targets.py's output on `documents` (option name: JSON value), each written to a file."""
        with tempfile.TemporaryDirectory() as folder:
            argv = []
            for option, document in documents.items():
                path = os.path.join(folder, f"{option}.json")
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(document, f)
                argv += [f"--{option.replace('_', '-')}", path]
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                targets.main(argv)
            return out.getvalue()

    def test_issue_4_targets_per_size(self):
        out = self.run_targets(device_check=DEVICE_CHECK, torch=TORCH)
        self.assertIn("| 32 Ki | 7.5 µs | 44% | 150.0 µs | 20.0× | equal | ≥10× torch: yes; < 8 µs: yes |", out)
        self.assertIn("| 16 Mi | 22.0 µs | 75% | 252.0 µs | 11.5× | equal | ≥10× torch: yes; ≥ 80 % of copy: no |", out)

    def test_padding_within_five_percent(self):
        out = self.run_targets(device_check=DEVICE_CHECK, torch=TORCH)
        self.assertIn("| 32 Ki | 7.6 µs, 1.01× | 7.8 µs, 1.04× | yes |", out)
        self.assertIn("| 16 Mi | 22.2 µs, 1.01× | 26.4 µs, 1.20× | no |", out)

    def test_candidates_against_the_library_and_differing_checksums(self):
        out = self.run_targets(device_check=DEVICE_CHECK, torch=TORCH)
        self.assertIn("| ids | ThreadRuns (library) | QuadLoadRuns |", out)
        self.assertIn("| 32 Ki | 7.5 µs, 44%, 1.00× | 15.0 µs, 22%, 2.00× |", out)
        self.assertIn("CHECKSUMS DIFFER in the candidate table", out)

    def test_a_checksum_unlike_the_baselines_differs(self):
        torch = [dict(TORCH[0], checksum=1), TORCH[1]]
        out = self.run_targets(device_check=DEVICE_CHECK, torch=torch)
        self.assertIn("| 32 Ki | 7.5 µs | 44% | 150.0 µs | 20.0× | DIFFER |", out)

    def test_whole_model_targets(self):
        out = self.run_targets(model_check=MODEL_CHECK, model_torch=MODEL_TORCH)
        self.assertIn("| 58 × 256 × 8 | 256 | 9.0 µs | 180.0 µs (20.0×) | 900.0 µs | 100.0× | - | - | 3000.0 µs | 333.3× | 50% | equal | ≥ 20× vLLM-style: yes; < 10 µs: yes |", out)
        self.assertIn("| decode step, L = 58, E = 256, k = 8, T = 256, under 10 µs | 9.0 µs | yes |", out)
        self.assertIn("| at least 20× faster than per-layer PyTorch recording (vLLM's scatter_add_) | 10.0× to 100.0× | not at 58×256×8 T=16384 (10.0×) |", out)
        self.assertIn("| the same, against that recording replayed in a CUDA graph (as vLLM's decode runs) | not measured | - |", out)
        self.assertIn("| prefill step, L = 58, T = 16,384, at 80 % or more of the copy | 70% | no |", out)

    def test_the_prefill_target_gives_the_bare_read_beside_it_where_the_check_timed_it(self):
        rows = MODEL_CHECK["tables"]["model"]
        check = dict(MODEL_CHECK, tables={"model": [rows[0], dict(rows[1], bare_read_us=250.0, bare_read_per_copy=0.76)]})
        out = self.run_targets(model_check=check, model_torch=MODEL_TORCH)
        self.assertIn("| prefill step, L = 58, T = 16,384, at 80 % or more of the copy | 70% (a bare read of the same ids in one launch, no counting: 76%) | no |", out)

    def test_whole_model_against_a_graph_replayed_baseline(self):
        # A CUDA run's baseline: the per-layer recording replayed in a graph, 0.18 ms at decode (20×), 0.5 ms at prefill.
        torch = [dict(MODEL_TORCH[0], scatter_add_graph_ms=0.18), dict(MODEL_TORCH[1], scatter_add_graph_ms=0.5)]
        out = self.run_targets(model_check=MODEL_CHECK, model_torch=torch)
        self.assertIn("| 58 × 256 × 8 | 256 | 9.0 µs | 180.0 µs (20.0×) | 900.0 µs | 100.0× | 180.0 µs | 20.0× | 3000.0 µs | 333.3× | 50% | equal |", out)
        self.assertIn("| the same, against that recording replayed in a CUDA graph (as vLLM's decode runs) | 1.7× to 20.0× | not at 58×256×8 T=16384 (1.7×) |", out)

    def test_a_missing_baseline_leaves_the_comparison_unmeasured(self):
        out = self.run_targets(model_check=MODEL_CHECK)
        self.assertIn("No model baseline (not given): the comparison with PyTorch is not measured.", out)
        self.assertIn("| 58 × 256 × 8 | 256 | 9.0 µs | 180.0 µs (20.0×) | - | - | - | - | - | - | 50% | equal | < 10 µs: yes |", out)
        self.assertIn("| at least 20× faster than per-layer PyTorch recording (vLLM's scatter_add_) | no baseline | - |", out)

    def test_each_check_is_headed_by_its_device_and_one_not_cuda_is_named(self):
        out = self.run_targets(device_check=DEVICE_CHECK, torch=TORCH, model_check=dict(MODEL_CHECK, device="CPUAccelerator", accelerator_type="CPU"))
        self.assertIn("device-check: test (Cuda)\n", out)
        self.assertIn("model-check: CPUAccelerator (CPU): NOT A CUDA DEVICE, the targets below are not the GPU's", out)

    def test_a_missing_torch_baseline_leaves_each_size_unmeasured_not_missed(self):
        out = self.run_targets(device_check=DEVICE_CHECK)
        self.assertIn("| 32 Ki | 7.5 µs | 44% | - | - | - | ≥10× torch: -; < 8 µs: yes |", out)
        self.assertNotIn("DIFFER |", out)
        self.assertNotIn("torch: no", out)

    def test_a_check_stopped_early_is_said_and_its_rows_read(self):
        out = self.run_targets(device_check=dict(DEVICE_CHECK, complete=False), torch=TORCH)
        self.assertIn("the device-check stopped before its end", out)
        self.assertIn("| 32 Ki | 7.5 µs |", out)


if __name__ == "__main__":
    unittest.main()
