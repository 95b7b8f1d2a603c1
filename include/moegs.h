/*
 * moegs.h: the C API of MoeGpuStats (Mixture-of-Experts routing statistics kept on the GPU).
 *
 * Link with libmoegs.so (built by native/build.sh); keep MoeGpuStats.Native.dll, its
 * .runtimeconfig.json, .deps.json and the other managed assemblies beside it: the library
 * hosts the .NET runtime (hostfxr) on the first call.
 *
 * Every function returns a moegs_status; on failure moegs_last_error() gives the reason on the
 * calling thread, one line naming the argument, its value and what is allowed
 * ("top_k = 0: must lie in [1, 2147483647]."). No call crashes the process on bad arguments, and a
 * call refused for its arguments changes no statistic. A pointer is trusted for what it points to:
 * the library cannot know a raw buffer's length, so a buffer shorter than the call reads or writes
 * (the counts and sizes each function states) is undefined behaviour, as for memcpy. An out-pointer a call always
 * writes, and a save's path, are refused before the handle is looked up (MOEGS_INVALID_ARGUMENT on a destroyed handle
 * too); every other argument (those the object's shape bounds, and an out-pointer only some values need, as
 * moegs_model_read's recent_out) after it: a call on a destroyed handle is then MOEGS_INVALID_HANDLE. Floating-point
 * figures sum their terms in expert (or layer) order: NumPy's pairwise sums of the same terms may differ in the
 * last bit or two.
 * Calls on one handle from several threads are serialized (safe, not concurrent), but for a
 * model's reads (its summaries, window loads, layer reads, moegs_model_read, moegs_model_read_begin and moegs_model_save):
 * those are serialized with one another, not with its records and resets. On a device a read waits
 * for its copy back without holding up a record on another thread, and reads the state as the steps
 * before it left it (moegs_model_save too: the state it writes is staged and copied back as a read,
 * and its file written after). Calls on different handles run concurrently. A handle destroyed while another
 * thread's call on it runs waits for that call; a call after the destroy is MOEGS_INVALID_HANDLE. A successful call leaves
 * moegs_last_error() as it was; the string it returns lives until the thread's next failing call or its end, so copy
 * it before another call (a thread's message is freed some time after the thread ends). A model whose state cannot be allocated is MOEGS_DEVICE_ERROR on every accelerator,
 * "managed" included, the message giving the bytes it needs.
 *
 * The .NET runtime the library hosts starts threads of its own and installs signal handlers (SIGSEGV among
 * them) that chain to the handlers installed before the first call; SIGPIPE it sets to ignored, so a write to a
 * closed pipe then fails with EPIPE instead of ending the process, and children inherit that (set SIGPIPE back
 * after the first call where the program relies on it). The first call, which starts the runtime, needs a thread
 * stack of at least 256 KiB (a thread of 64 KiB overflows it). The library finds the runtime's files beside its
 * own file, links resolved, whatever name and working folder it was loaded by. It does not survive fork(): a child forked
 * after the first call must not call the library (it crashes or hangs, and can take the parent with it); start
 * each process that uses it with exec (posix_spawn, Python's "spawn"). "auto" (or NULL) reads
 * MOEGS_ACCELERATOR; accelerator names ignore case and surrounding spaces.
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
    MOEGS_INVALID_HANDLE = 2,   /* never created, already destroyed, or another kind's (a model's given to an aggregator call) */
    MOEGS_NO_DEVICE = 3,        /* the requested accelerator is not present */
    MOEGS_DEVICE_ERROR = 4,     /* the device or driver failed (allocation, launch, CUDA call) */
    MOEGS_RUNTIME_ERROR = 5,    /* the .NET runtime could not start, or an unexpected error */
    MOEGS_IO_ERROR = 6          /* a file could not be written (moegs_save, moegs_model_save*; the target is as it was)
                                 * or read as a model (moegs_model_load) */
} moegs_status;

typedef int64_t moegs_handle;

