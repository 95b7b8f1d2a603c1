"""MoeGpuStats from Python: Mixture-of-Experts routing statistics kept on the GPU.

ctypes only, no build step: this module loads libmoegs.so (native/build.sh builds it) from
$MOEGS_LIB, from this folder, or from ../native/out. It accepts PyTorch tensors (CUDA tensors
stay on the GPU: only the pointer crosses), NumPy arrays and array.array('i') buffers.

    import torch, moegs
    stats = moegs.MoeStats(experts=64, accelerator="cuda")
    topk_ids = torch.topk(logits, k=2, dim=-1).indices.int()      # [tokens, k], int32, on the GPU
    stats.record(topk_ids)                                         # ordered on torch's current stream; no host wait
    print(stats.snapshot()["utilization_cv"], stats.expert_counts())
"""
import ctypes
import os

OK, INVALID_ARGUMENT, INVALID_HANDLE, NO_DEVICE, DEVICE_ERROR, RUNTIME_ERROR = range(6)
_STATUS = {INVALID_ARGUMENT: "invalid argument", INVALID_HANDLE: "invalid handle", NO_DEVICE: "no such device",
           DEVICE_ERROR: "device error", RUNTIME_ERROR: "runtime error"}


class MoeGpuStatsError(Exception):
    """A failed call: .status is the moegs_status code, the message is moegs_last_error()."""

    def __init__(self, status, message):
        super().__init__(f"{_STATUS.get(status, status)}: {message}")
        self.status = status


class Snapshot(ctypes.Structure):
    _fields_ = [
        ("total_routings", ctypes.c_uint64), ("total_tokens", ctypes.c_uint64), ("tokens_dropped", ctypes.c_uint64),
        ("invalid_expert_ids", ctypes.c_uint64), ("capacity_exceeded_count", ctypes.c_uint64),
        ("total_capacity", ctypes.c_uint64), ("total_used", ctypes.c_uint64), ("latency_measurements", ctypes.c_uint64),
        ("average_latency_ms", ctypes.c_double), ("p95_latency_ms", ctypes.c_double), ("p99_latency_ms", ctypes.c_double),
        ("average_load_balance_loss", ctypes.c_float), ("average_router_z_loss", ctypes.c_float),
        ("routing_efficiency", ctypes.c_float), ("utilization_cv", ctypes.c_float),
        ("capacity_average_utilization", ctypes.c_float), ("capacity_peak_utilization", ctypes.c_float),
        ("most_utilization", ctypes.c_float), ("least_utilization", ctypes.c_float), ("load_variance_trend_100", ctypes.c_float),
        ("experts", ctypes.c_int32), ("most_utilized", ctypes.c_int32), ("least_utilized", ctypes.c_int32),
        ("load_variance_history_len", ctypes.c_int32)]


def _load(path=None):
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [path, os.environ.get("MOEGS_LIB"), os.path.join(here, "libmoegs.so"),
                  os.path.join(here, "..", "native", "out", "libmoegs.so")]
    for candidate in candidates:
        if candidate and os.path.exists(candidate):
            lib = ctypes.CDLL(os.path.abspath(candidate))
            break
    else:
        raise OSError("libmoegs.so not found: run native/build.sh, or set MOEGS_LIB")
    h, i32, i64, f32, vp = ctypes.c_int64, ctypes.c_int32, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
    lib.moegs_create.argtypes = [ctypes.c_char_p, i32, i32, ctypes.POINTER(h)]
    lib.moegs_record.argtypes = [h, vp, i64, i32, i32, f32, f32, vp]
    lib.moegs_record_latency.argtypes = [h, i64]
    lib.moegs_snapshot_read.argtypes = [h, ctypes.POINTER(Snapshot)]
    lib.moegs_expert_counts.argtypes = [h, ctypes.POINTER(ctypes.c_uint64), i32]
    lib.moegs_expert_utilization.argtypes = [h, ctypes.POINTER(ctypes.c_float), i32]
    lib.moegs_reset.argtypes = [h]
    lib.moegs_destroy.argtypes = [h]
    lib.moegs_last_error.restype = ctypes.c_char_p
    for name in ("moegs_create", "moegs_record", "moegs_record_latency", "moegs_snapshot_read", "moegs_expert_counts",
                 "moegs_expert_utilization", "moegs_reset", "moegs_destroy"):
        getattr(lib, name).restype = ctypes.c_int
    return lib


