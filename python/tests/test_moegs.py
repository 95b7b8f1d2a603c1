"""The Python wrapper on the CPU paths with plain host buffers: counts against a bincount done
here, the CPU accelerator against the managed engine, and bad input as exceptions.

NumPy and PyTorch may be absent: HostArray and HostTensor stand in for them with the two protocols
the wrapper reads (__array_interface__; torch's data_ptr/is_cuda/dtype/shape), over host memory."""
import array
import ctypes
import fractions
import gc
import importlib.util
import json
import math
import os
import pathlib
import pickle
import random
import re
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import moegs  # noqa: E402

EXPERTS, TOP_K, TOKENS = 12, 2, 700
# Seconds to wait for a call that must go ahead while a lock or an export is held. CI runs these tests beside the C#
# suite, which loads every core, so a call that takes milliseconds alone can take many seconds there; a call that does
# wait for what is held never ends while it is held, so a long bound costs time only when a test fails.
PATIENCE = 120
INT32 = ("<" if sys.byteorder == "little" else ">") + "i4"


class HostArray:
    """An array exporting __array_interface__ over `values` (array.array('i')), with any shape, typestr and strides."""

    def __init__(self, values, shape, typestr=INT32, strides=None, address=None):
        self.values = values
        self.__array_interface__ = {"version": 3, "shape": tuple(shape), "typestr": typestr, "strides": strides,
                                    "data": (values.buffer_info()[0] if address is None else address, False)}


class HostTensor:
    """What the wrapper reads of a torch.Tensor, over array.array('i') host memory (is_cuda as given)."""

    class _Device:
        def __init__(self, kind):
            self.type, self.index = kind, (0 if kind == "cuda" else None)

        def __str__(self):
            return self.type

    def __init__(self, values, shape, dtype="torch.int32", kind="cpu"):
        self.values, self.shape, self.dtype = values, tuple(shape), dtype
        self.is_cuda, self.device = kind == "cuda", HostTensor._Device(kind)

    def data_ptr(self):
        return self.values.buffer_info()[0]

    def numel(self):
        return len(self.values)

    def is_contiguous(self):
        return True


def load_rows(load):
    """A window load as lists of ints, whether window_load() returned lists or (where NumPy is installed) an array,
    which == would compare element-wise."""
    return [[int(value) for value in row] for row in load]


def same_statistics(a, b):
    """Two snapshot dicts hold the same values (NaN equal to NaN)."""
    return a.keys() == b.keys() and all(x == y or (x != x and y != y) for x, y in ((a[k], b[k]) for k in a))


class Pair:
    """A value with __float__ that refuses the conversion, as a NumPy array or torch tensor of two values does."""

    def __float__(self):
        raise TypeError("only size-1 arrays can be converted to Python scalars")