/* Everything a monitoring loop reads, copied back in one call (one device synchronization).
 * Its size is moegs_snapshot_size(); a caller built against another version of this header can
 * compare the two before the first read, since moegs_snapshot_read writes that many bytes.
 *
 * Units: a token is a row of top_k ids with at least one id other than -1; a slot is one
 * token-expert pair, an id in [0, experts). An id of -1 is an empty slot (neither counted nor
 * invalid), so a row of k ids all -1 is padding, not a token. Its padding bytes, and those of every struct the
 * library writes, are written as 0: two reads of one state are equal under memcmp. */
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
    uint64_t total_capacity;           /* slots available over all batches: experts * slots per expert each, up to 2^63 - 1 */
    uint64_t total_used;               /* slots kept over all batches (routed minus dropped), up to 2^63 - 1 */
    uint64_t latency_measurements;
    double average_latency_ms;
    double p95_latency_ms;
    double p99_latency_ms;
    float average_load_balance_loss;
    float average_router_z_loss;
    float routing_efficiency;          /* percent of routed token-expert slots kept:
                                        * (routed_slots - slots_dropped) / routed_slots * 100;
                                        * 0 while routed_slots is 0 (the seed's) */
    float utilization_cv;              /* coefficient of variation of expert utilization */
    float capacity_average_utilization; /* exponential average (alpha 0.1, from 0, as the seed's) of each batch's kept /
                                        * available slots, a fraction: one fully used batch reads 0.1 */
    float capacity_peak_utilization;   /* largest per-batch kept / available slots, a fraction */
    float most_utilization;            /* utilization (the mean over batches of count / tokens) of most_utilized */
    float least_utilization;
    float load_variance_trend_100;     /* slope of the last 100 per-batch load variances */
    int32_t experts;                   /* 0 before the first record */
    int32_t most_utilized;             /* the last expert of the largest utilization; -1 before the first record */
    int32_t least_utilized;            /* the first expert of the smallest utilization; -1 before the first record */
    int32_t load_variance_history_len;
} moegs_snapshot;

/* Creates an aggregator for `experts` experts. accelerator: "auto" (or NULL: CUDA, then the managed
 * engine, as for a model: OpenCL only when named, since a cl_mem of the caller's context is outside the
 * OpenCL standard (below); where MOEGS_ACCELERATOR is set in the environment before the library loads,
 * the engine it names), "cuda", "opencl", "cpu"
 * (ILGPU's CPU accelerator: the device kernels run thread by thread, to test the device path without a
 * GPU; far slower than "managed"), or "managed" (no accelerator).
 * experts: [1, 4096] on the accelerators (their device engine's limit), [1, 1048576] on "managed" (the library's limit);
 * "auto" takes [1, 4096], or [1, 1048576] where MOEGS_ACCELERATOR = managed sends it to the managed engine.
 * expert_capacity: slots per expert per batch; a batch's slots beyond it are dropped (slots_dropped),
 * never whole tokens. 0: no capacity, nothing dropped, and the capacity statistics assume the seed's
 * 100 slots per expert. Negative is refused. *out is 0 when the call fails. */
moegs_status moegs_create(const char* accelerator, int32_t experts, int32_t expert_capacity, moegs_handle* out);

/* Records one batch of top-k ids (int32, laid out [tokens, top_k]).
 * tokens >= 0, top_k >= 1, tokens * top_k <= 2^31 - 1 (the ids one record reads); length: the ids
 * the buffer holds, >= tokens * top_k (any more are not read). Losses must be finite.
 * ids: a CUDA device pointer (CUdeviceptr) of the handle's GPU on "cuda", a cl_mem on "opencl",
 * host memory on "cpu" and "managed"; 4-byte aligned (except a cl_mem); NULL only with length 0.
 * The OpenCL standard lets a kernel read only a cl_mem of its own context, and this API does not give
 * out the library's: PoCL reads a cl_mem of the caller's context on the same device; another driver
 * may refuse it (CL_INVALID_MEM_OBJECT). No GPU's OpenCL driver has run this path.
 * The memory is read in place, never copied to the host.
 * An id of -1 is an empty slot: neither counted nor invalid, and a token whose top_k ids are all -1
 * is padding, not counted in total_tokens (so a batch padded to a fixed shape can be recorded whole).
 * Every other id outside [0, experts) counts in invalid_expert_ids and nowhere else.
 * stream (on "cuda"): the producer's CUstream, or NULL for the default stream of the calling
 * thread's current CUDA context (CUDA's own meaning of NULL; no ordering if no context is current).
 * Elsewhere stream must be NULL: nothing there orders on a CUDA stream.
 * On "cuda" the record waits on the device for the producer's work enqueued so far, and the producer's
 * later work waits for the record, so the buffer can be reused; the host never waits. On "opencl" the
 * library reads the cl_mem on a command queue of its own, which it cannot order against the caller's:
 * the caller's writes to it must be complete (clFinish) before the call, and the call waits until the
 * batch has read the buffer, so that it can be rewritten once the call returns. On "cpu" and "managed"
 * the batch is counted before the call returns: the buffer can be rewritten then. */
moegs_status moegs_record(moegs_handle handle, const void* ids, int64_t length, int32_t tokens, int32_t top_k,
                          float load_balance_loss, float router_z_loss, void* stream);

