"""MoeGpuStats from Python: Mixture-of-Experts routing statistics kept on the GPU.

ctypes only, no build step: this module loads libmoegs.so (native/build.sh builds it) from
$MOEGS_LIB, from this folder, from ../native/out, or, installed with `pip install ./python`, from the
native/out of the checkout it was installed from. It accepts int32 PyTorch tensors (CUDA tensors
stay on the GPU: only the pointer crosses), int32 NumPy arrays (anything with __array_interface__)
and array.array('i') buffers. Ids shaped [..., k] are prod(...) tokens of k ids each.

An id of -1 is an empty slot: neither counted nor invalid, and a token whose k ids are all -1 is
padding, not a token, so a batch padded to a fixed shape is recorded as it is (pad with -1). Other
ids outside [0, experts) count as invalid_expert_ids. The wrapper never reads, remaps or checks ids.

    import torch, moegs
    stats = moegs.MoeStats(experts=64, accelerator="cuda")
    topk_ids = torch.topk(logits, k=2, dim=-1).indices.int()      # [batch, seq, k] or [tokens, k], int32, on the GPU
    stats.record(topk_ids)                                         # ordered on torch's current stream; no host wait
    print(stats.snapshot()["utilization_cv"], stats.expert_counts())

Arguments the C API cannot take raise before any call: TypeError for a wrong kind (a float count,
int64 ids to MoeStats, which takes int32), ValueError naming the argument, its value and what is allowed.
The objects hold the library's state in this process: a copy or pickle raises TypeError (save(path) writes a model for
another process), and a child forked after the library started gets MoeGpuStatsError (RUNTIME_ERROR) from them and from
new ones, as .NET does not survive fork() (start workers with multiprocessing's spawn or forkserver method).
"""
import collections.abc
import ctypes
import heapq
import math
import operator
import os
import struct
import sys
import threading
import weakref

OK, INVALID_ARGUMENT, INVALID_HANDLE, NO_DEVICE, DEVICE_ERROR, RUNTIME_ERROR, IO_ERROR = range(7)
_STATUS = {INVALID_ARGUMENT: "invalid argument", INVALID_HANDLE: "invalid handle", NO_DEVICE: "no such device",
           DEVICE_ERROR: "device error", RUNTIME_ERROR: "runtime error", IO_ERROR: "i/o error"}


class MoeGpuStatsError(Exception):
    """A failed call: .status is the moegs_status code, .message moegs_last_error()."""

    def __init__(self, status, message):
        super().__init__(f"{_STATUS.get(status, status)}: {message}")
        self.status = status
        self.message = message

    def __reduce__(self):
        # Rebuilt from what __init__ takes, so that an error crosses a process pool (pickle) and copy.copy keeps it.
        return type(self), (self.status, self.message)


class InvalidArgumentError(MoeGpuStatsError, ValueError):
    """A call the library refused for its arguments (status INVALID_ARGUMENT): a ValueError too, as the wrapper's
    own checks raise, so that one except clause catches a bad value whichever side finds it."""


def _error(status, message):
    """The error a failed call raises: InvalidArgumentError for INVALID_ARGUMENT, else MoeGpuStatsError."""
    return (InvalidArgumentError if status == INVALID_ARGUMENT else MoeGpuStatsError)(status, message)


class Snapshot(ctypes.Structure):
    """The C struct moegs_snapshot (include/moegs.h documents each field), field for field.
    _load refuses a library whose struct has another size, as the library writes all of it."""
    _fields_ = [
        ("total_routings", ctypes.c_uint64), ("total_tokens", ctypes.c_uint64), ("tokens_dropped", ctypes.c_uint64),
        ("routed_slots", ctypes.c_uint64), ("slots_dropped", ctypes.c_uint64),
        ("invalid_expert_ids", ctypes.c_uint64), ("capacity_exceeded_count", ctypes.c_uint64),
        ("total_capacity", ctypes.c_uint64), ("total_used", ctypes.c_uint64), ("latency_measurements", ctypes.c_uint64),
        ("average_latency_ms", ctypes.c_double), ("p95_latency_ms", ctypes.c_double), ("p99_latency_ms", ctypes.c_double),
        ("average_load_balance_loss", ctypes.c_float), ("average_router_z_loss", ctypes.c_float),
        ("routing_efficiency", ctypes.c_float), ("utilization_cv", ctypes.c_float),
        ("capacity_average_utilization", ctypes.c_float), ("capacity_peak_utilization", ctypes.c_float),
        ("most_utilization", ctypes.c_float), ("least_utilization", ctypes.c_float), ("load_variance_trend_100", ctypes.c_float),
        ("experts", ctypes.c_int32), ("most_utilized", ctypes.c_int32), ("least_utilized", ctypes.c_int32),
        ("load_variance_history_len", ctypes.c_int32)]


class ModelBalance(ctypes.Structure):
    """The C struct moegs_model_balance (include/moegs.h), field for field; _load checks its size."""
    _fields_ = [
        ("steps", ctypes.c_uint64),
        ("window_min_balancedness", ctypes.c_double), ("window_p10_balancedness", ctypes.c_double),
        ("window_median_balancedness", ctypes.c_double), ("window_mean_balancedness", ctypes.c_double),
        ("window_token_weighted_balancedness", ctypes.c_double),
        ("since_start_min_balancedness", ctypes.c_double), ("since_start_p10_balancedness", ctypes.c_double),
        ("since_start_median_balancedness", ctypes.c_double), ("since_start_mean_balancedness", ctypes.c_double),
        ("since_start_token_weighted_balancedness", ctypes.c_double),
        ("window_steps", ctypes.c_int32), ("window_worst_layer", ctypes.c_int32), ("since_start_worst_layer", ctypes.c_int32),
        ("entries", ctypes.c_int32),
        ("window_max_balancedness", ctypes.c_double), ("since_start_max_balancedness", ctypes.c_double),
        ("window_best_layer", ctypes.c_int32), ("since_start_best_layer", ctypes.c_int32)]


class LayerBalance(ctypes.Structure):
    """The C struct moegs_layer_balance (include/moegs.h), field for field; _load checks its size."""
    _fields_ = [
        ("load", ctypes.c_uint64), ("mean_load", ctypes.c_double), ("max_load", ctypes.c_uint64), ("min_load", ctypes.c_uint64),
        ("balancedness", ctypes.c_double), ("max_mean_ratio", ctypes.c_double), ("cv", ctypes.c_double),
        ("hottest", ctypes.c_int32), ("coldest", ctypes.c_int32), ("dead", ctypes.c_int32),
        ("gini", ctypes.c_double), ("top10_share", ctypes.c_double)]


class LayerTotals(ctypes.Structure):
    """The C struct moegs_layer_totals (include/moegs.h), field for field; _load checks its size."""
    _fields_ = [
        ("total_routings", ctypes.c_uint64), ("total_tokens", ctypes.c_uint64), ("tokens_dropped", ctypes.c_uint64),
        ("routed_slots", ctypes.c_uint64), ("slots_dropped", ctypes.c_uint64), ("invalid_expert_ids", ctypes.c_uint64),
        ("average_load_balance_loss", ctypes.c_float), ("average_router_z_loss", ctypes.c_float), ("routing_efficiency", ctypes.c_float)]


# The C struct's short field names as the CLI's JSON (and the C# API) spell them.
_SUMMARY_NAMES = {"cv": "coefficient_of_variation", "hottest": "hottest_expert", "coldest": "coldest_expert", "dead": "dead_experts",
                  "gini": "gini_coefficient", "top10_share": "top10_percent_share"}


class ModelArrays(ctypes.Structure):
    """The C struct moegs_model_arrays (include/moegs.h), field for field; _load checks its size."""
    _fields_ = [
        ("token_counts", ctypes.c_void_p), ("window_load", ctypes.c_void_p), ("accelerator", ctypes.c_char_p),
        ("steps", ctypes.c_uint64), ("window_steps", ctypes.c_int32), ("layers", ctypes.c_int32), ("experts", ctypes.c_int32),
        ("synchronized", ctypes.c_int32)]


def _path_bytes(path, does="write"):
    """A file path as the C API takes it, UTF-8; ValueError for an empty one or one that is not UTF-8 (the library
    would name another file), TypeError for a non-path. does: what the call does with the file, for the message."""
    try:
        name = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike (got {_shown(path)} of type {type(path).__name__})") from None
    try:
        encoded = name.encode("utf-8") if isinstance(name, str) else name.decode("utf-8").encode("utf-8")
    except UnicodeError:
        raise ValueError(f"path {_shown(path)} is not UTF-8, which the library names files in") from None
    if not encoded:
        raise ValueError(f"path is empty: give the file to {does}")
    if b"\0" in encoded:
        raise ValueError(f"path {_shown(path)} holds a NUL character, which no file name can")
    return encoded


def _installed_library():
    """Where `pip install ./python` recorded this checkout's native/out, or None (not installed that way)."""
    try:
        import _moegs_native
    except ImportError:
        return None
    return os.path.join(_moegs_native.NATIVE_DIR, "libmoegs.so")


# A child forked from a process whose library started its .NET runtime has the runtime without its threads, where a call
# crashes or hangs (and can take the parent with it), and perhaps a lock held by a thread it does not have: the child is
# told instead. _fork_epoch counts the forks this process descends through (os.register_at_fork), without a system call
# a record; an object made in an earlier epoch, and the runtime loaded in one, belong to the parent.
_fork_epoch = 0
_runtime_process = _runtime_epoch = None


def _entered_child():
    global _fork_epoch
    _fork_epoch += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_entered_child)


def _forked_error(what, owner):
    return MoeGpuStatsError(RUNTIME_ERROR, f"{what} belongs to process {owner}, which forked this one ({os.getpid()}): .NET does not survive "
                                           "fork(), so only that process may call the library; start workers with multiprocessing's "
                                           "spawn or forkserver method and create their own")


def _load(path=None):
    global _runtime_process, _runtime_epoch
    if _runtime_epoch not in (None, _fork_epoch):
        raise _forked_error("the library's runtime", _runtime_process)
    if path is not None and not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"library must be a path (str or os.PathLike) to libmoegs.so, or None for the one beside this module "
                        f"(got {_shown(path)} of type {type(path).__name__})")
    if path is not None and not os.fspath(path):
        raise ValueError("library is an empty path: give the path to libmoegs.so, or None for the one beside this module")
    here = os.path.dirname(os.path.abspath(__file__))
    named = path or os.environ.get("MOEGS_LIB")
    if named and not os.path.exists(named):
        # A library the caller named is never replaced by another one silently.
        source = "library" if path else "MOEGS_LIB"
        raise OSError(f"{source} = {named!r}: no such file; build it with native/build.sh")
    candidates = [named, os.path.join(here, "libmoegs.so"),
                  os.path.join(here, "..", "native", "out", "libmoegs.so"), _installed_library()]
    for candidate in candidates:
        if candidate and os.path.exists(candidate):
            lib = ctypes.CDLL(os.path.abspath(candidate))
            if _runtime_epoch is None:
                _runtime_process, _runtime_epoch = os.getpid(), _fork_epoch
            break
    else:
        raise OSError("libmoegs.so not found: run native/build.sh (before or after pip install ./python), or set MOEGS_LIB")
    h, i32, i64, f32, vp = ctypes.c_int64, ctypes.c_int32, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
    lib.moegs_create.argtypes = [ctypes.c_char_p, i32, i32, ctypes.POINTER(h)]
    lib.moegs_record.argtypes = [h, vp, i64, i32, i32, f32, f32, vp]
    lib.moegs_record_latency.argtypes = [h, i64]
    lib.moegs_accelerator.argtypes = [h, ctypes.POINTER(ctypes.c_char_p)]
    lib.moegs_snapshot_read.argtypes = [h, ctypes.POINTER(Snapshot)]
    lib.moegs_expert_counts.argtypes = [h, ctypes.POINTER(ctypes.c_uint64), i32]
    lib.moegs_expert_utilization.argtypes = [h, ctypes.POINTER(ctypes.c_float), i32]
    lib.moegs_reset.argtypes = [h]
    lib.moegs_destroy.argtypes = [h]
    lib.moegs_last_error.restype = ctypes.c_char_p
    if not hasattr(lib, "moegs_snapshot_size"):
        raise OSError(f"{os.path.abspath(candidate)} predates moegs_snapshot_size: its snapshot layout is not this wrapper's; rebuild it (native/build.sh)")
    lib.moegs_snapshot_size.argtypes = []
    lib.moegs_snapshot_size.restype = ctypes.c_int32
    # 0: the runtime did not start; moegs_create then fails with the reason, so leave it to say so.
    size = lib.moegs_snapshot_size()
    if size not in (0, ctypes.sizeof(Snapshot)):
        raise OSError(f"{os.path.abspath(candidate)} writes a {size}-byte moegs_snapshot, this wrapper's Snapshot is {ctypes.sizeof(Snapshot)} bytes: "
                      "use the moegs.py built with that library")
    if not hasattr(lib, "moegs_model_create"):
        raise OSError(f"{os.path.abspath(candidate)} predates the model API (moegs_model_*): rebuild it (native/build.sh)")
    lib.moegs_model_create.argtypes = [ctypes.c_char_p, i32, i32, i32, i32, f32, ctypes.POINTER(h)]
    lib.moegs_model_record.argtypes = [h, vp, i32, i32, i32, i64, vp, vp, vp, vp]
    lib.moegs_model_record_strided.argtypes = [h, vp, i32, i32, i32, i32, i64, i64, vp, vp, vp, vp]
    lib.moegs_model_accelerator.argtypes = [h, ctypes.POINTER(ctypes.c_char_p)]
    lib.moegs_model_summary.argtypes = [h, ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ModelBalance),
                                        ctypes.POINTER(LayerBalance), ctypes.POINTER(LayerBalance)]
    lib.moegs_model_window_load.argtypes = [h, ctypes.POINTER(ctypes.c_uint64), i32]
    lib.moegs_model_layer_snapshot.argtypes = [h, i32, ctypes.POINTER(Snapshot)]
    lib.moegs_model_reset.argtypes = [h]
    lib.moegs_model_destroy.argtypes = [h]
    for newest in ("moegs_model_device_arrays", "moegs_model_layer_decayed_utilization", "moegs_model_recent_summary",
                   "moegs_model_recent_window_load", "moegs_save", "moegs_model_save", "moegs_model_read", "moegs_model_read_begin",
                   "moegs_model_create_with_flags", "moegs_model_load", "moegs_model_save_checkpoint", "moegs_model_options"):
        if not hasattr(lib, newest):
            raise OSError(f"{os.path.abspath(candidate)} predates {newest}: rebuild it (native/build.sh)")
    lib.moegs_model_create_with_flags.argtypes = [ctypes.c_char_p, i32, i32, i32, i32, f32, ctypes.c_uint32, ctypes.POINTER(h)]
    lib.moegs_model_device_arrays.argtypes = [h, vp, ctypes.POINTER(ModelArrays)]
    lib.moegs_save.argtypes = [h, ctypes.c_char_p]
    lib.moegs_model_save.argtypes = [h, ctypes.c_char_p]
    lib.moegs_model_save_checkpoint.argtypes = [h, ctypes.c_char_p]
    lib.moegs_model_load.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(h)]
    i32p = ctypes.POINTER(i32)
    lib.moegs_model_options.argtypes = [h, i32p, i32p, i32p, i32p, ctypes.POINTER(f32), ctypes.POINTER(ctypes.c_uint32)]
    lib.moegs_model_recent_summary.argtypes = [h, i32, ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ModelBalance),
                                               ctypes.POINTER(LayerBalance), ctypes.POINTER(LayerBalance)]
    lib.moegs_model_recent_window_load.argtypes = [h, i32, ctypes.POINTER(ctypes.c_uint64), i32]
    lib.moegs_model_read.argtypes = [h, i32, ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ModelBalance), ctypes.POINTER(LayerBalance),
                                     ctypes.POINTER(LayerBalance), ctypes.POINTER(ModelBalance), ctypes.POINTER(LayerBalance),
                                     ctypes.POINTER(LayerTotals), ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint64), i32]
    lib.moegs_model_read_begin.argtypes = [h, i32, ctypes.POINTER(ctypes.c_int32), vp, ctypes.POINTER(h)]
    lib.moegs_model_read_ready.argtypes = [h, ctypes.POINTER(ctypes.c_int32)]
    lib.moegs_model_read_finish.argtypes = [h, ctypes.POINTER(ModelBalance), ctypes.POINTER(LayerBalance), ctypes.POINTER(LayerBalance),
                                            ctypes.POINTER(ctypes.c_uint64), i32]
    lib.moegs_model_read_destroy.argtypes = [h]
    lib.moegs_model_layer_expert_counts.argtypes = [h, i32, ctypes.POINTER(ctypes.c_uint64), i32]
    lib.moegs_model_layer_expert_utilization.argtypes = [h, i32, ctypes.POINTER(ctypes.c_float), i32]
    lib.moegs_model_layer_decayed_utilization.argtypes = [h, i32, ctypes.POINTER(ctypes.c_float), i32]
    for name, struct in (("moegs_model_balance_size", ModelBalance), ("moegs_layer_balance_size", LayerBalance),
                         ("moegs_model_arrays_size", ModelArrays), ("moegs_layer_totals_size", LayerTotals)):
        getattr(lib, name).argtypes = []
        getattr(lib, name).restype = ctypes.c_int32
        size = getattr(lib, name)()
        if size not in (0, ctypes.sizeof(struct)):
            raise OSError(f"{os.path.abspath(candidate)} writes a {size}-byte {struct.__name__}, this wrapper's is {ctypes.sizeof(struct)} bytes: "
                          "use the moegs.py built with that library")
    for name in ("moegs_create", "moegs_record", "moegs_record_latency", "moegs_accelerator", "moegs_snapshot_read", "moegs_expert_counts",
                 "moegs_expert_utilization", "moegs_reset", "moegs_destroy", "moegs_model_create", "moegs_model_record",
                 "moegs_model_accelerator", "moegs_model_summary", "moegs_model_window_load", "moegs_model_layer_snapshot",
                 "moegs_model_reset", "moegs_model_destroy", "moegs_model_device_arrays", "moegs_model_create_with_flags",
                 "moegs_model_layer_expert_counts", "moegs_model_layer_expert_utilization", "moegs_model_layer_decayed_utilization", "moegs_model_recent_summary",
                 "moegs_model_recent_window_load", "moegs_save", "moegs_model_save", "moegs_model_read"):
        getattr(lib, name).restype = ctypes.c_int
    return lib


INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# The C API's limits (include/moegs.h): a device engine's experts, the managed engine's, a model's layers.
DEVICE_EXPERTS_MAX = 4096
MANAGED_EXPERTS_MAX = 1048576
MODEL_LAYERS_MAX = 1024
# moegs_model_create_with_flags's flag (include/moegs.h).
_MODEL_SKIP_EMPTY_STEPS = 1
_FLOAT32_MAX = 3.4028234663852886e38
_POINTER_MAX = 2**(8 * ctypes.sizeof(ctypes.c_void_p)) - 1
# int32 in this machine's byte order, as __array_interface__ spells it.
_INT32_TYPESTR = ("<" if sys.byteorder == "little" else ">") + "i4"


def _flag(name, value):
    """value as a Python bool: True or False, or a NumPy or torch boolean scalar (numpy.bool_, a 0-d bool tensor),
    else TypeError naming `name`. Integers are refused: 1 for True is more often a slip than a choice."""
    if isinstance(value, bool):
        return value
    if str(getattr(value, "dtype", "")) in ("bool", "torch.bool") and tuple(getattr(value, "shape", (None,))) == ():
        return bool(value)
    raise TypeError(f"{name} must be True or False (got {_shown(value)} of type {type(value).__name__})")


def _integer(name, value, low, high, allowed=None):
    """value as a Python int in [low, high], else TypeError (not an integer) or ValueError naming `name` and
    what is allowed (`allowed`, where the range alone does not say it)."""
    not_integer = TypeError(f"{name} must be an integer (got {_shown(value)} of type {type(value).__name__})")
    # NumPy's and torch's booleans convert to 0 and 1 as Python's do: refused alike.
    if isinstance(value, bool) or str(getattr(value, "dtype", "")) in ("bool", "torch.bool") or not hasattr(type(value), "__index__"):
        raise not_integer
    if len(getattr(value, "shape", None) or ()) > 0:
        # A one-element torch tensor converts as its element would; an array of one is a list, not a number (NumPy refuses too).
        raise not_integer
    try:
        value = operator.index(value)
    except TypeError:
        # A torch tensor has __index__ whatever its dtype; a float one refuses it in torch's words.
        raise not_integer from None
    if not low <= value <= high:
        raise ValueError(f"{name} = {_shown(value)} is out of range: it must lie in {allowed or f'[{low}, {high}]'}")
    return value


def _experts(experts, accelerator):
    """The expert count an aggregator on `accelerator` takes: the device engines' limit, the managed engine's, or
    (for "auto", which may choose either) the larger, with both named."""
    # The C API reads names without case or surrounding blanks.
    accelerator = accelerator.strip().lower()
    if accelerator not in ("auto", "cuda", "opencl", "cpu", "managed"):
        # A name the library does not know is the library's to refuse, naming it; any int32 count goes with it.
        return _integer("experts", experts, -2**31, INT32_MAX)
    if accelerator == "managed":
        return _integer("experts", experts, 1, MANAGED_EXPERTS_MAX)
    if accelerator == "auto":
        return _integer("experts", experts, 1, MANAGED_EXPERTS_MAX,
                        f'[1, {DEVICE_EXPERTS_MAX}] on a device accelerator, [1, {MANAGED_EXPERTS_MAX}] on "managed"')
    return _integer("experts", experts, 1, DEVICE_EXPERTS_MAX, f"[1, {DEVICE_EXPERTS_MAX}] on {accelerator}")


# Per element type: torch's dtype and conversion, __array_interface__'s typestr, array.array's typecode.
_ELEMENTS = {"int32": ("torch.int32", "int()", _INT32_TYPESTR, "i"),
             "float32": ("torch.float32", "float()", _INT32_TYPESTR[0] + "f4", "f")}


def _require_dense(tensor, name):
    """Refuses a torch tensor of another layout than strided (sparse, MKL-DNN): its values lie at no address to read."""
    layout = str(getattr(tensor, "layout", "torch.strided"))
    if layout != "torch.strided":
        raise TypeError(f"{name} are a {layout.replace('torch.', '')} tensor, whose values lie at no one address: use {name}.to_dense()")


def _memory(value, name, element="int32"):
    """(pointer, length, shape, is_cuda, device index, keep) of 4-byte values from torch, __array_interface__ or
    array.array; `keep` holds the memory alive, so the caller keeps it until the C call returns (a NumPy scalar's
    interface points into a temporary array that only the interface itself references).
    Other element types are refused, never reinterpreted: the C API reads them as `element`."""
    torch_dtype, conversion, typestr, typecode = _ELEMENTS[element]
    if hasattr(value, "data_ptr") and hasattr(value, "is_cuda"):  # torch.Tensor
        # Where the memory is comes first: a conversion of the dtype would not make it readable.
        if not value.is_cuda and value.device.type != "cpu":
            raise ValueError(f"{name} are on {value.device}; the wrapper reads CUDA tensors and host memory: use {name}.cpu()")
        _require_dense(value, name)
        if str(value.dtype) != torch_dtype:
            raise TypeError(f"{name} must be {torch_dtype} (got {value.dtype}); use {name}.{conversion}")
        if not value.is_contiguous():
            raise ValueError(f"{name} must be contiguous; use {name}.contiguous()")
        return value.data_ptr(), value.numel(), tuple(value.shape), value.is_cuda, (value.device.index if value.is_cuda else None), value
    if hasattr(value, "__array_interface__"):  # NumPy, or any array exporting the interface
        interface = value.__array_interface__
        shape = tuple(interface["shape"])
        if interface["typestr"] != typestr:
            kind = getattr(value, "dtype", interface["typestr"])
            raise TypeError(f"{name} must be {element} (got {kind}); use {name}.astype(numpy.{element})")
        strides = interface.get("strides")
        contiguous = tuple(4 * math.prod(shape[i + 1:]) for i in range(len(shape)))
        if strides is not None and tuple(strides) != contiguous and math.prod(shape) > 1:
            raise ValueError(f"{name} must be C-contiguous (strides {tuple(strides)}, shape {shape}); use numpy.ascontiguousarray({name})")
        data = interface.get("data")
        if not isinstance(data, tuple):
            raise TypeError(f"{name} must expose their memory as an address (__array_interface__['data'] = (pointer, read_only))")
        _require_aligned(name, data[0], 4)
        return data[0], math.prod(shape), shape, False, None, (value, interface)
    if hasattr(value, "buffer_info") and hasattr(value, "typecode"):  # array.array
        if value.typecode != typecode or value.itemsize != 4:
            raise TypeError(f"{name} must be an array.array('{typecode}') of {element} (got typecode {value.typecode!r}, {value.itemsize}-byte items)")
        address, count = value.buffer_info()
        return address, count, (count,), False, None, value
    raise TypeError(f"{name} must be a torch.Tensor, a NumPy array or an array.array('{typecode}') of {element} (got {type(value).__name__})")


def _require_aligned(name, address, size):
    """Refuses host memory that does not start at a multiple of its values' size, which the C API cannot read, with
    the copy that realigns it (numpy.ascontiguousarray returns such an array as it is)."""
    if address % size:
        raise ValueError(f"{name} start at {hex(address)}, not at a multiple of {size} bytes (a view at an odd offset of a "
                         f"byte buffer); copy them: numpy.array({name})")


# A model's ids by type: moegs_id_type, bytes, and the names torch and __array_interface__ give the type.
_ID_TYPES = {"int32": (0, 4), "int64": (1, 8), "int16": (2, 2)}
_BYTE_ORDER = "<" if sys.byteorder == "little" else ">"