class WrapperTests(unittest.TestCase):
    def test_the_runtime_starts_from_a_link_and_from_a_relative_name_after_a_chdir(self):
        """The library finds the files beside its own file, links resolved, when it is loaded: through a link in a folder
        without them, and by a relative name from a working folder the program left before its first call."""
        real = os.path.abspath(moegs._load()._name)
        script = ("import ctypes, os, sys\nos.chdir(sys.argv[2])\nlib = ctypes.CDLL(sys.argv[1])\nos.chdir('/')\n"
                  "lib.moegs_last_error.restype = ctypes.c_char_p\nout = ctypes.c_int64(0)\n"
                  "print(lib.moegs_create(b'managed', 4, 0, ctypes.byref(out)), lib.moegs_last_error())\n")
        with tempfile.TemporaryDirectory() as folder:
            link = os.path.join(folder, "libmoegs.so")
            os.symlink(real, link)
            for name, where in ((link, folder), ("./libmoegs.so", os.path.dirname(real)), ("./libmoegs.so", folder)):
                with self.subTest(name=name, where=where):
                    run = subprocess.run([sys.executable, "-c", script, name, where], capture_output=True, text=True, timeout=120)
                    self.assertEqual(0, run.returncode, run.stderr)
                    self.assertEqual(f"{moegs.OK} b''", run.stdout.strip())

    def test_a_runtime_that_cannot_start_zeroes_the_handle_and_says_why(self):
        """libmoegs.so copied without the files beside it: create fails with RUNTIME_ERROR, *out is 0 as the header
        says of a failed create (not the caller's stale value), an accelerator's name NULL and a read's arrival 0 as after any
        other failure, and the reason names the missing file, unprefixed, with
        what hostfxr said of it (which it would have written to the host's stderr)."""
        script = ("import ctypes, sys\nlib = ctypes.CDLL(sys.argv[1])\nlib.moegs_last_error.restype = ctypes.c_char_p\n"
                  "for create, args in ((lib.moegs_create, (b'managed', 4, 0)), (lib.moegs_model_create, (b'managed', 2, 4, 0, 0, ctypes.c_float(-1.0)))):\n"
                  "    out = ctypes.c_int64(5)\n"
                  "    print(create(*args, ctypes.byref(out)), out.value)\n"
                  "for name in (lib.moegs_accelerator, lib.moegs_model_accelerator):\n"
                  "    out = ctypes.c_char_p(b'stale')\n"
                  "    print(name(ctypes.c_int64(1), ctypes.byref(out)), out.value)\n"
                  "arrived = ctypes.c_int32(7)\n"
                  "print(lib.moegs_model_read_ready(ctypes.c_int64(1), ctypes.byref(arrived)), arrived.value)\n"
                  "print(lib.moegs_last_error().decode())\n")
        with tempfile.TemporaryDirectory() as folder:
            lonely = shutil.copy(os.path.abspath(moegs._load()._name), folder)
            run = subprocess.run([sys.executable, "-c", script, lonely], capture_output=True, text=True, timeout=120)
        self.assertEqual(0, run.returncode, run.stderr)
        first, second, accelerator, model_accelerator, arrived, reason = run.stdout.splitlines()
        self.assertEqual(f"{moegs.RUNTIME_ERROR} 0", first)
        self.assertEqual(f"{moegs.RUNTIME_ERROR} 0", second)
        # The accelerator's name is NULL, as after any other failure, not the caller's stale pointer.
        self.assertEqual(f"{moegs.RUNTIME_ERROR} None", accelerator)
        self.assertEqual(f"{moegs.RUNTIME_ERROR} None", model_accelerator)
        self.assertEqual(f"{moegs.RUNTIME_ERROR} 0", arrived)
        # hostfxr's own reason is in the message, not on the host's stderr.
        self.assertRegex(reason, r"^could not start the \.NET runtime: .*MoeGpuStats\.Native\.runtimeconfig\.json cannot start it; the files "
                                 r"the build wrote beside libmoegs\.so must stay beside it \(hostfxr status 0x[0-9a-f]+: "
                                 r"The specified runtimeconfig\.json \[.*\] does not exist\)$")
        self.assertEqual("", run.stderr)

    def test_a_model_too_large_to_allocate_names_the_window_as_callers_do(self):
        """A model whose state cannot be allocated (here under a .NET heap limit of 512 MiB) is DEVICE_ERROR, in the words of
        C and Python callers: their window, not the library's option Window, nor .NET's names of types."""
        script = ("import sys\nsys.path.insert(0, sys.argv[1])\nimport moegs\n"
                  "for accelerator in ('managed', 'cpu'):\n"
                  "    try:\n"
                  "        moegs.MoeModelStats(64, 1024, window=8000, accelerator=accelerator)\n"
                  "    except moegs.MoeGpuStatsError as error:\n"
                  "        print(error.status, error)\n")
        environment = dict(os.environ, DOTNET_GCHeapHardLimit="0x20000000", MOEGS_LIB=os.path.abspath(moegs._load()._name))
        run = subprocess.run([sys.executable, "-c", script, os.path.dirname(os.path.abspath(moegs.__file__))],
                             capture_output=True, text=True, timeout=300, env=environment)
        self.assertEqual(0, run.returncode, run.stderr)
        managed, cpu = run.stdout.splitlines()
        self.assertEqual(f"{moegs.DEVICE_ERROR} device error: the model's window of 8,000 steps x 64 layers x 1,024 experts needs "
                         "2,131,968,000 bytes of managed memory, more than this process can allocate; give a smaller window.", managed)
        self.assertRegex(cpu, rf"^{moegs.DEVICE_ERROR} device error: the model's state \(a window of 8,000 steps x 64 layers x 1,024 experts\) "
                              r"needs [0-9,]+ bytes of host memory, more than the cpu accelerator can allocate; give a smaller window\.$")

    def test_a_saved_aggregator_is_the_seed_shaped_json(self):
        """save(path) writes the seed-compatible snapshot that `moegs report` reads; a missing folder is IO_ERROR."""
        rng = random.Random(3)
        for accelerator in ("managed", "cpu"):
            with tempfile.TemporaryDirectory() as folder, moegs.MoeStats(EXPERTS, accelerator) as stats:
                stats.record(array.array("i", (rng.randrange(EXPERTS) for _ in range(TOKENS * TOP_K))), tokens=TOKENS, top_k=TOP_K)
                path = os.path.join(folder, "router.json")
                stats.save(path)
                with open(path) as f:
                    saved = json.load(f)
                self.assertEqual(stats.expert_counts(), saved["expert_token_counts"])
                self.assertEqual(1, saved["total_routings"])
                with self.assertRaises(moegs.MoeGpuStatsError) as raised:
                    stats.save(os.path.join(folder, "missing", "router.json"))
                self.assertEqual(moegs.IO_ERROR, raised.exception.status)
                # A save renames a file over the name: a pipe stays a pipe (as root, /dev/null stays a device).
                pipe = os.path.join(folder, "pipe.json")
                os.mkfifo(pipe)
                for target in (pipe, "/dev/null"):
                    with self.assertRaisesRegex(moegs.MoeGpuStatsError, rf"^i/o error: {target}: cannot be written \({target} is (a named pipe, not a file|in /dev, the system's own names)"):
                        stats.save(target)
                self.assertTrue(stat.S_ISFIFO(os.lstat(pipe).st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode))

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
            # Too few ids are named as the caller's `ids`, not as the C API's `length`.
            with self.assertRaisesRegex(ValueError, r"^ids hold 3 values, fewer than tokens \* top_k = 2 \* 2 = 4$"):
                stats.record(array.array("i", [0, 1, 2]), tokens=2, top_k=2)
            with self.assertRaises(TypeError):
                stats.record(array.array("l", [0, 1]))
            self.assertEqual(0, stats.snapshot()["total_routings"])
        with self.assertRaises(moegs.MoeGpuStatsError) as unknown:
            moegs.MoeStats(EXPERTS, "tpu")
        self.assertEqual(moegs.INVALID_ARGUMENT, unknown.exception.status)

    def test_a_closed_object_says_so(self):
        stats = moegs.MoeStats(EXPERTS, "managed")
        stats.close()
        with moegs.MoeModelStats(2, EXPERTS, accelerator="managed") as model:
            pass
        # Arguments a live object would refuse: a closed one says it is closed first.
        for call in (stats.snapshot, stats.reset, lambda: stats.record(array.array("i", [0, 1]), top_k=2), model.window_load, model.summary,
                     lambda: model.layer(0), lambda: stats.record(array.array("i", [0, 1, 2]), tokens=2, top_k=2),
                     lambda: stats.record_latency(-1.0), lambda: model.layer(99), lambda: model.window_load(recent_steps=10**6),
                     lambda: model.summary(recent_steps=0), lambda: model.layer_expert_counts(-1), lambda: model.save(""),
                     lambda: model.record([[0, 1]] * 3), lambda: model.begin_read(recent_steps=-1)):
            with self.assertRaises(moegs.MoeGpuStatsError) as closed:
                call()
            self.assertEqual(moegs.INVALID_HANDLE, closed.exception.status)
            self.assertRegex(str(closed.exception), r"^invalid handle: this Moe(Model)?Stats is closed \(close\(\), or the end of its with block\)")
            self.assertNotIn("handle 0", str(closed.exception))

    def test_closes_on_several_threads_destroy_the_handle_once(self):
        """close() from several threads at once: one destroys the handle, the others find it closed, and none raises."""
        for accelerator in ("managed", "cpu"):
            for _ in range(20 if accelerator == "managed" else 5):
                stats = moegs.MoeStats(EXPERTS, accelerator)
                start, errors = threading.Barrier(4), []

                def close():
                    start.wait()
                    try:
                        stats.close()
                    except Exception as error:  # noqa: BLE001 - any exception is the failure this test looks for
                        errors.append(error)

                threads = [threading.Thread(target=close) for _ in range(4)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                self.assertEqual([], errors, accelerator)

    def test_a_closed_aggregator_refuses_calls(self):
        stats = moegs.MoeStats(EXPERTS, "managed")
        handle = stats._handle
        stats.close()
        stats._handle = handle
        with self.assertRaises(moegs.MoeGpuStatsError) as closed:
            stats.snapshot()
        self.assertEqual(moegs.INVALID_HANDLE, closed.exception.status)
        stats._handle = moegs.ctypes.c_int64(0)


class ShapeTests(unittest.TestCase):
    """Ids shaped [..., k] are prod(...) tokens of k ids; flat ids say their k through top_k or tokens."""

    IDS = array.array("i", [0, 3, 3, 1, 7, 0, 3, 2, 5, 5, 11, 0, 4, 4, 9, 1])  # 16 ids

    def expect(self, stats, tokens, counts, routings=1):
        s = stats.snapshot()
        self.assertEqual((routings, tokens), (s["total_routings"], s["total_tokens"]))
        self.assertEqual(counts, stats.expert_counts())

    def bincount(self, ids):
        counts = [0] * EXPERTS
        for i in ids:
            counts[i] += 1
        return counts

    def test_batch_seq_k_ids_are_batch_times_seq_tokens_of_k(self):
        for make in (lambda: HostArray(self.IDS, (2, 4, 2)), lambda: HostTensor(self.IDS, (2, 4, 2))):
            with moegs.MoeStats(EXPERTS, "managed") as stats:
                stats.record(make())
                self.expect(stats, 8, self.bincount(self.IDS))
                # 8 tokens: each batch's capacity is E * 100 slots whatever k is; used slots are the 16 ids.
                s = stats.snapshot()
                self.assertEqual((EXPERTS * 100, 16), (s["total_capacity"], s["total_used"]))
        with moegs.MoeStats(EXPERTS, "managed") as three, moegs.MoeStats(EXPERTS, "managed") as two:
            three.record(HostArray(self.IDS, (2, 2, 2, 2)), load_balance_loss=0.5)
            two.record(HostArray(self.IDS, (8, 2)), load_balance_loss=0.5)
            self.assertTrue(same_statistics(two.snapshot(), three.snapshot()))
            self.assertEqual(8, three.snapshot()["total_tokens"])

    def test_explicit_tokens_and_k_agree_with_the_shape(self):
        with moegs.MoeStats(EXPERTS, "managed") as stats:
            stats.record(HostArray(self.IDS, (4, 4)), top_k=4)
            self.expect(stats, 4, self.bincount(self.IDS))
            stats.record(HostArray(self.IDS, (4, 4)), tokens=4)
            self.expect(stats, 8, [2 * c for c in self.bincount(self.IDS)], routings=2)
            with self.assertRaisesRegex(ValueError, r"top_k = 2 does not match ids shaped \[4, 4\]: their last dimension, k, is 4"):
                stats.record(HostArray(self.IDS, (4, 4)), top_k=2)
            # Rows past the given tokens would go unread: a padded batch pads with -1 ids instead.
            with self.assertRaisesRegex(ValueError, r"tokens = 2 does not match ids shaped \[4, 4\]: they hold 4 tokens"):
                stats.record(HostArray(self.IDS, (4, 4)), tokens=2)
            with self.assertRaisesRegex(ValueError, r"tokens \* top_k = 3 \* 4 = 12, but the ids hold 16"):
                stats.record(self.IDS, tokens=3, top_k=4)
            self.assertEqual(2, stats.snapshot()["total_routings"])

    def test_a_library_the_caller_names_must_exist(self):
        with self.assertRaisesRegex(OSError, r"library = '/nonexistent/libmoegs.so': no such file"):
            moegs.MoeStats(EXPERTS, "managed", library="/nonexistent/libmoegs.so")

    def test_flat_ids_take_k_from_top_k_or_tokens(self):
        with moegs.MoeStats(EXPERTS, "managed") as stats:
            stats.record(self.IDS, top_k=2)
            self.expect(stats, 8, self.bincount(self.IDS))
            stats.record(self.IDS, tokens=4)
            self.expect(stats, 12, [2 * c for c in self.bincount(self.IDS)], routings=2)
            stats.record(HostTensor(self.IDS, (16,)), top_k=1)
            self.expect(stats, 28, [3 * c for c in self.bincount(self.IDS)], routings=3)

    def test_shapes_not_read_as_tokens_of_k_are_refused(self):
        with moegs.MoeStats(EXPERTS, "managed") as stats:
            cases = [
                (lambda: stats.record(self.IDS), r"ids shaped \[16\] have no k dimension: pass top_k"),
                (lambda: stats.record(HostTensor(self.IDS, (16,))), r"no k dimension"),
                (lambda: stats.record(self.IDS, top_k=3), r"the 16 ids are not whole tokens of top_k = 3 ids"),
                (lambda: stats.record(self.IDS, tokens=5), r"tokens = 5 does not split the 16 ids"),
                (lambda: stats.record(self.IDS, tokens=0), r"tokens = 0 does not split the 16 ids"),
                (lambda: stats.record(array.array("i"), tokens=3), r"tokens = 3 does not split the 0 ids"),
                (lambda: stats.record(HostArray(self.IDS, ())), r"ids are a scalar"),
                (lambda: stats.record(HostArray(self.IDS, (4, 0))), r"ids shaped \[4, 0\] have k = 0 ids per token"),
            ]
            for call, message in cases:
                with self.assertRaisesRegex(ValueError, message):
                    call()
            self.assertEqual(0, stats.snapshot()["total_routings"])

    def test_more_tokens_than_the_c_api_takes(self):
        with moegs.MoeStats(EXPERTS, "managed") as stats:
            # [2^31, 1]: the token count itself leaves int32 (the address is never read).
            with self.assertRaisesRegex(ValueError, r"tokens \(the 2147483648 rows of ids shaped \[2147483648, 1\]\) = 2147483648 is out of range: it must lie in \[0, 2147483647\]"):
                stats.record(HostArray(self.IDS, (2**31, 1)))
            # [65536, 65536]: each fits, the product does not; the C API refuses it before reading.
            with self.assertRaises(moegs.MoeGpuStatsError) as product:
                stats.record(HostArray(self.IDS, (65536, 65536)))
            self.assertEqual(moegs.INVALID_ARGUMENT, product.exception.status)
            self.assertIn("tokens * top_k = 65536 * 65536 = 4294967296 ids: one record reads at most 2147483647", str(product.exception))
            self.assertEqual(0, stats.snapshot()["total_routings"])


class IntegerTests(unittest.TestCase):
    """Every integer a ctypes argument carries is checked against what the C API takes, never wrapped."""

    def test_record_integers_out_of_range(self):
        ids = array.array("i", [1] * 8)
        with moegs.MoeStats(EXPERTS, "managed") as stats:
            cases = [
                (dict(tokens=2**32 + 4, top_k=2), r"tokens = 4294967300 is out of range: it must lie in \[0, 2147483647\]"),
                (dict(tokens=-1, top_k=2), r"tokens = -1 is out of range: it must lie in \[0, 2147483647\]"),
                (dict(tokens=4, top_k=2**32 + 2), r"top_k = 4294967298 is out of range: it must lie in \[1, 2147483647\]"),
                (dict(tokens=4, top_k=0), r"top_k = 0 is out of range: it must lie in \[1, 2147483647\]"),
                (dict(tokens=4, top_k=2, load_balance_loss=float("nan")), r"load_balance_loss = nan is out of range: a loss must be finite"),
                (dict(tokens=4, top_k=2, router_z_loss=float("inf")), r"router_z_loss = inf is out of range: a loss must be finite"),
                (dict(tokens=4, top_k=2, load_balance_loss=-1e39), r"load_balance_loss = -1e\+39 is out of range: .*\(float32\)"),
            ]
            for arguments, message in cases:
                with self.assertRaisesRegex(ValueError, message):
                    stats.record(ids, **arguments)
            for arguments in (dict(tokens=4.0, top_k=2), dict(tokens=4, top_k=True), dict(tokens="4", top_k=2)):
                with self.assertRaises(TypeError):
                    stats.record(ids, **arguments)
            # Numbers float() cannot take raise naming the argument, not float()'s own error.
            with self.assertRaisesRegex(ValueError, r"^load_balance_loss = \(an integer of 401 digits\) is out of range: a loss must be finite"):
                stats.record(ids, tokens=4, top_k=2, load_balance_loss=10**400)
            with self.assertRaisesRegex(TypeError, r"^router_z_loss must be a number"):
                stats.record(ids, tokens=4, top_k=2, router_z_loss=Pair())
            self.assertEqual(0, stats.snapshot()["total_routings"])
            stats.record(ids, tokens=4, top_k=2, load_balance_loss=3.4028234663852886e38)
            s = stats.snapshot()
            self.assertEqual((1, 4, 3.4028234663852886e38), (s["total_routings"], s["total_tokens"], s["average_load_balance_loss"]))

    def test_create_integers_out_of_range(self):
        cases = [
            (dict(experts=2**32 + 8), r"experts = 4294967304 is out of range: it must lie in \[1, 1048576\]"),
            (dict(experts=0), r"experts = 0 is out of range"),
            (dict(experts=-3), r"experts = -3 is out of range"),
            (dict(experts=EXPERTS, expert_capacity=-1), r"expert_capacity = -1 is out of range: it must lie in \[0, 2147483647\]"),
            (dict(experts=EXPERTS, expert_capacity=2**31), r"expert_capacity = 2147483648 is out of range"),
        ]
        for arguments, message in cases:
            with self.assertRaisesRegex(ValueError, message):
                moegs.MoeStats(accelerator="managed", **arguments)
        with self.assertRaises(TypeError):
            moegs.MoeStats(12.0, "managed")
        with self.assertRaisesRegex(ValueError, r"NUL"):
            moegs.MoeStats(EXPERTS, "cpu\0junk")
        with self.assertRaisesRegex(ValueError, r"^experts = 4097 is out of range: it must lie in \[1, 4096\] on cpu$"):
            moegs.MoeStats(4097, "cpu")
        # An unknown accelerator is the library's to name, whatever the experts: not "experts ... on tpu".
        for name, shown in (("tpu", '"tpu"'), ("cpu\nmanaged", '"cpu\\nmanaged"')):
            with self.assertRaises(moegs.MoeGpuStatsError) as unknown:
                moegs.MoeStats(5000, name)
            self.assertEqual(moegs.INVALID_ARGUMENT, unknown.exception.status)
            # In Python's words as in C's: no name (None, NULL) is auto.
            self.assertRegex(str(unknown.exception), r"^invalid argument: accelerator = " + re.escape(shown)
                             + r": must be one of auto, cuda, opencl, cpu, managed \(no name: auto\); [^\n]*$")
        # "auto" may choose the managed engine, which takes more experts: the message names both limits.
        with self.assertRaisesRegex(ValueError, r'^experts = 0 is out of range: it must lie in \[1, 4096\] on a device accelerator, \[1, 1048576\] on "managed"$'):
            moegs.MoeStats(0)

    def test_expert_capacity_is_kept(self):
        for capacity, slots in ((0, 100), (7, 7), (2**31 - 1, 2**31 - 1)):
            with moegs.MoeStats(EXPERTS, "managed", expert_capacity=capacity) as stats:
                stats.record(array.array("i", [0, 1, 2, 3]), top_k=2)
                self.assertEqual(EXPERTS * slots, stats.snapshot()["total_capacity"])

    def test_latencies(self):
        with moegs.MoeStats(EXPERTS, "managed") as stats:
            for seconds in (-5e-11, -1.0, float("nan"), float("inf"), 1e10):
                with self.assertRaisesRegex(ValueError, r"seconds = .* is out of range: a latency must lie in \[0, "):
                    stats.record_latency(seconds)
            with self.assertRaises(TypeError):
                stats.record_latency("1")
            # Numbers float() cannot take raise naming the argument, not float()'s own error.
            with self.assertRaisesRegex(ValueError, r"^seconds = \(an integer of 401 digits\) is out of range: a latency must lie in \[0, "):
                stats.record_latency(10**400)
            with self.assertRaisesRegex(TypeError, r"^seconds must be a number"):
                stats.record_latency(HostArray(array.array("f", [1.0, 2.0]), (2,), typestr="<f4"))
            self.assertEqual(0, stats.snapshot()["latency_measurements"])
            for seconds, milliseconds in ((149e-9, 0.0001), (149.6e-9, 0.0001), (150e-9, 0.0002), (250e-9, 0.0003), (0, 0.0), (2, 2000.0)):
                stats.reset()
                stats.record_latency(seconds)
                s = stats.snapshot()
                self.assertEqual(1, s["latency_measurements"])
                self.assertAlmostEqual(milliseconds, s["average_latency_ms"], delta=1e-12 * max(1.0, milliseconds))

    def test_latencies_from_threads_on_one_handle_are_all_counted(self):
        threads, each = 4, 500
        with moegs.MoeStats(EXPERTS, "managed") as stats:
            start = threading.Barrier(threads)

            def work():
                start.wait()
                for _ in range(each):
                    stats.record_latency(2.5e-6)

            workers = [threading.Thread(target=work) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            s = stats.snapshot()
            self.assertEqual(threads * each, s["latency_measurements"])
            self.assertAlmostEqual(0.0025, s["average_latency_ms"], delta=1e-12)


class MemoryTests(unittest.TestCase):
    """Ids the C API would misread are refused: other element types, gaps, memory of the wrong kind, streams on host ids."""

    def test_other_element_types_are_refused_not_reinterpreted(self):
        values = array.array("i", [0, 1, 2, 3])
        with moegs.MoeStats(EXPERTS, "managed") as stats:
            for typestr in ("<i2", "<i8", "<u4", "<f4", ">i4" if sys.byteorder == "little" else "<i4"):
                with self.assertRaisesRegex(TypeError, r"ids must be int32 \(got .*\); use ids.astype\(numpy.int32\)"):
                    stats.record(HostArray(values, (2, 2), typestr=typestr))
            for dtype in ("torch.int64", "torch.int16"):
                with self.assertRaisesRegex(TypeError, r"ids must be torch.int32 \(got " + dtype + r"\); use ids.int\(\), or record them on a "
                                            r"MoeModelStats of one layer, which reads " + dtype[6:] + " ids where they lie$"):
                    stats.record(HostTensor(values, (2, 2), dtype=dtype))
            for typecode in ("h", "l", "q", "I", "f"):
                with self.assertRaisesRegex(TypeError, r"array.array\('i'\) of int32 \(got typecode"):
                    stats.record(array.array(typecode, [0, 1]), top_k=2)
            with self.assertRaisesRegex(ValueError, r"ids must be C-contiguous"):
                stats.record(HostArray(values, (2, 1), strides=(8, 4)))
            with self.assertRaisesRegex(ValueError, r"ids are on mps"):
                stats.record(HostTensor(values, (2, 2), kind="mps"))
            self.assertEqual(0, stats.snapshot()["total_routings"])

    def test_ids_and_streams_where_the_handle_cannot_use_them(self):
        values = array.array("i", [0, 1, 2, 3])
        with moegs.MoeStats(EXPERTS, "managed") as stats:
            with self.assertRaisesRegex(ValueError, r"stream = 4660: a stream orders only CUDA tensors"):
                stats.record(values, top_k=2, stream=0x1234)
            with self.assertRaisesRegex(ValueError, r"ids are a CUDA tensor, but this aggregator runs on managed"):
                stats.record(HostTensor(values, (2, 2), kind="cuda"))
            self.assertEqual(0, stats.snapshot()["total_routings"])
        with moegs.MoeStats(EXPERTS, "auto") as stats:
            self.assertIn(stats.device, ("cuda", "opencl", "managed"))
            if stats.device == "managed":  # what "auto" chose, not what was asked for, decides
                with self.assertRaisesRegex(ValueError, r"ids are a CUDA tensor, but this aggregator runs on managed"):
                    stats.record(HostTensor(values, (2, 2), kind="cuda"))
                stats.record(HostTensor(values, (2, 2)))
                self.assertEqual(2, stats.snapshot()["total_tokens"])
        with moegs.MoeStats(EXPERTS, " Managed ") as stats:
            self.assertEqual("managed", stats.device)
        # The C API refuses a stream it cannot use on every handle, "managed" included.
        lib = moegs._load()
        for accelerator in ("managed", "cpu"):
            handle = ctypes.c_int64(0)
            self.assertEqual(moegs.OK, lib.moegs_create(accelerator.encode(), EXPERTS, 0, ctypes.byref(handle)))
            status = lib.moegs_record(handle, values.buffer_info()[0], 4, 2, 2, 0.0, 0.0, 0x1234)
            self.assertEqual(moegs.INVALID_ARGUMENT, status)
            self.assertEqual(f"stream = 0x1234: a stream orders records only on cuda; this handle runs on {accelerator}, pass NULL.",
                             lib.moegs_last_error().decode())
            self.assertEqual(moegs.OK, lib.moegs_destroy(handle))


class SemanticsTests(unittest.TestCase):
    """What the ids mean through the wrapper: -1 pads, a capacity drops slots; and the snapshot's layout is the header's."""

    HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "include", "moegs.h")
    C_TYPES = {"uint64_t": ctypes.c_uint64, "int32_t": ctypes.c_int32, "double": ctypes.c_double, "float": ctypes.c_float}

    def test_the_snapshot_is_the_headers_struct_and_the_librarys_size(self):
        with open(self.HEADER) as header:
            text = header.read()
        body = re.search(r"typedef struct moegs_snapshot \{(.*?)\} moegs_snapshot;", text, re.S).group(1)
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        fields = [(name, self.C_TYPES[kind]) for kind, name in re.findall(r"(\w+)\s+(\w+)\s*;", body)]
        self.assertEqual(fields, [(name, kind) for name, kind in moegs.Snapshot._fields_])
        self.assertEqual(ctypes.sizeof(moegs.Snapshot), moegs._load().moegs_snapshot_size())

    def test_minus_one_pads_and_is_not_invalid(self):
        padded = array.array("i", [0, 1, 2, 3, 0, 2, -1, -1])
        for accelerator in ("managed", "cpu"):
            for ids in (HostArray(padded, (4, 2)), HostTensor(padded, (4, 2)), padded):
                with moegs.MoeStats(4, accelerator) as stats:
                    stats.record(ids, top_k=2)
                    s = stats.snapshot()
                    self.assertEqual((3, 0, 6, 0, 100.0), (s["total_tokens"], s["invalid_expert_ids"], s["routed_slots"],
                                                            s["slots_dropped"], s["routing_efficiency"]), accelerator)
                    self.assertEqual([2, 1, 2, 1], stats.expert_counts(), accelerator)
                    for got, want in zip(stats.expert_utilization(), [2 / 3, 1 / 3, 2 / 3, 1 / 3]):
                        self.assertAlmostEqual(want, got, delta=1e-6, msg=accelerator)
            with moegs.MoeStats(4, accelerator) as stats:
                # Row 1 holds an empty slot and an invalid id: a token. Row 3 is padding.
                stats.record(array.array("i", [0, -1, -1, 4, -2, -2**31, -1, -1, 3, 2**31 - 1]), top_k=2)
                s = stats.snapshot()
                self.assertEqual((4, 4, 2), (s["total_tokens"], s["invalid_expert_ids"], s["routed_slots"]), accelerator)
                self.assertEqual([1, 0, 0, 1], stats.expert_counts(), accelerator)

    def test_a_capacity_drops_slots_not_tokens(self):
        # 8 tokens, each routed to all 8 experts, 7 slots per expert: 56 of 64 slots kept, every token counted.
        ids = HostArray(array.array("i", list(range(8)) * 8), (8, 8))
        for accelerator in ("managed", "cpu"):
            with moegs.MoeStats(8, accelerator, expert_capacity=7) as stats:
                stats.record(ids)
                s = stats.snapshot()
                self.assertEqual((64, 8, 87.5), (s["routed_slots"], s["slots_dropped"], s["routing_efficiency"]), accelerator)
                self.assertEqual((8, 0, 1), (s["total_tokens"], s["tokens_dropped"], s["capacity_exceeded_count"]), accelerator)
                # Overall capacity utilization: kept over available slots, 100 %.
                self.assertEqual((56, 56, 1.0), (s["total_used"], s["total_capacity"], s["capacity_peak_utilization"]), accelerator)
                self.assertEqual([8] * 8, stats.expert_counts(), accelerator)


class FailedRecordTests(unittest.TestCase):
    def test_a_failed_record_leaves_every_statistic(self):
        ids = array.array("i", [0, 3, 3, 1, 7, 0, 3, 2])
        for accelerator in ("managed", "cpu"):
            with moegs.MoeStats(EXPERTS, accelerator, expert_capacity=2) as stats:
                stats.record(ids, top_k=2, load_balance_loss=1.5, router_z_loss=0.25)
                stats.record_latency(1e-3)
                before = (stats.snapshot(), stats.expert_counts(), stats.expert_utilization())
                failing = [
                    lambda: stats.record(ids, tokens=5, top_k=2),                       # the C API: too few ids
                    lambda: stats.record(HostArray(ids, (65536, 65536))),                 # the C API: too many to read
                    lambda: stats.record(ids, tokens=2**32 + 4, top_k=2),                 # the wrapper: out of int32
                    lambda: stats.record(ids, top_k=2, load_balance_loss=float("nan")),
                    lambda: stats.record_latency(-5e-11),
                ]
                for call in failing:
                    with self.assertRaises((moegs.MoeGpuStatsError, ValueError)):
                        call()
                after = (stats.snapshot(), stats.expert_counts(), stats.expert_utilization())
                self.assertTrue(same_statistics(before[0], after[0]), accelerator)
                self.assertEqual(before[1:], after[1:])


class ModelTests(unittest.TestCase):
    """MoeModelStats: a model recorded whole equals its layers recorded alone (MoeStats), on managed and cpu;
    per-layer views of one buffer are read at their stride; bad input raises and leaves the model as it was."""

    LAYERS, EXPERTS, TOKENS, K, WINDOW, STEPS = 3, 8, 30, 2, 4, 6

    def steps(self, stride):
        rng = random.Random(9)
        return [array.array("i", (rng.randrange(-1, self.EXPERTS + 1) if i % stride < self.TOKENS * self.K else -9
                                  for i in range(self.LAYERS * stride))) for _ in range(self.STEPS)]

    def layer_counts(self, ids, per_layer=None):
        """Each layer's count of each expert among ids laid out [layers, per_layer] (per_layer TOKENS * K unless given),
        ids outside [0, EXPERTS) in no expert's count."""
        per_layer = per_layer or self.TOKENS * self.K
        counts = [[0] * self.EXPERTS for _ in range(self.LAYERS)]
        for i, expert in enumerate(ids):
            if 0 <= expert < self.EXPERTS:
                counts[i // per_layer][expert] += 1
        return counts

    def test_skip_empty_steps_leaves_out_dummy_passes(self):
        """skip_empty_steps=True (MOEGS_MODEL_SKIP_EMPTY_STEPS): a step of no valid row or of padding rows alone is left
        out of the window and the counts; the default records each as a step; a non-bool is refused naming it."""
        stride = self.TOKENS * self.K
        steps = self.steps(stride)
        padding = array.array("i", [-1] * (self.LAYERS * stride))
        for accelerator in ("managed", "cpu"):
            with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, skip_empty_steps=True, accelerator=accelerator) as skipping, \
                    moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator=accelerator) as counting:
                self.assertTrue(skipping.skip_empty_steps)
                self.assertFalse(counting.skip_empty_steps)
                for model in (skipping, counting):
                    for ids in steps[:2]:
                        model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)))
                        model.record(HostArray(padding, (self.LAYERS, self.TOKENS, self.K)))
                        model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)), valid_tokens=0)
                self.assertEqual((2, 2), (skipping.summary()["steps"], skipping.summary()["window_steps"]))
                self.assertEqual((6, self.WINDOW), (counting.summary()["steps"], counting.summary()["window_steps"]))
                self.assertEqual([2] * self.LAYERS, [skipping.layer(l)["total_routings"] for l in range(self.LAYERS)])
                with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator=accelerator) as plain:
                    for ids in steps[:2]:
                        plain.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)))
                    self.assertEqual(load_rows(plain.window_load()), load_rows(skipping.window_load()))
        with self.assertRaisesRegex(TypeError, "skip_empty_steps must be True or False \\(got 1 of type int\\)"):
            moegs.MoeModelStats(self.LAYERS, self.EXPERTS, skip_empty_steps=1, accelerator="managed")
        try:
            import numpy
        except ImportError:
            return
        # A NumPy boolean (a config read through NumPy) is a flag; a boolean array is not.
        with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, skip_empty_steps=numpy.bool_(True), accelerator="managed") as model:
            self.assertIs(True, model.skip_empty_steps)
        with self.assertRaisesRegex(TypeError, "skip_empty_steps must be True or False"):
            moegs.MoeModelStats(self.LAYERS, self.EXPERTS, skip_empty_steps=numpy.array([True]), accelerator="managed")

    def test_a_saved_model_is_the_json_the_cli_reads(self):
        """save(path) writes the window load and each layer as `moegs replay --save` does, for `moegs report` and
        `merge`; a bad path raises naming it and leaves the file as it was."""
        stride = self.TOKENS * self.K
        for accelerator in ("managed", "cpu"):
            with tempfile.TemporaryDirectory() as folder, \
                    moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator=accelerator) as model:
                for ids in self.steps(stride):
                    model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)))
                path = os.path.join(folder, "rank0.json")
                model.save(pathlib.Path(path))
                with open(path) as f:
                    saved = json.load(f)
                self.assertEqual(load_rows(model.window_load()), saved["window_load"])
                self.assertEqual((self.STEPS, self.WINDOW, self.EXPERTS), (saved["steps"], saved["window"], saved["experts"]))
                self.assertEqual([model.layer_expert_counts(l) for l in range(self.LAYERS)],
                                 [layer["expert_token_counts"] for layer in saved["layers"]])
                missing = os.path.join(folder, "no-such-folder", "rank0.json")
                with self.assertRaises(moegs.MoeGpuStatsError) as raised:
                    model.save(missing)
                self.assertEqual(moegs.IO_ERROR, raised.exception.status)
                self.assertIn(missing, str(raised.exception))
                # A path that holds line breaks and a terminal's escapes, or runs to thousands of bytes, is shown
                # escaped and cut: the message stays one line of bounded length.
                for odd in (os.path.join(folder, "no\ndir\r", "x\x1b[2J.json"), os.path.join(folder, "d" * 200, *(["e" * 200] * 25), "x.json")):
                    with self.assertRaises(moegs.MoeGpuStatsError) as raised:
                        model.save(odd)
                    message = str(raised.exception)
                    self.assertEqual((moegs.IO_ERROR, 1), (raised.exception.status, len(message.splitlines())))
                    self.assertNotIn("\x1b", message)
                    self.assertLess(len(message), 1800)
                with self.assertRaisesRegex(ValueError, "path is empty"):
                    model.save("")
                with self.assertRaisesRegex(ValueError, "NUL"):
                    model.save("a\0b")
                with self.assertRaisesRegex(TypeError, "path must be a str or os.PathLike"):
                    model.save(3)
                with self.assertRaisesRegex(ValueError, "is not UTF-8"):
                    model.save(os.fsencode(folder) + b"/bad\xff.json")
                self.assertEqual(["rank0.json"], os.listdir(folder))

    def test_a_checkpoint_loads_on_any_accelerator_and_records_on(self):
        """save(path, checkpoint=True) and MoeModelStats.load: a checkpoint saved on managed or cpu loads on either with the
        saved settings and records on as the saved model, every read equal; a file without the ring loads on managed
        alone and refuses record() and a cut of its window; a load that fails raises naming the path."""
        shape = (self.LAYERS, self.TOKENS, self.K)
        steps = self.steps(self.TOKENS * self.K) * 2
        for saver in ("managed", "cpu"):
            with tempfile.TemporaryDirectory() as folder, \
                    moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, expert_capacity=20, utilization_decay=0.9,
                                        skip_empty_steps=True, accelerator=saver) as whole:
                for ids in steps[:5]:
                    whole.record(HostArray(ids, shape))
                path = pathlib.Path(folder, "checkpoint.json")
                whole.save(path, checkpoint=True)
                resumed = [moegs.MoeModelStats.load(path, accelerator=kind) for kind in ("managed", "cpu")]
                for ids in steps[5:]:
                    for model in [whole, *resumed]:
                        model.record(HostArray(ids, shape))
                for model, kind in zip(resumed, ("managed", "cpu")):
                    with model:
                        self.assertEqual((kind, self.LAYERS, self.EXPERTS, True), (model.device, model.layers, model.experts, model.skip_empty_steps))
                        self.assertEqual(load_rows(whole.window_load()), load_rows(model.window_load()))
                        self.assertEqual(whole.summary(recent_steps=2), model.summary(recent_steps=2))
                        for layer in range(self.LAYERS):
                            self.assertEqual(whole.layer(layer), model.layer(layer))
                            self.assertEqual(whole.layer_decayed_utilization(layer), model.layer_decayed_utilization(layer))
                plain = os.path.join(folder, "plain.json")
                whole.save(plain)
                with self.assertRaisesRegex(moegs.InvalidArgumentError, "without its window ring"):
                    moegs.MoeModelStats.load(plain, accelerator="cpu")
                with moegs.MoeModelStats.load(plain, accelerator="managed") as read_only:
                    self.assertEqual(whole.summary(), read_only.summary())
                    with self.assertRaisesRegex(moegs.InvalidArgumentError, "^invalid argument: this model keeps its window's load but not its ring of steps.*not recorded into"):
                        read_only.record(HostArray(steps[0], shape))
                    with self.assertRaisesRegex(moegs.InvalidArgumentError, "recent_steps = 1: fewer than"):
                        read_only.summary(recent_steps=1)
                    with self.assertRaisesRegex(moegs.InvalidArgumentError, "no steps to checkpoint"):
                        read_only.save(path, checkpoint=True)
                    self.assertEqual(whole.summary(), read_only.summary())
                with self.assertRaises(moegs.MoeGpuStatsError) as raised:
                    moegs.MoeModelStats.load(os.path.join(folder, "missing.json"))
                self.assertEqual(moegs.IO_ERROR, raised.exception.status)
                self.assertIn("missing.json: cannot be read as a model", str(raised.exception))
                with self.assertRaisesRegex(ValueError, "path is empty: give the file to read"):
                    moegs.MoeModelStats.load("")
                with self.assertRaisesRegex(TypeError, "checkpoint must be True or False"):
                    whole.save(path, checkpoint="yes")

    def test_a_pending_read_is_the_reads_at_the_step_it_was_begun(self):
        """begin_read() (moegs_model_read_begin): result() is summary() and window_load() at the step it was begun,
        whatever is recorded after it; done() is True at once on managed and cpu; a read outlives its model; bad
        arguments raise as summary()'s and begin nothing; a closed read says so."""
        stride = self.TOKENS * self.K
        ranks = [0, 0, 1, 1, 2, 2, 3, 3]
        for accelerator in ("managed", "cpu"):
            model = moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator=accelerator)
            steps = self.steps(stride)
            for ids in steps[:-1]:
                model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)))
            whole, recent = model.begin_read(), model.begin_read(expert_ranks=ranks, recent_steps=2)
            expected = (model.summary(), load_rows(model.window_load()), model.summary(ranks, recent_steps=2))
            model.record(HostArray(steps[-1], (self.LAYERS, self.TOKENS, self.K)))
            self.assertTrue(whole.done() and recent.done())
            summary, load = whole.result()
            self.assertEqual(expected[:2], (summary, load_rows(load)))
            self.assertEqual(expected[2], recent.result()[0])
            self.assertEqual((summary, load), whole.result())
            self.assertTrue(whole.done())
            # A read whose result was taken has nothing left to free: close() and a with block's end are quiet, and the
            # result stays.
            whole.close()
            self.assertEqual((summary, load), whole.result())
            self.assertTrue(whole.done())
            with model.begin_read() as taken:
                self.assertEqual(self.STEPS, taken.result()[0]["steps"])

            with self.assertRaisesRegex(ValueError, "recent_steps"):
                model.begin_read(recent_steps=self.WINDOW + 1)
            with self.assertRaisesRegex(ValueError, "one per expert"):
                model.begin_read(expert_ranks=[0, 1])
            with self.assertRaisesRegex(ValueError, r"expert_ranks\[7\] = 8 is out of range"):
                model.begin_read(expert_ranks=ranks[:-1] + [self.EXPERTS])
            with self.assertRaisesRegex(ValueError, f"stream = 16: a stream orders the read only on cuda; this model runs on {accelerator}"):
                model.begin_read(stream=16)

            dropped = model.begin_read()
            dropped.close()
            dropped.close()
            with self.assertRaisesRegex(moegs.MoeGpuStatsError, r"PendingModelRead is closed .*: begin another with model.begin_read\(\)"):
                dropped.result()
            with self.assertRaisesRegex(TypeError, "positional"):
                model.begin_read(2)

            outliving, at_close = model.begin_read(), (model.summary(), load_rows(model.window_load()))
            model.close()
            summary, load = outliving.result()
            self.assertEqual(at_close, (summary, load_rows(load)))
            self.assertEqual(self.STEPS, summary["steps"])

    def test_one_read_is_every_part_read_alone(self):
        """The scrape's one call (moegs_model_read) gives summary(), summary(recent_steps=), window_load(), each layer's
        totals as layer() has them and layer_expert_counts(), on both engines."""
        stride = self.TOKENS * self.K
        for accelerator in ("managed", "cpu"):
            with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator=accelerator) as model:
                for ids in self.steps(stride):
                    model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)))
                summary, recent, load, totals, counts = model._read(recent_steps=2, expert_counts=True)
                self.assertEqual(model.summary(), summary)
                self.assertEqual(model.summary(recent_steps=2), recent)
                self.assertEqual(load_rows(model.window_load()), load)
                self.assertEqual([model.layer_expert_counts(l) for l in range(self.LAYERS)], counts)
                for l, layer in enumerate(totals):
                    snapshot = model.layer(l)
                    self.assertEqual({name: snapshot[name] for name in layer}, layer)
                self.assertGreater(totals[0]["routed_slots"], 0)
                self.assertEqual((None, None), model._read()[1::3])
                with self.assertRaisesRegex(ValueError, "recent_steps"):
                    model._read(recent_steps=self.WINDOW + 1)

    def test_the_newest_steps_are_their_ids_bincount(self):
        """window_load(recent_steps=n) and summary(recent_steps=n) cover the newest n steps alone; n outside [1, window]
        is refused naming recent_steps."""
        stride = self.TOKENS * self.K
        steps = self.steps(stride)
        for accelerator in ("managed", "cpu"):
            with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator=accelerator) as model:
                for ids in steps:
                    model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)))
                for recent in (1, 3, self.WINDOW):
                    want = [[0] * self.EXPERTS for _ in range(self.LAYERS)]
                    for ids in steps[-recent:]:
                        for layer in range(self.LAYERS):
                            for i in ids[layer * stride:(layer + 1) * stride]:
                                if 0 <= i < self.EXPERTS:
                                    want[layer][i] += 1
                    self.assertEqual(want, load_rows(model.window_load(recent_steps=recent)), f"{accelerator}: {recent} steps")
                    summary = model.summary(recent_steps=recent)
                    self.assertEqual((len(steps), recent), (summary["steps"], summary["window_steps"]))
                    self.assertEqual([sum(row) for row in want], [layer["load"] for layer in summary["window"]["per_layer"]])
                    self.assertEqual(model.summary()["since_start"], summary["since_start"])
                self.assertEqual(load_rows(model.window_load()), load_rows(model.window_load(recent_steps=self.WINDOW)))
                for bad in (0, self.WINDOW + 1):
                    message = rf"recent_steps = {bad} is out of range: it must lie in \[1, {self.WINDOW}\] \(the model's window\)"
                    with self.assertRaisesRegex(ValueError, message):
                        model.window_load(recent_steps=bad)
                    with self.assertRaisesRegex(ValueError, message):
                        model.summary(recent_steps=bad, expert_ranks=[0])
                with self.assertRaisesRegex(TypeError, "recent_steps must be an integer"):
                    model.window_load(recent_steps=1.5)

    def test_the_newest_steps_across_wraps_lists_rows_empty_steps_and_a_reset(self):
        """recent_steps against the ids' bincount after every step, for windows of 1 and 3 wrapped many times, steps of
        32 ids or fewer (kept as lists on "managed") and more (rows) in every order, steps of no ids, and a reset at a
        wrapped position; a recent_steps past int32 is refused naming the model's window, not int32's range."""
        layers, experts = 2, 40
        sizes = [1, 32, 33, 32, 0, 64, 33, 0, 0, 5, 31, 100, 2, 33, 33, 32, 32, 0, 40, 1]
        rng = random.Random(17)
        for accelerator in ("managed", "cpu"):
            for window in (1, 3):
                with moegs.MoeModelStats(layers, experts, window=window, accelerator=accelerator) as model:
                    recorded = []
                    for s, size in enumerate(sizes * 2):
                        if s == len(sizes) + 1:
                            model.reset()
                            recorded = []
                        ids = array.array("i", (rng.randrange(-1, experts + 1) for _ in range(max(1, layers * size))))
                        model.record(HostArray(ids, (layers, size, 1)))
                        recorded.append(ids[:layers * size])
                        for recent in range(1, window + 1):
                            want = [[0] * experts for _ in range(layers)]
                            for step in recorded[-recent:]:
                                size_of = len(step) // layers
                                for layer in range(layers):
                                    for i in step[layer * size_of:(layer + 1) * size_of]:
                                        if 0 <= i < experts:
                                            want[layer][i] += 1
                            when = f"{accelerator}, window {window}: {recent} of {len(recorded)} steps"
                            self.assertEqual(want, load_rows(model.window_load(recent_steps=recent)), when)
                            summary = model.summary(recent_steps=recent)
                            self.assertEqual(min(recent, len(recorded)), summary["window_steps"], when)
                            self.assertEqual([sum(row) for row in want], [layer["load"] for layer in summary["window"]["per_layer"]], when)
                    for bad in (2**31, -2**31 - 1):
                        message = rf"recent_steps = {bad} is out of range: it must lie in \[1, {window}\] \(the model's window\)"
                        with self.assertRaisesRegex(ValueError, message):
                            model.window_load(recent_steps=bad)
                        with self.assertRaisesRegex(ValueError, message):
                            model.summary(recent_steps=bad)

    def test_a_model_is_its_layers_recorded_alone_and_the_window_a_bincount(self):
        stride = self.TOKENS * self.K
        steps = self.steps(stride)
        for accelerator in ("managed", "cpu"):
            with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator=accelerator) as model:
                alone = [moegs.MoeStats(self.EXPERTS, "managed") for _ in range(self.LAYERS)]
                want = [[0] * self.EXPERTS for _ in range(self.LAYERS)]
                for step, ids in enumerate(steps):
                    valid = self.TOKENS - step
                    losses = [0.5 + layer + step for layer in range(self.LAYERS)]
                    model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)), valid_tokens=valid, load_balance_losses=losses)
                    for layer, stats in enumerate(alone):
                        rows = ids[layer * stride:layer * stride + valid * self.K]
                        stats.record(rows, tokens=valid, top_k=self.K, load_balance_loss=losses[layer])
                        for i in rows:
                            if step >= self.STEPS - self.WINDOW and 0 <= i < self.EXPERTS:
                                want[layer][i] += 1
                load = model.window_load()
                self.assertEqual(want, load_rows(load))
                for layer, stats in enumerate(alone):
                    self.assertTrue(same_statistics(stats.snapshot(), model.layer(layer)), f"{accelerator}: layer {layer}")
                    self.assertEqual(stats.expert_counts(), model.layer_expert_counts(layer), f"{accelerator}: layer {layer}")
                    self.assertEqual(stats.expert_utilization(), model.layer_expert_utilization(layer), f"{accelerator}: layer {layer}")
                    stats.close()
                summary = model.summary()
                self.assertEqual((self.STEPS, self.WINDOW, self.EXPERTS), (summary["steps"], summary["window_steps"], summary["entries"]))
                self.assertEqual([sum(row) for row in want], [layer["load"] for layer in summary["window"]["per_layer"]])
                # Named as `moegs replay --json` names them (ReplayCommandTests checks the CLI's).
                self.assertEqual(["min_balancedness", "p10_balancedness", "median_balancedness", "mean_balancedness",
                                  "max_balancedness", "token_weighted_balancedness", "worst_layer", "best_layer", "per_layer"],
                                 list(summary["window"]))
                balancedness = [layer["balancedness"] for layer in summary["window"]["per_layer"]]
                self.assertEqual((max(balancedness), balancedness.index(max(balancedness))),
                                 (summary["window"]["max_balancedness"], summary["window"]["best_layer"]))
                self.assertAlmostEqual(statistics.quantiles(balancedness, n=10, method="inclusive")[0],
                                       summary["window"]["p10_balancedness"], places=12)
                self.assertEqual(["layer", "load", "mean_load", "max_load", "min_load", "balancedness", "max_mean_ratio",
                                  "coefficient_of_variation", "hottest_expert", "coldest_expert", "dead_experts",
                                  "gini_coefficient", "top10_percent_share"],
                                 list(summary["window"]["per_layer"][0]))
                for layer, row in enumerate(want):
                    figures = summary["window"]["per_layer"][layer]
                    self.assertEqual((layer, max(e for e in range(self.EXPERTS) if row[e] == max(row))),
                                     (figures["layer"], figures["hottest_expert"]))
                ranked = model.summary(expert_ranks=[e // 2 for e in range(self.EXPERTS)])
                self.assertEqual(self.EXPERTS // 2, ranked["entries"])
                rank_loads = [want[0][2 * r] + want[0][2 * r + 1] for r in range(self.EXPERTS // 2)]
                self.assertEqual(max(rank_loads), ranked["window"]["per_layer"][0]["max_load"])
                model.reset()
                self.assertEqual(0, model.summary()["steps"])

    def test_a_layers_decayed_utilization_follows_each_step(self):
        """decay * previous + (1 - decay) * count / tokens per step and expert; zeros before the first step; refused
        (and the model unchanged) where the model keeps no decay."""
        decay, stride = 0.5, self.TOKENS * self.K
        for accelerator in ("managed", "cpu"):
            with self.subTest(accelerator=accelerator), \
                    moegs.MoeModelStats(self.LAYERS, self.EXPERTS, utilization_decay=decay, accelerator=accelerator) as model:
                self.assertEqual([0.0] * self.EXPERTS, model.layer_decayed_utilization(2))
                want = [[0.0] * self.EXPERTS for _ in range(self.LAYERS)]
                for ids in self.steps(stride):
                    model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)))
                    for layer in range(self.LAYERS):
                        rows = ids[layer * stride:(layer + 1) * stride]
                        # A token whose k ids are all -1 is padding, not a token.
                        tokens = sum(1 for t in range(self.TOKENS) if any(i != -1 for i in rows[t * self.K:(t + 1) * self.K]))
                        for e in range(self.EXPERTS):
                            want[layer][e] = decay * want[layer][e] + (1 - decay) * rows.count(e) / tokens
                for layer in range(self.LAYERS):
                    for got, expected in zip(model.layer_decayed_utilization(layer), want[layer]):
                        self.assertAlmostEqual(expected, got, delta=1e-6)
        with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator="managed") as model:
            model.record(HostArray(self.steps(stride)[0], (self.LAYERS, self.TOKENS, self.K)))
            before = model.layer(1)
            with self.assertRaisesRegex(moegs.MoeGpuStatsError, "keeps no decayed utilization: it was created with utilization_decay=None; give utilization_decay in \\[0, 1\\) to keep one$"):
                model.layer_decayed_utilization(1)
            with self.assertRaisesRegex(TypeError, "^layer must be an integer"):
                model.layer_decayed_utilization("1")
            with self.assertRaisesRegex(ValueError, r"^layer = 3 is out of range: it must lie in \[0, 2\], the model's layers$"):
                model.layer_expert_counts(3)
            self.assertEqual(before, model.layer(1))
        with self.assertRaisesRegex(moegs.MoeGpuStatsError, "is closed"):
            model.layer_decayed_utilization(1)

    def test_views_of_one_buffer_are_read_at_their_stride(self):
        stride = self.TOKENS * self.K + 10
        steps = self.steps(stride)
        with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator="cpu") as views, \
                moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator="managed") as packed:
            for ids in steps:
                base = ids.buffer_info()[0]
                views.record([HostArray(ids, (self.TOKENS, self.K), address=base + 4 * layer * stride) for layer in range(self.LAYERS)])
                dense = array.array("i", (ids[layer * stride + i] for layer in range(self.LAYERS) for i in range(self.TOKENS * self.K)))
                packed.record(HostArray(dense, (self.LAYERS, self.TOKENS, self.K)))
            self.assertEqual(load_rows(packed.window_load()), load_rows(views.window_load()))
            self.assertEqual(packed.summary(), views.summary())

    def test_bad_input_raises_and_leaves_the_model(self):
        ids = array.array("i", [1] * (self.LAYERS * self.TOKENS * self.K))
        base = ids.buffer_info()[0]
        with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator="managed") as model:
            model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)))
            before = (load_rows(model.window_load()), model.summary(), model.layer(0))
            uneven = [HostArray(ids, (self.TOKENS, self.K), address=base + offset) for offset in (0, 240, 600)]
            with self.assertRaisesRegex(ValueError, "not equally spaced"):
                model.record(uneven)
            overlapping = [HostArray(ids, (self.TOKENS, self.K), address=base + 4 * layer) for layer in range(self.LAYERS)]
            with self.assertRaisesRegex(ValueError, r"^ids are views 4 bytes apart with rows 8 bytes apart: .*one after another \(at least \(tokens - 1\) \* row \+ k \* 4 = 240 bytes apart\)"):
                model.record(overlapping)
            with self.assertRaisesRegex(ValueError, "hold 2 layers; this model has 3"):
                model.record(HostArray(ids, (2, self.TOKENS, self.K)))
            # Counts in messages: "0 views", "1 view", "0 values", as many as were given.
            for views, message in (([], r"^ids holds 0 views; this model has 3 layers, one \[tokens, k\] view each$"),
                                   (uneven[:1], r"^ids holds 1 view; this model has 3 layers, one \[tokens, k\] view each$")):
                with self.assertRaisesRegex(ValueError, message):
                    model.record(views)
            with self.assertRaisesRegex(ValueError, r"^load_balance_losses holds 0 values; it must hold 3$"):
                model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)), load_balance_losses=[])
            with self.assertRaisesRegex(TypeError, "ids must be int32"):
                model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K), typestr="<f4"))
            with self.assertRaisesRegex(ValueError, "load_balance_losses holds 2 values; it must hold 3"):
                model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)), load_balance_losses=[0.0, 0.0])
            with self.assertRaisesRegex(ValueError, "router_z_losses\\[1\\] = inf"):
                model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)), router_z_losses=[0.0, float("inf"), 0.0])
            with self.assertRaisesRegex(ValueError, "^expert_ranks\\[7\\] = 8 is out of range: it must lie in \\[0, 7\\] \\(at most one rank per expert\\)$"):
                model.summary(expert_ranks=[0] * (self.EXPERTS - 1) + [self.EXPERTS])
            for layer in (-1, self.LAYERS, 2**40):
                with self.assertRaisesRegex(ValueError, f"^layer = {layer} is out of range: it must lie in \\[0, {self.LAYERS - 1}\\], the model's layers$"):
                    model.layer(layer)
                with self.assertRaisesRegex(ValueError, f"^layer = {layer} is out of range"):
                    model.layer_expert_counts(layer)
            with self.assertRaisesRegex(ValueError, "expert_ranks holds 7 ranks"):
                model.summary(expert_ranks=[0] * (self.EXPERTS - 1))
            # One rank too many is as wrong as one too few, whatever ranks the first `experts` name.
            for ranks in ([0] * (self.EXPERTS + 1), [e // 2 for e in range(self.EXPERTS)] + [0]):
                with self.assertRaisesRegex(ValueError, r"^expert_ranks holds 9 ranks; it must hold one per expert \(8\)$"):
                    model.summary(expert_ranks=ranks)
                with self.assertRaisesRegex(ValueError, r"^expert_ranks holds 9 ranks"):
                    model.begin_read(expert_ranks=ranks)
            with self.assertRaises(moegs.MoeGpuStatsError) as from_one:
                model.summary(expert_ranks=[e // 2 + 1 for e in range(self.EXPERTS)])
            self.assertEqual(moegs.INVALID_ARGUMENT, from_one.exception.status)
            self.assertIn("rank 0 holds no expert", str(from_one.exception))
            for ranks in (3, HostArray(ids, ())):
                with self.assertRaisesRegex(TypeError, r"^expert_ranks must be a sequence of 8 ranks, one per expert \(got "):
                    model.summary(expert_ranks=ranks)
            self.assertEqual(before, (load_rows(model.window_load()), model.summary(), model.layer(0)))
        for layers, experts, message in ((2000, self.EXPERTS, r"^layers = 2000 is out of range: it must lie in \[1, 1024\]$"),
                                         (0, self.EXPERTS, r"^layers = 0 is out of range: it must lie in \[1, 1024\]$"),
                                         (self.LAYERS, 0, r"^experts = 0 is out of range: it must lie in \[1, 4096\]$"),
                                         (self.LAYERS, 4097, r"^experts = 4097 is out of range: it must lie in \[1, 4096\]$")):
            with self.assertRaisesRegex(ValueError, message):
                moegs.MoeModelStats(layers, experts, accelerator="managed")
        for decay in (-0.5, 1.0, float("nan")):
            with self.assertRaisesRegex(ValueError, rf"^utilization_decay = {decay!r} is out of range: it must lie in \[0, 1\) as a float32 \(at most 0\.9999999403953552\), or be None for none$"):
                moegs.MoeModelStats(self.LAYERS, self.EXPERTS, utilization_decay=decay, accelerator="managed")
        with self.assertRaisesRegex(ValueError, r"^window = 0 is out of range: it must lie in \[1, 2147483647\] steps \(omit it for the default, 1000, which the C API's 0 means\)$"):
            moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=0, accelerator="managed")

    def test_a_capacity_of_0_is_none_as_in_moestats_and_the_c_api(self):
        ids = array.array("i", [0, 0, 0, 1] * self.LAYERS)
        for capacity in (0, None):
            with self.subTest(capacity=capacity), moegs.MoeModelStats(self.LAYERS, self.EXPERTS, expert_capacity=capacity,
                                                                      accelerator="managed") as model:
                model.record(HostArray(ids, (self.LAYERS, 2, 2)))
                layer = model.layer(0)
                self.assertEqual((4, 0, self.EXPERTS * 100), (layer["routed_slots"], layer["slots_dropped"], layer["total_capacity"]))
        with self.assertRaisesRegex(ValueError, r"^expert_capacity = -1 is out of range: it must lie in \[0, 2147483647\] \(0, or None: no capacity\)$"):
            moegs.MoeModelStats(self.LAYERS, self.EXPERTS, expert_capacity=-1, accelerator="managed")

    @unittest.skipUnless(importlib.util.find_spec("numpy"), "NumPy is not installed for this Python")
    def test_the_window_load_is_written_into_out(self):
        """window_load(out=a) writes into a uint64 array of shape (layers, experts) and returns it, with or without
        recent_steps, as window_load() returns it; an out of another type, dtype, shape or layout, or read-only, is
        refused naming out, with the array unchanged."""
        import numpy
        stride = self.TOKENS * self.K
        steps = self.steps(stride)
        for accelerator in ("managed", "cpu"):
            with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator=accelerator) as model:
                for ids in steps:
                    model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)))
                out = numpy.full((self.LAYERS, self.EXPERTS), 7, numpy.uint64)
                self.assertIs(out, model.window_load(out=out))
                self.assertEqual(load_rows(model.window_load()), out.tolist())
                self.assertIs(out, model.window_load(recent_steps=1, out=out))
                self.assertEqual(load_rows(model.window_load(recent_steps=1)), out.tolist())

                shape = rf"\({self.LAYERS}, {self.EXPERTS}\)"
                read_only = numpy.zeros((self.LAYERS, self.EXPERTS), numpy.uint64)
                read_only.flags.writeable = False
                wide = numpy.zeros((self.LAYERS, 2 * self.EXPERTS), numpy.uint64)
                unaligned = numpy.frombuffer(bytearray(8 * self.LAYERS * self.EXPERTS + 1), numpy.uint64, self.LAYERS * self.EXPERTS, 1).reshape(self.LAYERS, self.EXPERTS)
                for bad, error, message in (
                        ([[0] * self.EXPERTS] * self.LAYERS, TypeError, rf"^out must be a NumPy array of uint64, shape {shape}, or None \(got list\)$"),
                        (numpy.zeros((self.LAYERS, self.EXPERTS), numpy.int64), TypeError, r"^out must be a NumPy array of uint64 \(got int64\)"),
                        (numpy.zeros((self.EXPERTS, self.LAYERS), numpy.uint64), ValueError, rf"^out has shape \({self.EXPERTS}, {self.LAYERS}\); the window load has shape {shape}"),
                        (wide[:, ::2], ValueError, r"^out must be C-contiguous \(strides"),
                        (unaligned, ValueError, r"^out starts at 0x[0-9a-f]+, not at a multiple of 8 bytes"),
                        (read_only, ValueError, r"^out is read-only; pass a writable array$")):
                    with self.subTest(accelerator=accelerator, out=message):
                        before = numpy.array(bad, copy=True)
                        with self.assertRaisesRegex(error, message):
                            model.window_load(out=bad)
                        self.assertEqual(before.tolist(), numpy.asarray(bad).tolist())
                with self.assertRaisesRegex(ValueError, "recent_steps"):
                    model.window_load(recent_steps=0, out=out)

    @unittest.skipUnless(importlib.util.find_spec("numpy"), "NumPy is not installed for this Python")
    def test_arrays_allocated_apart_are_refused_in_either_order(self):
        """A list of NumPy arrays that are no views of one buffer is refused whichever lies first in memory: two arrays'
        addresses alone look like one buffer's layers at a stride in one order or the other. So is a list mixing NumPy
        with other memory. Views of one array, or of one buffer through frombuffer, are read."""
        import numpy
        layers, size = 2, self.TOKENS * self.K
        arrays = [numpy.full((self.TOKENS, self.K), layer, numpy.int32) for layer in range(layers)]
        mixed = [arrays[0], HostArray(array.array("i", [1] * size), (self.TOKENS, self.K))]
        buffer = numpy.arange(layers * size, dtype=numpy.int32) % self.EXPERTS
        through_bytes = [numpy.frombuffer(memoryview(buffer), numpy.int32, size, 4 * layer * size).reshape(self.TOKENS, self.K)
                         for layer in range(layers)]
        want = [numpy.bincount(row, minlength=self.EXPERTS).tolist() for row in buffer.reshape(layers, -1)]
        with moegs.MoeModelStats(layers, self.EXPERTS, accelerator="managed") as model:
            for order in (arrays, arrays[::-1], mixed, mixed[::-1]):
                with self.subTest(addresses=[hex(a.__array_interface__["data"][0]) for a in order]):
                    with self.assertRaisesRegex(ValueError, r"^ids\[0\] and ids\[1\] are views of different arrays \(or mix NumPy arrays "
                                                            r"with other memory\): pass views of one buffer, e\.g\. buffer\[l\] of a \[layers, tokens, k\] array$"):
                        model.record(order)
                    self.assertEqual(0, model.summary()["steps"])
            model.record(list(buffer.reshape(layers, self.TOKENS, self.K)))
            model.record(through_bytes)
            self.assertEqual([[2 * count for count in row] for row in want], load_rows(model.window_load()))

    @unittest.skipUnless(importlib.util.find_spec("torch"), "PyTorch is not installed for this Python")
    def test_tensors_of_different_storages_or_mixed_with_other_memory_are_refused(self):
        """A list of torch tensors allocated apart, in either order, or of a tensor and other memory, is refused: their
        addresses alone look like one buffer's layers at a stride. Views of one tensor's storage are read."""
        import torch
        layers, size = 2, self.TOKENS * self.K
        apart = [torch.full((self.TOKENS, self.K), layer, dtype=torch.int32) for layer in range(layers)]
        mixed = [apart[0], HostArray(array.array("i", [1] * size), (self.TOKENS, self.K))]
        message = (r"^ids are views of different torch storages \(or mix tensors with other arrays\): "
                   r"pass views of one buffer, e\.g\. buffer\[l\] of a \[layers, tokens, k\] tensor$")
        with moegs.MoeModelStats(layers, self.EXPERTS, accelerator="managed") as model:
            for order in (apart, apart[::-1], mixed, mixed[::-1]):
                with self.subTest(kinds=[type(view).__name__ for view in order]), self.assertRaisesRegex(ValueError, message):
                    model.record(order)
            self.assertEqual(0, model.summary()["steps"])
            buffer = torch.arange(layers * size, dtype=torch.int32).reshape(layers, self.TOKENS, self.K) % self.EXPERTS
            model.record([buffer[l] for l in range(layers)])
            want = [[sum(1 for i in range(l * size, (l + 1) * size) if i % self.EXPERTS == e) for e in range(self.EXPERTS)]
                    for l in range(layers)]
            self.assertEqual(want, load_rows(model.window_load()))

    @unittest.skipUnless(importlib.util.find_spec("numpy"), "NumPy is not installed for this Python")
    def test_a_slice_of_a_padded_buffer_is_read_at_its_layer_stride(self):
        """buffer[:, :tokens] is [layers, tokens, k] at a layer stride: recorded without a copy, as list(ids) is."""
        import numpy
        # The padding names an expert, so that a read of it would show in the load.
        buffer = numpy.full((self.LAYERS, 5, self.K), self.EXPERTS - 1, numpy.int32)
        buffer[:, :3] = numpy.arange(self.LAYERS * 3 * self.K, dtype=numpy.int32).reshape(self.LAYERS, 3, self.K) % self.EXPERTS
        sliced = [buffer[:, :3]]
        if importlib.util.find_spec("torch"):
            import torch
            sliced.append(torch.from_numpy(buffer)[:, :3])
        want = [numpy.bincount(buffer[l, :3].ravel(), minlength=self.EXPERTS).tolist() for l in range(self.LAYERS)]
        for ids in sliced:
            with self.subTest(kind=type(ids).__name__), moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator="cpu") as model:
                model.record(ids)
                self.assertEqual(want, load_rows(model.window_load()))
                model.record(list(ids))
                self.assertEqual([[2 * count for count in row] for row in want], load_rows(model.window_load()))
                # Too many layers are named as the array's shape, as a contiguous array's are, not as views of it.
                wide = numpy.zeros((self.LAYERS + 1, 5, self.K), numpy.int32)
                wide = wide[:, :4] if isinstance(ids, numpy.ndarray) else torch.from_numpy(wide)[:, :4]
                with self.assertRaisesRegex(ValueError, rf"^ids shaped \[{self.LAYERS + 1}, 4, {self.K}\] hold {self.LAYERS + 1} layers; this model has {self.LAYERS}$"):
                    model.record(wide)
                # Ids shaped [tokens, layers, k] (SGLang's buffer) are told how to pass them.
                steps = numpy.zeros((5, self.LAYERS, self.K), numpy.int32)
                steps = steps if isinstance(ids, numpy.ndarray) else torch.from_numpy(steps)
                with self.assertRaisesRegex(ValueError, rf"this model has {self.LAYERS}; if they are \[tokens, layers, k\], pass ids.swapaxes\(0, 1\)$"):
                    model.record(steps)
                # Each token's first id alone (k = 1, rows k = 2 ids apart) is read at both strides too.
                model.record(buffer[:, :3, :1] if isinstance(ids, numpy.ndarray) else ids[:, :, :1])
                first = [numpy.bincount(buffer[l, :3, 0], minlength=self.EXPERTS).tolist() for l in range(self.LAYERS)]
                self.assertEqual([[2 * a + b for a, b in zip(row, ones)] for row, ones in zip(want, first)], load_rows(model.window_load()))

    @unittest.skipUnless(importlib.util.find_spec("numpy"), "NumPy is not installed for this Python")
    def test_a_tokens_first_buffer_is_read_where_it_lies(self):
        """SGLang's (and some vLLM versions') routed-experts buffer is [tokens, layers, k]: buffer[:n].transpose(0, 1), or its layers as
        buffer[:n, l], records what the same ids made contiguous record, on both host engines, without a copy."""
        import numpy
        rng = numpy.random.default_rng(5)
        # Rows past the step name an expert, so that a read of them would show in the load.
        buffer = numpy.full((9, self.LAYERS, self.K), self.EXPERTS - 1, numpy.int32)
        tokens = 6
        buffer[:tokens] = rng.integers(-1, self.EXPERTS + 1, (tokens, self.LAYERS, self.K), dtype=numpy.int32)
        step = buffer[:tokens].transpose(1, 0, 2)
        given = [step, [buffer[:tokens, l] for l in range(self.LAYERS)]]
        if importlib.util.find_spec("torch"):
            import torch
            tensor = torch.from_numpy(buffer)
            given += [tensor[:tokens].transpose(0, 1), list(tensor[:tokens].transpose(0, 1))]
        want = [numpy.bincount(row[(row >= 0) & (row < self.EXPERTS)], minlength=self.EXPERTS).tolist() for row in step.reshape(self.LAYERS, -1)]
        for accelerator in ("managed", "cpu"):
            with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator=accelerator) as packed:
                packed.record(numpy.ascontiguousarray(step), valid_tokens=4 if accelerator == "managed" else None)
                for ids in given:
                    with self.subTest(accelerator=accelerator, kind=type(ids).__name__), \
                            moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator=accelerator) as model:
                        model.record(ids, valid_tokens=4 if accelerator == "managed" else None)
                        self.assertEqual(packed.summary(), model.summary())
                        self.assertEqual([model.layer(l) for l in range(self.LAYERS)], [packed.layer(l) for l in range(self.LAYERS)])
                        if accelerator == "cpu":
                            self.assertEqual(want, load_rows(model.window_load()))

    @unittest.skipUnless(importlib.util.find_spec("numpy"), "NumPy is not installed for this Python")
    def test_strides_that_cannot_hold_the_rows_are_refused(self):
        import numpy
        from numpy.lib.stride_tricks import as_strided
        buffer = numpy.zeros((self.LAYERS, 4, self.K), numpy.int32)
        with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator="managed") as model:
            model.record(buffer)
            before = (load_rows(model.window_load()), model.summary())
            with self.assertRaisesRegex(ValueError, r"^ids shaped \[3, 4, 2\] at strides \[8, 2, -1\] \(in ids\): a token's k ids must lie side by side"):
                model.record(buffer[:, :, ::-1])
            with self.assertRaisesRegex(ValueError, r"rows -2 ids apart overlap or run backwards"):
                model.record(buffer[:, ::-1])
            with self.assertRaisesRegex(ValueError, r"at strides \[0, 2, 1\] \(in ids\): the layers lie neither one after another nor interleaved"):
                model.record(numpy.broadcast_to(buffer[:1], buffer.shape))
            with self.assertRaisesRegex(ValueError, r"^ids shaped \[3, 4, 2\] at strides \[1, 4, 1\] \(in ids\): the layers lie neither one after another nor interleaved"):
                model.record(as_strided(buffer, shape=(self.LAYERS, 4, self.K), strides=(4, 16, 4)))
            # A later view whose k ids are not side by side (ids[0]'s are) is refused, not read as if they were.
            wide = numpy.zeros((2 * self.LAYERS, 4, 2 * self.K), numpy.int32)
            views = [wide[0, :, :self.K]] + [wide[l, :, ::2] for l in range(1, self.LAYERS)]
            with self.assertRaisesRegex(ValueError, r"^ids\[1\] shaped \[4, 2\] at strides \[4, 2\] \(in ids\): a token's k ids must lie side by side"):
                model.record(views)
            with self.assertRaisesRegex(TypeError, r"^ids must be int32, int64 or int16 \(got uint32\)"):
                model.record(buffer.astype(numpy.uint32))
            with self.assertRaisesRegex(ValueError, r"^ids\[1\] shaped \[4, 2\], int64 on host: every layer's view must be shaped \[4, 2\], int32"):
                model.record([buffer[0], buffer[1].astype(numpy.int64), buffer[2]])
            self.assertEqual(before, (load_rows(model.window_load()), model.summary()))

    @unittest.skipUnless(importlib.util.find_spec("numpy"), "NumPy is not installed for this Python")
    def test_int64_and_int16_ids_record_as_their_int32_values(self):
        """torch.topk's int64 ids and vLLM's int16 capture are read where they lie; an int64 id past int32 is invalid,
        not the expert its low 32 bits name."""
        import numpy
        rng = numpy.random.default_rng(9)
        ids = rng.integers(-1, self.EXPERTS + 1, (7, self.LAYERS, self.K), dtype=numpy.int32)   # [tokens, layers, k]
        wide = ids.astype(numpy.int64)
        wide[0, 0, 0] = (1 << 32) | 1
        narrow = ids.astype(numpy.int16)
        narrow[0, 0, 0] = self.EXPERTS + 5
        as_int32 = ids.copy()
        as_int32[0, 0, 0] = self.EXPERTS + 5
        given = [("int64", wide), ("int16", narrow)]
        if importlib.util.find_spec("torch"):
            import torch
            given += [("torch.int64", torch.from_numpy(wide)), ("torch.int16", torch.from_numpy(narrow))]
        for accelerator in ("managed", "cpu"):
            with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator=accelerator) as reference:
                reference.record(numpy.ascontiguousarray(as_int32.transpose(1, 0, 2)))
                for name, typed in given:
                    for form in ("transposed", "views"):
                        with self.subTest(accelerator=accelerator, ids=name, form=form), \
                                moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator=accelerator) as model:
                            step = typed[:].transpose(1, 0, 2) if isinstance(typed, numpy.ndarray) else typed.transpose(0, 1)
                            model.record(step if form == "transposed" else [typed[:, l] for l in range(self.LAYERS)])
                            self.assertEqual(load_rows(reference.window_load()), load_rows(model.window_load()))
                            self.assertEqual([reference.layer(l) for l in range(self.LAYERS)], [model.layer(l) for l in range(self.LAYERS)])
                            # A step of no token (torch gives its empty tensors strides of 0) is a step that reads no id.
                            empty = typed[:0].transpose(1, 0, 2) if isinstance(typed, numpy.ndarray) else typed[:0].transpose(0, 1)
                            model.record(empty)
                            self.assertEqual(2, model.summary()["steps"])
        if importlib.util.find_spec("torch"):
            with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator="managed") as model:
                model.record(torch.from_numpy(numpy.zeros((self.LAYERS, 0, self.K), numpy.int64)))   # strides (0, 0, 0)
                self.assertEqual(1, model.summary()["steps"])

    def test_ids_whose_typestr_names_no_byte_order_are_read_at_their_width(self):
        """An __array_interface__ may spell its byte order '|' (not applicable): '|i4', '|i8' and '|i2' ids are read as
        int32, int64 and int16 where they lie, as the same ids in this machine's byte order are."""
        rng = random.Random(17)
        ids = [rng.randrange(-1, self.EXPERTS + 1) for _ in range(self.LAYERS * self.TOKENS * self.K)]
        want = self.layer_counts(ids)
        for code, width in (("i", 4), ("q", 8), ("h", 2)):
            values = array.array(code, ids)
            self.assertEqual(width, values.itemsize)
            with self.subTest(typestr=f"|i{width}"), moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator="managed") as model:
                model.record(HostArray(values, (self.LAYERS, self.TOKENS, self.K), typestr=f"|i{width}"))
                self.assertEqual(want, load_rows(model.window_load()))

    def test_a_single_tokens_row_stride_is_not_read(self):
        """A step of one token per layer, as ids[:, None] of a [layers, k] decode step gives it (NumPy's stride of the new
        axis is 0): its row stride says nothing and is neither refused nor read."""
        rows = array.array("i", [1, 5, 7, 7, 0, 3])    # [layers, k]: layer l's one token
        self.assertEqual(self.LAYERS * self.K, len(rows))
        for strides in ((4 * self.K, 0, 4), (4 * self.K, 4, 4), None):
            with self.subTest(strides=strides), moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator="managed") as model:
                model.record(HostArray(rows, (self.LAYERS, 1, self.K), strides=strides))
                self.assertEqual(self.layer_counts(rows, self.K), load_rows(model.window_load()))
                self.assertEqual([1] * self.LAYERS, [model.layer(l)["total_tokens"] for l in range(self.LAYERS)])

    def test_a_valid_token_count_is_clamped_to_the_rows(self):
        """valid_tokens as an int on a host accelerator: any int32, clamped when read, so a negative count records a step
        of no token and a count past the rows every row; beyond int32 it is refused by name."""
        ids = self.steps(self.TOKENS * self.K)[0]
        every_row = self.layer_counts(ids)
        for valid, want in ((-1, [[0] * self.EXPERTS] * self.LAYERS), (-2**31, [[0] * self.EXPERTS] * self.LAYERS),
                            (self.TOKENS + 1, every_row), (2**31 - 1, every_row)):
            with self.subTest(valid_tokens=valid), moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator="managed") as model:
                model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)), valid_tokens=valid)
                self.assertEqual(1, model.summary()["steps"])
                self.assertEqual(want, load_rows(model.window_load()))
        with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator="managed") as model:
            for valid in (-2**31 - 1, 2**31):
                with self.subTest(valid_tokens=valid), self.assertRaisesRegex(ValueError, rf"^valid_tokens = {valid} is out of range"):
                    model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)), valid_tokens=valid)
            self.assertEqual(0, model.summary()["steps"])

    def test_views_are_counted_as_they_are_read_not_by_len(self):
        class Liar(list):
            def __len__(self):
                return 1

        ids = array.array("i", [1] * (2 * self.TOKENS * self.K))
        with moegs.MoeModelStats(1, self.EXPERTS, accelerator="managed") as model:
            views = Liar([HostArray(ids, (self.TOKENS, self.K)), HostArray(ids, (self.TOKENS, self.K), address=ids.buffer_info()[0] + 240)])
            with self.assertRaisesRegex(ValueError, "^ids holds 2 views; this model has 1 layer,"):
                model.record(views)
            self.assertEqual(0, model.summary()["steps"])
        with self.assertRaisesRegex(ValueError, "lone surrogate"):
            moegs.MoeModelStats(1, self.EXPERTS, accelerator="\udc80")

    def test_a_long_argument_is_shown_by_its_start(self):
        """A message echoes an argument cut to 64 characters of its repr, not a megabyte of it."""
        with self.assertRaises(ValueError) as refused:
            moegs.MoeModelStats(1, self.EXPERTS, accelerator="\0" + "x" * (1 << 20))
        self.assertEqual("accelerator = '\\x00" + "x" * 59 + "... holds a NUL character", str(refused.exception))
        # The library's refusal is cut and escaped too: a bidirectional override would reorder the terminal's line.
        with self.assertRaises(moegs.MoeGpuStatsError) as refused:
            moegs.MoeModelStats(1, self.EXPERTS, accelerator="\u202e" + "x" * (1 << 20))
        self.assertIn('accelerator = "\\u202e' + "x" * 63 + '...": must be one of', str(refused.exception))

    @unittest.skipUnless(importlib.util.find_spec("numpy"), "NumPy is not installed for this Python")
    def test_a_bad_value_is_a_value_error_whichever_side_refuses_it(self):
        """A list's infinite loss is refused by the wrapper, an array's by the library: both are ValueErrors, and the
        library's is an InvalidArgumentError (a MoeGpuStatsError of status INVALID_ARGUMENT) that changes nothing. Values of
        the wrong kind name what is taken; a closed model says it is closed, whatever the call (not a ValueError)."""
        import numpy
        ids = numpy.zeros((3, 2, 2), numpy.int32)
        with moegs.MoeModelStats(3, 4, accelerator="managed") as model:
            model.record(ids)
            before = model.layer(1)
            with self.assertRaisesRegex(ValueError, r"load_balance_losses\[1\] = inf"):
                model.record(ids, load_balance_losses=[0.0, float("inf"), 0.0])
            with self.assertRaises(ValueError) as refused:
                model.record(ids, load_balance_losses=numpy.array([0.0, numpy.inf, 0.0], numpy.float32))
            self.assertIsInstance(refused.exception, moegs.InvalidArgumentError)
            self.assertEqual(moegs.INVALID_ARGUMENT, refused.exception.status)
            self.assertIn("load_balance_losses[1] = Infinity", str(refused.exception))
            # It crosses a process pool as it is.
            copied = pickle.loads(pickle.dumps(refused.exception))
            self.assertEqual((moegs.InvalidArgumentError, str(refused.exception), moegs.INVALID_ARGUMENT),
                             (type(copied), str(copied), copied.status))
            self.assertEqual(before, model.layer(1))
            with self.assertRaisesRegex(TypeError, r"^load_balance_losses must be 3 numbers \(a list or tuple, on a host accelerator\) "
                                                   r"or an array or tensor of 3 float32 values \(got 0\.5 of type float\)$"):
                model.record(ids, load_balance_losses=0.5)
            with self.assertRaisesRegex(TypeError, r"^ids are nested Python lists, which the library cannot read where they lie: "
                                                   r"pass numpy.asarray\(ids, numpy.int32\)"):
                model.record(ids.tolist())
            for flat in (ids.ravel().tolist(), list(ids.ravel())):
                # Python's ints, and NumPy's scalars, which have a shape of their own.
                with self.assertRaisesRegex(TypeError, r"^ids are a flat list of 12 numbers, which the library cannot read where they "
                                                       r"lie: pass numpy.asarray\(ids, numpy.int32\).reshape\(layers, tokens, k\)"):
                    model.record(flat)
            with self.assertRaisesRegex(ValueError, r"^ids holds 1 view; this model has 3 layers"):
                model.record([ids[0]])
            with self.assertRaisesRegex(ValueError, r"^load_balance_losses holds 1 value; it must hold 3$"):
                model.record(ids, load_balance_losses=numpy.float32(0.5))
            with self.assertRaises(moegs.MoeGpuStatsError) as closed:
                model.close()
                model.record(ids)
            self.assertNotIsInstance(closed.exception, ValueError)
            with self.assertRaisesRegex(moegs.MoeGpuStatsError, "^invalid handle: this MoeModelStats is closed"):
                model.device_arrays()

    @unittest.skipUnless(importlib.util.find_spec("numpy"), "NumPy is not installed for this Python")
    def test_refusals_name_what_a_model_takes_and_what_the_caller_passed(self):
        """A model's ids are tensors or arrays of int32, int64 or int16 shaped [layers, tokens, k] (or a list of [tokens, k]
        views), never an array.array, which is flat; per-step numbers of the wrong kind are named by the array passed and
        its dtype, not by the Python number an element became; a number given for one layer is named as given."""
        import numpy
        ids = numpy.zeros((2, 3, 2), numpy.int32)
        with moegs.MoeModelStats(2, 4, accelerator="managed") as model:
            for bad in (None, "ids", array.array("i", [0] * 12)):
                with self.subTest(ids=bad), self.assertRaisesRegex(
                        TypeError, r"^ids must be a torch\.Tensor or a NumPy array of int32, int64 or int16 ids shaped \[layers, tokens, k\], "
                                   r"or a list of \[tokens, k\] views of one buffer \(got (NoneType|str|array)\)$"):
                    model.record(bad)
            with self.assertRaisesRegex(TypeError, r"^ids\[1\] must be a torch\.Tensor or a NumPy array of int32, int64 or int16 ids shaped "
                                                   r"\[tokens, k\], a view of the buffer that holds every layer's \(got NoneType\)$"):
                model.record([ids[0], None])
            for bad, message in ((dict(valid_tokens=numpy.array([2.5])), r"^valid_tokens must hold an integer \(got array\(\[2\.5\]\), a float64 array\)$"),
                                 (dict(valid_tokens=numpy.array([True])), r"^valid_tokens must hold an integer \(got array\(\[ True\]\), a bool array\)$"),
                                 (dict(load_balance_losses=numpy.array([1j, 2j])),
                                  r"^load_balance_losses must hold numbers \(got array\(\[0\.\+1\.j, 0\.\+2\.j\]\), a complex128 array\)$")):
                with self.subTest(bad=bad), self.assertRaisesRegex(TypeError, message):
                    model.record(ids, **bad)
            if importlib.util.find_spec("torch"):
                import torch
                with self.assertRaisesRegex(TypeError, r"^valid_tokens must hold an integer \(got tensor\(\[2\.5000\]\), a float32 tensor\)$"):
                    model.record(ids, valid_tokens=torch.tensor([2.5]))
            self.assertEqual(0, model.summary()["steps"])
        with moegs.MoeModelStats(1, 4, accelerator="managed") as model:
            for loss in (float("inf"), numpy.float64("inf")):
                with self.subTest(loss=loss), self.assertRaisesRegex(ValueError, r"^router_z_losses = inf is out of range"):
                    model.record(ids[:1], router_z_losses=loss)
            with self.assertRaisesRegex(ValueError, r"^router_z_losses\[0\] = inf is out of range"):
                model.record(ids[:1], router_z_losses=numpy.array([numpy.inf]))

    @unittest.skipUnless(importlib.util.find_spec("numpy"), "NumPy is not installed for this Python")
    def test_numpy_scalars_and_one_layer_lists_are_read_as_given(self):
        """A NumPy scalar's interface points into a temporary array: the memory must live through the call."""
        import numpy
        ids = numpy.array([[[0, 0], [1, 1], [2, 2]]], numpy.int32)
        for accelerator in ("managed", "cpu"):
            with self.subTest(accelerator=accelerator), moegs.MoeModelStats(1, 4, accelerator=accelerator) as model:
                model.record(ids, valid_tokens=numpy.int32(1), load_balance_losses=numpy.float32(0.5), router_z_losses=numpy.float32(0.25))
                model.record(ids, valid_tokens=2, load_balance_losses=[1.5], router_z_losses=(0.75,))
                self.assertEqual([[4, 2, 0, 0]], load_rows(model.window_load()))
                layer = model.layer(0)
                self.assertEqual((3, 1.0, 0.5), (layer["total_tokens"], layer["average_load_balance_loss"], layer["average_router_z_loss"]))
                with self.assertRaisesRegex(TypeError, r"^expert_ranks\[0\] must be an integer \(got True"):
                    model.summary(numpy.array([True, False, True, False]))
        # Host values of another type are numbers: a count from a NumPy sum (int64), NumPy's default floats (float64).
        class Unlisted(numpy.ndarray):
            def tolist(self):
                raise AssertionError("listed before its size was checked")

        with moegs.MoeModelStats(2, 4, accelerator="managed") as model:
            two_layers = numpy.array([[[0, 0], [1, 1], [2, 2]], [[3, 3], [3, 3], [3, 3]]], numpy.int32)
            model.record(two_layers, valid_tokens=numpy.array([1, 1]).sum(), load_balance_losses=numpy.matrix([0.5, 1.5]),
                         router_z_losses=numpy.array([[0.25], [0.75]]))
            self.assertEqual([[2, 2, 0, 0], [0, 0, 0, 4]], load_rows(model.window_load()))
            self.assertEqual((1.5, 0.75), (model.layer(1)["average_load_balance_loss"], model.layer(1)["average_router_z_loss"]))
            for bad, message in ((dict(valid_tokens=numpy.arange(2)), r"^valid_tokens holds 2 values; it must hold 1$"),
                                 (dict(valid_tokens=numpy.float64(2.0)), r"^valid_tokens must hold an integer \(got 2\.0, a float64 scalar\)$"),
                                 (dict(valid_tokens=numpy.int64(2**31)), r"^valid_tokens = 2147483648 is out of range"),
                                 (dict(load_balance_losses=numpy.zeros(10**6).view(Unlisted)), r"^load_balance_losses holds 1000000 values; it must hold 2$"),
                                 (dict(router_z_losses=numpy.array([0.5, numpy.nan])), r"^router_z_losses\[1\]")):
                with self.subTest(bad=bad), self.assertRaisesRegex((TypeError, ValueError), message):
                    model.record(two_layers, **bad)
            self.assertEqual(1, model.summary()["steps"])
            # So are host values of the element type at any layout: a column of a [layers, 2] float32 array is strided.
            losses = numpy.array([[2.5, 1.25], [3.5, 0.25]], numpy.float32)
            model.record(two_layers, valid_tokens=numpy.int32(1), load_balance_losses=losses[:, 0], router_z_losses=losses[:, 1])
            self.assertEqual((2.5, 0.5), (model.layer(1)["average_load_balance_loss"], model.layer(1)["average_router_z_loss"]))
            # Ids at an odd offset are refused with the copy that realigns them: they are read where they lie.
            packed_ids = numpy.zeros(64, numpy.uint8)
            with moegs.MoeStats(4, "managed") as stats:
                for record, unaligned in ((stats.record, packed_ids[1:33].view(numpy.int32).reshape(4, 2)),
                                          (model.record, packed_ids[1:25].view(numpy.int16).reshape(2, 3, 2))):
                    with self.subTest(ids=unaligned.dtype), self.assertRaisesRegex(
                            ValueError, r"^ids start at 0x[0-9a-f]+, not at a multiple of \d bytes .*; copy them: numpy\.array\(ids\)$"):
                        record(unaligned)
            self.assertEqual(2, model.summary()["steps"])
            # And at any address: views at an odd offset of a byte buffer are unaligned, which the C API refuses to read.
            packed = numpy.zeros(13, numpy.uint8)
            packed[1:9].view(numpy.float32)[:] = [4.5, 5.5]
            packed[9:13].view(numpy.int32)[:] = 1
            model.record(two_layers, valid_tokens=packed[9:13].view(numpy.int32), load_balance_losses=packed[1:9].view(numpy.float32))
            self.assertEqual((2.5, 3.5), (model.layer(0)["average_load_balance_loss"], model.layer(1)["average_load_balance_loss"]))
            self.assertEqual([[6, 2, 0, 0], [0, 0, 0, 8]], load_rows(model.window_load()))
        if importlib.util.find_spec("torch"):
            import torch
            with moegs.MoeModelStats(2, 4, accelerator="managed") as model:
                columns = torch.tensor([[0.5, 0.25], [1.5, 0.75]])
                model.record(torch.tensor(two_layers), load_balance_losses=columns[:, 0], router_z_losses=columns[:, 1])
                self.assertEqual((1.5, 0.75), (model.layer(1)["average_load_balance_loss"], model.layer(1)["average_router_z_loss"]))
            with moegs.MoeModelStats(1, 4, accelerator="managed") as model:
                model.record(torch.tensor(ids), valid_tokens=torch.tensor(2), load_balance_losses=torch.tensor([0.5], dtype=torch.float64))
                self.assertEqual([[2, 2, 0, 0]], load_rows(model.window_load()))
                # A tensor on another device is refused naming its device, whatever its dtype: never copied to the host.
                for dtype in (torch.float64, torch.float32):
                    with self.subTest(dtype=dtype), self.assertRaisesRegex(ValueError, r"^load_balance_losses are on meta; "):
                        model.record(torch.tensor(ids), load_balance_losses=torch.empty(1, dtype=dtype, device="meta"))
                self.assertEqual(1, model.summary()["steps"])
        if importlib.util.find_spec("torch"):
            import torch
            with moegs.MoeModelStats(1, 4, accelerator="managed") as model, \
                    self.assertRaisesRegex(TypeError, r"^expert_ranks\[0\] must be an integer \(got tensor\(0\.\)"):
                model.summary(torch.tensor([0.0, 0.0, 1.0, 1.0]))

    def test_a_per_step_argument_in_other_memory_than_the_ids_is_named_by_its_memory_first(self):
        """With CUDA ids, a host count or loss is refused for where it lies, whatever its type (a conversion would not
        make it readable); host ids refuse a CUDA tensor. No GPU is needed: the check precedes any read."""
        host = [("int32", 1, array.array("i", [2]), "valid_tokens"), ("int32", 1, array.array("q", [2]), "valid_tokens"),
                ("int32", 1, HostTensor(array.array("q", [2]), (), dtype="torch.int64"), "valid_tokens"),
                ("float32", 2, HostTensor(array.array("d", [0.5, 1.5]), (2,), dtype="torch.float64"), "load_balance_losses")]
        if importlib.util.find_spec("numpy"):
            import numpy
            host += [("int32", 1, numpy.array([1, 1]).sum(), "valid_tokens"), ("float32", 2, numpy.zeros(2), "router_z_losses")]
        with moegs.MoeModelStats(2, 4, accelerator="managed") as model:
            for element, count, value, name in host:
                with self.subTest(value=value), self.assertRaisesRegex(
                        ValueError, rf"^{name} are in host memory, but the ids are a CUDA tensor: pass an {element} CUDA tensor of {count}$"):
                    model._per_step(name, value, element, count, is_cuda=True)
            with self.assertRaisesRegex(ValueError, r"^valid_tokens are on meta; "):
                model._per_step("valid_tokens", HostTensor(array.array("q", [2]), (), dtype="torch.int64", kind="meta"), "int32", 1, True)
            with self.assertRaisesRegex(ValueError, r"^load_balance_losses are a CUDA tensor, but the ids are not: pass both in one memory$"):
                model._per_step("load_balance_losses", HostTensor(array.array("f", [0.5, 1.5]), (2,), dtype="torch.float32", kind="cuda"),
                                "float32", 2, False)

    @unittest.skipUnless(importlib.util.find_spec("numpy"), "NumPy is not installed for this Python")
    def test_numpy_and_torch_booleans_are_not_numbers(self):
        """As Python's True is refused for a loss, a latency or a decay (and NumPy's and torch's for an integer), so are theirs."""
        import numpy
        flags = [numpy.bool_(True), numpy.array(False)]
        if importlib.util.find_spec("torch"):
            import torch
            flags.append(torch.tensor(True))
        ids = array.array("i", [0, 1, 2, 3])
        with moegs.MoeStats(4, "managed") as stats, moegs.MoeModelStats(1, 4, accelerator="managed") as model:
            for flag in flags:
                with self.subTest(flag=flag):
                    with self.assertRaisesRegex(TypeError, r"^load_balance_loss must be a number \(got "):
                        stats.record(ids, tokens=2, top_k=2, load_balance_loss=flag)
                    with self.assertRaisesRegex(TypeError, r"^seconds must be a number \(got "):
                        stats.record_latency(flag)
                    with self.assertRaisesRegex(TypeError, r"^router_z_losses\[0\] must be a number \(got "):
                        model.record(numpy.array([[[0], [1]]], numpy.int32), router_z_losses=[flag])
                    with self.assertRaisesRegex(TypeError, r"^utilization_decay must be a number \(got "):
                        moegs.MoeModelStats(1, 4, accelerator="managed", utilization_decay=flag)
            self.assertEqual((0, 0), (stats.snapshot()["total_routings"], stats.snapshot()["latency_measurements"]))
            self.assertEqual(0, model.summary()["steps"])

    def test_the_model_structs_are_the_librarys(self):
        lib = moegs._load()
        self.assertEqual(ctypes.sizeof(moegs.ModelBalance), lib.moegs_model_balance_size())
        self.assertEqual(ctypes.sizeof(moegs.LayerBalance), lib.moegs_layer_balance_size())