/* Records one routing latency, in nanoseconds (>= 0; kept to the nearest 100 ns). */
moegs_status moegs_record_latency(moegs_handle handle, int64_t nanoseconds);

/* Where the handle's statistics live: *out = "cuda", "opencl", "cpu" or "managed" (what "auto"
 * chose), a static string; it says what moegs_record's ids must be. *out is NULL when the call fails. */
moegs_status moegs_accelerator(moegs_handle handle, const char** out);

/* Reads the statistics into *out (moegs_snapshot_size() bytes). */
moegs_status moegs_snapshot_read(moegs_handle handle, moegs_snapshot* out);

/* sizeof(moegs_snapshot) as the library was built with it, so that a caller (or a binding such as
 * the Python wrapper) can refuse a mismatched library instead of letting it write past its struct.
 * Starts the runtime like every call; 0 when it could not start (moegs_last_error() says why). */
int32_t moegs_snapshot_size(void);

/* Copies the per-expert slot counts (-1 and invalid ids not among them) / utilization (per expert, the
 * mean over batches of count / tokens) into dst (capacity: the values dst holds, >= the experts given to
 * moegs_create). Writes exactly `experts` values, zeros before the first record and after a reset. */
moegs_status moegs_expert_counts(moegs_handle handle, uint64_t* dst, int32_t capacity);
moegs_status moegs_expert_utilization(moegs_handle handle, float* dst, int32_t capacity);

/* Writes the statistics to `path` (UTF-8) as the seed-compatible JSON that `moegs report`, `merge` and
 * `plan` read (what `moegs replay --save` writes): through a temporary file in the same folder, renamed
 * over the target, so a reader never sees half a file. One read of the statistics (a device
 * synchronization on a device accelerator). MOEGS_INVALID_ARGUMENT for a NULL or empty path, or one that is not
 * UTF-8 (the message shows its undecodable bytes as \xNN);
 * MOEGS_IO_ERROR (the message names the path and why) when it cannot be written, or names a pipe, a
 * device, a socket, a link to one, or a name in /dev (but /dev/shm), /proc or /sys, which the renamed file would
 * replace (a link to a file is replaced by the file, its target left alone). */
moegs_status moegs_save(moegs_handle handle, const char* path);

/* Clears the statistics. */
moegs_status moegs_reset(moegs_handle handle);

/* Frees the aggregator and its device memory; the handle is invalid afterwards. */
moegs_status moegs_destroy(moegs_handle handle);

/* ---- A whole model: every MoE layer's statistics at once ------------------------------------
 * A model handle (moegs_model_create) keeps each layer's statistics (each as an aggregator's, read
 * with moegs_model_layer_snapshot), the sliding window of expert load that feeds rebalancing
 * (moegs_model_window_load, the weight of DeepSeek's EPLB), and the model's balance
 * (moegs_model_summary). On a device accelerator a step is one kernel launch for all layers.
 * Model handles and aggregator handles are not interchangeable: either passed to the other's
 * functions is MOEGS_INVALID_HANDLE. The error discipline is the aggregator's. */

/* The balance of one layer over its experts (or, with a placement, over its ranks), over one span of
 * steps. Loads are token-expert slots; formulas after vLLM's EPLB metrics. */
typedef struct moegs_layer_balance {
    uint64_t load;         /* slots over all experts (ranks) */
    double mean_load;      /* slots per expert (rank) */
    uint64_t max_load;     /* the largest expert's (rank's) slots */
    uint64_t min_load;     /* the smallest expert's (rank's) slots */
    double balancedness;   /* mean_load / max_load in (0, 1]; 1 without load */
    double max_mean_ratio; /* max_load / mean_load, >= 1; 1 without load */
    double cv;             /* population standard deviation of the loads over their mean; 0 without load */
    int32_t hottest;       /* the last expert (rank) with the largest load (ties as most_utilized's) */
    int32_t coldest;       /* the first expert (rank) with the smallest load */
    int32_t dead;          /* experts (ranks) without a slot */
    double gini;           /* Gini coefficient of the loads: sum_i (2i - n - 1) x_(i) / (n sum x) over the n loads
                            * in ascending order, 0 even, (n - 1) / n all on one; 0 without load */
    double top10_share;    /* share of the slots on the hottest ceil(n / 10) experts (ranks): ceil(n / 10) / n even,
                            * 1 all on them; ceil(n / 10) / n without load */
} moegs_layer_balance;

/* The model's figures across layers, over the window and since the start (or the last reset).
 * Its size is moegs_model_balance_size(), the per-layer struct's moegs_layer_balance_size(): a caller built
 * against another version of this header compares them with its own before the first read, since the
 * calls that fill them write that many bytes. */
