/*
 * moegs.h: the C API of MoeGpuStats (Mixture-of-Experts routing statistics kept on the GPU).
 *
 * Link with libmoegs.so (built by native/build.sh); keep MoeGpuStats.Native.dll, its
 * .runtimeconfig.json, .deps.json and the other managed assemblies beside it: the library
 * hosts the .NET runtime (hostfxr) on the first call.
 *
 * Every function returns a moegs_status; on failure moegs_last_error() gives the reason on the
 * calling thread, one line naming the argument, its value and what is allowed
 * ("top_k = 0: must lie in [1, 2147483647]."). No call crashes the process on bad input, and a
 * call refused for its arguments changes no statistic. Calls on one handle from several threads
 * are serialized (safe, not concurrent).
 *
 * On "cuda" the library works in a CUDA context of its own; every call returns with the calling
 * thread's current CUDA context as it found it (PyTorch's primary context, say), so the caller's
 * next CUDA runtime call runs where it expects.
 */
#ifndef MOEGS_H
#define MOEGS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum moegs_status {
    MOEGS_OK = 0,
    MOEGS_INVALID_ARGUMENT = 1, /* an argument out of its range, NULL, misaligned or foreign pointer, unusable stream */
    MOEGS_INVALID_HANDLE = 2,   /* never created, or already destroyed */
    MOEGS_NO_DEVICE = 3,        /* the requested accelerator is not present */
    MOEGS_DEVICE_ERROR = 4,     /* the device or driver failed (allocation, launch, CUDA call) */
    MOEGS_RUNTIME_ERROR = 5     /* the .NET runtime could not start, or an unexpected error */
} moegs_status;

typedef int64_t moegs_handle;

/* Everything a monitoring loop reads, copied back in one call (one device synchronization).
 * Its size is moegs_snapshot_size(); a caller built against another version of this header can
 * compare the two before the first read, since moegs_snapshot_read writes that many bytes.
 *
 * Units: a token is a row of top_k ids with at least one id other than -1; a slot is one
 * token-expert pair, an id in [0, experts). An id of -1 is an empty slot (neither counted nor
 * invalid), so a row of k ids all -1 is padding, not a token. */
typedef struct moegs_snapshot {
    uint64_t total_routings;           /* batches recorded */
    uint64_t total_tokens;             /* tokens recorded, padding rows excluded */
    uint64_t tokens_dropped;           /* whole tokens reported dropped: moegs_record reports none, so
                                        * always 0 here; a capacity drops slots (slots_dropped) */
    uint64_t routed_slots;             /* slots routed to a valid expert; -1 and invalid ids excluded */
    uint64_t slots_dropped;            /* of routed_slots, those beyond expert_capacity: per batch, the sum
                                        * over experts of max(0, count - expert_capacity); 0 without a capacity */
    uint64_t invalid_expert_ids;       /* ids outside [0, E) other than -1 */
    uint64_t capacity_exceeded_count;  /* batches that dropped slots */
    uint64_t total_capacity;           /* slots available over all batches: experts * slots per expert each */
    uint64_t total_used;               /* slots kept over all batches (routed minus dropped) */
    uint64_t latency_measurements;
    double average_latency_ms;
    double p95_latency_ms;
    double p99_latency_ms;
    float average_load_balance_loss;
    float average_router_z_loss;
    float routing_efficiency;          /* percent of routed token-expert slots kept:
                                        * (routed_slots - slots_dropped) / routed_slots * 100 */
    float utilization_cv;              /* coefficient of variation of expert utilization */
    float capacity_average_utilization; /* exponential average (alpha 0.1) of each batch's kept / available slots, a fraction */
    float capacity_peak_utilization;   /* largest per-batch kept / available slots, a fraction */
    float most_utilization;
    float least_utilization;
    float load_variance_trend_100;     /* slope of the last 100 per-batch load variances */
    int32_t experts;                   /* 0 before the first record */
    int32_t most_utilized;             /* -1 before the first record */
    int32_t least_utilized;
    int32_t load_variance_history_len;
} moegs_snapshot;