class DeviceArrayTests(unittest.TestCase):
    """MoeModelStats.device_arrays on the CPU accelerator: the interface's pointer, read here through ctypes (NumPy may be
    absent), is the model's window load and token counts with the last step folded in; it stays valid while referenced,
    even past close(); stale after a record or reset; refused where there is no address to give."""

    LAYERS, EXPERTS, TOKENS, K, WINDOW, STEPS = 3, 8, 30, 2, 4, 7

    def record_steps(self, model, steps=STEPS, seed=5):
        """Records `steps` random steps; yields after each (the step's fold still pending) with the bincounts done here."""
        rng = random.Random(seed)
        history, since_start = [], [[0] * self.EXPERTS for _ in range(self.LAYERS)]
        for _ in range(steps):
            ids = array.array("i", (rng.randrange(-1, self.EXPERTS + 1) for _ in range(self.LAYERS * self.TOKENS * self.K)))
            model.record(HostArray(ids, (self.LAYERS, self.TOKENS, self.K)))
            history.append(ids)
            window = [[0] * self.EXPERTS for _ in range(self.LAYERS)]
            for age, step in enumerate(reversed(history)):
                for i, expert in enumerate(step):
                    if 0 <= expert < self.EXPERTS:
                        layer = i // (self.TOKENS * self.K)
                        if age == 0:
                            since_start[layer][expert] += 1
                        if age < self.WINDOW:
                            window[layer][expert] += 1
            yield window, [row[:] for row in since_start]

    def read(self, interface):
        """The (layers, experts) uint64 values at the interface's address, through ctypes."""
        layers, experts = interface["shape"]
        values = (ctypes.c_uint64 * (layers * experts)).from_address(interface["data"][0])
        return [list(values[l * experts:(l + 1) * experts]) for l in range(layers)]

    def test_the_interface_is_the_models_counts_with_the_last_step_folded(self):
        u8 = ("<" if sys.byteorder == "little" else ">") + "u8"
        with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator="cpu") as model:
            first = model.device_arrays()
            for step, (window, since_start) in enumerate(self.record_steps(model)):
                arrays = model.device_arrays()  # the first call after the record: it must fold the step
                load = arrays.window_load.__array_interface__
                self.assertEqual({"version": 3, "shape": (self.LAYERS, self.EXPERTS), "typestr": u8,
                                  "data": (first.window_load.ptr, False), "strides": None}, load)
                self.assertEqual(window, self.read(load), f"window load after step {step}")
                self.assertEqual(since_start, self.read(arrays.token_counts.__array_interface__), f"token counts after step {step}")
                self.assertEqual((step + 1, min(step + 1, self.WINDOW), "cpu"), (arrays.steps, arrays.window_steps, arrays.device))
                self.assertEqual(first.token_counts.ptr, arrays.token_counts.ptr)
                self.assertFalse(hasattr(arrays.window_load, "__cuda_array_interface__"))
            self.assertEqual(self.read(load), load_rows(model.window_load()))
            counts = self.read(arrays.token_counts.__array_interface__)
            self.assertEqual([model.layer(l)["routed_slots"] for l in range(self.LAYERS)], [sum(row) for row in counts])
            signed = model.device_arrays(dtype="int64").window_load.__array_interface__
            self.assertEqual((u8[0] + "i8", load["data"]), (signed["typestr"], signed["data"]))

    def test_arrays_from_before_a_record_or_reset_refuse_their_interface(self):
        with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator="cpu") as model:
            steps = self.record_steps(model, steps=2)
            next(steps)
            arrays = model.device_arrays()
            next(steps)
            with self.assertRaisesRegex(RuntimeError, "exported before the model's last record\\(\\) or reset\\(\\)"):
                arrays.window_load.__array_interface__
            arrays = model.device_arrays()
            model.reset()
            with self.assertRaisesRegex(RuntimeError, "call device_arrays\\(\\) again"):
                arrays.token_counts.__array_interface__
            zeros = [[0] * self.EXPERTS for _ in range(self.LAYERS)]
            self.assertEqual(zeros, self.read(model.device_arrays().window_load.__array_interface__))

    def test_close_frees_the_memory_with_the_last_array(self):
        model = moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator="cpu")
        window, _ = next(self.record_steps(model, steps=1))
        arrays = model.device_arrays()
        handle, lib = model._handle.value, model._lib
        model.close()
        with self.assertRaises(moegs.MoeGpuStatsError) as closed:
            model.device_arrays()
        self.assertEqual(moegs.INVALID_HANDLE, closed.exception.status)
        where = ctypes.c_char_p()
        self.assertEqual(moegs.OK, lib.moegs_model_accelerator(handle, ctypes.byref(where)), "closed with an array alive: freed too early")
        self.assertEqual(window, self.read(arrays.window_load.__array_interface__))
        del arrays
        gc.collect()
        self.assertEqual(moegs.INVALID_HANDLE, lib.moegs_model_accelerator(handle, ctypes.byref(where)), "the last array is gone: not freed")

    class Exporting:
        """The library, but for an export that runs `during` (another thread's call) while it is in the library."""

        def __init__(self, lib, during):
            self._lib, self._during = lib, during

        def __getattr__(self, name):
            return getattr(self._lib, name)

        def moegs_model_device_arrays(self, *args):
            status = self._lib.moegs_model_device_arrays(*args)
            self._during()
            return status

    def during_the_export(self, model, call):
        """device_arrays() with `call` started on another thread while the export is in the library; the arrays once
        both are done."""
        other = threading.Thread(target=call)
        model._library = self.Exporting(model._lib, lambda: (other.start(), other.join(timeout=0.5)))
        arrays = model.device_arrays()
        other.join(timeout=PATIENCE)
        self.assertFalse(other.is_alive())
        return arrays

    def test_a_close_during_the_export_leaves_the_memory_to_the_arrays(self):
        """A close() on another thread while device_arrays() is in the library waits for the export, then leaves the
        memory to the arrays: they read the model's counts, never freed memory."""
        model = moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator="cpu")
        window, _ = next(self.record_steps(model, steps=1))
        arrays = self.during_the_export(model, model.close)
        self.assertNotEqual(0, model._orphan, "closed during the export: the model was destroyed under its arrays")
        self.assertEqual(window, self.read(arrays.window_load.__array_interface__))

    def test_a_reset_during_the_export_makes_the_arrays_stale(self):
        """A reset() on another thread while device_arrays() is in the library comes after the export, so the arrays
        know themselves stale: their interface raises instead of giving the reset's zeros as the exported steps'."""
        with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator="cpu") as model:
            next(self.record_steps(model, steps=1))
            arrays = self.during_the_export(model, model.reset)
            self.assertEqual(1, arrays.steps)
            with self.assertRaisesRegex(RuntimeError, "call device_arrays\\(\\) again"):
                arrays.window_load.__array_interface__

    def test_models_without_an_address_and_bad_arguments_are_refused(self):
        with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator="managed") as model:
            with self.assertRaisesRegex(ValueError, "this model runs on managed: device_arrays\\(\\) needs a model on 'cuda' or 'cpu'"):
                model.device_arrays()
        with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator="cpu") as model:
            with self.assertRaisesRegex(ValueError, "stream = 5: a stream orders the export only on cuda"):
                model.device_arrays(stream=5)
            with self.assertRaisesRegex(ValueError, "dtype = 'float32': must be 'uint64'"):
                model.device_arrays(dtype="float32")

    def test_the_cuda_interface_names_the_stream_to_read_on(self):
        """The __cuda_array_interface__ a CUDA model's arrays give (built here over a stand-in: no GPU in these tests)."""
        model = types.SimpleNamespace(layers=2, experts=4, device="cuda", _generation=0, _exports=0, _release_export=lambda: None,
                                      _require_process=lambda: None)
        for synchronized, raw, stream in ((False, 0x1234, 0x1234), (False, 0, 1), (True, 0x1234, None)):
            array_ = moegs.DeviceArray(model, "window_load", 0x7000, "<u8", moegs._interface_stream(synchronized, raw))
            self.assertEqual({"version": 3, "shape": (2, 4), "typestr": "<u8", "data": (0x7000, False), "strides": None, "stream": stream},
                             array_.__cuda_array_interface__)
            self.assertFalse(hasattr(array_, "__array_interface__"))

    @unittest.skipUnless(importlib.util.find_spec("numpy"), "NumPy is not installed for this Python")
    def test_numpy_views_the_models_memory_without_a_copy(self):
        import numpy
        with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, window=self.WINDOW, accelerator="cpu") as model:
            for window, _ in self.record_steps(model, steps=3):
                pass
            arrays = model.device_arrays()
            load = numpy.asarray(arrays.window_load)
            self.assertEqual((numpy.uint64, (self.LAYERS, self.EXPERTS)), (load.dtype.type, load.shape))
            self.assertEqual(arrays.window_load.ptr, load.__array_interface__["data"][0])
            self.assertEqual(window, load.tolist())
            load[1, 2] += 1000  # a write through the view is a write to the model's state
            self.assertEqual(window[1][2] + 1000, int(model.window_load()[1][2]))
            self.assertEqual(numpy.int64, numpy.asarray(model.device_arrays(dtype="int64").token_counts).dtype.type)