typedef struct moegs_model_balance {
    uint64_t steps;                                  /* steps recorded */
    double window_min_balancedness;                  /* the smallest layer balancedness */
    double window_p10_balancedness;                  /* the 10th percentile, interpolated linearly between the layers
                                                      * at rank 0.1 * (layers - 1) as numpy.percentile's default */
    double window_median_balancedness;               /* the median (mean of the middle two for an even layer count) */
    double window_mean_balancedness;
    double window_token_weighted_balancedness;       /* sum over layers of mean_load / sum of max_load; 1 without load */
    double since_start_min_balancedness;
    double since_start_p10_balancedness;
    double since_start_median_balancedness;
    double since_start_mean_balancedness;
    double since_start_token_weighted_balancedness;
    int32_t window_steps;                            /* steps in the window: steps, at most the window
                                                      * (at most recent_steps from moegs_model_recent_summary) */
    int32_t window_worst_layer;                      /* the first layer with the smallest balancedness */
    int32_t since_start_worst_layer;
    int32_t entries;                                 /* what each layer's balance is over: experts, or the ranks
                                                      * (the largest rank + 1) of the placement given */
    double window_max_balancedness;                  /* the largest layer balancedness (1 where a layer has no load) */
    double since_start_max_balancedness;
    int32_t window_best_layer;                       /* the first layer with the largest balancedness */
    int32_t since_start_best_layer;
} moegs_model_balance;

/* Creates a model of `layers` MoE layers of `experts` experts each. accelerator: as moegs_create
 * ("auto" or NULL, "cuda", "opencl", "cpu", "managed"), but "auto" takes CUDA, then managed: OpenCL only when
 * named (its model engine has run only on PoCL's CPU device; docs/performance.md).
 * layers: [1, 1024]. experts: [1, 4096] on every accelerator, "managed" included.
 * expert_capacity: slots per expert per step in each layer, as moegs_create's; 0 for none.
 * window: steps in the sliding window of expert load, 0 for the default of 1000 (vLLM's and SGLang's
 * ring); window * layers * experts <= 2,147,483,591 (the most elements of a .NET array). utilization_decay: each layer's decayed utilization
 * decay in [0, 1) (-0.0 is 0), or a value below 0 (-1) for none (read it with moegs_model_layer_decayed_utilization). *out is 0
 * when the call fails. */
moegs_status moegs_model_create(const char* accelerator, int32_t layers, int32_t experts, int32_t expert_capacity,
                                int32_t window, float utilization_decay, moegs_handle* out);

/* Flags of moegs_model_create_with_flags, or-ed together. */
enum {
    /* A step in which no layer holds a token (a valid_tokens of 0, or every valid row padding: an idle
     * rank's dummy pass) is left out: it takes no place in the window and counts in no statistic, as
     * vLLM leaves its dummy passes (is_dummy) out of its load window. Decided on the device, so a dummy
     * pass replayed in a CUDA graph is left out too. Without it such a step is a batch of no load. */
    MOEGS_MODEL_SKIP_EMPTY_STEPS = 1
};

/* moegs_model_create with flags (0 for none: moegs_model_create's model). A bit that is not a flag
 * above is MOEGS_INVALID_ARGUMENT. */
moegs_status moegs_model_create_with_flags(const char* accelerator, int32_t layers, int32_t experts, int32_t expert_capacity,
                                           int32_t window, float utilization_decay, uint32_t flags, moegs_handle* out);

/* Records one forward pass of every layer. Layer l's ids are [tokens, top_k] int32 at element
 * l * layer_stride of ids (layer_stride 0: tokens * top_k, the layers packed, as a [layers, tokens, top_k]
 * buffer; otherwise >= tokens * top_k when layers > 1). The call reads (layers - 1) * layer_stride + tokens * top_k ids (none for no token).
 * layers must equal the model's layers; tokens >= 0, top_k >= 1, tokens * top_k <= 2^31 - 1, and the ids
 * read <= (2^63 - 1) / 4 (their bytes fit in an int64; <= 2^31 - 1 on "managed"). Ids: as moegs_record's (-1 an empty slot, a row of -1 padding).
 * valid_tokens: NULL, or an int32 holding the rows that are tokens (later rows are padding, as vLLM's
 * unpadded count under CUDA graphs), clamped to [0, tokens] when read, on the device.
 * load_balance_losses, router_z_losses: NULL (zeros), or `layers` floats each, one per layer.
 * Every pointer is memory of the handle's accelerator, as moegs_record's ids: CUDA device memory of
 * its GPU on "cuda", a cl_mem on "opencl", host memory on "cpu" and "managed"; 4-byte aligned (except
 * a cl_mem). Losses in host memory must be finite; device memory is not read by the host, and there a
 * NaN or infinite loss counts as 0.
 * stream: as moegs_record's (the producer's CUstream on "cuda", NULL elsewhere). The host never waits, except
 * on "opencl", where the call waits until the step has read its buffers, as moegs_record does. On "cpu" and
 * "managed" the step is counted before the call returns: its buffers can be rewritten then.
 * The device counts the steps, so a call with device pointers may be captured in a CUDA graph with the
 * forward pass and each replay records a step: read the model only outside the capture, after
 * synchronizing the stream the graph is launched on, or pass that stream to moegs_model_device_arrays,
 * which orders its fold after it (README). */