/* Creates an aggregator for `experts` experts. accelerator: "auto" (or NULL: CUDA, then OpenCL,
 * then the managed engine, the rule RoutingStats.Create and the CLI follow), "cuda", "opencl", "cpu"
 * (ILGPU's CPU accelerator), or "managed" (no accelerator).
 * experts: [1, 4096] on the accelerators (their device engine's limit), [1, 2147483591] on "managed".
 * expert_capacity: slots per expert per batch; a batch's slots beyond it are dropped (slots_dropped),
 * never whole tokens. 0: no capacity, nothing dropped, and the capacity statistics assume the seed's
 * 100 slots per expert. Negative is refused. *out is 0 when the call fails. */
moegs_status moegs_create(const char* accelerator, int32_t experts, int32_t expert_capacity, moegs_handle* out);

/* Records one batch of top-k ids (int32, laid out [tokens, top_k]).
 * tokens >= 0, top_k >= 1, tokens * top_k <= 2^31 - 1 (the ids one record reads); length: the ids
 * the buffer holds, >= tokens * top_k (any more are not read). Losses must be finite.
 * ids: a CUDA device pointer (CUdeviceptr) of the handle's GPU on "cuda", a cl_mem on "opencl",
 * host memory on "cpu" and "managed"; 4-byte aligned (except a cl_mem); NULL only with length 0.
 * The memory is read in place, never copied to the host.
 * An id of -1 is an empty slot: neither counted nor invalid, and a token whose top_k ids are all -1
 * is padding, not counted in total_tokens (so a batch padded to a fixed shape can be recorded whole).
 * Every other id outside [0, experts) counts in invalid_expert_ids and nowhere else.
 * stream (on "cuda"): the producer's CUstream, or NULL for the default stream of the calling
 * thread's current CUDA context (CUDA's own meaning of NULL; no ordering if no context is current).
 * Elsewhere stream must be NULL: nothing there orders on a CUDA stream.
 * The record waits on the device for the producer's work enqueued so far, and the producer's later
 * work waits for the record, so the buffer can be reused; the host never waits. */
moegs_status moegs_record(moegs_handle handle, const void* ids, int64_t length, int32_t tokens, int32_t top_k,
                          float load_balance_loss, float router_z_loss, void* stream);

/* Records one routing latency, in nanoseconds (>= 0; kept to the nearest 100 ns). */
moegs_status moegs_record_latency(moegs_handle handle, int64_t nanoseconds);

/* Where the handle's statistics live: *out = "cuda", "opencl", "cpu" or "managed" (what "auto"
 * chose), a static string; it says what moegs_record's ids must be. */
moegs_status moegs_accelerator(moegs_handle handle, const char** out);

/* Reads the statistics into *out (moegs_snapshot_size() bytes). */
moegs_status moegs_snapshot_read(moegs_handle handle, moegs_snapshot* out);

/* sizeof(moegs_snapshot) as the library was built with it, so that a caller (or a binding such as
 * the Python wrapper) can refuse a mismatched library instead of letting it write past its struct.
 * Starts the runtime like every call; 0 when it could not start (moegs_last_error() says why). */
int32_t moegs_snapshot_size(void);

/* Copies the per-expert slot counts (-1 and invalid ids not among them) / utilization (per expert, the
 * mean over batches of count / tokens) into dst (capacity: the values dst holds, >= experts). */
moegs_status moegs_expert_counts(moegs_handle handle, uint64_t* dst, int32_t capacity);
moegs_status moegs_expert_utilization(moegs_handle handle, float* dst, int32_t capacity);

/* Clears the statistics. */
moegs_status moegs_reset(moegs_handle handle);

/* Frees the aggregator and its device memory; the handle is invalid afterwards. */
moegs_status moegs_destroy(moegs_handle handle);

/* The last error's text on this thread ("" if none). Valid until the next failing call on it. */
const char* moegs_last_error(void);

#ifdef __cplusplus
}
#endif

#endif