def torch_python():
    """A Python that imports torch (with gloo) and NumPy: this one, python3 on PATH or Debian's /usr/bin/python3; else None."""
    candidates = [sys.executable, shutil.which("python3"), "/usr/bin/python3"]
    probe = "import numpy, torch.distributed as d; assert d.is_available() and d.is_gloo_available()"
    for python in dict.fromkeys(c for c in candidates if c and os.path.exists(c)):
        if subprocess.run([python, "-c", probe], capture_output=True, timeout=300).returncode == 0:
            return python
    return None


class AcceleratorVariableTests(unittest.TestCase):
    """"auto" follows MOEGS_ACCELERATOR where it is set, as RoutingStats.Create and the CLI do; a named accelerator does not.
    Each case runs in a process of its own: the library reads the variable from the environment it started with."""

    PROBE = ("import sys; sys.path.insert(0, sys.argv[1]); import moegs\n"
             "try:\n"
             "    with moegs.MoeStats(int(sys.argv[3]), sys.argv[2]) as s, moegs.MoeModelStats(2, 4, accelerator=sys.argv[2]) as m:\n"
             "        print(s.device, m.device)\n"
             "except moegs.MoeGpuStatsError as e:\n"
             "    print('error', e)\n")

    def probe(self, variable, accelerator="auto", experts=4, script=None):
        environment = {k: v for k, v in os.environ.items() if k != "MOEGS_ACCELERATOR"}
        environment["MOEGS_LIB"] = os.path.abspath(moegs._load()._name)
        if variable is not None:
            environment["MOEGS_ACCELERATOR"] = variable
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        run = subprocess.run([sys.executable, "-c", script or self.PROBE, package, accelerator, str(experts)], capture_output=True, text=True, env=environment, timeout=300)
        self.assertEqual(0, run.returncode, run.stderr)
        return run.stdout.strip()

    def test_auto_takes_the_engine_the_variable_names(self):
        self.assertEqual("cpu cpu", self.probe("cpu"))
        self.assertEqual("cpu cpu", self.probe(" CPU "))
        self.assertEqual("managed managed", self.probe("managed"))

    def test_a_named_accelerator_ignores_the_variable(self):
        self.assertEqual("managed managed", self.probe("cpu", accelerator="managed"))
        self.assertEqual("cpu cpu", self.probe("managed", accelerator="cpu"))

    def test_auto_sent_to_managed_takes_the_managed_engines_experts(self):
        # As RoutingStats.Create does under the same variable: the device engines' limit is not the one that applies.
        self.assertEqual("managed managed", self.probe("managed", experts=5000))
        self.assertEqual("managed managed", self.probe(" Managed ", experts=moegs.MANAGED_EXPERTS_MAX))
        # Past it, the library's message says why the managed engine's limit applies (the wrapper lets "auto" pass up to it).
        create = ("import ctypes, sys; sys.path.insert(0, sys.argv[1]); import moegs; lib = moegs._load(); h = ctypes.c_int64(0)\n"
                  "print(lib.moegs_create(b'auto', moegs.MANAGED_EXPERTS_MAX + 1, 0, ctypes.byref(h)), lib.moegs_last_error().decode())\n")
        message = self.probe("managed", script=create)
        self.assertRegex(message, r"^%d experts = 1048577: must lie in \[1, 1048576\] on auto \(MOEGS_ACCELERATOR = managed, which \"auto\" follows\) "
                                  r"\(the library's limit\)\.$" % moegs.INVALID_ARGUMENT)
        # Where auto may pick a device engine, its limit stays.
        self.assertRegex(self.probe("cpu", experts=5000), r"^error invalid argument: experts = 5000: must lie in \[1, 4096\] on auto "
                                                          r"\(MOEGS_ACCELERATOR = cpu, which \"auto\" follows\) \(the device engine's limit")
        self.assertRegex(self.probe(None, experts=5000), r"^error invalid argument: experts = 5000: must lie in \[1, 4096\] on auto ")

    def test_an_unknown_value_is_refused_naming_the_variable(self):
        message = self.probe("tpu\nx")
        self.assertRegex(message, r'^error invalid argument: MOEGS_ACCELERATOR = "tpu\\nx", which "auto" follows: must be one of '
                                  r'cuda, opencl, cpu, managed, or unset for the best accelerator present\.$')

    def test_an_unknown_value_is_named_before_a_limit_that_depends_on_it(self):
        # The experts' limit depends on the engine the variable names: with no engine named, that comes first.
        self.assertRegex(self.probe("tpu", experts=5000), r'^error invalid argument: MOEGS_ACCELERATOR = "tpu", which "auto" follows')
        model = ("import ctypes, sys; sys.path.insert(0, sys.argv[1]); import moegs; lib = moegs._load(); h = ctypes.c_int64(0)\n"
                 "print(lib.moegs_model_create(b'auto', 2, 5000, 0, 0, ctypes.c_float(-1.0), ctypes.byref(h)), lib.moegs_last_error().decode())\n")
        self.assertRegex(self.probe("tpu", script=model), r'^%d MOEGS_ACCELERATOR = "tpu", which "auto" follows' % moegs.INVALID_ARGUMENT)

    def test_an_empty_variable_is_unset(self):
        self.assertEqual(self.probe(None), self.probe(""))

    def test_auto_never_takes_opencl_unasked(self):
        """Where OpenCL is the best device present (no CUDA), "auto" takes managed for a MoeStats as for a
        MoeModelStats: the wrapper passes no cl_mem, so an aggregator on OpenCL could record nothing from Python.
        MOEGS_ACCELERATOR=opencl still takes it."""
        if self.probe(None, accelerator="opencl").startswith("error"):
            self.skipTest("No OpenCL device here (PoCL 5 registered through OCL_ICD_VENDORS is one)")
        chosen = self.probe(None)
        if chosen.startswith("cuda"):
            self.skipTest("CUDA is present, which \"auto\" takes first")
        self.assertEqual("managed managed", chosen)
        self.assertEqual("opencl opencl", self.probe("opencl"))
        # The library reads "auto" without case or surrounding blanks, and a blank variable as unset.
        self.assertEqual("managed managed", self.probe(None, accelerator=" Auto "))
        self.assertEqual("managed managed", self.probe("  "))