moegs_status moegs_model_record(moegs_handle handle, const void* ids, int32_t layers, int32_t tokens, int32_t top_k,
                                int64_t layer_stride, const void* valid_tokens, const void* load_balance_losses,
                                const void* router_z_losses, void* stream);

/* The integer type of a step's ids: int32 (vLLM's and SGLang's top-k kernels), int64 (torch.topk's) or int16
 * (vLLM's routed-experts capture). An int64 id outside int32's range counts as invalid. */
typedef enum { MOEGS_IDS_INT32 = 0, MOEGS_IDS_INT64 = 1, MOEGS_IDS_INT16 = 2 } moegs_id_type;

/* moegs_model_record for ids of id_type, with rows token_stride ids apart: slot j of token t in layer l is
 * the id at element l * layer_stride + t * token_stride + j of ids (strides count ids, not bytes; ids
 * aligned to their size). token_stride: 0 for top_k (moegs_model_record's rows), else >= top_k.
 * layer_stride 0: tokens * token_stride. The layers lie one after another
 * (layer_stride >= (tokens - 1) * token_stride + top_k) or interleaved, token by token
 * (top_k <= layer_stride and (layers - 1) * layer_stride + top_k <= token_stride); other layouts are
 * refused with MOEGS_INVALID_ARGUMENT. A step of a [tokens, layers, top_k] routed-experts buffer (SGLang's,
 * int32; some vLLM versions', int16) is read where it lies with layer_stride = top_k and token_stride = layers * top_k.
 * The call reads (layers - 1) * layer_stride + (tokens - 1) * token_stride + top_k ids
 * (none for no token, whatever the strides), whose bytes must fit in an int64; otherwise as
 * moegs_model_record. A model loads the int64 or int16 kernel at its first step of that type: make
 * that step outside a CUDA graph capture, as the warm-up step before capturing any record. */
moegs_status moegs_model_record_strided(moegs_handle handle, const void* ids, moegs_id_type id_type, int32_t layers, int32_t tokens,
                                        int32_t top_k, int64_t layer_stride, int64_t token_stride, const void* valid_tokens,
                                        const void* load_balance_losses, const void* router_z_losses, void* stream);

/* Where the model lives: *out = "cuda", "opencl", "cpu" or "managed", a static string; NULL when the call fails. */
moegs_status moegs_model_accelerator(moegs_handle handle, const char** out);

/* The model's balance into *out, and each layer's into window_layers and since_start_layers (each
 * NULL, or an array of `layers` structs). expert_ranks: NULL for the balance over experts, or the rank
 * of each expert (host memory, `experts` int32 values in [0, experts - 1], every rank up to the largest
 * holding an expert) for the balance over ranks under that expert-parallel placement: each layer's load
 * summed over the experts each rank holds. */
moegs_status moegs_model_summary(moegs_handle handle, const int32_t* expert_ranks, moegs_model_balance* out,
                                 moegs_layer_balance* window_layers, moegs_layer_balance* since_start_layers);

/* sizeof(moegs_model_balance) and sizeof(moegs_layer_balance) as the library was built with them
 * (libmoegs refuses to start when they differ from this header's); 0 when the runtime could not start. */
int32_t moegs_model_balance_size(void);
int32_t moegs_layer_balance_size(void);

/* Each expert's slots over the last `window` steps (fewer before that many), row-major
 * [layers, experts], into dst (capacity: the values dst holds, >= layers * experts). Slots a capacity
 * dropped are in it: the load is what the router asked of each expert, the input EPLB plans for. */
moegs_status moegs_model_window_load(moegs_handle handle, uint64_t* dst, int32_t capacity);

/* The window cut to its newest recent_steps steps, [1, window] (every step it holds while it holds fewer),
 * as SGLang logs balance over the last 10, 100 and 1,000 passes: moegs_model_recent_summary is
 * moegs_model_summary with the window_* figures and window_layers over those steps and window_steps
 * their count; moegs_model_recent_window_load is moegs_model_window_load over them. Fewer steps than the
 * window holds are summed from the window ring's rows, on a device there (recent_steps * layers * experts
 * counts read); as many or more read the running sum. */