def _ids_pointer(ids):
    """(pointer, length, shape, is_cuda, device index) of int32 ids from torch, NumPy or array.array."""
    if hasattr(ids, "data_ptr") and hasattr(ids, "is_cuda"):  # torch.Tensor
        if str(ids.dtype) != "torch.int32":
            raise TypeError(f"ids must be torch.int32 (got {ids.dtype}); use ids.int()")
        if not ids.is_contiguous():
            raise ValueError("ids must be contiguous; use ids.contiguous()")
        return ids.data_ptr(), ids.numel(), tuple(ids.shape), ids.is_cuda, (ids.device.index if ids.is_cuda else None)
    if hasattr(ids, "__array_interface__"):  # NumPy
        if str(ids.dtype) != "int32":
            raise TypeError(f"ids must be int32 (got {ids.dtype}); use ids.astype(np.int32)")
        if not ids.flags["C_CONTIGUOUS"]:
            raise ValueError("ids must be C-contiguous")
        return ids.ctypes.data, ids.size, tuple(ids.shape), False, None
    if hasattr(ids, "buffer_info") and getattr(ids, "typecode", None) == "i":  # array.array('i')
        address, count = ids.buffer_info()
        return address, count, (count,), False, None
    raise TypeError("ids must be a torch.Tensor, a NumPy array or an array.array('i') of int32")


class MoeStats:
    """One aggregator for `experts` experts on an accelerator: "auto", "cuda", "opencl", "cpu" or "managed"."""

    def __init__(self, experts, accelerator="auto", expert_capacity=0, library=None):
        self._lib = _load(library)
        self._handle = ctypes.c_int64(0)
        self.experts = experts
        self.accelerator = accelerator
        self._check(self._lib.moegs_create(accelerator.encode(), experts, expert_capacity, ctypes.byref(self._handle)))

    def record(self, ids, tokens=None, top_k=None, load_balance_loss=0.0, router_z_loss=0.0, stream=None):
        """Records one batch of top-k ids ([tokens, k]). A CUDA tensor is read where it lies, ordered on
        `stream` (a torch.cuda.Stream or a raw CUstream; default: torch's current stream for its device):
        the record waits on the device for the producer's work, and the producer's later work waits for it."""
        pointer, length, shape, is_cuda, device = _ids_pointer(ids)
        if top_k is None:
            top_k = shape[-1] if len(shape) == 2 else 1
        if tokens is None:
            tokens = length // top_k
        raw_stream = None
        if is_cuda:
            import torch
            if stream is None:
                stream = torch.cuda.current_stream(device)
            raw_stream = getattr(stream, "cuda_stream", stream)
        elif stream is not None:
            raise ValueError("a stream only orders CUDA tensors")
        self._check(self._lib.moegs_record(self._handle, pointer, length, tokens, top_k,
                                           load_balance_loss, router_z_loss, raw_stream))

    def record_latency(self, seconds):
        self._check(self._lib.moegs_record_latency(self._handle, int(round(seconds * 1e9))))

    def snapshot(self):
        """Every statistic as a dict, read in one call (one device synchronization)."""
        out = Snapshot()
        self._check(self._lib.moegs_snapshot_read(self._handle, ctypes.byref(out)))
        return {name: getattr(out, name) for name, _ in Snapshot._fields_}

    def expert_counts(self):
        buffer = (ctypes.c_uint64 * self.experts)()
        self._check(self._lib.moegs_expert_counts(self._handle, buffer, self.experts))
        return list(buffer)

    def expert_utilization(self):
        buffer = (ctypes.c_float * self.experts)()
        self._check(self._lib.moegs_expert_utilization(self._handle, buffer, self.experts))
        return list(buffer)

    def reset(self):
        self._check(self._lib.moegs_reset(self._handle))

    def close(self):
        if self._handle.value:
            self._check(self._lib.moegs_destroy(self._handle))
            self._handle = ctypes.c_int64(0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _check(self, status):
        if status != OK:
            raise MoeGpuStatsError(status, self._lib.moegs_last_error().decode("utf-8", "replace"))