class ReadmeExampleTests(unittest.TestCase):
    """README's Python examples that say what they print, run as a reader runs them: one after another in one session,
    from the checkout's root (they put python/ on sys.path themselves)."""

    def test_each_example_prints_what_the_readme_says(self):
        root = pathlib.Path(__file__).resolve().parents[2]
        examples = re.findall(r"```python\n((?:(?!```).)*)```\n\nprints ((?:`[^`]*`(?: and )?)+)", (root / "README.md").read_text(encoding="utf-8"), re.S)
        self.assertGreaterEqual(len(examples), 3, "README's Python examples that say what they print")
        if not importlib.util.find_spec("numpy"):
            # Those that import NumPy are left to a Python that has it (.ci/run gives Debian's one).
            examples = [(code, claim) for code, claim in examples if "numpy" not in code]
            self.assertGreaterEqual(len(examples), 2, "README's Python examples without NumPy that say what they print")
        marker = "--- the next example ---"
        script = f"\nprint({marker!r})\n".join(code for code, _ in examples)
        environment = dict(os.environ, MOEGS_LIB=os.path.abspath(moegs._load()._name))
        run = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, env=environment, timeout=300)
        self.assertEqual(0, run.returncode, run.stderr)
        printed = [part.strip().splitlines() for part in run.stdout.split(marker)]
        for (code, claim), lines in zip(examples, printed, strict=True):
            self.assertEqual(re.findall(r"`([^`]*)`", claim), lines, code)