moegs_status moegs_model_recent_summary(moegs_handle handle, int32_t recent_steps, const int32_t* expert_ranks, moegs_model_balance* out,
                                        moegs_layer_balance* window_layers, moegs_layer_balance* since_start_layers);
moegs_status moegs_model_recent_window_load(moegs_handle handle, int32_t recent_steps, uint64_t* dst, int32_t capacity);

/* One layer's running totals, named and typed as the moegs_snapshot fields of the same names. Its size is
 * moegs_layer_totals_size(): a caller built against another version of this header compares it with its own before
 * the first read, since the calls that fill it write that many bytes. */
typedef struct moegs_layer_totals {
    uint64_t total_routings;      /* steps folded into the layer: the model's steps */
    uint64_t total_tokens;        /* tokens recorded, padding rows excluded */
    uint64_t tokens_dropped;      /* whole tokens reported dropped: model steps report none, so 0 */
    uint64_t routed_slots;        /* slots routed to a valid expert */
    uint64_t slots_dropped;       /* of routed_slots, those beyond expert_capacity */
    uint64_t invalid_expert_ids;  /* ids outside [0, E) other than -1 */
    float average_load_balance_loss;
    float average_router_z_loss;
    float routing_efficiency;     /* percent of routed_slots kept; 0 while routed_slots is 0 */
} moegs_layer_totals;

/* Everything an exporter publishes per scrape, in one call and from one state (no step between its
 * parts): on a device the parts are staged on the device and copied back at once, one wait for the
 * stream (two when expert_ranks differs from the last placement given: it is copied to the device
 * first), where moegs_model_summary, moegs_model_window_load and each layer's
 * moegs_model_layer_snapshot wait once each. *out and the NULL-or-`layers` arrays window_layers and since_start_layers as
 * moegs_model_summary writes them (over ranks under expert_ranks, as there); with recent_steps in
 * [1, window], *recent_out and recent_layers as moegs_model_recent_summary writes its out and
 * window_layers for those steps (recent_steps 0: none, and recent_out may be NULL); totals: NULL or
 * `layers` structs; window_load (the whole window's, as moegs_model_window_load) and expert_counts (each
 * layer's since the start, as moegs_model_layer_expert_counts, row-major [layers, experts]): NULL, or
 * capacity >= layers * experts values each. */
moegs_status moegs_model_read(moegs_handle handle, int32_t recent_steps, const int32_t* expert_ranks,
                              moegs_model_balance* out, moegs_layer_balance* window_layers, moegs_layer_balance* since_start_layers,
                              moegs_model_balance* recent_out, moegs_layer_balance* recent_layers, moegs_layer_totals* totals,
                              uint64_t* window_load, uint64_t* expert_counts, int32_t capacity);

/* A read that does not wait for the device, for a server's loop that must not synchronize: begin it between
 * steps, poll it at later steps, finish it when it has arrived (vLLM users ask this of its counters' readback).
 * moegs_model_read_begin enqueues the summary (over the newest recent_steps steps, [1, window], or 0 for the
 * whole window; over ranks under expert_ranks, as moegs_model_summary) and the whole window's load on the
 * model's stream, behind the steps recorded so far, and writes a handle of the pending read to *read; steps
 * recorded afterwards are not in it. On "cuda" the call returns without waiting: the copy lands in page-locked
 * host memory (a pool the model's reads reuse) and an event behind it is what moegs_model_read_ready queries (a
 * placement that differs from the last one given is copied to the device first, a wait). stream: NULL, or on
 * "cuda" the CUstream a CUDA graph with the model's record is replayed on: the read then waits on the device
 * for the work enqueued there before the call, and that stream for the read, so the next replay cannot
 * overlap it and the host never waits (without it, synchronize that stream before the call and replay only
 * once the read has arrived). ILGPU gives no event to poll on "opencl", where the call waits for the copy; on
 * "cpu" and "managed" the read has arrived when the call returns (stream must be NULL off "cuda").
 * moegs_model_read_ready: *arrived = 1 once the read has arrived, else 0; never waits (0 while another thread
 * is in moegs_model_read_finish on it, and when the call fails).
 * moegs_model_read_finish: waits until the read has arrived (none after ready said 1), writes *out and each
 * array given (NULL, or `layers` structs; window_load NULL or capacity >= layers * experts values) as
 * moegs_model_summary and moegs_model_window_load write them, then frees the read: its handle is invalid
 * afterwards (a call refused for its arguments keeps it). moegs_model_read_destroy frees a read unread, waiting
 * first for a copy still on its way. A read outlives its model: moegs_model_destroy completes it. A read held
 * unread keeps its page-locked memory until its copy has arrived and the model begins another read, which takes
 * its results (still written by its finish); the model keeps two such buffers for its next reads. */
