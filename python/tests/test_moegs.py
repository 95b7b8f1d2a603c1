"""The Python wrapper on the CPU paths with plain host buffers: counts against a bincount done
here, the CPU accelerator against the managed engine, and bad input as exceptions."""
import array
import math
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import moegs  # noqa: E402

EXPERTS, TOP_K, TOKENS = 12, 2, 700


class WrapperTests(unittest.TestCase):
    def test_counts_match_a_bincount_and_the_managed_engine(self):
        rng = random.Random(5)
        expected = [0] * EXPERTS
        invalid = 0
        with moegs.MoeStats(EXPERTS, "managed") as managed, moegs.MoeStats(EXPERTS, "cpu") as cpu:
            for step in range(30):
                ids = array.array("i", (int(rng.random() ** 3 * EXPERTS) if rng.random() > 0.01 else -5
                                        for _ in range(TOKENS * TOP_K)))
                for i in ids:
                    if 0 <= i < EXPERTS:
                        expected[i] += 1
                    else:
                        invalid += 1
                for stats in (managed, cpu):
                    stats.record(ids, tokens=TOKENS, top_k=TOP_K, load_balance_loss=0.5 + step / 100)
                    stats.record_latency(0.002)
            self.assertEqual(expected, managed.expert_counts())
            self.assertEqual(expected, cpu.expert_counts())
            a, b = managed.snapshot(), cpu.snapshot()
            self.assertEqual(30, a["total_routings"])
            self.assertEqual(invalid, a["invalid_expert_ids"])
            self.assertEqual(invalid, b["invalid_expert_ids"])
            self.assertEqual(a["most_utilized"], b["most_utilized"])
            self.assertTrue(math.isclose(a["utilization_cv"], b["utilization_cv"], rel_tol=1e-5))
            self.assertTrue(math.isclose(a["average_latency_ms"], 2.0, rel_tol=1e-9))
            for x, y in zip(managed.expert_utilization(), cpu.expert_utilization()):
                self.assertTrue(math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-6))

    def test_bad_input_raises_with_the_reason(self):
        with moegs.MoeStats(EXPERTS, "cpu") as stats:
            with self.assertRaises(moegs.MoeGpuStatsError) as short:
                stats.record(array.array("i", [0, 1, 2]), tokens=2, top_k=2)
            self.assertEqual(moegs.INVALID_ARGUMENT, short.exception.status)
            self.assertIn("2 * 2 = 4", str(short.exception))
            with self.assertRaises(TypeError):
                stats.record(array.array("l", [0, 1]))
            self.assertEqual(0, stats.snapshot()["total_routings"])
        with self.assertRaises(moegs.MoeGpuStatsError) as unknown:
            moegs.MoeStats(EXPERTS, "tpu")
        self.assertEqual(moegs.INVALID_ARGUMENT, unknown.exception.status)

    def test_a_closed_aggregator_refuses_calls(self):
        stats = moegs.MoeStats(EXPERTS, "managed")
        handle = stats._handle
        stats.close()
        stats._handle = handle
        with self.assertRaises(moegs.MoeGpuStatsError) as closed:
            stats.snapshot()
        self.assertEqual(moegs.INVALID_HANDLE, closed.exception.status)
        stats._handle = moegs.ctypes.c_int64(0)


if __name__ == "__main__":
    unittest.main()