class AllReduceExampleTests(unittest.TestCase):
    """python/examples/allreduce_window_load.py: two processes, gloo, each model's window load all-reduced from its own memory."""

    def run_example(self, *arguments):
        """The example run with `arguments` by a Python that imports torch (the test skips where none does), on this library."""
        python = torch_python()
        if python is None:
            self.skipTest("no Python here imports torch with gloo and NumPy (tried this one, python3 on PATH and /usr/bin/python3); "
                          ".ci/run installs Debian's python3-torch and python3-numpy")
        example = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "allreduce_window_load.py")
        library = os.path.abspath(moegs._load()._name)
        return subprocess.run([python, example, *arguments], capture_output=True, text=True, timeout=600, env={**os.environ, "MOEGS_LIB": library})

    def test_two_ranks_sum_their_window_loads_and_keep_their_state(self):
        run = self.run_example()
        self.assertEqual(0, run.returncode, run.stdout + run.stderr)
        self.assertIn("EQUALS the sum of the ranks' copies; every model's own state unchanged", run.stdout)
        self.assertEqual(3, len(re.findall(r"^  layer \d+: \[(?:\d+, ){7}\d+\]$", run.stdout, re.MULTILINE)), run.stdout)

    def test_one_rank_checks_the_export_alone(self):
        """--ranks 1, as the device check runs it on its one GPU: the reduced copy equals the model's own window load."""
        run = self.run_example("--ranks", "1")
        self.assertEqual(0, run.returncode, run.stdout + run.stderr)
        self.assertIn("allreduce_window_load: 1 rank on cpu (gloo)", run.stdout)
        self.assertIn("EQUALS the sum of the ranks' copies; every model's own state unchanged", run.stdout)
        refused = self.run_example("--ranks", "0")
        self.assertEqual(2, refused.returncode)
        self.assertIn("--ranks is 0; give 1 or more", refused.stderr)


class InstallTests(unittest.TestCase):
    """`pip install ./python` into a fresh virtual environment gives an `import moegs` that finds the library."""

    def test_pip_install_into_a_fresh_venv(self):
        import subprocess
        import tempfile
        checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with tempfile.TemporaryDirectory() as folder:
            venv = os.path.join(folder, "venv")
            made = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True, text=True)
            if made.returncode != 0:
                self.skipTest(f"python -m venv failed here: {made.stderr.strip()[:200]}")
            python = os.path.join(venv, "bin", "python")
            # No package index: the in-tree backend (python/_build) needs nothing installed.
            install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-index",
                                      os.path.join(checkout, "python")], capture_output=True, text=True)
            self.assertEqual(0, install.returncode, install.stdout + install.stderr)
            environment = {k: v for k, v in os.environ.items() if k not in ("MOEGS_LIB", "PYTHONPATH")}
            script = ("import array, moegs\n"
                      "with moegs.MoeStats(experts=4, accelerator='managed') as s:\n"
                      "    s.record(array.array('i', [0, 1, 2, 3, 0, 2, -1, -1]), top_k=2)\n"
                      "    print(s.snapshot()['total_tokens'], s.expert_counts(), moegs.__file__.startswith(%r))\n" % venv)
            run = subprocess.run([python, "-c", script], capture_output=True, text=True, cwd=folder, env=environment)
            self.assertEqual(0, run.returncode, run.stderr)
            self.assertEqual("3 [2, 1, 2, 1] True", run.stdout.strip())