moegs_status moegs_model_read_begin(moegs_handle handle, int32_t recent_steps, const int32_t* expert_ranks, void* stream,
                                    moegs_handle* read);
moegs_status moegs_model_read_ready(moegs_handle read, int32_t* arrived);
moegs_status moegs_model_read_finish(moegs_handle read, moegs_model_balance* out, moegs_layer_balance* window_layers,
                                     moegs_layer_balance* since_start_layers, uint64_t* window_load, int32_t capacity);
moegs_status moegs_model_read_destroy(moegs_handle read);

/* sizeof(moegs_layer_totals) as the library was built with it (libmoegs refuses to start when it differs
 * from this header's); 0 when the runtime could not start. */
int32_t moegs_layer_totals_size(void);

/* Where a model keeps its per-expert counters, for a job that sums them across GPUs with its own
 * collective (an NCCL all-reduce of the window load before DeepSeek's EPLB) or reads them in its own
 * kernels, without a copy. Its size is moegs_model_arrays_size(): a caller built against another version of this
 * header compares it with its own before the first call, which writes that many bytes. */
typedef struct moegs_model_arrays {
    void* token_counts;       /* uint64_t [layers][experts], row-major, contiguous: each expert's slots since
                               * the start (or the last reset); row l sums to layer l's routed_slots */
    void* window_load;        /* uint64_t [layers][experts], row-major, contiguous: each expert's slots over the
                               * window, the values moegs_model_window_load copies out */
    const char* accelerator;  /* "cuda": both are CUdeviceptrs of the handle's GPU; "cpu": host pointers */
    uint64_t steps;           /* steps the arrays hold, as the host counts them without waiting: the device's
                               * count at the model's latest read whose results the host has (a summary,
                               * window load, snapshot; a pending read once finished, never over a later one)
                               * plus the moegs_model_record calls since that read, a capture among them, a
                               * CUDA graph's replays not, and a call whose step MOEGS_MODEL_SKIP_EMPTY_STEPS left
                               * out until the next read; moegs_model_summary's steps reads the device's */
    int32_t window_steps;     /* of steps, those in the window */
    int32_t layers;           /* rows */
    int32_t experts;          /* columns */
    int32_t synchronized;     /* 1: the call waited on the host for the fold, so any reader may read now;
                               * 0 (cuda): ready for work enqueued on `stream` after the call */
} moegs_model_arrays;

/* The model's token counts and window load in its accelerator's memory, without a copy: *out gets their
 * addresses, shape and the steps they hold. The step recorded last is folded in first (a step stays
 * pending on the device until the next step or read), by a launch on the model's stream.
 * stream (on "cuda"): the reader's CUstream: the fold waits on the device for the work enqueued on it
 * before the call (a CUDA graph's replayed record among it), and the stream then waits, on the device,
 * not the host, for the fold; NULL for the default stream of the calling thread's current CUDA context
 * (with no context current, the call waits on the host instead: synchronized = 1). Elsewhere stream
 * must be NULL; on "cpu" the call finishes the fold before it returns.
 * The addresses hold until moegs_model_destroy; the contents are the steps recorded before the call
 * until the next moegs_model_record (or a CUDA graph's replay of one) or moegs_model_reset, whose folds
 * write into the same memory. A
 * moegs_model_record ordered on the reader's stream waits for the reader's work enqueued before it;
 * reset and destroy do not wait for a reader on another stream: finish its reads first.
 * The arrays are the model's state: a write changes the statistics. An in-place all-reduce would add
 * the other ranks' counts into this model, so reduce a copy (a device-to-device copy on the reader's
 * stream). A model on "managed" (.NET arrays, which the runtime moves) or "opencl" (a cl_mem is not an
 * address) is refused with MOEGS_INVALID_ARGUMENT: read moegs_model_window_load there. On failure
 * *out is zeroed. */
moegs_status moegs_model_device_arrays(moegs_handle handle, void* stream, moegs_model_arrays* out);

/* sizeof(moegs_model_arrays) as the library was built with it (libmoegs refuses to start when it differs
 * from this header's); 0 when the runtime could not start. */
int32_t moegs_model_arrays_size(void);

/* Layer `layer`'s statistics ([0, layers)) as an aggregator's snapshot. */
moegs_status moegs_model_layer_snapshot(moegs_handle handle, int32_t layer, moegs_snapshot* out);