def _strided(value, name, shaped):
    """(pointer, shape, strides in ids, is_cuda, device index, keep, id type name) of int32, int64 or int16 ids from
    torch or __array_interface__, at whatever strides the array has; other tensor-like objects go through _memory (int32,
    contiguous). Anything else is refused as what a model reads: ids `shaped` so (array.array is flat, never that)."""
    if hasattr(value, "data_ptr") and hasattr(value, "is_cuda") and hasattr(value, "stride"):  # torch.Tensor
        if not value.is_cuda and value.device.type != "cpu":
            raise ValueError(f"{name} are on {value.device}; the wrapper reads CUDA tensors and host memory: use {name}.cpu()")
        _require_dense(value, name)
        kind = str(value.dtype).replace("torch.", "")
        if kind not in _ID_TYPES:
            raise TypeError(f"{name} must be torch.int32, torch.int64 or torch.int16 (got {value.dtype}); use {name}.int()")
        return (value.data_ptr(), tuple(value.shape), tuple(value.stride()), value.is_cuda,
                value.device.index if value.is_cuda else None, value, kind)
    interface = getattr(value, "__array_interface__", None)
    if isinstance(interface, dict):
        typestr = interface["typestr"]
        kind = next((k for k, (_, size) in _ID_TYPES.items() if typestr in (_BYTE_ORDER + f"i{size}", f"|i{size}")), None)
        if kind is None:
            raise TypeError(f"{name} must be int32, int64 or int16 (got {getattr(value, 'dtype', typestr)}); use {name}.astype(numpy.int32)")
        data = interface.get("data")
        if not isinstance(data, tuple):
            raise TypeError(f"{name} must expose their memory as an address (__array_interface__['data'] = (pointer, read_only))")
        shape, size = tuple(interface["shape"]), _ID_TYPES[kind][1]
        strides = interface.get("strides")
        if strides is None:
            strides = tuple(size * math.prod(shape[i + 1:]) for i in range(len(shape)))
        if any(stride % size for stride in strides):
            raise ValueError(f"{name} have strides {tuple(strides)} bytes, not whole {kind} ids: use numpy.ascontiguousarray({name})")
        _require_aligned(name, data[0], size)
        return data[0], shape, tuple(stride // size for stride in strides), False, None, (value, interface), kind
    if not (hasattr(value, "data_ptr") and hasattr(value, "is_cuda")):
        raise TypeError(f"{name} must be a torch.Tensor or a NumPy array of int32, int64 or int16 ids shaped {shaped} (got {type(value).__name__})")
    pointer, _, shape, is_cuda, device, alive = _memory(value, name)
    return pointer, shape, tuple(math.prod(shape[i + 1:]) for i in range(len(shape))), is_cuda, device, alive, "int32"


def _layers_apart(layers, tokens, top_k, layer_stride, rows):
    """Whether layers at layer_stride with rows `rows` ids apart lie one after another or interleaved token by token,
    the layouts the C API takes (ModelIdLayout.Supported)."""
    if layers == 1 or tokens == 0:
        return True
    return layer_stride >= (tokens - 1) * rows + top_k or (top_k <= layer_stride and (layers - 1) * layer_stride + top_k <= rows)


def _token_stride(name, shape, strides):
    """The ids from one token's first id to the next's in a [..., tokens, k] array, 0 for a single token (the C API's
    "packed"); refuses rows whose k ids are not side by side, and rows that overlap or run backwards."""
    tokens, top_k = shape[-2:]
    if 0 in shape:
        return 0  # no id is read: an empty array's strides say nothing (torch gives (0, 0, 0))
    if top_k > 1 and strides[-1] != 1:
        raise ValueError(f"{name} shaped {list(shape)} at strides {list(strides)} (in ids): a token's k ids must lie side by side "
                         f"(the last stride 1); use {name}.contiguous() or numpy.ascontiguousarray({name})")
    if tokens <= 1:
        return 0
    if strides[-2] < top_k:
        raise ValueError(f"{name} shaped {list(shape)} at strides {list(strides)} (in ids): rows {strides[-2]} ids apart overlap "
                         f"or run backwards (a token's k = {top_k} ids need at least {top_k}); pass a contiguous copy")
    return strides[-2]


def _placed(holder, where, is_cuda, name):
    """Refuses memory the handle on `where` cannot read: the C API cannot tell host from device memory on
    "cpu"/"managed", nor either from a cl_mem on "opencl"."""
    if where == "opencl":
        raise ValueError(f"this {holder} runs on opencl, which reads a cl_mem; the wrapper passes torch tensors, NumPy arrays "
                         "and array.array, never a cl_mem: create it with accelerator='cuda', 'cpu' or 'managed'")
    if is_cuda and where in ("cpu", "managed"):
        raise ValueError(f"{name} are a CUDA tensor, but this {holder} runs on {where}: create it with accelerator='cuda', or pass {name}.cpu()")
    if not is_cuda and where == "cuda":
        raise ValueError(f"{name} are in host memory, but this {holder} runs on cuda: pass a CUDA tensor")


def _raw_stream(is_cuda, device, stream):
    """The CUstream a record of CUDA memory is ordered on (torch's current stream by default); None for host memory."""
    if is_cuda:
        import torch
        if stream is None:
            stream = torch.cuda.current_stream(device)
        return _integer("stream", getattr(stream, "cuda_stream", stream), 0, _POINTER_MAX) or None
    if stream is not None:
        raise ValueError(f"stream = {_shown(stream)}: a stream orders only CUDA tensors; these ids are in host memory, pass stream=None")
    return None


def _tokens_and_top_k(shape, length, tokens, top_k):
    """tokens and k of ids shaped [..., k]: prod(...) tokens of k ids. Flat ids have no k: top_k or tokens must say it."""
    if tokens is not None:
        tokens = _integer("tokens", tokens, 0, INT32_MAX)
    if top_k is not None:
        top_k = _integer("top_k", top_k, 1, INT32_MAX)
    if len(shape) == 0:
        raise ValueError("ids are a scalar (shape ()); top-k ids are shaped [..., k]")
    if len(shape) >= 2:
        k, rows = shape[-1], math.prod(shape[:-1])
        if top_k is None:
            if k == 0:
                raise ValueError(f"ids shaped {list(shape)} have k = 0 ids per token; top-k ids are shaped [..., k] with k >= 1")
            top_k = _integer(f"top_k (the last dimension of ids shaped {list(shape)})", k, 1, INT32_MAX)
        elif top_k != k:
            raise ValueError(f"top_k = {top_k} does not match ids shaped {list(shape)}: their last dimension, k, is {k}")
        if tokens is None:
            tokens = _integer(f"tokens (the {rows} rows of ids shaped {list(shape)})", rows, 0, INT32_MAX)
        elif tokens != rows:
            raise ValueError(f"tokens = {tokens} does not match ids shaped {list(shape)}: they hold {rows} tokens "
                             "(pad a fixed-size batch with -1 ids instead: all-(-1) tokens are not counted)")
        return tokens, top_k
    if top_k is None and tokens is None:
        raise ValueError(f"ids shaped [{length}] have no k dimension: pass top_k (top_k=1 for {length} tokens of one id each) "
                         "or shape them [tokens, k]")
    if top_k is None:
        if tokens == 0 or length % tokens or length < tokens:
            raise ValueError(f"tokens = {tokens} does not split the {length} ids into tokens of k >= 1 ids each; pass top_k")
        top_k = _integer("top_k", length // tokens, 1, INT32_MAX)
    elif tokens is None:
        if length % top_k:
            raise ValueError(f"the {length} ids are not whole tokens of top_k = {top_k} ids; pass tokens")
        tokens = _integer(f"tokens (the {length} ids / top_k = {top_k})", length // top_k, 0, INT32_MAX)
    elif tokens * top_k < length:
        # More ids than that would be left unread without a word.
        raise ValueError(f"tokens * top_k = {tokens} * {top_k} = {tokens * top_k}, but the ids hold {length}: "
                         "every id must belong to a token (pad with -1 ids)")
    elif tokens * top_k > length:
        # Refused here rather than by the C API, whose message names its own `length` argument.
        raise ValueError(f"ids hold {length} values, fewer than tokens * top_k = {tokens} * {top_k} = {tokens * top_k}")
    return tokens, top_k


def _number(name, value):
    """value as a Python float, else TypeError naming `name`. A number beyond any float (an int of 400 digits) is an
    infinity of its sign: out of every range the callers check, which then name the value as given."""
    not_number = TypeError(f"{name} must be a number (got {_shown(value)} of type {type(value).__name__})")
    # NumPy's and torch's booleans convert to 0.0 and 1.0 as Python's do: refused alike, as _integer refuses them.
    if isinstance(value, bool) or str(getattr(value, "dtype", "")) in ("bool", "torch.bool") or not hasattr(type(value), "__float__"):
        raise not_number
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    except (TypeError, ValueError):
        # An array or tensor of several values has __float__ and refuses it in its own words.
        raise not_number from None


def _finite(name, value):
    """A loss: a number within float32's finite range, else TypeError or ValueError naming `name`."""
    number = _number(name, value)
    # ctypes would turn a double beyond float32's range into an infinity the C API then refuses under another value.
    if not abs(number) <= _FLOAT32_MAX:
        shown = _shown(value if isinstance(value, int) else number)
        raise ValueError(f"{name} = {shown} is out of range: a loss must be finite, within [-{_FLOAT32_MAX!r}, {_FLOAT32_MAX!r}] (float32)")
    return number


def _shown(value):
    """A caller's value as a message shows it: its repr (which escapes what a terminal acts on), cut to 64 characters;
    an integer too long to show, by its digits (repr refuses past 4,300 of them)."""
    if isinstance(value, int) and value.bit_length() > 200:
        digits = math.floor(value.bit_length() * math.log10(2)) + 1
        digits -= abs(value) < 10 ** (digits - 1)  # the estimate is one too many just below a power of ten
        return f"{'-' if value < 0 else ''}(an integer of {digits:,} digits)"
    try:
        text = repr(value)
    except ValueError:
        # A Fraction or an object array holding such an integer: repr refuses it as a whole.
        return f"(a {type(value).__name__} too long to show)"
    return text if len(text) <= 64 else text[:64] + "..."


def _accelerator_name(accelerator):
    """The accelerator a handle asks for: "auto" for None; a str without NUL characters."""
    if accelerator is None:
        return "auto"
    if not isinstance(accelerator, str):
        raise TypeError(f"accelerator must be a str (got {type(accelerator).__name__})")
    if "\0" in accelerator:
        raise ValueError(f"accelerator = {_shown(accelerator)} holds a NUL character")
    try:
        accelerator.encode()
    except UnicodeEncodeError:
        raise ValueError(f"accelerator = {_shown(accelerator)} is not text the library can read (it holds a lone surrogate)") from None
    return accelerator


class _Handle:
    """A native handle: closed on exit and when collected; a failed status raises with the library's message. Every
    library call goes through _lib, which refuses in a child forked from the handle's process (_forked_error)."""

    # What to do once closed, as the error says it.
    _another = "create another one"
    # What to do instead of a copy, as the error says it.
    _instead = "save(path) writes it for another process (moegs report and merge read the file)"

    def __new__(cls, *args, **kwargs):
        handle = super().__new__(cls)
        handle._process, handle._epoch = os.getpid(), _fork_epoch
        return handle

    @property
    def _lib(self):
        self._require_process()
        return self._library

    def _forked(self):
        """Whether this is a child forked from the handle's process, where the handle is the parent's to destroy."""
        return self._epoch != _fork_epoch

    def _require_process(self):
        """Raises in a child forked from the handle's process, before any lock (a parent's thread may have held it)."""
        if self._forked():
            raise _forked_error(f"this {type(self).__name__}", self._process)

    def __reduce_ex__(self, protocol):
        # copy.copy, copy.deepcopy and pickle all come here. A copy would share the handle and destroy it when collected,
        # under the original (and its device arrays); another process has no such handle.
        raise TypeError(f"a {type(self).__name__} is a handle to the library's state in this process: it cannot be copied or pickled; "
                        f"{self._instead}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _close(self, lock_name, destroy):
        """Zeroes the handle and hands it to destroy (which returns a status) under the lock named, once whatever the
        threads: closes racing one another destroy it once, and a call racing the close is told this object is closed,
        not of a handle it never saw. An __init__ that raised before the lock existed leaves nothing to close."""
        lock = getattr(self, lock_name, None)
        if lock is None:
            return
        if self._forked():
            # The parent's handle, and perhaps the parent's lock held by a thread this child does not have: let go of it.
            self._handle = ctypes.c_int64(0)
            return
        with lock:
            handle = self._handle.value
            if handle:
                self._handle = ctypes.c_int64(0)
                self._check(destroy(handle))

    def _check(self, status):
        if status != OK:
            if status == INVALID_HANDLE and not self._handle.value:
                # The library can only say "handle 0 is not a live ...", a handle the caller never saw.
                raise self._closed_error()
            message = self._lib.moegs_last_error().decode("utf-8", "replace")
            # A refusal that names the handle names what a Python caller never saw: the object is the one it called.
            named = f"handle {self._handle.value}: "
            raise _error(status, message[len(named):] if message.startswith(named) else message)

    def _require_open(self):
        """Raises the closed error before a call checks its arguments, so that a closed object says so first (a close
        racing the call is still told by the library, through _check); in a forked child, the fork's error first."""
        self._require_process()
        if not self._handle.value:
            raise self._closed_error()

    def _closed_error(self):
        return MoeGpuStatsError(INVALID_HANDLE, f"this {type(self).__name__} is closed (close(), or the end of its with block): "
                                                f"{self._another}")


class MoeStats(_Handle):
    """One aggregator for `experts` experts on an accelerator: "auto", "cuda", "opencl", "cpu" or "managed" ("auto"
    takes CUDA, then managed, or what MOEGS_ACCELERATOR names: OpenCL only when named, where the wrapper can record
    nothing, as it passes no cl_mem)."""

    def __init__(self, experts, accelerator="auto", expert_capacity=0, library=None):
        """experts: [1, 4096] on a device accelerator, [1, 1048576] on "managed"; expert_capacity: slots
        per expert per batch in [1, 2**31 - 1], beyond which a batch's token-expert slots are dropped (never whole
        tokens), or 0 for no capacity: nothing dropped, and the capacity statistics assume the default of 100."""
        self._handle = ctypes.c_int64(0)
        # Taken by close() alone, so that closes on several threads destroy the handle once.
        self._closing = threading.Lock()
        accelerator = _accelerator_name(accelerator)
        self._experts = _experts(experts, accelerator)
        expert_capacity = _integer("expert_capacity", expert_capacity, 0, INT32_MAX)
        self._accelerator = accelerator
        self._library = _load(library)
        self._check(self._lib.moegs_create(accelerator.encode(), self.experts, expert_capacity, ctypes.byref(self._handle)))
        kind = ctypes.c_char_p()
        self._check(self._lib.moegs_accelerator(self._handle, ctypes.byref(kind)))
        # What "auto" chose: "cuda", "cpu" or "managed" (or "opencl" where named); it decides which ids record() can pass.
        self._device = kind.value.decode()

    # Read-only: the handle's own, and what the calls size their buffers by.
    experts = property(lambda self: self._experts, doc="The experts the aggregator was created with.")
    accelerator = property(lambda self: self._accelerator, doc="The accelerator asked for, as normalized: \"auto\", \"cuda\", \"opencl\", \"cpu\" or \"managed\".")
    device = property(lambda self: self._device, doc="What the accelerator asked for chose: \"cuda\", \"cpu\", \"managed\" (or \"opencl\" where named).")

    def record(self, ids, tokens=None, top_k=None, load_balance_loss=0.0, router_z_loss=0.0, stream=None):
        """Records one batch of top-k ids shaped [..., k] (what torch.topk returns: [tokens, k], [batch, seq, k]):
        prod(...) tokens of k ids. Flat ids (array.array, 1-D arrays) need top_k or tokens. Pad with -1: an id of
        -1 is an empty slot, and a token of k ids all -1 is not a token (nor are its ids invalid). A CUDA tensor is
        read where it lies, ordered on `stream` (a torch.cuda.Stream or a raw CUstream; default: torch's
        current stream for its device): the record waits on the device for the producer's work, and the
        producer's later work waits for it. Host ids take no stream, and are counted before record() returns: their
        buffer can be rewritten then."""
        self._require_open()
        # `alive` holds the ids' memory until the call returns.
        try:
            pointer, length, shape, is_cuda, device, alive = _memory(ids, "ids")
        except TypeError as error:
            kind = str(getattr(ids, "dtype", "")).replace("torch.", "")
            if kind in ("int64", "int16"):
                raise TypeError(f"{error}, or record them on a MoeModelStats of one layer, which reads {kind} ids where they lie") from None
            raise
        tokens, top_k = _tokens_and_top_k(shape, length, tokens, top_k)
        length = _integer("length (the number of ids)", length, 0, INT64_MAX)
        pointer = _integer("ids (the address)", pointer or 0, 0, _POINTER_MAX)
        load_balance_loss = _finite("load_balance_loss", load_balance_loss)
        router_z_loss = _finite("router_z_loss", router_z_loss)
        _placed("aggregator", self.device, is_cuda, "ids")
        raw_stream = _raw_stream(is_cuda, device, stream)
        self._check(self._lib.moegs_record(self._handle, pointer or None, length, tokens, top_k,
                                           load_balance_loss, router_z_loss, raw_stream))

    def record_latency(self, seconds):
        """Records one routing latency of `seconds` (>= 0; kept to the nearest 100 ns)."""
        self._require_open()
        value = _number("seconds", seconds)
        # The sign before rounding: -5e-11 s would round to 0 ns and be recorded as a latency of 0.
        if not (0.0 <= value <= INT64_MAX / 1e9):
            raise ValueError(f"seconds = {_shown(seconds)} is out of range: a latency must lie in [0, {INT64_MAX / 1e9!r}] seconds")
        # Rounded once, to the library's 100 ns and half up as it rounds: rounding to 1 ns first would send
        # 149.6 ns as 150 ns, which the library then rounds up to 200 ns.
        ticks = min(math.floor(value * 1e7 + 0.5), INT64_MAX // 100)
        self._check(self._lib.moegs_record_latency(self._handle, ticks * 100))

    def snapshot(self):
        """Every statistic as a dict, read in one call (one device synchronization). Slots are token-expert
        pairs: routed_slots counts the ids in [0, experts), slots_dropped those beyond expert_capacity,
        routing_efficiency the percent of routed slots kept (0 while none is routed); tokens_dropped stays 0 (record() reports none)."""
        self._require_open()
        out = Snapshot()
        self._check(self._lib.moegs_snapshot_read(self._handle, ctypes.byref(out)))
        return {name: getattr(out, name) for name, _ in Snapshot._fields_}

    def expert_counts(self):
        """Slots routed to each expert (dropped ones included; -1 and invalid ids in none)."""
        self._require_open()
        buffer = (ctypes.c_uint64 * self.experts)()
        self._check(self._lib.moegs_expert_counts(self._handle, buffer, self.experts))
        return list(buffer)

    def expert_utilization(self):
        self._require_open()
        buffer = (ctypes.c_float * self.experts)()
        self._check(self._lib.moegs_expert_utilization(self._handle, buffer, self.experts))
        return list(buffer)

    def save(self, path):
        """Writes the statistics to `path` (str or os.PathLike) as the seed-compatible JSON that `moegs report`, `merge`
        and `plan` read, atomically: a reader never sees half a file. Raises TypeError (not a path), ValueError (a path empty, not UTF-8 or holding NUL) or MoeGpuStatsError
        with status IO_ERROR (the file cannot be written, or the path names a pipe, a device, a socket, a link to one, or a name
        in /dev (but /dev/shm), /proc or /sys, which a file renamed over it would replace; it is left as it was)."""
        self._require_open()
        self._check(self._lib.moegs_save(self._handle, _path_bytes(path)))

    def reset(self):
        self._check(self._lib.moegs_reset(self._handle))

    def close(self):
        self._close("_closing", lambda handle: self._lib.moegs_destroy(handle))


def _summary(out, window, since_start):
    """summary()'s dict of a moegs_model_balance and its layers' moegs_layer_balance arrays."""
    def span(prefix, layers):
        figures = {name: getattr(out, f"{prefix}_{name}") for name in
                   ("min_balancedness", "p10_balancedness", "median_balancedness", "mean_balancedness",
                    "max_balancedness", "token_weighted_balancedness", "worst_layer", "best_layer")}
        figures["per_layer"] = [{"layer": index, **{_SUMMARY_NAMES.get(name, name): getattr(layer, name) for name, _ in LayerBalance._fields_}}
                                for index, layer in enumerate(layers)]
        return figures

    return {"steps": out.steps, "window_steps": out.window_steps, "entries": out.entries,
            "window": span("window", window), "since_start": span("since_start", since_start)}


class MoeModelStats(_Handle):
    """A whole model's routing statistics: every MoE layer at once (moegs_model_* in include/moegs.h), on an
    accelerator as MoeStats: "auto", "cuda", "opencl", "cpu" or "managed" ("auto" takes CUDA, then managed: OpenCL
    only when named, as its model engine has run only on PoCL's CPU device).

        model = moegs.MoeModelStats(layers=24, experts=64, accelerator="cuda")
        model.record(topk_ids)                   # [layers, tokens, k] int32, or a list of [tokens, k] views of one buffer
        model.window_load()                      # [layers, experts] slots over the last `window` steps (EPLB's weight)
        model.summary()["window"]["mean_balancedness"]
        load = torch.as_tensor(model.device_arrays(dtype="int64").window_load, device="cuda")  # the same, without a copy
    """

    def __init__(self, layers, experts, *, expert_capacity=None, window=1000, utilization_decay=None, skip_empty_steps=False,
                 accelerator="auto", library=None):
        """layers: [1, 1024]; experts: [1, 4096]; expert_capacity: slots per expert per step in each layer, or None (or 0)
        for none; window: steps in the sliding window of expert load; utilization_decay: in [0, 1) as a float32 (at most 1 - 2**-24), or None for none (kept per
        layer: layer_decayed_utilization); skip_empty_steps: True to leave out a step in which no layer holds a token (valid
        rows none, or all padding: an idle rank's dummy pass), as vLLM's is_dummy, decided on the device (a CUDA graph's
        replay of a dummy pass is left out too); False (the default) records it as a batch of no load."""
        self._begin()
        accelerator = _accelerator_name(accelerator)
        self._layers = _integer("layers", layers, 1, MODEL_LAYERS_MAX)
        self._experts = _integer("experts", experts, 1, DEVICE_EXPERTS_MAX)
        # 0 is no capacity, as in MoeStats and moegs_model_create.
        capacity = 0 if expert_capacity is None else _integer("expert_capacity", expert_capacity, 0, INT32_MAX,
                                                               f"[0, {INT32_MAX}] (0, or None: no capacity)")
        # moegs_model_create reads a window of 0 as its default; here the default is spelled (window=1000), and 0 is a mistake.
        window = _integer("window", window, 1, INT32_MAX, f"[1, {INT32_MAX}] steps (omit it for the default, 1000, which the C API's 0 means)")
        self._window = window
        decay = -1.0
        self._decayed = utilization_decay is not None
        if utilization_decay is not None:
            decay = _number("utilization_decay", utilization_decay)
            # The C API reads a negative decay as none: a caller's negative number is a mistake, not that (NaN fails too).
            # The library takes a float32: a decay just below 1 would arrive as 1, which it refuses under that value.
            if not 0.0 <= decay < 1.0 or ctypes.c_float(decay).value >= 1.0:
                raise ValueError(f"utilization_decay = {_shown(utilization_decay)} is out of range: it must lie in [0, 1) as a float32 "
                                 f"(at most {ctypes.c_float(1.0 - 2**-24).value!r}), or be None for none")
        self._skip_empty_steps = skip_empty_steps = _flag("skip_empty_steps", skip_empty_steps)
        self._accelerator = accelerator
        self._library = _load(library)
        flags = _MODEL_SKIP_EMPTY_STEPS if skip_empty_steps else 0
        self._check(self._lib.moegs_model_create_with_flags(accelerator.encode(), self.layers, self.experts, capacity, window, decay, flags,
                                                            ctypes.byref(self._handle)))
        self._read_device()

    @classmethod
    def load(cls, path, *, accelerator="auto", library=None):
        """The model saved at `path` (str or os.PathLike): save(path, checkpoint=True)'s file (or save()'s, `moegs replay
        --save`'s, `moegs merge`'s) as a new model on `accelerator` ("auto" takes CUDA, then managed, as the constructor),
        with the saved model's layers, experts, window and settings. A checkpoint's model records on as the saved one
        would, to the bit, on any accelerator: a run saved on a GPU resumes on another GPU or on "managed". A file saved
        without the window ring holds the window's load but not its steps: it loads on "managed" alone ("auto" puts it
        there unless MOEGS_ACCELERATOR names a device; so does a merge whose window holds fewer than min(window, steps)
        steps, and a model with a count above 2**62), answers every read but summary(recent_steps=...) and window_load(recent_steps=...) of fewer steps than
        the window holds, and refuses record() (InvalidArgumentError) until reset().
            model = moegs.MoeModelStats.load("/ckpt/routing.json", accelerator="cuda")
        Raises TypeError (path not a path), ValueError (path empty, not UTF-8 or holding NUL; an unknown accelerator;
        InvalidArgumentError for a file without the ring on a device accelerator), NoDeviceError (no such accelerator)
        or MoeGpuStatsError with status IO_ERROR (the file cannot be read, or is not a model's routing statistics: the
        message names the path and why)."""
        model = cls.__new__(cls)
        model._begin()
        model._accelerator = _accelerator_name(accelerator)
        model._library = _load(library)
        model._check(model._lib.moegs_model_load(model._accelerator.encode(), _path_bytes(path, "read"), ctypes.byref(model._handle)))
        layers, experts, capacity, window = (ctypes.c_int32() for _ in range(4))
        decay, flags = ctypes.c_float(), ctypes.c_uint32()
        model._check(model._lib.moegs_model_options(model._handle, *(ctypes.byref(v) for v in (layers, experts, capacity, window, decay, flags))))
        model._layers, model._experts, model._window = layers.value, experts.value, window.value
        model._decayed = decay.value >= 0
        model._skip_empty_steps = bool(flags.value & _MODEL_SKIP_EMPTY_STEPS)
        model._read_device()
        return model

    def _begin(self):
        """The state every model starts with, before its handle is made."""
        self._handle = ctypes.c_int64(0)
        # Taken by record(), reset(), close() and device_arrays(), and by a DeviceArray's release: they change the handle,
        # the count of calls that make device arrays stale and the count of arrays alive. Other reads take none; the
        # library reads each call from one state (a ModelMetricsCollector's scrape is one call). Reentrant, as a
        # DeviceArray's release runs when the garbage collector finds it, on whatever thread, lock held or not.
        # Uncontended, it adds about 0.2 microseconds to a record.
        self._lock = threading.RLock()
        # DeviceArray objects alive (device_arrays()), the handle close() left for the last of them to destroy, and
        # a count of the calls that fold into the arrays' memory (records, resets), which makes older arrays stale.
        self._exports, self._orphan, self._generation = 0, 0, 0

    def _read_device(self):
        """What "auto" chose, once the handle is made; it decides which memory record() can pass."""
        kind = ctypes.c_char_p()
        self._check(self._lib.moegs_model_accelerator(self._handle, ctypes.byref(kind)))
        self._device = kind.value.decode()

    # Read-only: the handle's own, and what the calls size the arrays they pass to the library by (a smaller count would
    # let the library write past them).
    layers = property(lambda self: self._layers, doc="The MoE layers the model was created with.")
    experts = property(lambda self: self._experts, doc="The experts per layer the model was created with.")
    skip_empty_steps = property(lambda self: self._skip_empty_steps, doc="Whether a step in which no layer holds a token is left out.")
    accelerator = property(lambda self: self._accelerator, doc="The accelerator asked for, as normalized: \"auto\", \"cuda\", \"opencl\", \"cpu\" or \"managed\".")
    device = property(lambda self: self._device, doc="What the accelerator asked for chose: \"cuda\", \"cpu\", \"managed\" (or \"opencl\" where named).")

    def record(self, ids, valid_tokens=None, load_balance_losses=None, router_z_losses=None, stream=None):
        """Records one forward pass of every layer. ids: int32, int64 (torch.topk's; an id outside int32's range counts as
        invalid) or int16 (vLLM's routed-experts capture), shaped [layers, tokens, k] at any strides whose rows hold a
        token's k ids side by side: contiguous, buffer[:, :tokens] of a padded buffer, or buffer[:tokens].swapaxes(0, 1)
        of a [tokens, layers, k] buffer (SGLang's (and some vLLM versions') routed-experts layout); or a list of `layers` arrays shaped
        [tokens, k] that are views of one buffer at equal spacing (the layer stride is read from their addresses). Either
        is read where it lies, without a copy.
        valid_tokens: None (every row), an int (host accelerators), or one int32 in the ids' memory: the rows that are
        tokens, later rows padding; clamped to [0, tokens] when read (a negative count records no token, a larger one
        every row). load_balance_losses, router_z_losses: None, `layers` floats (host accelerators), or float32 arrays of
        `layers` in the ids' memory (contiguous). On host accelerators NumPy and CPU torch values of other types or
        layouts or at unaligned addresses are read as numbers (a count from ids.sum() is int64, NumPy's floats float64,
        losses[:, 0] strided, a view at an odd offset of a byte buffer unaligned). A CUDA record is ordered on `stream` as MoeStats.record's.
        On host accelerators ("cpu", "managed") the step is counted before record() returns: its arrays can be rewritten then."""
        self._require_open()
        # `alive` holds the ids' memory until the call returns, as _per_step's results hold theirs.
        pointer, kind, tokens, top_k, layer_stride, token_stride, is_cuda, device, alive = self._layers_of(ids)
        _placed("model", self.device, is_cuda, "ids")
        valid = self._per_step("valid_tokens", valid_tokens, "int32", 1, is_cuda)
        losses = self._per_step("load_balance_losses", load_balance_losses, "float32", self.layers, is_cuda)
        z_losses = self._per_step("router_z_losses", router_z_losses, "float32", self.layers, is_cuda)
        raw_stream = _raw_stream(is_cuda, device, stream)
        with self._lock:
            self._check(self._lib.moegs_model_record_strided(self._handle, pointer or None, _ID_TYPES[kind][0], self.layers, tokens, top_k,
                                                             layer_stride, token_stride, _address(valid), _address(losses), _address(z_losses),
                                                             raw_stream))
            self._generation += 1

    def summary(self, expert_ranks=None, recent_steps=None):
        """The model's balance as a dict: steps, window_steps, entries (experts, or ranks under a placement), and for
        "window" and "since_start": min/p10/median/mean/max/token_weighted balancedness (p10: the 10th percentile across
        layers, as numpy.percentile(..., 10) interpolates it), worst_layer and best_layer (the first layer with the
        smallest, the largest balancedness) and "per_layer" (one dict
        per layer: layer, load, mean_load, max_load, min_load, balancedness, max_mean_ratio, coefficient_of_variation,
        hottest_expert, coldest_expert, dead_experts, gini_coefficient, top10_percent_share), named as
        `moegs replay --json` names them.
        expert_ranks: None, or the rank of each expert (`experts` ints in [0, experts - 1], numbered from 0 with no rank
            left empty) for the balance over ranks.
        recent_steps: None for the whole window, or 1 to the window: "window" covers only the newest that many steps
        (window_steps says how many it holds), as SGLang logs balance over the last 10, 100 and 1,000 passes.
        Raises TypeError (recent_steps not an integer, expert_ranks not a sequence), ValueError (recent_steps outside
        [1, window], expert_ranks not one rank per expert, or a rank outside [0, experts - 1]; and InvalidArgumentError, a
        ValueError too, for a rank below the largest without an expert, which the library refuses)."""
        self._require_open()
        recent = None if recent_steps is None else self._recent_steps(recent_steps)
        ranks = self._ranks(expert_ranks)
        out, window, since_start = ModelBalance(), (LayerBalance * self.layers)(), (LayerBalance * self.layers)()
        if recent is None:
            self._check(self._lib.moegs_model_summary(self._handle, ranks, ctypes.byref(out), window, since_start))
        else:
            self._check(self._lib.moegs_model_recent_summary(self._handle, recent, ranks, ctypes.byref(out), window, since_start))
        return _summary(out, window, since_start)

    def _ranks(self, expert_ranks):
        """expert_ranks as the C API takes them: None, or `experts` int32 values in [0, experts - 1] (a rank left without an
        expert is the library's to refuse, naming the empty ranks)."""
        if expert_ranks is None:
            return None
        if isinstance(expert_ranks, (collections.abc.Mapping, collections.abc.Set, str, bytes, bytearray)):
            # A mapping lists its keys, a set in no order, text its characters: none is a rank per expert in order.
            raise TypeError(f"expert_ranks must be a sequence of {self.experts} ranks in expert order, expert_ranks[e] the rank of "
                            f"expert e (got a {type(expert_ranks).__name__}); for a mapping, [ranks[e] for e in range({self.experts})]")
        try:
            values = list(expert_ranks)
        except TypeError:
            # A number, a 0-d array: list()'s own error would not name the argument.
            raise TypeError(f"expert_ranks must be a sequence of {self.experts} ranks, one per expert "
                            f"(got {_shown(expert_ranks)} of type {type(expert_ranks).__name__})") from None
        if len(values) != self.experts:
            raise ValueError(f"expert_ranks holds {_count(len(values), 'rank')}; it must hold one per expert ({self.experts})")
        # At most one rank per expert; a rank with no expert is the library's to name, with the ranks that are empty.
        return (ctypes.c_int32 * self.experts)(*(_integer(f"expert_ranks[{e}]", r, 0, self.experts - 1,
                                                           f"[0, {self.experts - 1}] (at most one rank per expert)")
                                                 for e, r in enumerate(values)))

    def begin_read(self, *, expert_ranks=None, recent_steps=None, stream=None):
        """summary() and window_load() without waiting for the device, for a server's loop that must not synchronize
        (moegs_model_read_begin): the reading is enqueued behind the steps recorded so far and the call returns; steps
        recorded afterwards are not in it. Returns a PendingModelRead: poll done() between steps, then result() gives
        (summary(expert_ranks, recent_steps)'s dict, window_load()'s array over the whole window) of that step. On "cuda" nothing waits (but a
        placement that differs from the last one given, copied to the device first); on "opencl" the call waits for the
        copy; on "cpu" and "managed" the read is done when it returns. Raises as summary().
        stream (cuda): a torch.cuda.Stream, an object with .cuda_stream, or a raw CUstream; default: torch's current
        stream where torch imports, else none. The read waits on the device for the work enqueued there before the call
        (a replayed CUDA graph's record() among it), and that stream for the read, so a replay after the call cannot
        overlap it. Elsewhere stream must be None."""
        self._require_open()
        recent = 0 if recent_steps is None else self._recent_steps(recent_steps)
        ranks = self._ranks(expert_ranks)
        raw = self._ordering_stream(stream, "the read", "the read has arrived when begin_read() returns")
        read = ctypes.c_int64(0)
        self._check(self._lib.moegs_model_read_begin(self._handle, recent, ranks, raw or None, ctypes.byref(read)))
        return PendingModelRead(self, read.value)

    def _read(self, recent_steps=None, expert_counts=False):
        """Everything a scrape publishes, in one call from one state (moegs_model_read: one wait on a device): (summary()'s
        dict, summary(recent_steps=)'s or None, window_load() as `layers` lists, each layer's totals as dicts named as
        layer()'s, with expert_counts each layer's counts as lists, else None)."""
        return self._values(self._read_structs(recent_steps, expert_counts))

    def _read_structs(self, recent_steps, expert_counts):
        """_read's C call, into ctypes arrays."""
        recent = 0 if recent_steps is None else self._recent_steps(recent_steps)
        count = self.layers * self.experts
        out, window, since_start = ModelBalance(), (LayerBalance * self.layers)(), (LayerBalance * self.layers)()
        recent_out, recent_layers = ModelBalance(), (LayerBalance * self.layers)()
        totals, load = (LayerTotals * self.layers)(), (ctypes.c_uint64 * count)()
        counts = (ctypes.c_uint64 * count)() if expert_counts else None
        self._check(self._lib.moegs_model_read(self._handle, recent, None, ctypes.byref(out), window, since_start, ctypes.byref(recent_out),
                                               recent_layers, totals, load, counts, count))
        return out, window, since_start, (recent_out, recent_layers) if recent else None, totals, load, counts

    def _values(self, structs):
        """_read's Python values of what _read_structs read."""
        out, window, since_start, recent, totals, load, counts = structs
        rows = lambda values: [list(values[l * self.experts:(l + 1) * self.experts]) for l in range(self.layers)]
        return (_summary(out, window, since_start), _summary(*recent, since_start) if recent else None, rows(load),
                [{name: getattr(layer, name) for name, _ in LayerTotals._fields_} for layer in totals],
                rows(counts) if counts is not None else None)

    def window_load(self, recent_steps=None, out=None):
        """Each expert's slots over the window, shape (layers, experts): a NumPy uint64 array, or lists where NumPy is absent.
        recent_steps: None for the whole window, or 1 to the window for its newest that many steps alone (TypeError when
        not an integer, ValueError outside [1, window]).
        out: None, or a NumPy uint64 array of shape (layers, experts), C-contiguous, aligned and writable, which the load is
        written into and returned, so that a rebalancer reading often allocates no array (TypeError or ValueError
        otherwise, before anything is read or written)."""
        self._require_open()
        recent = None if recent_steps is None else self._recent_steps(recent_steps)
        count = self.layers * self.experts
        buffer = (ctypes.c_uint64 * count)() if out is None else _load_out(out, self.layers, self.experts)
        if recent is None:
            self._check(self._lib.moegs_model_window_load(self._handle, buffer, count))
        else:
            self._check(self._lib.moegs_model_recent_window_load(self._handle, recent, buffer, count))
        return _load_rows(buffer, self.layers, self.experts) if out is None else out

    def _ordering_stream(self, stream, what, elsewhere):
        """The raw CUstream that orders `what` on cuda (0 for none): `stream` (a torch.cuda.Stream, an object with
        .cuda_stream, or a raw CUstream), by default torch's current stream where torch imports; on another
        accelerator stream must be None, as there `elsewhere`."""
        if self.device != "cuda":
            if stream is not None:
                raise ValueError(f"stream = {_shown(stream)}: a stream orders {what} only on cuda; this model runs on {self.device}, "
                                 f"where {elsewhere}: pass stream=None")
            return 0
        if stream is None:
            try:
                import torch
            except ImportError:
                return 0
            stream = torch.cuda.current_stream()
        return _integer("stream", getattr(stream, "cuda_stream", stream), 0, _POINTER_MAX)

    def _recent_steps(self, value):
        """recent_steps checked here, as the other arguments: 1 to the model's window."""
        return _integer("recent_steps", value, 1, self._window, f"[1, {self._window}] (the model's window)")

    def device_arrays(self, stream=None, dtype="uint64"):
        """The model's window load and token counts where the model keeps them, without a copy, for a job that sums them
        across GPUs with its own collective (torch.distributed.all_reduce; NCCL on GPUs) or reads them in its own kernels.
        Returns a DeviceArrays: .window_load (each expert's slots over the window, window_load()'s values) and
        .token_counts (since the start or the last reset), each a DeviceArray of shape (layers, experts), C-contiguous,
        that exports __cuda_array_interface__ (version 3) on "cuda" and __array_interface__ on "cpu"; and .steps,
        .window_steps (the host's count, without a wait: the device's at the latest read whose results the host has, a
        pending read's once taken, plus the record() calls since, a CUDA graph's replays not, and a call whose step
        skip_empty_steps left out until the next read; summary()["steps"] reads the device's). The step recorded last is
        folded in first (moegs_model_device_arrays).

        Ordering (cuda): `stream` (a torch.cuda.Stream, an object with .cuda_stream, or a raw CUstream; default: torch's
        current stream where torch imports, else the default stream of the current CUDA context): the fold waits on the
        device for the work enqueued there before the call (a replayed CUDA graph's record() among it), the stream waits
        on the device for the fold, and the interface names it as the stream to read on. On "cpu" the call finishes the
        fold first.
        Validity: the contents are the steps recorded before this call until the next record() or reset(), which fold into
        the same memory; the interfaces then raise, so export again after each step. A replay of a captured record() folds
        into it too, unseen by the wrapper: the interfaces do not raise then, so read before the next replay. A record() on the reader's
        stream waits for the reads enqueued before it there; reset() does not: finish reading first.
        The arrays are the model's state: writing through them changes the statistics, so all_reduce a copy
        (tensor.clone() on the device), never the exported memory itself. Each DeviceArray keeps the memory alive: a
        close() while one exists refuses further calls at once and frees the memory when the last one goes.
        dtype: "uint64" (the counts' type) or "int64", the same memory read as signed, for torch before 2.3 (no uint64),
        as text or as NumPy's or torch's dtype;
        counts stay below 2**63 in any run. A model on "managed" or "opencl" has no address to give: window_load()
        copies its load on every accelerator."""
        self._require_open()
        # Spelled as text, a NumPy or torch dtype, or a NumPy scalar type (numpy.uint64): the name decides.
        kind = str(getattr(dtype, "__name__", dtype)).replace("torch.", "")
        if kind not in ("uint64", "int64"):
            raise ValueError(f"dtype = {_shown(dtype)}: must be 'uint64' (the counts' type) or 'int64' (the same memory read as signed, for torch)")
        dtype = kind
        if self.device not in ("cuda", "cpu"):
            why = ("a cl_mem is not an address" if self.device == "opencl"
                   else "the managed engine keeps its counts in .NET arrays, which the runtime moves")
            raise ValueError(f"this model runs on {self.device}: device_arrays() needs a model on 'cuda' or 'cpu' ({why}); "
                             "window_load() returns a copy on every accelerator")
        raw = self._ordering_stream(stream, "the export", "the call finishes the fold before it returns")
        out = ModelArrays()
        typestr = ("<" if sys.byteorder == "little" else ">") + ("u8" if dtype == "uint64" else "i8")
        # Under the lock from the export to the arrays' count: a close() meanwhile would destroy the model under them,
        # and a record() or reset() between the export and the arrays' generation would leave them stale unseen.
        with self._lock:
            self._check(self._lib.moegs_model_device_arrays(self._handle, raw or None, ctypes.byref(out)))
            stream = _interface_stream(out.synchronized, raw)
            arrays = [DeviceArray(self, name, getattr(out, name), typestr, stream) for name in ("window_load", "token_counts")]
        return DeviceArrays(*arrays, steps=out.steps, window_steps=out.window_steps, device=out.accelerator.decode())

    def layer(self, layer):
        """Layer `layer`'s statistics as MoeStats.snapshot's dict."""
        self._require_open()
        layer = self._layer_index(layer)
        out = Snapshot()
        self._check(self._lib.moegs_model_layer_snapshot(self._handle, layer, ctypes.byref(out)))
        return {name: getattr(out, name) for name, _ in Snapshot._fields_}

    def layer_expert_counts(self, layer):
        """Layer `layer`'s slots per expert since the start (or the last reset): `experts` ints, MoeStats.expert_counts'."""
        self._require_open()
        return self._layer_values(layer, ctypes.c_uint64, self._lib.moegs_model_layer_expert_counts)

    def layer_expert_utilization(self, layer):
        """Layer `layer`'s utilization per expert (the mean over steps of count / tokens): `experts` floats."""
        self._require_open()
        return self._layer_values(layer, ctypes.c_float, self._lib.moegs_model_layer_expert_utilization)

    def layer_decayed_utilization(self, layer):
        """Layer `layer`'s decayed utilization per expert (decay * previous + (1 - decay) * count / tokens at each step):
        `experts` floats; a model created without utilization_decay refuses it (InvalidArgumentError, a ValueError)."""
        self._require_open()
        layer = self._layer_index(layer)
        if not self._decayed:
            # The C API's refusal names its handle and its negative decay for none, which a Python caller never gave.
            raise InvalidArgumentError(INVALID_ARGUMENT, "this model keeps no decayed utilization: it was created with "
                                                     "utilization_decay=None; give utilization_decay in [0, 1) to keep one")
        return self._layer_values(layer, ctypes.c_float, self._lib.moegs_model_layer_decayed_utilization)

    def _layer_index(self, layer):
        return _integer("layer", layer, 0, self.layers - 1, f"[0, {self.layers - 1}], the model's layers")

    def _layer_values(self, layer, ctype, read):
        layer = self._layer_index(layer)
        buffer = (ctype * self.experts)()
        self._check(read(self._handle, layer, buffer, self.experts))
        return list(buffer)

    def save(self, path, checkpoint=False):
        """Writes the model to `path` (str or os.PathLike) as the JSON that `moegs report`, `merge` and `plan` read (what
        `moegs replay --save` writes): each layer's statistics and the window load, from one read of the model, written
        atomically. Each rank of an expert-parallel job saves its own file; `moegs merge` sums them exactly.
        checkpoint: True to write the window's ring of steps too (about 5.3 bytes a count, window * layers * experts
        counts), so that MoeModelStats.load(path) records on exactly as this model would (a trainer's resume).
        Raises TypeError (not a path), ValueError (a path empty, not UTF-8 or holding NUL; InvalidArgumentError for a
        checkpoint past 512 MiB of ring, or of a model loaded without its ring) or MoeGpuStatsError with status
        IO_ERROR (the file cannot be written, or the path names a pipe, a device, a socket, a link to one, or a name
        in /dev (but /dev/shm), /proc or /sys, which a file renamed over it would replace; it is left as it was)."""
        self._require_open()
        checkpoint = _flag("checkpoint", checkpoint)
        save = self._lib.moegs_model_save_checkpoint if checkpoint else self._lib.moegs_model_save
        # The library reads the model once under its own lock; this wrapper's lock would hold record() for the disk.
        self._check(save(self._handle, _path_bytes(path)))

    def reset(self):
        """Zeroes every count, total and the window; counters a ModelMetricsCollector serves then go down (a counter reset)."""
        self._require_process()
        with self._lock:
            self._check(self._lib.moegs_model_reset(self._handle))
            self._generation += 1

    def close(self):
        """Ends the model: later calls raise. Its memory is freed now, or, while arrays from device_arrays() (or
        tensors made from them) still refer to it, when the last of them is collected. A scrape in progress finishes
        first; a ModelMetricsCollector of the model serves no series after it. On "cuda",
        reset() (or drop) every torch.cuda.CUDAGraph that captured this model's record() or begin_read() before closing
        it: the graph holds a kernel of the model's own CUDA context, which close() destroys."""
        self._close("_lock", self._orphaned)

    def _orphaned(self, handle):
        """Under the lock: the handle close() took, destroyed now or by the release of the last DeviceArray; the status."""
        self._orphan = handle
        return self._destroy_if_unexported()

    def _release_export(self):
        """A DeviceArray was collected: the last one frees the memory of a model closed before it (in its own process)."""
        if self._forked():
            return
        with self._lock:
            self._exports -= 1
            self._destroy_if_unexported()

    def _destroy_if_unexported(self):
        """Under the lock: destroys the handle close() left, once no DeviceArray refers to its memory; the status."""
        if self._exports or not self._orphan:
            return OK
        handle, self._orphan = self._orphan, 0
        return self._lib.moegs_model_destroy(handle)

    def _layers_of(self, ids):
        """(pointer, id type name, tokens, k, layer stride and token stride in ids, is_cuda, device, what keeps the memory
        alive) of one [layers, tokens, k] array at its strides or a list of [tokens, k] views."""
        if not isinstance(ids, (list, tuple)):
            pointer, shape, strides, is_cuda, device, alive, kind = _strided(ids, "ids", "[layers, tokens, k], or a list of [tokens, k] views of one buffer")
            if len(shape) != 3:
                raise ValueError(f"ids shaped {list(shape)}: a model's ids are shaped [layers, tokens, k] (or a list of [tokens, k] views)")
            layers, tokens, top_k = shape
            if top_k == 0:
                raise ValueError(f"ids shaped {list(shape)} have k = 0 ids per token; k must be at least 1")
            if layers != self.layers:
                # A [tokens, layers, k] buffer (SGLang's routed experts) given as it is: its second axis has the layers.
                swapped = f"; if they are [tokens, layers, k], pass ids.swapaxes(0, 1)" if tokens == self.layers else ""
                raise ValueError(f"ids shaped {list(shape)} hold {_count(layers, 'layer')}; this model has {self.layers}{swapped}")
            token_stride = _token_stride("ids", shape, strides)
            layer_stride = strides[0] if layers > 1 and tokens > 0 else 0
            if not _layers_apart(layers, tokens, top_k, layer_stride, token_stride or top_k) or (layers > 1 and tokens > 0 and layer_stride <= 0):
                raise ValueError(f"ids shaped {list(shape)} at strides {list(strides)} (in ids): the layers lie neither one after another "
                                 "nor interleaved token by token (as [tokens, layers, k].swapaxes(0, 1)); pass a contiguous copy")
            return (_integer("ids (the address)", pointer or 0, 0, _POINTER_MAX), kind, _integer("tokens", tokens, 0, INT32_MAX),
                    _integer("top_k", top_k, 1, INT32_MAX), layer_stride, token_stride, is_cuda, device, alive)
        # The views counted as they are read: the library reads `layers` of them whatever len() says.
        ids = list(ids)
        if any(isinstance(view, (list, tuple)) for view in ids):
            raise TypeError("ids are nested Python lists, which the library cannot read where they lie: pass "
                            "numpy.asarray(ids, numpy.int32) (a [layers, tokens, k] array) or a list of [tokens, k] views of one buffer")
        if ids and all(isinstance(view, int) or getattr(view, "shape", None) == () for view in ids):
            # Numbers, Python's or NumPy's and torch's scalars alike, are no views of a layer's ids.
            raise TypeError(f"ids are a flat list of {_count(len(ids), 'number')}, which the library cannot read where they lie: pass "
                            "numpy.asarray(ids, numpy.int32).reshape(layers, tokens, k) or a list of [tokens, k] views of one buffer")
        if len(ids) != self.layers:
            raise ValueError(f"ids holds {_count(len(ids), 'view')}; this model has {_count(self.layers, 'layer')}, one [tokens, k] view each")
        views = [_strided(view, f"ids[{l}]", "[tokens, k], a view of the buffer that holds every layer's") for l, view in enumerate(ids)]
        pointer, shape, strides, is_cuda, device, _, kind = views[0]
        if len(shape) != 2 or shape[1] == 0:
            raise ValueError(f"ids[0] shaped {list(shape)}: each layer's ids are shaped [tokens, k] with k >= 1")
        token_stride = _token_stride("ids[0]", shape, strides)
        for l, (_, other_shape, other_strides, other_cuda, other_device, _, other_kind) in enumerate(views[1:], 1):
            if other_shape != shape or (other_cuda, other_device, other_kind) != (is_cuda, device, kind):
                raise ValueError(f"ids[{l}] shaped {list(other_shape)}, {other_kind} on {'cuda' if other_cuda else 'host'}: every layer's view "
                                 f"must be shaped {list(shape)}, {kind}, in the memory of ids[0]")
            if _token_stride(f"ids[{l}]", other_shape, other_strides) != token_stride:
                raise ValueError(f"ids[{l}] has rows {other_strides[0]} ids apart, ids[0] {strides[0]}: every layer's rows must lie alike")
        # Equal spacing is all the addresses show; torch and NumPy also say which buffer each view is of, so that arrays
        # allocated apart are refused whichever lies first in memory.
        storages = [_storage_address(view) for view in ids if hasattr(view, "data_ptr")]
        if storages and (len(storages) != len(ids) or len(set(storages)) > 1):
            raise ValueError("ids are views of different torch storages (or mix tensors with other arrays): "
                             "pass views of one buffer, e.g. buffer[l] of a [layers, tokens, k] tensor")
        owners = [_owning_array(view) for view in ids]
        known = {id(owner) for owner in owners if owner is not None}
        if len(known) > 1 or (known and any(owner is None for owner in owners)):
            first = next(l for l, owner in enumerate(owners) if owner is not owners[0])
            raise ValueError(f"ids[0] and ids[{first}] are views of different arrays (or mix NumPy arrays with other memory): "
                             "pass views of one buffer, e.g. buffer[l] of a [layers, tokens, k] array")
        tokens, top_k = shape
        size, rows = _ID_TYPES[kind][1], token_stride or top_k
        extent = (tokens - 1) * rows + top_k if tokens else 0
        addresses = [view[0] for view in views]
        gaps = {b - a for a, b in zip(addresses, addresses[1:])}
        if len(gaps) > 1:
            raise ValueError(f"ids are views at addresses {[hex(a) for a in addresses]}: not equally spaced, so not one buffer's layers at one stride")
        gap = gaps.pop() if gaps else size * extent
        if tokens and (gap % size or gap <= 0 or not _layers_apart(self.layers, tokens, top_k, gap // size, rows)):
            raise ValueError(f"ids are views {gap} bytes apart with rows {size * rows} bytes apart: layers must lie in order, at a multiple of "
                             f"{size} bytes, one after another (at least (tokens - 1) * row + k * {size} = {size * extent} bytes apart) or interleaved, "
                             f"as buffer[:, l] of a [tokens, layers, k] buffer (k * {size} = {size * top_k} bytes apart or more, all layers within a row)")
        return (_integer("ids (the address)", pointer or 0, 0, _POINTER_MAX), kind, _integer("tokens", tokens, 0, INT32_MAX),
                _integer("top_k", top_k, 1, INT32_MAX), gap // size if tokens else 0, token_stride, is_cuda, device, views)

    def _per_step(self, name, value, element, count, is_cuda):
        """A per-step argument as memory the C API reads: None, host numbers packed here (host accelerators only), or an
        array of `count` elements in the ids' memory. Returns what keeps the memory alive (and its address)."""
        if value is None:
            return None
        ctype = ctypes.c_int32 if element == "int32" else ctypes.c_float
        memory = hasattr(value, "data_ptr") or hasattr(value, "__array_interface__") or hasattr(value, "buffer_info")
        if memory and not is_cuda and _host_array(value) and (str(value.dtype) not in (element, f"torch.{element}")
                                                              or not _contiguous(value) or not _aligned(value, 4)):
            # Host values of another type or layout are numbers, as Python's are: a count from ids.sum() is int64, NumPy's
            # losses float64, a column of a [layers, 2] array strided, a view at an odd offset of a byte buffer unaligned.
            # Only dense, aligned memory of the element type is read where it lies, as a CUDA tensor must be.
            length = value.numel() if hasattr(value, "numel") else value.size
            if length != count:
                raise ValueError(f"{name} holds {_count(length, 'value')}; it must hold {count}")
            # The array as given, for a refusal of its elements' type: named by its dtype, not by the Python number it listed.
            converted, value = value, _flat(value.tolist())
            memory = False
        else:
            converted = None
        numbers = [value] if count == 1 and not memory and not isinstance(value, (list, tuple)) else value
        on_cuda = f"the ids are a CUDA tensor: pass an {element} CUDA tensor of {count}"
        if isinstance(numbers, (list, tuple)):
            if is_cuda:
                raise ValueError(f"{name} are Python numbers, but {on_cuda}")
            if len(numbers) != count:
                raise ValueError(f"{name} holds {_count(len(numbers), 'value')}; it must hold {count}")
            # Elements are named by index where the caller gave several (a list, an array of a dimension or more); a number as given.
            listed = len(converted.shape) > 0 if converted is not None else isinstance(value, (list, tuple))
            try:
                checked = ([_integer(name, v, -2**31, INT32_MAX) for v in numbers] if element == "int32"
                           else [_finite(f"{name}[{i}]" if listed else name, v) for i, v in enumerate(numbers)])
            except TypeError:
                if converted is None:
                    raise
                kind = "tensor" if hasattr(converted, "data_ptr") else "array" if hasattr(converted, "__len__") else "scalar"
                wanted = ("an integer" if count == 1 else "integers") if element == "int32" else ("a number" if count == 1 else "numbers")
                raise TypeError(f"{name} must hold {wanted} (got {_shown(converted)}, a {str(converted.dtype).replace('torch.', '')} {kind})") from None
            return (ctype * count)(*checked)
        if not memory:
            raise TypeError(f"{name} must be {count} numbers (a list or tuple, on a host accelerator) or an array or tensor "
                            f"of {count} {element} values (got {_shown(value)} of type {type(value).__name__})")
        # Where the memory is comes before its type, as in _memory: an int64 count from a host sum is not made readable
        # by a conversion (a tensor on meta or another device is left to _memory, which names the device).
        if is_cuda and not getattr(value, "is_cuda", False) and getattr(getattr(value, "device", None), "type", "cpu") == "cpu":
            raise ValueError(f"{name} are in host memory, but {on_cuda}")
        pointer, length, _, value_cuda, _, alive = _memory(value, name, element)
        if length != count:
            raise ValueError(f"{name} holds {_count(length, 'value')}; it must hold {count}")
        if value_cuda and not is_cuda:
            raise ValueError(f"{name} are a CUDA tensor, but the ids are not: pass both in one memory")
        return _Address(alive, pointer)


def _count(count, noun):
    """'1 value' or 'N values': a count and its noun, plural but for one."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _host_array(value):
    """Whether `value` is a NumPy array or scalar, or a dense torch tensor in host memory: values a host accelerator can
    take as numbers. A tensor on another device (meta, MPS, XPU) is not: _memory refuses it, naming its device."""
    if hasattr(value, "data_ptr"):
        return getattr(getattr(value, "device", None), "type", None) == "cpu" and str(getattr(value, "layout", "")) == "torch.strided"
    return hasattr(value, "__array_interface__") and hasattr(value, "dtype") and hasattr(value, "tolist")


def _contiguous(value):
    """Whether a host array (see _host_array) is dense in row-major order, as the C API reads memory."""
    if hasattr(value, "is_contiguous"):
        return value.is_contiguous()
    return bool(getattr(value, "flags", {"C_CONTIGUOUS": True})["C_CONTIGUOUS"])


def _aligned(value, size):
    """Whether a host array (see _host_array) starts at a multiple of `size` bytes, as the C API reads its elements."""
    address = value.data_ptr() if hasattr(value, "data_ptr") else value.__array_interface__["data"][0]
    return address % size == 0


def _flat(values):
    """tolist()'s nested lists (or scalar) as one flat list: a [layers, 1] array, or an np.matrix, whose rows stay 2-D."""
    if not isinstance(values, list):
        return [values]
    return [item for value in values for item in _flat(value)]


def _load_out(out, layers, experts):
    """window_load()'s `out` checked (a writable C-contiguous NumPy uint64 array of shape (layers, experts)): the address
    the library writes the load to."""
    numpy = sys.modules.get("numpy")
    if numpy is None or not isinstance(out, numpy.ndarray):
        raise TypeError(f"out must be a NumPy array of uint64, shape ({layers}, {experts}), or None (got {type(out).__name__})")
    if out.dtype != numpy.uint64:
        raise TypeError(f"out must be a NumPy array of uint64 (got {out.dtype}); make it with numpy.empty(({layers}, {experts}), numpy.uint64)")
    if out.shape != (layers, experts):
        raise ValueError(f"out has shape {out.shape}; the window load has shape ({layers}, {experts}), (layers, experts)")
    if not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous (strides {out.strides}); make it with numpy.empty(({layers}, {experts}), numpy.uint64)")
    if not out.flags.aligned:
        raise ValueError(f"out starts at {hex(out.ctypes.data)}, not at a multiple of 8 bytes; make it with numpy.empty(({layers}, {experts}), numpy.uint64)")
    if not out.flags.writeable:
        raise ValueError("out is read-only; pass a writable array")
    return out.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64))


def _load_rows(buffer, layers, experts):
    """A [layers, experts] ctypes uint64 buffer as window_load() returns it: a NumPy array, or lists where NumPy is absent."""
    try:
        import numpy
    except ImportError:
        return [list(buffer[l * experts:(l + 1) * experts]) for l in range(layers)]
    return numpy.frombuffer(buffer, dtype=numpy.uint64).reshape(layers, experts).copy()


class PendingModelRead(_Handle):
    """A read begun by MoeModelStats.begin_read(): done() never waits; result() waits where the read has not arrived,
    then returns (summary dict, window load) and frees the read's memory; close() drops a read unread. A read outlives
    its model (closing the model completes it)."""

    _another = "begin another with model.begin_read()"
    _instead = "take its result() and pass that"

    def __init__(self, model, handle):
        self._lock = threading.Lock()
        self._library, self._handle = model._lib, ctypes.c_int64(handle)
        self._layers, self._experts = model.layers, model.experts
        self._result = None

    def done(self):
        """Whether result() would return without waiting (moegs_model_read_ready). Never waits: while another thread is
        in result() or close(), False for now. True once result() was taken; MoeGpuStatsError once closed unread."""
        self._require_process()
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._result is not None:
                return True
            arrived = ctypes.c_int32(0)
            self._check(self._lib.moegs_model_read_ready(self._handle, ctypes.byref(arrived)))
            return bool(arrived.value)
        finally:
            self._lock.release()

    def result(self):
        """(summary()'s dict, window_load()'s array) at the step the read was begun (moegs_model_read_finish)."""
        self._require_process()
        with self._lock:
            if self._result is None:
                out, window, since_start = ModelBalance(), (LayerBalance * self._layers)(), (LayerBalance * self._layers)()
                count = self._layers * self._experts
                load = (ctypes.c_uint64 * count)()
                self._check(self._lib.moegs_model_read_finish(self._handle, ctypes.byref(out), window, since_start, load, count))
                # The finish freed the handle.
                self._handle = ctypes.c_int64(0)
                self._result = (_summary(out, window, since_start), _load_rows(load, self._layers, self._experts))
            return self._result

    def close(self):
        """Drops the read (after its copy has arrived); result() raises afterwards unless it was taken before."""
        self._close("_lock", lambda handle: self._lib.moegs_model_read_destroy(handle))


def _interface_stream(synchronized, raw_stream):
    """The CUDA Array Interface's stream for an export: None when the host waited for the fold (no synchronization
    needed), else the stream that waits for it, the default stream (0) spelled 1, the legacy default stream, as the
    interface disallows 0."""
    return None if synchronized else (raw_stream or 1)


class DeviceArray:
    """One of a model's (layers, experts) counter arrays in its accelerator's memory, without a copy
    (MoeModelStats.device_arrays says how long its contents hold and how to order a reader). On "cuda" it exports
    __cuda_array_interface__ (version 3: torch.as_tensor(a, device="cuda"), cupy.asarray(a), numba.cuda.as_cuda_array(a)),
    on "cpu" __array_interface__ (numpy.asarray(a)); either views the model's memory itself, writable, and keeps this
    object (so the memory) alive. .ptr, .shape, .typestr and .device describe it; reading an interface after the model's
    next record() or reset() raises, as the memory then holds other counts."""

    def __init__(self, model, name, pointer, typestr, stream):
        self._model, self._generation, self._stream = model, model._generation, stream
        self._name, self._ptr, self._shape, self._typestr, self._device = name, pointer, (model.layers, model.experts), typestr, model.device
        model._exports += 1
        weakref.finalize(self, model._release_export)

    # Read-only: an interface exports them as the memory's address and shape, which a consumer then reads.
    name = property(lambda self: self._name, doc="\"window_load\" or \"token_counts\".")
    ptr = property(lambda self: self._ptr, doc="The array's address in the model's memory.")
    shape = property(lambda self: self._shape, doc="(layers, experts).")
    typestr = property(lambda self: self._typestr, doc="The element type as the array interfaces spell it (\"<u8\", \"<i8\", ...).")
    device = property(lambda self: self._device, doc="\"cuda\" or \"cpu\": which interface it exports.")

    def __reduce_ex__(self, protocol):
        # A copy would view the model's memory without counting as an export, so the model could free it under the copy.
        raise TypeError(f"a DeviceArray views a model's memory in this process: it cannot be copied or pickled; copy its counts "
                        "(numpy.asarray(a).copy(), torch.as_tensor(a, device='cuda').clone())")

    def __repr__(self):
        return f"DeviceArray({self.name}, shape={self.shape}, typestr={self.typestr!r}, device={self.device!r}, ptr=0x{self.ptr:x})"

    def _interface(self, kind):
        # The parent's memory, and on CUDA the parent's context: nothing a child may read or write.
        self._model._require_process()
        if self.device != kind:
            # AttributeError, so that hasattr() tells a consumer which interface this array has.
            raise AttributeError(f"this {self.name} array is in {self.device} memory: it exports "
                                 f"{'__cuda_array_interface__' if self.device == 'cuda' else '__array_interface__'}")
        if self._model._generation != self._generation:
            raise RuntimeError(f"this {self.name} array was exported before the model's last record() or reset(), which fold into "
                               "the same memory: call device_arrays() again")
        interface = {"version": 3, "shape": self.shape, "typestr": self.typestr, "data": (self.ptr, False), "strides": None}
        if kind == "cuda":
            interface["stream"] = self._stream
        return interface

    @property
    def __array_interface__(self):
        return self._interface("cpu")

    @property
    def __cuda_array_interface__(self):
        return self._interface("cuda")


class DeviceArrays:
    """What MoeModelStats.device_arrays returns: .window_load and .token_counts (DeviceArray each), .steps (the steps they
    hold), .window_steps (of those, the steps in the window) and .device ("cuda" or "cpu")."""

    def __init__(self, window_load, token_counts, *, steps, window_steps, device):
        self.window_load, self.token_counts = window_load, token_counts
        self.steps, self.window_steps, self.device = steps, window_steps, device

    def __repr__(self):
        return f"DeviceArrays({self.window_load!r}, {self.token_counts!r}, steps={self.steps}, window_steps={self.window_steps})"


def _owning_array(value):
    """The NumPy array that owns the memory `value` views (through views, NumPy arrays made from a buffer and memoryviews),
    or None where that is unknown: not NumPy, or memory NumPy does not own (a bytearray, an mmap, a torch tensor's)."""
    numpy = sys.modules.get("numpy")  # no NumPy array exists unless the caller imported NumPy
    if numpy is None or not isinstance(value, numpy.ndarray):
        return None
    while True:
        base = value.obj if isinstance(value, memoryview) else getattr(value, "base", None)
        if base is None:
            return value if isinstance(value, numpy.ndarray) else None
        if not isinstance(base, (numpy.ndarray, memoryview)):
            return None
        value = base


def _storage_address(tensor):
    """The address of the storage a torch tensor views (untyped_storage from torch 2.0, storage before)."""
    storage = tensor.untyped_storage() if hasattr(tensor, "untyped_storage") else tensor.storage()
    return storage.data_ptr()


class _Address:
    """Memory a caller passed, kept alive with its address for the duration of a call."""

    def __init__(self, owner, pointer):
        self.owner, self.pointer = owner, pointer


def _address(memory):
    """The address to pass for a per-step argument: None, a ctypes array made here, or the caller's memory."""
    if memory is None:
        return None
    if isinstance(memory, _Address):
        return memory.pointer or None
    return ctypes.addressof(memory)


# ModelMetricsCollector: the .NET publisher's series (src/MoeGpuStats/Telemetry/ModelRoutingStatsMetrics.cs) as the CLI's
# endpoint serves them (src/MoeGpuStats.Cli/Output/MetricsEndpoint.cs): "moegpustats_" + the instrument's name with "." as
# "_", counters with "_total", HELP "(unit) description" where the instrument has a unit. Kept word for word, since the
# alert rules and the dashboard in docs/monitoring/ select these names; the C# test
# NativeApiTests.ThePythonCollectorServesTheDotNetEndpointsSamples compares both expositions sample by sample.
METRICS_PREFIX = "moegpustats_"
_EXPERT_TOKENS_HELP = "Token-expert slots per expert since the start (tags: expert, and layer when given)."

# (instrument, counter?, unit, description, value of a _MetricsReading)
def _float32_decimal(value):
    """A float32 statistic (a Python float since ctypes read it) as the shortest decimal that is the same float32, as
    the library's own exporters publish it: 0.1, not the float32's binary value 0.10000000149011612."""
    exact = struct.pack("<f", value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        try:
            if struct.pack("<f", float(text)) == exact:
                return float(text)
        except OverflowError:
            # Rounded past float32's largest (3.4028235e38 to one digit, 3e38 is fine; 4e38 is not): more digits.
            continue
    return value


_MODEL_SERIES = (
    ("moegs.model.steps", True, "{step}", "Forward passes recorded.", lambda r: r.summary["steps"]),
    ("moegs.model.balancedness.min", False, None, "The smallest layer balancedness in the window.",
     lambda r: r.summary["window"]["min_balancedness"]),
    ("moegs.model.balancedness.p10", False, None,
     "The 10th percentile of the layer balancedness in the window (linear interpolation, as numpy.percentile).",
     lambda r: r.summary["window"]["p10_balancedness"]),
    ("moegs.model.balancedness.median", False, None, "The median layer balancedness in the window.",
     lambda r: r.summary["window"]["median_balancedness"]),
    ("moegs.model.balancedness.mean", False, None, "The mean layer balancedness in the window.",
     lambda r: r.summary["window"]["mean_balancedness"]),
    ("moegs.model.balancedness.max", False, None, "The largest layer balancedness in the window.",
     lambda r: r.summary["window"]["max_balancedness"]),
    ("moegs.model.balancedness.token_weighted", False, None,
     "Sum over layers of the mean expert load over the sum of the max expert load, in the window (vLLM's formula, over experts; vLLM logs it over EP ranks).",
     lambda r: r.summary["window"]["token_weighted_balancedness"]),
    ("moegs.model.worst_layer", False, None, "The first layer with the smallest balancedness in the window.",
     lambda r: r.summary["window"]["worst_layer"]),
    ("moegs.model.best_layer", False, None, "The first layer with the largest balancedness in the window.",
     lambda r: r.summary["window"]["best_layer"]),
    ("moegs.model.window.steps", False, "{step}", "Steps the window holds, up to its length.", lambda r: r.summary["window_steps"]),
    ("moegs.model.window.mean_expert_load", False, "{slot}",
     "Mean slots per expert in the window, over every layer: 0 for an idle window, whose balance is 1 by convention; "
     "under about 20, an expert without a slot may be chance.",
     lambda r: sum(layer["mean_load"] for layer in r.summary["window"]["per_layer"]) / len(r.summary["window"]["per_layer"])),
)

# (instrument, counter?, unit, description, value of a _MetricsReading and a layer); label: layer.
_LAYER_SERIES = (
    ("moegs.layer.slots", True, "{slot}", "Token-expert slots since the start (tag: layer).",
     lambda r, l: r.summary["since_start"]["per_layer"][l]["load"]),
    ("moegs.layer.balancedness", False, None, "Mean over max expert load in the window (tag: layer).",
     lambda r, l: r.summary["window"]["per_layer"][l]["balancedness"]),
    ("moegs.layer.max_mean_ratio", False, None, "Max over mean expert load in the window (tag: layer).",
     lambda r, l: r.summary["window"]["per_layer"][l]["max_mean_ratio"]),
    ("moegs.layer.cv", False, None, "Coefficient of variation of expert load in the window (tag: layer).",
     lambda r, l: r.summary["window"]["per_layer"][l]["coefficient_of_variation"]),
    ("moegs.layer.dead_experts", False, "{expert}", "Experts without a slot in the window (tag: layer).",
     lambda r, l: r.summary["window"]["per_layer"][l]["dead_experts"]),
    ("moegs.layer.gini", False, None, "Gini coefficient of expert load in the window (tag: layer).",
     lambda r, l: r.summary["window"]["per_layer"][l]["gini_coefficient"]),
    ("moegs.layer.top10_share", False, None, "Share of the window's slots on the layer's hottest tenth of the experts (tag: layer).",
     lambda r, l: r.summary["window"]["per_layer"][l]["top10_percent_share"]),
    ("moegs.layer.tokens.dropped", True, "{token}", "Tokens reported dropped since the start, 0 from RecordStep, which reports none; a capacity drops slots, counted in moegs.layer.slots.dropped (tag: layer).",
     lambda r, l: r.layers[l]["tokens_dropped"]),
    ("moegs.layer.slots.dropped", True, "{slot}", "Routed slots dropped beyond the expert capacity since the start (tag: layer).",
     lambda r, l: r.layers[l]["slots_dropped"]),
    ("moegs.layer.expert_ids.invalid", True, "{id}", "Top-k ids outside [0, E) since the start (tag: layer).",
     lambda r, l: r.layers[l]["invalid_expert_ids"]),
    ("moegs.layer.loss.load_balance", False, None, "Mean load-balancing loss since the start (tag: layer).",
     lambda r, l: _float32_decimal(r.layers[l]["average_load_balance_loss"])),
    ("moegs.layer.loss.router_z", False, None, "Mean router z-loss since the start (tag: layer).",
     lambda r, l: _float32_decimal(r.layers[l]["average_router_z_loss"])),
)

# With recent_steps, over the window's newest steps (_MetricsReading.recent, summary(recent_steps=)):
# _MODEL_SERIES's shape; no label.
_RECENT_MODEL_SERIES = (
    ("moegs.model.recent.steps", False, "{step}", "The newest steps of the window the recent balance covers.",
     lambda r: r.recent["window_steps"]),
    ("moegs.model.recent.balancedness.min", False, None, "The smallest layer balancedness over the window's newest steps.",
     lambda r: r.recent["window"]["min_balancedness"]),
    ("moegs.model.recent.balancedness.mean", False, None, "The mean layer balancedness over the window's newest steps.",
     lambda r: r.recent["window"]["mean_balancedness"]),
    ("moegs.model.recent.balancedness.token_weighted", False, None,
     "Sum over layers of the mean load over the sum of the max load, over the window's newest steps.",
     lambda r: r.recent["window"]["token_weighted_balancedness"]),
)

# With ep_size, the window's balance over the EP ranks (_MetricsReading.ep): _MODEL_SERIES's shape; no label.
_EP_MODEL_SERIES = (
    ("moegs.model.ep.balancedness.token_weighted", False, None,
     "Sum over layers of the mean EP rank load over the sum of the max rank load, in the window: vLLM's logged "
     "balancedness, its experts in order on the ranks.", lambda r: r.ep[0]),
    ("moegs.model.ep.balancedness.min", False, None,
     "The smallest layer balancedness over EP ranks (mean rank load over max) in the window.", lambda r: r.ep[1]),
)

# _LAYER_SERIES's shape; label: layer.
_RECENT_LAYER_SERIES = (
    ("moegs.layer.recent.balancedness", False, None, "Mean over max expert load over the window's newest steps (tag: layer).",
     lambda r, l: r.recent["window"]["per_layer"][l]["balancedness"]),
)

# (instrument, unit, description, hottest?, id?); labels: layer, position (1 the hottest or coldest).
_RANKED_SERIES = (
    ("moegs.layer.hot_expert", None,
     "The id of the expert at this position among the layer's hottest in the window (tags: layer, position).", True, True),
    ("moegs.layer.hot_expert.load", "{slot}",
     "Window slots of the expert at this position among the layer's hottest (tags: layer, position).", True, False),
    ("moegs.layer.cold_expert", None,
     "The id of the expert at this position among the layer's coldest in the window (tags: layer, position).", False, True),
    ("moegs.layer.cold_expert.load", "{slot}",
     "Window slots of the expert at this position among the layer's coldest (tags: layer, position).", False, False),
)

# (instrument, counter?, unit, description, token counts (True) or window load); labels: expert, layer.
_EXPERT_SERIES = (
    ("moegs.expert.tokens", True, "{slot}", _EXPERT_TOKENS_HELP, True),
    ("moegs.expert.window_load", False, "{slot}", "Token-expert slots per expert in the window (tags: layer, expert).", False),
)


def _metric_name(instrument):
    return METRICS_PREFIX + instrument.replace(".", "_")


def _metric_help(unit, description):
    return f"({unit}) {description}" if unit else description


def _ranked(row, top):
    """(hottest, coldest) of one layer's window load `row` (a list of ints): `top` expert ids each, hottest (coldest)
    first. Ties as ModelRoutingStatsMetrics breaks them, so that position 1 is the summary's hottest_expert (the last
    of the largest) and coldest_expert (the first of the smallest): among equal loads the higher id is hotter, the
    lower id colder. heapq's nsmallest and nlargest are sorted(...)[:top] (reverse=True for nlargest), stable, so the
    order the ids go in breaks the ties; they take O(experts log top) rather than a sort's O(experts log experts)."""
    experts = len(row)
    coldest = heapq.nsmallest(top, range(experts), key=row.__getitem__)
    hottest = heapq.nlargest(top, range(experts - 1, -1, -1), key=row.__getitem__)
    return hottest, coldest


class _MetricsReading:
    """Everything one scrape serves, read in one call (moegs_model_read: one state, one wait on a device, which a
    record() on another thread does not wait for): summary() (per-layer balance), window_load() as `layers` lists of `experts` ints (slots), each layer's
    totals (named as layer()'s snapshot fields), with expert series each layer's counts, and with recent steps
    summary(recent_steps=) (else None)."""

    def __init__(self, model, expert_series, recent_steps=None, ep_size=None):
        self.summary, self.recent, self.window_load, self.layers, self.counts = model._values(model._read_structs(recent_steps, expert_series))
        self.ep = None if ep_size is None else _ep_balance(self.window_load, ep_size)


def _ep_balance(window_load, ranks):
    """(token-weighted, min) balancedness of `window_load` rows over `ranks` ranks holding the experts in order, as
    ModelRoutingStatsMetrics computes them: per layer mean rank load over max (1 without load); Σ means / Σ maxima."""
    means = maxima = 0.0
    smallest = 1.0
    for row in window_load:
        per_rank = len(row) // ranks
        loads = [sum(row[r * per_rank:(r + 1) * per_rank]) for r in range(ranks)]
        mean, peak = sum(loads) / ranks, max(loads)
        means += mean
        maxima += peak
        smallest = min(smallest, mean / peak if peak else 1.0)
    return (means / maxima if maxima else 1.0), smallest


class ModelMetricsCollector:
    """A prometheus_client collector of one MoeModelStats: the series the .NET side publishes for a model
    (ModelRoutingStatsMetrics) under the names `moegs simulate --metrics-port` serves, so that the model's alert rules and
    the Grafana dashboard's model panels in docs/monitoring/ apply unchanged to a Python server's /metrics:

        from prometheus_client import REGISTRY, start_http_server
        REGISTRY.register(moegs.ModelMetricsCollector(model))   # any /metrics this process serves from REGISTRY serves it
        start_http_server(9464)                                 # where this process serves none

    Series (prefix moegpustats_moegs_; balance figures over the model's sliding window, counts since the start or the
    last reset):
      model (no label): model_steps_total (counter), model_balancedness_min, _p10, _median, _mean, _max, _token_weighted,
        model_worst_layer, model_best_layer, model_window_steps, model_window_mean_expert_load;
      per layer (label layer): layer_slots_total, layer_tokens_dropped_total, layer_slots_dropped_total,
        layer_expert_ids_invalid_total (counters), layer_balancedness, layer_max_mean_ratio, layer_cv, layer_dead_experts,
        layer_gini, layer_top10_share, layer_loss_load_balance, layer_loss_router_z (mean losses since the start);
      per layer and position 1..top_experts (labels layer, position): layer_hot_expert and layer_cold_expert (the expert's
        id, as a value, so the series stay the same however the ranking moves), layer_hot_expert_load and
        layer_cold_expert_load (its window slots). Position 1 is summary()'s hottest_expert / coldest_expert: among equal
        loads the higher id ranks hotter, the lower id colder;
      with expert_series, per (layer, expert) (labels expert, layer): expert_tokens_total (counter, slots since the start)
        and expert_window_load: 2 * layers * experts series (29,696 for DeepSeek-V3's 58 x 256), hence off by default;
      with recent_steps, the balance over the window's newest recent_steps steps only (summary(recent_steps=)), which
        moves within those steps where the window's takes the whole window to: model_recent_steps (the steps covered),
        model_recent_balancedness_min, _mean, _token_weighted, and per layer layer_recent_balancedness.
    series_count() gives the total. Values are those of the .NET endpoint for the same steps, sample for sample.

    One scrape is one reading: summary (and with recent_steps the newest steps' summary), window load, each layer's
    totals (and counts) read in one call (moegs_model_read) from one state, so a scrape on prometheus_client's HTTP
    thread never mixes two steps while another thread records. Each scrape reads anew: one device
    synchronization on a device accelerator, whatever the layers and options.
    After reset() the counters are served lower, which Prometheus's rate() and increase() read as a counter reset, as
    the .NET endpoint serves them. Register one model's collector per registry: a second model's has the same names
    (prometheus_client refuses it as duplicated); serve another model from its own CollectorRegistry.
    A closed model serves no series: its series end there (Prometheus marks them stale), and the registry's other
    collectors, a server's own metrics among them, are served as before; unregister the collector to drop it. Register it
    in the process that records: vLLM's V1 engine records in engine-core and worker processes, whose collectors its
    API server's /metrics does not serve (prometheus_client's multiprocess mode aggregates plain metrics only), so
    serve it there with start_http_server and scrape that port.
    prometheus_client is imported here, not by `import moegs`: only a collector needs it."""

    DEFAULT_TOP_EXPERTS = 5
    # The most series a collector serves, as `moegs --metrics-port` publishes at most: a larger scrape outlasts a
    # scraper's timeout (64 layers x 4,096 experts with expert_series: 35 MB of text a scrape).
    MAX_SERIES = 250_000

    def __init__(self, model, top_experts=None, expert_series=False, recent_steps=None, ep_size=None):
        """model: the MoeModelStats to publish (the caller keeps it and closes it; once closed, it serves no series);
        top_experts: K, the hottest and coldest experts per layer, in [0, experts], default min(5, experts);
        expert_series: whether to publish the 2 * layers * experts per-expert series as well;
        recent_steps: None (the default: no recent series), or the window's newest steps the recent series cover, in
        [1, window] (SGLang logs balancedness over the last 10, 100 and 1,000 passes);
        ep_size: None (the default), or the expert-parallel ranks holding the experts in order, dividing the experts:
        publishes model_ep_balancedness_token_weighted and _min, vLLM's logged balancedness before a rebalance (after
        one with redundant experts, record the physical expert ids, as vLLM's expert_load_pass counts them: vLLM places
        the physical experts on the ranks in order, so the figures are again the ranks' own).
        Raises TypeError for a model that is not a MoeModelStats, a top_experts or recent_steps that is not an integer, or an
        expert_series that is not a bool; ValueError for a top_experts or recent_steps out of its range, or options that
        make more than MAX_SERIES (250,000) series, as `moegs --metrics-port` refuses them."""
        try:
            from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        except ImportError as error:
            raise ImportError("ModelMetricsCollector needs prometheus_client: pip install prometheus-client "
                              f"(Debian and Ubuntu: apt install python3-prometheus-client); importing it failed: {error}") from error
        if not isinstance(model, MoeModelStats):
            raise TypeError(f"model must be a moegs.MoeModelStats (got {type(model).__name__})")
        # A closed model would serve nothing from the first scrape: refused here, where the mistake is.
        model._require_open()
        expert_series = _flag("expert_series", expert_series)
        self.top_experts = (min(self.DEFAULT_TOP_EXPERTS, model.experts) if top_experts is None
                            else _integer("top_experts", top_experts, 0, model.experts, f"[0, {model.experts}], the model's experts"))
        self.recent_steps = None if recent_steps is None else model._recent_steps(recent_steps)
        self.ep_size = None if ep_size is None else _integer("ep_size", ep_size, 1, model.experts, f"[1, {model.experts}], the model's experts")
        if self.ep_size is not None and model.experts % self.ep_size:
            raise ValueError(f"ep_size = {ep_size}: {model.experts} experts do not split evenly over {ep_size} ranks; give a divisor of {model.experts}")
        self._require_series(model.layers, model.experts, expert_series)
        self.model, self.expert_series = model, expert_series
        self._counter, self._gauge = CounterMetricFamily, GaugeMetricFamily

    def _require_series(self, layers, experts, expert_series):
        """Raises ValueError where the options make more than MAX_SERIES series, naming the option that makes them."""
        recent, ep = self.recent_steps is not None, self.ep_size is not None
        total = self.series_count(layers, experts, self.top_experts, expert_series, recent, ep)
        if total <= self.MAX_SERIES:
            return
        without_ranked = self.series_count(layers, experts, 0, False, recent, ep)
        ranked = self.series_count(layers, experts, self.top_experts, False, recent, ep) - without_ranked
        if expert_series and total - without_ranked - ranked > 0:
            raise ValueError(f"expert_series = True: {layers:,} layers x {experts:,} experts make {2 * layers * experts:,} series "
                             f"(2 per layer and expert), {total:,} in all; a collector serves at most {self.MAX_SERIES:,}: "
                             "leave it out (top_experts names each layer's hottest and coldest)")
        raise ValueError(f"top_experts = {self.top_experts}: {layers:,} layers make {ranked:,} series (4 per layer and position: "
                         f"a hot and a cold expert and their loads), {total:,} in all; a collector serves at most "
                         f"{self.MAX_SERIES:,}: give at most {(self.MAX_SERIES - without_ranked) // (4 * layers):,}")

    @staticmethod
    def series_count(layers, experts, top_experts, expert_series, recent_series=False, ep_series=False):
        """The series one collector serves: 11 for the model, 12 per layer, 4 per layer and position, with
        expert_series 2 per (layer, expert), with recent_series (recent_steps given) 4 more for the model and 1 more
        per layer, and with ep_series (ep_size given) 2 more; what a scraper stores per instance
        (ModelRoutingStatsMetrics.SeriesCount). Sizes are a model's (layers 1 to 1,024, experts 1 to 4,096) and
        top_experts 0 to the experts, as a collector takes them; others raise ValueError."""
        layers = _integer("layers", layers, 1, MODEL_LAYERS_MAX)
        experts = _integer("experts", experts, 1, DEVICE_EXPERTS_MAX)
        top_experts = _integer("top_experts", top_experts, 0, experts, allowed=f"[0, {experts}], 0 to the experts")
        expert_series, recent_series, ep_series = (_flag(name, value) for name, value in (
            ("expert_series", expert_series), ("recent_series", recent_series), ("ep_series", ep_series)))
        return (11 + 12 * layers + 4 * layers * top_experts + (2 * layers * experts if expert_series else 0)
                + (4 + layers if recent_series else 0) + (2 if ep_series else 0))

    def describe(self):
        """The families without samples: what registering reads, so that REGISTRY.register() does not read the model."""
        return self._families(None)

    def collect(self):
        """One reading of the model as prometheus_client metric families (collect() of the Collector protocol); none once
        the model is closed, so that a registry shared with the server's own metrics still serves those."""
        try:
            reading = _MetricsReading(self.model, self.expert_series, self.recent_steps, self.ep_size)
        except MoeGpuStatsError as error:
            # Closed before the read or during it: either way the handle is zero. Any other failure is the scrape's error.
            if error.status == INVALID_HANDLE and not self.model._forked() and not self.model._handle.value:
                return []
            raise
        return self._families(reading)

    def _families(self, reading):
        def family(instrument, counter, unit, description, labels):
            kind = self._counter if counter else self._gauge
            return kind(_metric_name(instrument), _metric_help(unit, description), labels=labels)

        layer_names = [str(l) for l in range(self.model.layers)]
        families = []
        recent = self.recent_steps is not None
        model_series = _MODEL_SERIES + (_RECENT_MODEL_SERIES if recent else ()) + (_EP_MODEL_SERIES if self.ep_size is not None else ())
        for instrument, counter, unit, description, value in model_series:
            metric = family(instrument, counter, unit, description, [])
            if reading is not None:
                metric.add_metric([], value(reading))
            families.append(metric)
        for instrument, counter, unit, description, value in _LAYER_SERIES + (_RECENT_LAYER_SERIES if recent else ()):
            metric = family(instrument, counter, unit, description, ["layer"])
            if reading is not None:
                for l, name in enumerate(layer_names):
                    metric.add_metric([name], value(reading, l))
            families.append(metric)
        if self.top_experts:
            ranks = [_ranked(row, self.top_experts) for row in reading.window_load] if reading is not None else None
            positions = [str(p + 1) for p in range(self.top_experts)]
            for instrument, unit, description, hottest, ids in _RANKED_SERIES:
                metric = family(instrument, False, unit, description, ["layer", "position"])
                if reading is not None:
                    for l, name in enumerate(layer_names):
                        row = reading.window_load[l]
                        for position, expert in zip(positions, ranks[l][0 if hottest else 1]):
                            metric.add_metric([name, position], expert if ids else row[expert])
                families.append(metric)
        if self.expert_series:
            experts = [str(e) for e in range(self.model.experts)]
            for instrument, counter, unit, description, tokens in _EXPERT_SERIES:
                # Labels in the order the .NET endpoint writes them (by name), so the two expositions read alike.
                metric = family(instrument, counter, unit, description, ["expert", "layer"])
                if reading is not None:
                    values = reading.counts if tokens else reading.window_load
                    for l, name in enumerate(layer_names):
                        for e, value in zip(experts, values[l]):
                            metric.add_metric([e, name], value)
                families.append(metric)
        return families