def prometheus_samples(registry):
    """generate_latest(registry) parsed back as a scraper parses it: ({family: (type, help)}, {(sample name, sorted
    labels): value}); counters' families are named without _total, as prometheus_client's parser names them."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    families, samples = {}, {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        families[family.name] = (family.type, family.documentation)
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            if key in samples:
                raise AssertionError(f"sample {key} served twice")
            samples[key] = sample.value
    return families, samples


def collector_registry(model, **options):
    from prometheus_client import CollectorRegistry
    registry = CollectorRegistry()
    registry.register(moegs.ModelMetricsCollector(model, **options))
    return registry


def layer_values(samples, name, layers):
    """The values of a per-layer series, one per layer in order."""
    return [samples[(f"moegpustats_moegs_{name}", (("layer", str(l)),))] for l in range(layers)]


@unittest.skipUnless(importlib.util.find_spec("prometheus_client"), "prometheus_client is not installed for this Python "
                     "(pip install prometheus-client; Debian: apt install python3-prometheus-client)")
@unittest.skipUnless(importlib.util.find_spec("numpy"), "NumPy is not installed for this Python: the expected values are its bincounts")
class ModelMetricsTests(unittest.TestCase):
    """ModelMetricsCollector: every series against NumPy's count of the recorded ids, parsed back from generate_latest();
    a reset; a scrape racing records on another thread. (NativeApiTests.ThePythonCollectorServesTheDotNetEndpointsSamples
    compares its exposition with the .NET endpoint's, sample for sample.)"""

    LAYERS, EXPERTS, K, WINDOW, CAPACITY, STEPS = 3, 8, 2, 4, 5, 7

    def plan(self, seed, steps):
        """`steps` steps of [layers, tokens, k] int32 ids (tokens 5 to 14; ids in [-1, experts], so -1 empty slots and
        `experts` invalid ids, and few enough slots per expert that loads tie) with per-layer losses."""
        import numpy
        rng = numpy.random.default_rng(seed)
        plan = []
        for _ in range(steps):
            tokens = int(rng.integers(5, 15))
            ids = rng.integers(-1, self.EXPERTS + 1, size=(self.LAYERS, tokens, self.K)).astype(numpy.int32)
            losses = numpy.round(rng.random(self.LAYERS) * 2, 3).astype(numpy.float32)
            z_losses = numpy.round(rng.random(self.LAYERS) / 10, 4).astype(numpy.float32)
            plan.append((ids, losses, z_losses))
        return plan

    def expected(self, plan, top_experts):
        """Every sample the collector serves for `plan`, computed here: {(name, labels): value}."""
        import numpy
        E, W = self.EXPERTS, self.WINDOW

        def bincounts(steps):
            counts = numpy.zeros((self.LAYERS, E), dtype=numpy.int64)
            for ids, _, _ in steps:
                for l in range(self.LAYERS):
                    row = ids[l].ravel()
                    counts[l] += numpy.bincount(row[(row >= 0) & (row < E)], minlength=E)
            return counts

        counts, window = bincounts(plan), bincounts(plan[-W:])
        dropped = sum((numpy.maximum(bincounts([step]) - self.CAPACITY, 0) for step in plan), numpy.zeros((self.LAYERS, E), numpy.int64)).sum(1)
        invalid = [sum(int(((ids[l] < -1) | (ids[l] >= E)).sum()) for ids, _, _ in plan) for l in range(self.LAYERS)]
        losses = [numpy.mean([float(lb[l]) for _, lb, _ in plan]) if plan else 0.0 for l in range(self.LAYERS)]
        z_losses = [numpy.mean([float(z[l]) for _, _, z in plan]) if plan else 0.0 for l in range(self.LAYERS)]
        mean, peak = window.mean(1), window.max(1)
        balancedness = mean / peak
        samples = {("moegpustats_moegs_model_steps_total", ()): len(plan),
                   ("moegpustats_moegs_model_balancedness_min", ()): balancedness.min(),
                   ("moegpustats_moegs_model_balancedness_p10", ()): numpy.percentile(balancedness, 10),
                   ("moegpustats_moegs_model_balancedness_median", ()): numpy.median(balancedness),
                   ("moegpustats_moegs_model_balancedness_mean", ()): balancedness.mean(),
                   ("moegpustats_moegs_model_balancedness_max", ()): balancedness.max(),
                   ("moegpustats_moegs_model_balancedness_token_weighted", ()): mean.sum() / peak.sum(),
                   ("moegpustats_moegs_model_worst_layer", ()): int(numpy.argmin(balancedness)),
                   ("moegpustats_moegs_model_best_layer", ()): int(numpy.argmax(balancedness)),
                   ("moegpustats_moegs_model_window_steps", ()): min(len(plan), W),
                   ("moegpustats_moegs_model_window_mean_expert_load", ()): window.mean()}
        per_layer = {"layer_slots_total": counts.sum(1), "layer_balancedness": balancedness, "layer_max_mean_ratio": peak / mean,
                     "layer_cv": window.std(1) / mean, "layer_dead_experts": (window == 0).sum(1),
                     # Gini from its definition, the mean absolute difference over every ordered pair over twice the mean.
                     "layer_gini": numpy.abs(window[:, :, None] - window[:, None, :]).sum((1, 2)) / (2 * E * E * mean),
                     "layer_top10_share": numpy.sort(window, 1)[:, E - -(-E // 10):].sum(1) / window.sum(1),
                     "layer_tokens_dropped_total": [0] * self.LAYERS, "layer_slots_dropped_total": dropped,
                     "layer_expert_ids_invalid_total": invalid, "layer_loss_load_balance": losses, "layer_loss_router_z": z_losses}
        for name, values in per_layer.items():
            for l in range(self.LAYERS):
                samples[(f"moegpustats_moegs_{name}", (("layer", str(l)),))] = values[l]
        for l in range(self.LAYERS):
            # Ascending by (load, id): the coldest first, ties to the lower id; reversed, the hottest, ties to the higher id.
            order = numpy.lexsort((numpy.arange(E), window[l]))
            for position in range(top_experts):
                labels = (("layer", str(l)), ("position", str(position + 1)))
                for name, expert in (("hot", order[E - 1 - position]), ("cold", order[position])):
                    samples[(f"moegpustats_moegs_layer_{name}_expert", labels)] = int(expert)
                    samples[(f"moegpustats_moegs_layer_{name}_expert_load", labels)] = int(window[l, expert])
            for e in range(E):
                labels = (("expert", str(e)), ("layer", str(l)))
                samples[("moegpustats_moegs_expert_tokens_total", labels)] = int(counts[l, e])
                samples[("moegpustats_moegs_expert_window_load", labels)] = int(window[l, e])
        return samples

    def assertSamples(self, expected, served, message=""):
        self.assertEqual(sorted(expected), sorted(served), message)
        for key, value in expected.items():
            if value != value:
                self.assertNotEqual(served[key], served[key], f"{message} {key}: NaN expected")
            else:
                # Balance figures are doubles the library computes in its own order; losses float32 means.
                self.assertAlmostEqual(float(value), served[key], delta=1e-6 * max(1.0, abs(float(value))), msg=f"{message} {key}")

    def record(self, model, plan):
        for ids, losses, z_losses in plan:
            model.record(ids, load_balance_losses=[float(v) for v in losses], router_z_losses=[float(v) for v in z_losses])

    def new_model(self, accelerator="managed"):
        return moegs.MoeModelStats(self.LAYERS, self.EXPERTS, expert_capacity=self.CAPACITY, window=self.WINDOW, accelerator=accelerator)

    def test_float32_statistics_are_served_as_their_shortest_decimal(self):
        """As the .NET exporters serve them: a float32 loss of 0.1 is 0.1, not 0.10000000149011612."""
        import numpy
        for value in (0.1, 5.6250005, 1e-45, 3.4028235e38, -2.5, 0.0):
            with self.subTest(value=value):
                widened = float(numpy.float32(value))
                served = moegs._float32_decimal(widened)
                self.assertEqual(numpy.float32(served), numpy.float32(value))
                self.assertEqual(repr(served), repr(float(str(numpy.float32(value)))))
        with moegs.MoeModelStats(1, 4, accelerator="managed") as model:
            model.record(numpy.zeros((1, 2, 2), numpy.int32), load_balance_losses=[0.1], router_z_losses=[0.3])
            _, samples = prometheus_samples(collector_registry(model))
            self.assertEqual([0.1], layer_values(samples, "layer_loss_load_balance", 1))
            self.assertEqual([0.3], layer_values(samples, "layer_loss_router_z", 1))

    def test_ep_series_are_numpys_balance_over_ranks_of_experts_in_order(self):
        """ep_size: the window's token-weighted and smallest balancedness over ranks holding the experts in order, as
        vLLM logs them (expert_load.reshape(layers, ranks, -1).sum(-1)); one that does not divide the experts is refused."""
        import numpy
        plan = self.plan(6, self.STEPS)
        with self.new_model() as model:
            self.record(model, plan)
            _, served = prometheus_samples(collector_registry(model, top_experts=0, ep_size=4))
            ranks = numpy.asarray(model.window_load(), dtype=numpy.float64).reshape(self.LAYERS, 4, -1).sum(-1)
            self.assertAlmostEqual(ranks.mean(1).sum() / ranks.max(1).sum(),
                                   served[("moegpustats_moegs_model_ep_balancedness_token_weighted", ())], places=12)
            self.assertAlmostEqual((ranks.mean(1) / ranks.max(1)).min(), served[("moegpustats_moegs_model_ep_balancedness_min", ())], places=12)
            self.assertEqual(moegs.ModelMetricsCollector.series_count(self.LAYERS, self.EXPERTS, 0, False, ep_series=True), len(served))
            with self.assertRaisesRegex(ValueError, "ep_size = 3: 8 experts do not split evenly over 3 ranks"):
                moegs.ModelMetricsCollector(model, ep_size=3)

    def test_ep_series_take_a_layer_without_load_as_balanced(self):
        """A layer without a slot in the window is balanced over ranks (1, as a layer's own balancedness is without load):
        the min is the loaded layers' smallest, and the token-weighted figure sums the loaded layers alone; a window with no
        load at all serves 1 for both."""
        import numpy
        names = ("moegpustats_moegs_model_ep_balancedness_token_weighted", "moegpustats_moegs_model_ep_balancedness_min")
        with self.new_model() as model:
            _, served = prometheus_samples(collector_registry(model, top_experts=0, ep_size=2))
            self.assertEqual((1.0, 1.0), tuple(served[(name, ())] for name in names))
            # Layer 0 all padding; layers 1 and 2 load the ranks (experts 0-3 and 4-7) 6:2 and 3:5 slots.
            ids = numpy.full((self.LAYERS, 4, self.K), -1, numpy.int32)
            ids[1] = [[0, 1], [2, 3], [1, 2], [4, 5]]
            ids[2] = [[0, 4], [5, 6], [7, 1], [2, 4]]
            model.record(ids)
            _, served = prometheus_samples(collector_registry(model, top_experts=0, ep_size=2))
            self.assertAlmostEqual((4 + 4) / (6 + 5), served[(names[0], ())], places=12)
            self.assertAlmostEqual(min(4 / 6, 4 / 5), served[(names[1], ())], places=12)

    def test_every_series_is_numpys_count_of_the_ids(self):
        plan = self.plan(5, self.STEPS)
        for accelerator in ("managed", "cpu"):
            with self.subTest(accelerator=accelerator), self.new_model(accelerator) as model:
                self.record(model, plan)
                registry = collector_registry(model, top_experts=self.EXPERTS, expert_series=True)
                families, served = prometheus_samples(registry)
                self.assertSamples(self.expected(plan, self.EXPERTS), served, accelerator)
                # Position 1 is the summary's hottest and coldest expert.
                summary = model.summary()["window"]["per_layer"]
                for l in range(self.LAYERS):
                    first = (("layer", str(l)), ("position", "1"))
                    self.assertEqual((summary[l]["hottest_expert"], summary[l]["coldest_expert"]),
                                     (served[("moegpustats_moegs_layer_hot_expert", first)], served[("moegpustats_moegs_layer_cold_expert", first)]))
        # The plan ties loads, so the tie rule above was exercised, not assumed.
        import numpy
        window = sum(numpy.stack([numpy.bincount(ids[l].ravel()[ids[l].ravel() >= 0], minlength=self.EXPERTS + 1)[:self.EXPERTS]
                                  for l in range(self.LAYERS)]) for ids, _, _ in plan[-self.WINDOW:])
        self.assertTrue(any(len(set(row.tolist())) < self.EXPERTS for row in window), "no layer's window load ties")

    def test_the_recent_series_are_numpys_count_of_the_newest_steps(self):
        import numpy
        plan = self.plan(8, self.STEPS)
        recent = 2
        newest = numpy.zeros((self.LAYERS, self.EXPERTS), dtype=numpy.int64)
        for ids, _, _ in plan[-recent:]:
            for l in range(self.LAYERS):
                row = ids[l].ravel()
                newest[l] += numpy.bincount(row[(row >= 0) & (row < self.EXPERTS)], minlength=self.EXPERTS)
        mean, peak = newest.mean(1), newest.max(1)
        balancedness = mean / peak
        expected = {("moegpustats_moegs_model_recent_steps", ()): recent,
                    ("moegpustats_moegs_model_recent_balancedness_min", ()): balancedness.min(),
                    ("moegpustats_moegs_model_recent_balancedness_mean", ()): balancedness.mean(),
                    ("moegpustats_moegs_model_recent_balancedness_token_weighted", ()): mean.sum() / peak.sum()}
        expected.update({("moegpustats_moegs_layer_recent_balancedness", (("layer", str(l)),)): balancedness[l] for l in range(self.LAYERS)})
        for accelerator in ("managed", "cpu"):
            with self.subTest(accelerator=accelerator), self.new_model(accelerator) as model:
                self.record(model, plan)
                families, served = prometheus_samples(collector_registry(model, top_experts=0, recent_steps=recent))
                recent_served = {key: value for key, value in served.items() if "_recent_" in key[0]}
                self.assertSamples(expected, recent_served, accelerator)
                self.assertEqual(moegs.ModelMetricsCollector.series_count(self.LAYERS, self.EXPERTS, 0, False, recent_series=True), len(served))
                self.assertEqual(("gauge", "({step}) The newest steps of the window the recent balance covers."),
                                 families["moegpustats_moegs_model_recent_steps"])
                # Without recent_steps, no recent family at all.
                families, _ = prometheus_samples(collector_registry(model))
                self.assertFalse([name for name in families if "_recent_" in name])

    def test_the_recent_series_follow_the_newest_steps_through_wraps_empty_steps_and_resets(self):
        """recent_steps 1, 3 and the window, on managed and cpu: after every step (none yet, fewer than N, a window that
        wraps twice, zero-token steps, a step of invalid ids only), after a reset and after a step more, each recent
        series is NumPy's balance of the newest N steps' ids and summary(recent_steps=N)'s figure."""
        import numpy
        rng = numpy.random.default_rng(11)
        plan = []
        for step in range(3 * self.WINDOW - 1):
            tokens = 0 if step in (5, 6) else int(rng.integers(1, 9))
            ids = rng.integers(-1, self.EXPERTS + 1, size=(self.LAYERS, tokens, self.K)).astype(numpy.int32)
            if step == 9:
                ids[...] = self.EXPERTS + 2
            plan.append(ids)

        def expected(steps, recent):
            newest = steps[len(steps) - min(recent, len(steps)):]
            load = numpy.zeros((self.LAYERS, self.EXPERTS), dtype=numpy.int64)
            for ids in newest:
                for l in range(self.LAYERS):
                    row = ids[l].ravel()
                    load[l] += numpy.bincount(row[(row >= 0) & (row < self.EXPERTS)], minlength=self.EXPERTS)
            mean, peak = load.mean(1), load.max(1)
            balancedness = numpy.where(peak == 0, 1.0, mean / numpy.maximum(peak, 1))
            samples = {("moegpustats_moegs_model_recent_steps", ()): len(newest),
                       ("moegpustats_moegs_model_recent_balancedness_min", ()): balancedness.min(),
                       ("moegpustats_moegs_model_recent_balancedness_mean", ()): balancedness.mean(),
                       ("moegpustats_moegs_model_recent_balancedness_token_weighted", ()): 1.0 if peak.sum() == 0 else mean.sum() / peak.sum()}
            samples.update({("moegpustats_moegs_layer_recent_balancedness", (("layer", str(l)),)): balancedness[l] for l in range(self.LAYERS)})
            return samples

        for accelerator in ("managed", "cpu"):
            for recent in (1, 3, self.WINDOW):
                with self.subTest(accelerator=accelerator, recent_steps=recent), self.new_model(accelerator) as model:
                    registry = collector_registry(model, top_experts=0, recent_steps=recent)

                    def check(steps, when):
                        _, served = prometheus_samples(registry)
                        served = {key: value for key, value in served.items() if "_recent_" in key[0]}
                        self.assertSamples(expected(steps, recent), served, f"{accelerator}, N {recent}, {when}")
                        summary = model.summary(recent_steps=recent)
                        self.assertEqual(summary["window_steps"], served[("moegpustats_moegs_model_recent_steps", ())], when)
                        self.assertEqual(summary["window"]["token_weighted_balancedness"],
                                         served[("moegpustats_moegs_model_recent_balancedness_token_weighted", ())], when)

                    check([], "before any step")
                    for step, ids in enumerate(plan):
                        model.record(ids)
                        check(plan[:step + 1], f"after step {step}")
                    model.reset()
                    check([], "after the reset")
                    model.record(plan[0])
                    check(plan[:1], "after the reset and a step")

    def test_recent_steps_of_the_wrong_type_or_range_are_refused_naming_it(self):
        import numpy
        with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator="managed") as model:
            self.assertEqual(1000, moegs.ModelMetricsCollector(model, recent_steps=1000).recent_steps)
            self.assertEqual(2, moegs.ModelMetricsCollector(model, recent_steps=numpy.int64(2)).recent_steps)
            for value in (1001, -1, 2**70):
                with self.subTest(value=value), self.assertRaisesRegex(ValueError, rf"recent_steps = {value} is out of range: it must lie in \[1, 1000\] \(the model's window\)"):
                    moegs.ModelMetricsCollector(model, recent_steps=value)
            for value in (True, False, numpy.bool_(True), 2.5, float("nan"), "2", b"2", [2]):
                with self.subTest(value=value), self.assertRaisesRegex(TypeError, r"recent_steps must be an integer \(got "):
                    moegs.ModelMetricsCollector(model, recent_steps=value)
            for value in (None, 1, "yes"):
                with self.subTest(recent_series=value), self.assertRaisesRegex(TypeError, r"recent_series must be True or False"):
                    moegs.ModelMetricsCollector.series_count(self.LAYERS, self.EXPERTS, 0, False, recent_series=value)

    def test_the_default_publishes_five_ranks_and_no_expert_series_with_the_endpoints_types_and_help(self):
        with self.new_model() as model:
            plan = self.plan(6, 3)
            self.record(model, plan)
            families, served = prometheus_samples(collector_registry(model))
            expected = {key: value for key, value in self.expected(plan, 5).items() if not key[0].startswith("moegpustats_moegs_expert_")}
            self.assertSamples(expected, served)
            self.assertEqual(moegs.ModelMetricsCollector.series_count(self.LAYERS, self.EXPERTS, 5, False), len(served))
            self.assertEqual(("counter", "({slot}) Token-expert slots since the start (tag: layer)."),
                             families["moegpustats_moegs_layer_slots"])
            self.assertEqual(("gauge", "The first layer with the smallest balancedness in the window."), families["moegpustats_moegs_model_worst_layer"])
            counters = {name for name, (kind, _) in families.items() if kind == "counter"}
            self.assertEqual({"moegpustats_moegs_model_steps", "moegpustats_moegs_layer_slots", "moegpustats_moegs_layer_tokens_dropped",
                              "moegpustats_moegs_layer_slots_dropped", "moegpustats_moegs_layer_expert_ids_invalid"}, counters)
            # top_experts=0 leaves the ranked families out altogether, as the .NET publisher does.
            families, served = prometheus_samples(collector_registry(model, top_experts=0))
            self.assertFalse([name for name in families if "_hot_" in name or "_cold_" in name])
            self.assertEqual(moegs.ModelMetricsCollector.series_count(self.LAYERS, self.EXPERTS, 0, False), len(served))
        # Fewer experts than five: the default ranks them all, min(5, experts), and says so, as series_count counts it.
        with moegs.MoeModelStats(2, 3, accelerator="managed") as small:
            collector = moegs.ModelMetricsCollector(small)
            self.assertEqual(3, collector.top_experts)
            _, served = prometheus_samples(collector_registry(small))
            self.assertEqual(moegs.ModelMetricsCollector.series_count(2, 3, 3, False), len(served))

    def test_the_alert_rules_and_the_dashboard_select_served_names(self):
        """Every model and layer name and every per-expert one of a model in docs/monitoring/ is one the collector serves
        with every optional series on (a single layer's endpoint's, moegpustats_moegs_routings_total,
        moegpustats_moegs_expert_ids_invalid_total and the like, are not a model's)."""
        docs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "monitoring")
        used = set()
        for name in ("moegpustats-alerts.yml", "moegpustats-dashboard.json"):
            with open(os.path.join(docs, name)) as file:
                used |= set(re.findall(r"moegpustats_moegs_(?:model_|layer_|expert_tokens|expert_window_load)[a-z0-9_]*", file.read()))
        self.assertTrue(used)
        with self.new_model() as model:
            self.record(model, self.plan(7, 2))
            _, served = prometheus_samples(collector_registry(model, expert_series=True, recent_steps=2))
        self.assertIn("moegpustats_moegs_model_recent_balancedness_token_weighted", used)
        self.assertEqual(set(), used - {name for name, _ in served})

    def test_after_a_reset_the_counters_go_down_and_serve_the_new_steps_alone(self):
        first, second = self.plan(8, self.STEPS), self.plan(9, 2)
        with self.new_model() as model, self.new_model() as fresh:
            registry = collector_registry(model, expert_series=True)
            self.record(model, first)
            _, before = prometheus_samples(registry)
            model.reset()
            _, reset = prometheus_samples(registry)
            self.record(model, second)
            self.record(fresh, second)
            _, after = prometheus_samples(registry)
            _, want = prometheus_samples(collector_registry(fresh, expert_series=True))
        self.assertEqual(self.STEPS, before[("moegpustats_moegs_model_steps_total", ())])
        self.assertEqual(0, reset[("moegpustats_moegs_model_steps_total", ())])
        self.assertEqual([0.0] * self.LAYERS, layer_values(reset, "layer_slots_total", self.LAYERS))
        # Lower than before: Prometheus's rate() and increase() read a counter that goes down as a reset.
        self.assertTrue(all(a < b for a, b in zip(layer_values(after, "layer_slots_total", self.LAYERS),
                                                  layer_values(before, "layer_slots_total", self.LAYERS))))
        self.assertSamples(self.expected(second, 5), after)
        self.assertEqual(want.keys(), after.keys())
        self.assertTrue(same_statistics(want, after))

    def test_a_scrape_does_not_take_the_lock_record_takes(self):
        """A scrape is one library call that reads one state; it takes no lock of the wrapper's, so a record() on another
        thread never waits for it (on a device, for its copy back). Here the wrapper's lock is held while a scrape runs:
        the scrape finishes, and serves the steps recorded before it."""
        from prometheus_client import generate_latest
        import numpy
        with moegs.MoeModelStats(2, 4, window=3, accelerator="managed") as model:
            model.record(numpy.zeros((2, 3, 1), dtype=numpy.int32))
            registry = collector_registry(model)
            served = []
            with model._lock:
                scrape = threading.Thread(target=lambda: served.append(generate_latest(registry)))
                scrape.start()
                scrape.join(timeout=PATIENCE)
                finished = not scrape.is_alive()
            scrape.join()
            self.assertTrue(finished, "a scrape waited for the lock record() takes")
            self.assertIn(b"moegpustats_moegs_model_steps_total 1.0", served[0])

    def test_a_scrape_racing_records_reads_one_step(self):
        """A thread records steps of known slot counts while this one scrapes: in every scrape each layer's slots are
        the first n steps' (n the steps served), its experts' tokens sum to them, and its window load is the last
        min(n, window) steps'. A scrape that read the summary, the window and the counts in separate calls would read
        them at different steps."""
        import numpy
        layers, experts, window, wanted = 4, 16, 3, 20
        rng = numpy.random.default_rng(10)
        # Each step's slots, appended before the step is recorded: a scrape that serves n steps finds n entries.
        slots = []
        stop = threading.Event()

        def record():
            # Until the scrapes are done, however slow the machine: a fixed number of steps ran out before 20
            # scrapes on a loaded CI machine.
            while not stop.is_set():
                ids = rng.integers(0, experts, size=(layers, int(rng.integers(1, 40)), 2)).astype(numpy.int32)
                slots.append(ids.shape[1] * 2)
                model.record(ids)

        with moegs.MoeModelStats(layers, experts, window=window, accelerator="managed") as model:
            registry = collector_registry(model, top_experts=experts, expert_series=True)
            recorder = threading.Thread(target=record)
            scrapes, midway = 0, 0
            deadline = time.monotonic() + 300
            recorder.start()
            try:
                while midway < wanted and time.monotonic() < deadline:
                    _, served = prometheus_samples(registry)
                    n = int(served[("moegpustats_moegs_model_steps_total", ())])
                    scrapes, midway = scrapes + 1, midway + (n > 0)
                    total, in_window = sum(slots[:n]), sum(slots[max(0, n - window):n])
                    for l in range(layers):
                        label = ("layer", str(l))
                        layer_slots = served[("moegpustats_moegs_layer_slots_total", (label,))]
                        tokens = sum(served[("moegpustats_moegs_expert_tokens_total", (("expert", str(e)), label))] for e in range(experts))
                        load = sum(served[("moegpustats_moegs_expert_window_load", (("expert", str(e)), label))] for e in range(experts))
                        hot = sum(served[("moegpustats_moegs_layer_hot_expert_load", (label, ("position", str(p + 1))))] for p in range(experts))
                        self.assertEqual((total, total, in_window, load),
                                         (layer_slots, tokens, load, hot), f"scrape {scrapes} at step {n}, layer {l}")
            finally:
                stop.set()
                recorder.join()
        # Scrapes that landed between steps, or the test showed nothing about the lock.
        self.assertGreaterEqual(midway, wanted, f"{scrapes} scrapes, {midway} of them while steps were being recorded")

    def test_without_numpy_the_scrape_is_the_same(self):
        """window_load() (and a pending read's result) returns lists where NumPy is absent, each layer's row of the ids'
        counts; the collector ranks those alike (a process without NumPy against this one's)."""
        from prometheus_client import generate_latest
        ids = [e % self.EXPERTS for e in range(self.LAYERS * 9 * self.K)][::-1]
        script = ("import array, sys\nsys.modules['numpy'] = None\n"
                  f"sys.path.insert(0, {os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')!r})\n"
                  "import moegs\nfrom prometheus_client import CollectorRegistry, generate_latest\n"
                  f"ids = array.array('i', {ids!r})\n"
                  "class Ids:\n    pass\n"
                  f"view = Ids()\nview.__array_interface__ = {{'version': 3, 'shape': ({self.LAYERS}, 9, {self.K}), 'typestr': {INT32!r}, "
                  "'strides': None, 'data': (ids.buffer_info()[0], False)}\n"
                  f"model = moegs.MoeModelStats({self.LAYERS}, {self.EXPERTS}, accelerator='managed')\nmodel.record(view)\n"
                  "registry = CollectorRegistry()\nregistry.register(moegs.ModelMetricsCollector(model, top_experts=4, expert_series=True))\n"
                  f"want = [[ids[l * 9 * {self.K}:(l + 1) * 9 * {self.K}].count(e) for e in range({self.EXPERTS})] for l in range({self.LAYERS})]\n"
                  "assert model.window_load() == want, (model.window_load(), want)\n"
                  "assert model.begin_read().result()[1] == want\n"
                  "sys.stdout.write(generate_latest(registry).decode())\n")
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        self.assertEqual(0, run.returncode, run.stderr)
        import numpy
        with moegs.MoeModelStats(self.LAYERS, self.EXPERTS, accelerator="managed") as model:
            model.record(numpy.array(ids, dtype=numpy.int32).reshape(self.LAYERS, 9, self.K))
            self.assertEqual(generate_latest(collector_registry(model, top_experts=4, expert_series=True)).decode(), run.stdout)

    def test_bad_arguments_name_what_is_allowed(self):
        with self.new_model() as model:
            with self.assertRaisesRegex(ValueError, r"top_experts = 9 is out of range: it must lie in \[0, 8\], the model's experts"):
                moegs.ModelMetricsCollector(model, top_experts=9)
            with self.assertRaisesRegex(ValueError, r"top_experts = -1"):
                moegs.ModelMetricsCollector(model, top_experts=-1)
            with self.assertRaisesRegex(TypeError, r"top_experts must be an integer \(got 2.0"):
                moegs.ModelMetricsCollector(model, top_experts=2.0)
            with self.assertRaisesRegex(TypeError, r"expert_series must be True or False \(got 'yes'"):
                moegs.ModelMetricsCollector(model, expert_series="yes")
            with self.assertRaisesRegex(ValueError, r"recent_steps = 0 is out of range: it must lie in \[1, 4\] \(the model's window\)"):
                moegs.ModelMetricsCollector(model, recent_steps=0)
            with self.assertRaisesRegex(ValueError, r"recent_steps = 5 is out of range"):
                moegs.ModelMetricsCollector(model, recent_steps=5)
            with self.assertRaisesRegex(TypeError, r"recent_steps must be an integer \(got 2.0"):
                moegs.ModelMetricsCollector(model, recent_steps=2.0)
        with self.assertRaisesRegex(TypeError, r"model must be a moegs.MoeModelStats \(got MoeStats\)"):
            with moegs.MoeStats(4, "managed") as stats:
                moegs.ModelMetricsCollector(stats)
        self.assertEqual(11 + 58 * 12 + 4 * 58 * 5 + 2 * 58 * 256, moegs.ModelMetricsCollector.series_count(58, 256, 5, True))
        self.assertEqual(11 + 58 * 12 + 4 + 58, moegs.ModelMetricsCollector.series_count(58, 256, 0, False, recent_series=True))
        # Sizes no model has are refused, as ModelRoutingStatsMetrics.SeriesCount refuses them.
        for sizes, message in (((0, 4, 0), r"^layers = 0 is out of range"), ((1025, 4, 0), r"^layers = 1025 is out of range"),
                               ((2, 4097, 0), r"^experts = 4097 is out of range"), ((2, 4, 5), r"^top_experts = 5 is out of range: it must lie in \[0, 4\], 0 to the experts$")):
            with self.subTest(sizes=sizes), self.assertRaisesRegex(ValueError, message):
                moegs.ModelMetricsCollector.series_count(*sizes, False)

    def test_a_collector_of_more_series_than_an_endpoint_serves_is_refused_naming_the_option(self):
        """At most 250,000 series, as `moegs --metrics-port` serves: 64 layers x 4,096 experts with expert_series make
        524,288 more (526,347 in all); top_experts 974 makes 250,123 in all, 973 makes 249,867 and is taken."""
        with moegs.MoeModelStats(64, 4096, window=1, accelerator="managed") as model:
            with self.assertRaisesRegex(ValueError, r"^expert_series = True: 64 layers x 4,096 experts make 524,288 series \(2 per "
                                                    r"layer and expert\), 526,347 in all; a collector serves at most 250,000: leave it out"):
                moegs.ModelMetricsCollector(model, expert_series=True)
            with self.assertRaisesRegex(ValueError, r"^top_experts = 974: 64 layers make 249,344 series \(4 per layer and position: "
                                                    r"a hot and a cold expert and their loads\), 250,123 in all; a collector serves at "
                                                    r"most 250,000: give at most 973$"):
                moegs.ModelMetricsCollector(model, top_experts=974)
            collector = moegs.ModelMetricsCollector(model, top_experts=973)
            self.assertEqual(249_867, moegs.ModelMetricsCollector.series_count(64, 4096, 973, False))
            self.assertEqual(973, collector.top_experts)

    def test_registering_reads_nothing_and_a_closed_model_serves_no_series(self):
        """describe() gives the families without samples, so register() does not read the model (here one closed right
        after); a scrape of a closed model serves none of its series and the registry's other metrics as before (a
        server's own, in the registry it shares); a collector of a model already closed is refused where it is made."""
        from prometheus_client import CollectorRegistry, Counter, generate_latest
        model = self.new_model()
        collector = moegs.ModelMetricsCollector(model)
        model.close()
        registry = CollectorRegistry()
        registry.register(collector)
        requests = Counter("server_requests", "The server's own metric.", registry=registry)
        requests.inc(3)
        page = generate_latest(registry).decode()
        self.assertIn("server_requests_total 3.0", page)
        self.assertNotIn("moegpustats_", page)
        with self.assertRaisesRegex(moegs.MoeGpuStatsError, "^invalid handle: this MoeModelStats is closed"):
            moegs.ModelMetricsCollector(model)
        # A second model's collector has the same names: one model per registry, as the docstring says.
        with self.assertRaisesRegex(ValueError, "Duplicated timeseries"), self.new_model() as other:
            registry.register(moegs.ModelMetricsCollector(other))


class MetricsWithoutPrometheusClientTests(unittest.TestCase):
    def test_import_moegs_needs_no_prometheus_client_and_the_collector_says_what_to_install(self):
        script = ("import sys\nsys.modules['prometheus_client'] = None\nsys.modules['prometheus_client.core'] = None\n"
                  f"sys.path.insert(0, {os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')!r})\n"
                  "import moegs\n"
                  "try:\n    moegs.ModelMetricsCollector(None)\nexcept ImportError as error:\n    print(error)\n")
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        self.assertEqual(0, run.returncode, run.stderr)
        self.assertIn("ModelMetricsCollector needs prometheus_client: pip install prometheus-client", run.stdout)


class HandleTests(unittest.TestCase):
    """What a handle to the library's state refuses: copies and pickles (a copy would destroy the state when collected),
    and calls from a child forked after the library started (.NET does not survive fork())."""

    def test_handles_cannot_be_copied_or_pickled_and_stay_as_they_were(self):
        import copy
        with moegs.MoeModelStats(2, EXPERTS, accelerator="cpu") as model, moegs.MoeStats(EXPERTS, "cpu") as stats:
            ids = array.array("i", [1, 2, 3, 4] * 2)
            model.record(HostArray(ids, (2, 2, 2)))
            stats.record(ids, top_k=2)
            read = model.begin_read()
            arrays = model.device_arrays()
            before = (model.summary(), load_rows(model.window_load()), stats.expert_counts())
            for handle, instead in ((model, r"save\(path\) writes it"), (stats, r"save\(path\) writes it"), (read, r"take its result\(\)"),
                                    (arrays.window_load, r"copy its counts")):
                for copier in (copy.copy, copy.deepcopy, pickle.dumps):
                    with self.subTest(kind=type(handle).__name__, copier=copier.__name__):
                        with self.assertRaisesRegex(TypeError, rf"^a {type(handle).__name__} (is a handle to the library's state|views a model's memory) "
                                                               rf"in this process: it cannot be copied or pickled; {instead}"):
                            copier(handle)
            gc.collect()
            self.assertEqual(before, (model.summary(), load_rows(model.window_load()), stats.expert_counts()))
            self.assertEqual(before[1], load_rows(read.result()[1]))
            self.assertEqual(before[1], [[int(v) for v in row] for row in numpy_free_view(arrays.window_load)])

    def test_what_sizes_the_calls_cannot_be_reassigned(self):
        """A model's layers and experts size the arrays its reads pass the library, which writes the model's own count
        of them: a smaller count assigned would have the library write past them. They, and every attribute that
        describes a handle or the memory a DeviceArray exports, are read-only, and the reads go on as before."""
        with moegs.MoeModelStats(2, EXPERTS, accelerator="cpu") as model, moegs.MoeStats(EXPERTS, "cpu") as stats:
            model.record(HostArray(array.array("i", [1, 2, 3, 4] * 2), (2, 2, 2)))
            arrays = model.device_arrays()
            before = (model.summary(), load_rows(model.window_load()))
            for handle, names in ((model, ("layers", "experts", "accelerator", "device", "skip_empty_steps")),
                                  (stats, ("experts", "accelerator", "device")),
                                  (arrays.window_load, ("name", "ptr", "shape", "typestr", "device"))):
                for name in names:
                    with self.subTest(kind=type(handle).__name__, name=name):
                        value = getattr(handle, name)
                        with self.assertRaises(AttributeError):
                            setattr(handle, name, 1)
                        self.assertEqual(value, getattr(handle, name))
            self.assertEqual((2, EXPERTS, "cpu", "cpu", False), (model.layers, model.experts, model.accelerator, model.device, model.skip_empty_steps))
            self.assertEqual((2, EXPERTS), arrays.window_load.shape)
            self.assertEqual(before, (model.summary(), load_rows(model.window_load())))

    @unittest.skipUnless(hasattr(os, "fork"), "needs os.fork")
    def test_a_forked_child_is_told_and_leaves_the_parent_as_it_was(self):
        """A child forked after the library started gets a clear error from the parent's objects and from new ones, even
        while another of the parent's threads held their locks at the fork (which no thread of the child releases), and
        its exit (dropping its copies, leaving a with block) neither destroys the parent's state nor hangs."""
        ids = HostArray(array.array("i", [1, 2, 3, 4] * 2), (2, 2, 2))
        for accelerator in ("managed", "cpu"):
            with self.subTest(accelerator=accelerator), moegs.MoeModelStats(2, EXPERTS, accelerator=accelerator) as model:
                model.record(ids)
                read = model.begin_read()
                arrays = model.device_arrays() if accelerator == "cpu" else None
                before = (model.summary(), load_rows(model.window_load()))
                held, release = threading.Event(), threading.Event()

                def hold():
                    with model._lock, read._lock:
                        held.set()
                        release.wait()
                holder = threading.Thread(target=hold)
                holder.start()
                held.wait()
                child = os.fork()
                if child == 0:
                    code = 1
                    try:
                        told = []
                        for call in (model.summary, lambda: moegs.MoeStats(EXPERTS, "managed"), read.result, read.done, model.reset,
                                     lambda: model.record(ids), lambda: arrays.window_load.__array_interface__ if arrays else model.device_arrays()):
                            try:
                                call()
                            except moegs.MoeGpuStatsError as error:
                                told.append(error.status == moegs.RUNTIME_ERROR and "which forked this one" in error.message)
                        model.__exit__(None, None, None)
                        del read
                        gc.collect()
                        code = 0 if told == [True] * 7 else 2
                    finally:
                        os._exit(code)
                release.set()
                holder.join()
                deadline = time.monotonic() + 120
                while (waited := os.waitpid(child, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                if waited[0] == 0:
                    os.kill(child, 9)
                    os.waitpid(child, 0)
                    self.fail("the forked child hung")
                self.assertEqual(0, os.waitstatus_to_exitcode(waited[1]))
                self.assertEqual(before, (model.summary(), load_rows(model.window_load())))
                model.record(HostArray(array.array("i", [1, 2, 3, 4] * 2), (2, 2, 2)))
                self.assertEqual(2, model.summary()["steps"])


def numpy_free_view(device_array):
    """A DeviceArray on "cpu" read through its __array_interface__ without NumPy: rows of uint64 at its address."""
    interface = device_array.__array_interface__
    layers, experts = interface["shape"]
    row = ctypes.c_uint64 * experts
    return [row.from_address(interface["data"][0] + 8 * experts * l) for l in range(layers)]


class ArgumentKindTests(unittest.TestCase):
    """Arguments whose kind would be misread: refused naming the argument, or read as the caller meant."""

    def test_a_placement_is_a_sequence_in_expert_order(self):
        with moegs.MoeModelStats(1, 8, accelerator="managed") as model:
            model.record(HostArray(array.array("i", range(8)), (1, 4, 2)))
            ranks = {expert: expert // 4 for expert in range(8)}
            self.assertEqual(2, model.summary(expert_ranks=list(ranks.values()))["entries"])
            for given in (ranks, set(range(8)), "01234567", b"\0" * 8):
                with self.subTest(kind=type(given).__name__), \
                        self.assertRaisesRegex(TypeError, rf"^expert_ranks must be a sequence of 8 ranks in expert order, .*\(got a {type(given).__name__}\)"):
                    model.summary(expert_ranks=given)

    def test_a_decay_that_rounds_to_1_in_float32_is_refused_by_its_value(self):
        with self.assertRaisesRegex(ValueError, r"^utilization_decay = 0\.99999999 is out of range: it must lie in \[0, 1\) as a float32 \(at most 0\.99999994"):
            moegs.MoeModelStats(2, 4, accelerator="managed", utilization_decay=0.99999999)
        with moegs.MoeModelStats(2, 4, accelerator="managed", utilization_decay=0.99999994) as model:
            model.record(HostArray(array.array("i", [0, 1, 2, 3]), (2, 1, 2)))
            self.assertEqual(4, len(model.layer_decayed_utilization(0)))

    def test_huge_integers_are_named_by_their_digits(self):
        with moegs.MoeModelStats(2, 4, accelerator="managed") as model, moegs.MoeStats(4, "managed") as stats:
            for value, shown in ((10**5000, r"\(an integer of 5,001 digits\)"), (-(10**400), r"-\(an integer of 401 digits\)"), (10**30, "1" + "0" * 30)):
                with self.subTest(digits=len(str(abs(value))) if abs(value) < 10**4000 else 5001):
                    with self.assertRaisesRegex(ValueError, rf"^layer = {shown} is out of range"):
                        model.layer(value)
                    with self.assertRaisesRegex(ValueError, rf"^recent_steps = {shown} is out of range"):
                        model.summary(recent_steps=value)
            with self.assertRaisesRegex(ValueError, r"^seconds = \(an integer of 401 digits\) is out of range"):
                stats.record_latency(10**400)
            with self.assertRaisesRegex(ValueError, r"^seconds = \(an integer of 400 digits\) is out of range"):
                stats.record_latency(10**400 - 1)
            with self.assertRaisesRegex(ValueError, r"^seconds = \(a Fraction too long to show\) is out of range"):
                stats.record_latency(fractions.Fraction(10**5000, 3))
            with self.assertRaisesRegex(TypeError, rf"^layer must be an integer \(got 1{'0' * 63}\.\.\. of type _BigIndex\)$"):
                model.layer(_BigIndex())

    def test_a_library_argument_is_a_path(self):
        for given, error, message in ((3, TypeError, r"^library must be a path \(str or os\.PathLike\) to libmoegs\.so, or None .*\(got 3 of type int\)$"),
                                      (0, TypeError, r"^library must be a path .*\(got 0 of type int\)$"),
                                      ("", ValueError, r"^library is an empty path: give the path to libmoegs\.so, or None")):
            with self.subTest(library=given), self.assertRaisesRegex(error, message):
                moegs.MoeStats(4, "managed", library=given)

    @unittest.skipUnless(importlib.util.find_spec("torch"), "PyTorch is not installed for this Python")
    def test_tensors_of_another_layout_or_of_one_element_are_refused_by_name(self):
        import torch
        with moegs.MoeStats(8, "cpu") as stats, moegs.MoeModelStats(2, 8, accelerator="cpu") as model:
            ids = torch.zeros(4, 2, dtype=torch.int32)
            with self.assertRaisesRegex(TypeError, r"^ids are a sparse_coo tensor, whose values lie at no one address: use ids\.to_dense\(\)$"):
                stats.record(ids.to_sparse())
            with self.assertRaisesRegex(TypeError, r"^ids are a sparse_coo tensor"):
                model.record(torch.zeros(2, 4, 2, dtype=torch.int32).to_sparse())
            with self.assertRaisesRegex(TypeError, r"^ids\[0\] are a sparse_coo tensor"):
                model.record([ids.to_sparse(), ids.to_sparse()])
            with self.assertRaisesRegex(TypeError, r"^layer must be an integer \(got tensor\(\[1\]"):
                model.layer(torch.tensor([1]))
            self.assertEqual(model.layer(0), model.layer(torch.tensor(0)))
            self.assertEqual(0, stats.snapshot()["total_routings"])

    @unittest.skipUnless(importlib.util.find_spec("numpy"), "NumPy is not installed for this Python")
    def test_device_arrays_take_a_dtype_however_it_is_spelled(self):
        import numpy
        with moegs.MoeModelStats(2, 4, accelerator="cpu") as model:
            model.record(numpy.array([[[0, 1]], [[2, 3]]], numpy.int32))
            for dtype, want in (("uint64", numpy.uint64), (numpy.uint64, numpy.uint64), (numpy.dtype("int64"), numpy.int64)):
                with self.subTest(dtype=dtype):
                    self.assertEqual(want, numpy.asarray(model.device_arrays(dtype=dtype).window_load).dtype)
            with self.assertRaisesRegex(ValueError, r"^dtype = <class 'numpy\.float64'>: must be 'uint64'"):
                model.device_arrays(dtype=numpy.float64)


class _BigIndex:
    """An object that is no integer (no __index__), whose repr would be too long to show whole."""

    def __repr__(self):
        return repr(10**200)


if __name__ == "__main__":
    unittest.main()