/* Layer `layer`'s per-expert values ([0, layers)), as moegs_expert_counts and moegs_expert_utilization
 * give an aggregator's, and its decayed utilization (per expert, decay * previous + (1 - decay) * count
 * / tokens at each step; refused with MOEGS_INVALID_ARGUMENT for a model created without a
 * utilization_decay). Each writes `experts` values into dst (capacity >= experts), zeros before the
 * model's first step. */
moegs_status moegs_model_layer_expert_counts(moegs_handle handle, int32_t layer, uint64_t* dst, int32_t capacity);
moegs_status moegs_model_layer_expert_utilization(moegs_handle handle, int32_t layer, float* dst, int32_t capacity);
moegs_status moegs_model_layer_decayed_utilization(moegs_handle handle, int32_t layer, float* dst, int32_t capacity);

/* Writes the model to `path` (UTF-8) as the JSON that `moegs report`, `merge` and `plan` read (what
 * `moegs replay --save` writes for a model): each layer in the seed's shape and the window load, from one
 * read of the model; not the window's ring of steps. Each rank of an expert-parallel job saves its own
 * file and `moegs merge` sums them exactly. Written as moegs_save writes, with its errors. */
moegs_status moegs_model_save(moegs_handle handle, const char* path);

/* moegs_model_save with the window's ring of steps (`window_ring`: one base64 row of little-endian uint32 counts
 * [layers, experts] per step the window holds, about 5.3 bytes a count): a checkpoint, which moegs_model_load reads
 * back as a model that records on exactly as the saved one would. MOEGS_INVALID_ARGUMENT where the ring's base64 would
 * pass 512 MiB (about 100 million counts, window * layers * experts) or the file 1 GiB, which a load would not read,
 * and for a model loaded from a file without the ring; otherwise as moegs_model_save. */
moegs_status moegs_model_save_checkpoint(moegs_handle handle, const char* path);

/* Reads the model saved at `path` (UTF-8) by moegs_model_save_checkpoint (or moegs_model_save, `moegs replay --save`,
 * `moegs merge`) into a new model on `accelerator` (as moegs_model_create's; "auto": CUDA, then managed). A
 * checkpoint's model records on as the saved one would, to the bit, on any accelerator: a run saved on a GPU resumes
 * on another, or on "managed". A file without the window ring holds the window's load but not its steps: it answers
 * every read but a recent summary or window load of fewer steps than the window holds, and refuses records
 * (MOEGS_INVALID_ARGUMENT) until moegs_model_reset. It, a merge of checkpoints whose window holds fewer steps than
 * min(window, steps), and a model with a count above 2^62 (a device does not check its steps against the 2^63 - 1 a
 * count may hold; the managed engine does), load on "managed" alone: "auto" puts them there, unless MOEGS_ACCELERATOR
 * names a device, which is MOEGS_INVALID_ARGUMENT, as a device named is. Read moegs_model_options for the model's
 * shape. MOEGS_IO_ERROR
 * (the message names the path and why) when the file cannot be read or is not a model's routing statistics (one
 * layer's, truncated, edited out of shape); *out is 0 when the call fails. */
moegs_status moegs_model_load(const char* accelerator, const char* path, moegs_handle* out);

/* The settings the model was created (or saved) with, each into its pointer where not NULL: layers, experts,
 * expert_capacity (0 for none), window (steps), utilization_decay (-1 for none) and flags
 * (MOEGS_MODEL_SKIP_EMPTY_STEPS where set), as moegs_model_create_with_flags takes them. */
moegs_status moegs_model_options(moegs_handle handle, int32_t* layers, int32_t* experts, int32_t* expert_capacity,
                                 int32_t* window, float* utilization_decay, uint32_t* flags);

/* Clears every layer and the window. */
moegs_status moegs_model_reset(moegs_handle handle);

/* Frees the model and its device memory; the handle is invalid afterwards. On "cuda" this destroys the library's
 * CUDA context with the model's kernels: destroy every CUDA graph that captured this model's moegs_model_record or
 * moegs_model_read_begin first (cuGraphExecDestroy and cuGraphDestroy; torch: CUDAGraph.reset() or its collection), as a
 * graph replayed or destroyed after the model refers to an unloaded kernel and freed memory (undefined behaviour). */
moegs_status moegs_model_destroy(moegs_handle handle);

/* The last error's text on this thread ("" if none). Valid until the next failing call on it: call it after the
 * failed call returns, never as another argument of the same call (printf("%d %s", moegs_reset(h), moegs_last_error())
 * may take the text before moegs_reset runs, which then frees it). */
const char* moegs_last_error(void);

#ifdef __cplusplus
}
#endif

#endif
