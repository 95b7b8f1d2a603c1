/* Calls libmoegs on the CPU paths and checks its numbers against the managed engine and against
 * a bincount done here; then bad input (every refusal: its status, its one-line message in the C
 * caller's words, and statistics left as they were), destroyed handles and threads on one handle.
 * Exit status 0 when every check passes. */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moegs.h"

#define EXPERTS 16
#define TOP_K 2
#define TOKENS 1000
#define BATCHES 50

static int checks, failures;

#define CHECK(cond, ...) do { checks++; if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static uint64_t state = 88172645463325252ull;
static uint64_t next(void) { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state; }

static void fill(int32_t* ids, int n)
{
    for (int i = 0; i < n; i++) {
        double u = (double)(next() % 1000000) / 1000000.0;
        ids[i] = (next() % 97 == 0) ? EXPERTS + 3 : (int32_t)(u * u * EXPERTS); /* skewed, ~1% invalid */
    }
}

/* `got` is `want`, and moegs_last_error() is one line, free of .NET's "(Parameter 'x')", holding each
 * of the NULL-terminated words (the C argument's name, its value, what is allowed). */
static void refused(int line, const char* call, int got, int want, ...)
{
    const char* message = moegs_last_error();
    int ok = got == want && message[0] != '\0' && strchr(message, '\n') == NULL && strchr(message, '\r') == NULL
             && strstr(message, "(Parameter") == NULL;
    va_list words;
    va_start(words, want);
    for (const char* word = va_arg(words, const char*); word != NULL; word = va_arg(words, const char*))
        ok = ok && strstr(message, word) != NULL;
    va_end(words);
    checks++;
    if (!ok) {
        failures++;
        fprintf(stderr, "FAIL %s:%d: %s: status %d (want %d), message \"%s\"\n", __FILE__, line, call, got, want, message);
    }
}

#define REFUSED(call, want, ...) refused(__LINE__, #call, (call), (want), __VA_ARGS__, (const char*)NULL)

/* Every statistic a caller can read: the whole snapshot, its tail padding included (the library writes it zero, so
 * that memcmp compares states), and the per-expert arrays. */
typedef struct { unsigned char snapshot[sizeof(moegs_snapshot)]; uint64_t counts[EXPERTS]; float utilization[EXPERTS]; } statistics;

static void read_statistics(moegs_handle h, statistics* out)
{
    moegs_snapshot s;
    memset(out, 0, sizeof *out);
    CHECK(moegs_snapshot_read(h, &s) == MOEGS_OK, "snapshot: %s", moegs_last_error());
    memcpy(out->snapshot, &s, sizeof out->snapshot);
    CHECK(moegs_expert_counts(h, out->counts, EXPERTS) == MOEGS_OK, "counts: %s", moegs_last_error());
    CHECK(moegs_expert_utilization(h, out->utilization, EXPERTS) == MOEGS_OK, "utilization: %s", moegs_last_error());
}

/* Each refused call by argument, on a handle with statistics already in it; afterwards every statistic is as before. */
static void refusals_leave_the_statistics(moegs_handle h, const char* name, int32_t* ids)
{
    statistics before, after;
    read_statistics(h, &before);

    REFUSED(moegs_record(h, NULL, 10, 5, 2, 0, 0, NULL), MOEGS_INVALID_ARGUMENT, "ids", "NULL", "length = 10");
    REFUSED(moegs_record(h, ids, 9, 5, 2, 0, 0, NULL), MOEGS_INVALID_ARGUMENT, "length = 9", "5 * 2 = 10");
    REFUSED(moegs_record(h, ids, -1, 0, 1, 0, 0, NULL), MOEGS_INVALID_ARGUMENT, "length = -1", ">= tokens * top_k");
    REFUSED(moegs_record(h, ids, INT64_MIN, 5, 2, 0, 0, NULL), MOEGS_INVALID_ARGUMENT, "length = -9223372036854775808");
    REFUSED(moegs_record(h, ids, 10, -1, 2, 0, 0, NULL), MOEGS_INVALID_ARGUMENT, "tokens = -1", "[0, 2147483647]");
    REFUSED(moegs_record(h, ids, 10, INT32_MIN, 2, 0, 0, NULL), MOEGS_INVALID_ARGUMENT, "tokens = -2147483648", "[0, 2147483647]");
    REFUSED(moegs_record(h, ids, 10, 5, 0, 0, 0, NULL), MOEGS_INVALID_ARGUMENT, "top_k = 0", "[1, 2147483647]");
    REFUSED(moegs_record(h, ids, 10, 5, -2, 0, 0, NULL), MOEGS_INVALID_ARGUMENT, "top_k = -2", "[1, 2147483647]");
    /* 2^32 ids: refused before any is read, although length claims them all. */
    REFUSED(moegs_record(h, ids, INT64_C(1) << 32, 65536, 65536, 0, 0, NULL), MOEGS_INVALID_ARGUMENT,
            "tokens * top_k = 65536 * 65536 = 4294967296", "at most 2147483647");
    REFUSED(moegs_record(h, (const char*)ids + 1, 10, 5, 2, 0, 0, NULL), MOEGS_INVALID_ARGUMENT, "ids = 0x", "aligned to 4 bytes");
    REFUSED(moegs_record(h, ids, 10, 5, 2, NAN, 0, NULL), MOEGS_INVALID_ARGUMENT, "load_balance_loss = NaN", "finite");
    REFUSED(moegs_record(h, ids, 10, 5, 2, 0, -INFINITY, NULL), MOEGS_INVALID_ARGUMENT, "router_z_loss = -Infinity", "finite");
    REFUSED(moegs_record(h, ids, 10, 5, 2, 0, 0, (void*)0x1234), MOEGS_INVALID_ARGUMENT, "stream = 0x1234", name, "NULL");
    REFUSED(moegs_record_latency(h, -50), MOEGS_INVALID_ARGUMENT, "nanoseconds = -50", "[0, 9223372036854775807]");
    REFUSED(moegs_record_latency(h, INT64_MIN), MOEGS_INVALID_ARGUMENT, "nanoseconds = -9223372036854775808");
    uint64_t counts[EXPERTS];
    float utilization[EXPERTS];
    REFUSED(moegs_expert_counts(h, counts, EXPERTS - 1), MOEGS_INVALID_ARGUMENT, "capacity = 15", "capacity >= 16");
    REFUSED(moegs_expert_counts(h, counts, -1), MOEGS_INVALID_ARGUMENT, "capacity = -1", "capacity >= 16");
    REFUSED(moegs_expert_utilization(h, utilization, 0), MOEGS_INVALID_ARGUMENT, "capacity = 0", "capacity >= 16");
    REFUSED(moegs_expert_counts(h, NULL, EXPERTS), MOEGS_INVALID_ARGUMENT, "dst", "NULL");
    REFUSED(moegs_snapshot_read(h, NULL), MOEGS_INVALID_ARGUMENT, "out", "NULL");

    read_statistics(h, &after);
    CHECK(memcmp(before.snapshot, after.snapshot, sizeof before.snapshot) == 0, "%s: a refused call changed the snapshot", name);
    CHECK(memcmp(before.counts, after.counts, sizeof before.counts) == 0, "%s: a refused call changed the counts", name);
    CHECK(memcmp(before.utilization, after.utilization, sizeof before.utilization) == 0, "%s: a refused call changed the utilization", name);
}

/* A created handle's total capacity after one batch of `tokens` tokens: expert_capacity slots per expert, 0 meaning 100. */
static void capacity_is_kept(const char* accelerator, int32_t expert_capacity, uint64_t want, int32_t* ids)
{
    moegs_handle h = 0;
    moegs_snapshot s;
    CHECK(moegs_create(accelerator, EXPERTS, expert_capacity, &h) == MOEGS_OK, "create %s, capacity %d: %s", accelerator, expert_capacity, moegs_last_error());
    CHECK(moegs_record(h, ids, 2 * TOP_K, 2, TOP_K, 0, 0, NULL) == MOEGS_OK, "record: %s", moegs_last_error());
    CHECK(moegs_snapshot_read(h, &s) == MOEGS_OK && s.total_capacity == want, "%s, expert_capacity %d: total capacity %llu, want %llu",
          accelerator, expert_capacity, (unsigned long long)s.total_capacity, (unsigned long long)want);
    moegs_destroy(h);
}

/* A batch padded to a fixed shape: -1 is an empty slot, a row of -1 is no token, and neither is invalid; other ids
 * outside [0, E), negative ones included, stay invalid beside them. The C API passes -1 through untouched. */
static void padding_is_not_a_token(const char* accelerator)
{
    moegs_handle h = 0;
    moegs_snapshot s;
    uint64_t counts[4];
    float utilization[4];
    CHECK(moegs_create(accelerator, 4, 0, &h) == MOEGS_OK, "create %s: %s", accelerator, moegs_last_error());
    int32_t padded[] = { 0, 1, 2, 3, 0, 2, -1, -1 };
    CHECK(moegs_record(h, padded, 8, 4, 2, 0, 0, NULL) == MOEGS_OK, "%s: record padded: %s", accelerator, moegs_last_error());
    CHECK(moegs_snapshot_read(h, &s) == MOEGS_OK, "snapshot: %s", moegs_last_error());
    CHECK(s.total_tokens == 3 && s.invalid_expert_ids == 0 && s.routed_slots == 6 && s.slots_dropped == 0 && s.routing_efficiency == 100.0f,
          "%s: padded batch: %llu tokens (want 3), %llu invalid (want 0), %llu routed slots (want 6), %llu dropped, efficiency %g",
          accelerator, (unsigned long long)s.total_tokens, (unsigned long long)s.invalid_expert_ids, (unsigned long long)s.routed_slots,
          (unsigned long long)s.slots_dropped, s.routing_efficiency);
    CHECK(moegs_expert_counts(h, counts, 4) == MOEGS_OK && counts[0] == 2 && counts[1] == 1 && counts[2] == 2 && counts[3] == 1,
          "%s: padded batch: counts %llu %llu %llu %llu, want 2 1 2 1", accelerator, (unsigned long long)counts[0],
          (unsigned long long)counts[1], (unsigned long long)counts[2], (unsigned long long)counts[3]);
    const float want[] = { 2.0f / 3, 1.0f / 3, 2.0f / 3, 1.0f / 3 };
    CHECK(moegs_expert_utilization(h, utilization, 4) == MOEGS_OK, "utilization: %s", moegs_last_error());
    for (int e = 0; e < 4; e++)
        CHECK(fabsf(utilization[e] - want[e]) <= 1e-6f, "%s: padded batch: expert %d utilization %.9g, want %.9g (count / 3 tokens)",
              accelerator, e, utilization[e], want[e]);

    /* Row 1 holds an empty slot and an invalid id: a token. Row 3 is padding. */
    int32_t mixed[] = { 0, -1, -1, 4, -2, INT32_MIN, -1, -1, 3, INT32_MAX };
    CHECK(moegs_reset(h) == MOEGS_OK, "reset: %s", moegs_last_error());
    CHECK(moegs_record(h, mixed, 10, 5, 2, 0, 0, NULL) == MOEGS_OK, "%s: record mixed: %s", accelerator, moegs_last_error());
    CHECK(moegs_snapshot_read(h, &s) == MOEGS_OK && s.total_tokens == 4 && s.invalid_expert_ids == 4 && s.routed_slots == 2,
          "%s: mixed batch: %llu tokens (want 4), %llu invalid (want 4), %llu routed slots (want 2)", accelerator,
          (unsigned long long)s.total_tokens, (unsigned long long)s.invalid_expert_ids, (unsigned long long)s.routed_slots);
    CHECK(moegs_expert_counts(h, counts, 4) == MOEGS_OK && counts[0] == 1 && counts[1] == 0 && counts[2] == 0 && counts[3] == 1,
          "%s: mixed batch: counts %llu %llu %llu %llu, want 1 0 0 1", accelerator, (unsigned long long)counts[0],
          (unsigned long long)counts[1], (unsigned long long)counts[2], (unsigned long long)counts[3]);
    moegs_destroy(h);
}

/* Before the first record and after a reset, moegs_expert_counts and moegs_expert_utilization write their
 * `experts` values, zeros, and refuse a capacity below the experts created, as after a record (though the
 * snapshot's experts is 0 there). */
static void per_expert_values_before_a_record(const char* accelerator)
{
    moegs_handle h;
    uint64_t counts[5];
    float utilization[5];
    CHECK(moegs_create(accelerator, 4, 0, &h) == MOEGS_OK, "create %s: %s", accelerator, moegs_last_error());
    for (int pass = 0; pass < 2; pass++) {
        for (int e = 0; e < 5; e++) {
            counts[e] = 77;
            utilization[e] = 7.0f;
        }
        CHECK(moegs_expert_counts(h, counts, 4) == MOEGS_OK && moegs_expert_utilization(h, utilization, 4) == MOEGS_OK,
              "%s: per-expert values before a record: %s", accelerator, moegs_last_error());
        CHECK(counts[0] == 0 && counts[3] == 0 && counts[4] == 77 && utilization[0] == 0.0f && utilization[3] == 0.0f && utilization[4] == 7.0f,
              "%s, %s: counts %llu .. %llu (want 0 .. 0, then 77 untouched), utilization %g .. %g", accelerator,
              pass == 0 ? "fresh" : "after a reset", (unsigned long long)counts[0], (unsigned long long)counts[3], utilization[0], utilization[3]);
        REFUSED(moegs_expert_counts(h, counts, 3), MOEGS_INVALID_ARGUMENT, "capacity = 3", "capacity >= 4");
        REFUSED(moegs_expert_utilization(h, utilization, 0), MOEGS_INVALID_ARGUMENT, "capacity = 0", "capacity >= 4");
        int32_t ids[] = { 3, 3 };
        CHECK(moegs_record(h, ids, 2, 1, 2, 0, 0, NULL) == MOEGS_OK && moegs_reset(h) == MOEGS_OK, "%s: record, reset: %s", accelerator, moegs_last_error());
    }
    moegs_destroy(h);
}

/* A capacity drops token-expert slots, not tokens: 8 tokens each routed to all 8 experts (k = 8) with 7 slots per
 * expert keep 56 of 64 slots, and every token still counts. */
static void capacity_drops_slots(const char* accelerator)
{
    moegs_handle h = 0;
    moegs_snapshot s;
    uint64_t counts[8];
    int32_t ids[64];
    for (int i = 0; i < 64; i++) ids[i] = i % 8;
    CHECK(moegs_create(accelerator, 8, 7, &h) == MOEGS_OK, "create %s: %s", accelerator, moegs_last_error());
    CHECK(moegs_record(h, ids, 64, 8, 8, 0, 0, NULL) == MOEGS_OK, "%s: record: %s", accelerator, moegs_last_error());
    CHECK(moegs_snapshot_read(h, &s) == MOEGS_OK, "snapshot: %s", moegs_last_error());
    CHECK(s.routed_slots == 64 && s.slots_dropped == 8 && s.routing_efficiency == 87.5f,
          "%s, capacity 7: %llu routed slots (want 64), %llu dropped (want 8), efficiency %.9g (want 87.5)", accelerator,
          (unsigned long long)s.routed_slots, (unsigned long long)s.slots_dropped, s.routing_efficiency);
    CHECK(s.total_tokens == 8 && s.tokens_dropped == 0 && s.capacity_exceeded_count == 1,
          "%s, capacity 7: %llu tokens (want 8), %llu tokens dropped (want 0), %llu batches over capacity (want 1)", accelerator,
          (unsigned long long)s.total_tokens, (unsigned long long)s.tokens_dropped, (unsigned long long)s.capacity_exceeded_count);
    CHECK(s.total_used == 56 && s.total_capacity == 56 && s.capacity_peak_utilization == 1.0f,
          "%s, capacity 7: %llu of %llu slots used (want 56 of 56), peak %.9g (want 1)", accelerator,
          (unsigned long long)s.total_used, (unsigned long long)s.total_capacity, s.capacity_peak_utilization);
    CHECK(moegs_expert_counts(h, counts, 8) == MOEGS_OK, "counts: %s", moegs_last_error());
    for (int e = 0; e < 8; e++)
        CHECK(counts[e] == 8, "%s, capacity 7: expert %d received %llu slots, want 8 (dropped ones were routed)", accelerator, e,
              (unsigned long long)counts[e]);
    moegs_destroy(h);
}

typedef struct { moegs_handle handle; int32_t* ids; } worker_args;

static void* worker(void* p)
{
    worker_args* a = p;
    for (int i = 0; i < 100; i++)
        if (moegs_record(a->handle, a->ids, TOKENS * TOP_K, TOKENS, TOP_K, 0.1f, 0.01f, NULL) != MOEGS_OK) return (void*)1;
    return NULL;
}

#define LATENCY_THREADS 4
#define LATENCIES_PER_THREAD 1000

static void* latency_worker(void* p)
{
    moegs_handle h = *(moegs_handle*)p;
    for (int i = 0; i < LATENCIES_PER_THREAD; i++)
        if (moegs_record_latency(h, 2500) != MOEGS_OK) return (void*)1;
    return NULL;
}

/* Several threads record latencies on one handle at once: every one is counted. */
static void latencies_from_threads(const char* accelerator)
{
    moegs_handle h = 0;
    CHECK(moegs_create(accelerator, EXPERTS, 0, &h) == MOEGS_OK, "create %s: %s", accelerator, moegs_last_error());
    pthread_t threads[LATENCY_THREADS];
    for (int t = 0; t < LATENCY_THREADS; t++) pthread_create(&threads[t], NULL, latency_worker, &h);
    int failed = 0;
    for (int t = 0; t < LATENCY_THREADS; t++) {
        void* r;
        pthread_join(threads[t], &r);
        failed += r != NULL;
    }
    moegs_snapshot s;
    CHECK(failed == 0, "%s: %d latency threads failed", accelerator, failed);
    CHECK(moegs_snapshot_read(h, &s) == MOEGS_OK, "snapshot: %s", moegs_last_error());
    CHECK(s.latency_measurements == LATENCY_THREADS * LATENCIES_PER_THREAD, "%s: %llu latencies counted, %d recorded",
          accelerator, (unsigned long long)s.latency_measurements, LATENCY_THREADS * LATENCIES_PER_THREAD);
    CHECK(fabs(s.average_latency_ms - 0.0025) < 1e-12 && fabs(s.p99_latency_ms - 0.0025) < 1e-12, "%s: average %.17g ms, p99 %.17g ms, want 0.0025",
          accelerator, s.average_latency_ms, s.p99_latency_ms);
    moegs_destroy(h);
}

/* Calls in flight on a handle while another thread destroys it: each either runs before the destroy or is refused as
 * a destroyed handle is, naming it; none runs on the freed statistics (which answered in .NET's words, "Cannot access a
 * disposed object", and on CUDA would enter a destroyed context). */
#define RACE_THREADS 3

typedef struct { moegs_handle handle; int model; int which; volatile int* started; int wrong; char message[256]; } race_args;

static void* race_worker(void* p)
{
    race_args* a = p;
    static int32_t ids[4 * TOP_K];
    moegs_snapshot s;
    for (int i = 0;; i++) {
        int status;
        if (a->model)
            status = a->which == 0 ? moegs_model_layer_snapshot(a->handle, 0, &s)
                                   : moegs_model_record(a->handle, ids, 1, 4, TOP_K, 0, NULL, NULL, NULL, NULL);
        else
            status = a->which == 0 ? moegs_snapshot_read(a->handle, &s)
                   : a->which == 1 ? moegs_record(a->handle, ids, 4 * TOP_K, 4, TOP_K, 0, 0, NULL) : moegs_record_latency(a->handle, 100);
        if (i == 0) __atomic_add_fetch(a->started, 1, __ATOMIC_SEQ_CST);
        if (status != MOEGS_OK) {
            if (status != MOEGS_INVALID_HANDLE || strstr(moegs_last_error(), "is not a live") == NULL) {
                a->wrong = status;
                snprintf(a->message, sizeof a->message, "%s", moegs_last_error());
            }
            return NULL;
        }
    }
}

static void destroy_while_calls_run(const char* accelerator, int model, int rounds)
{
    int wrong = 0;
    char message[256] = "";
    for (int round = 0; round < rounds && !wrong; round++) {
        moegs_handle h = 0;
        int created = model ? moegs_model_create(accelerator, 1, EXPERTS, 0, 0, -1.0f, &h) : moegs_create(accelerator, EXPERTS, 0, &h);
        CHECK(created == MOEGS_OK, "race: create %s: %s", accelerator, moegs_last_error());
        if (created != MOEGS_OK) return;
        volatile int started = 0;
        pthread_t threads[RACE_THREADS];
        race_args args[RACE_THREADS];
        for (int t = 0; t < RACE_THREADS; t++) {
            args[t] = (race_args){ h, model, t % (model ? 2 : 3), &started, 0, "" };
            pthread_create(&threads[t], NULL, race_worker, &args[t]);
        }
        while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < RACE_THREADS) sched_yield();
        int destroyed = model ? moegs_model_destroy(h) : moegs_destroy(h);
        CHECK(destroyed == MOEGS_OK, "race: destroy %s: %s", accelerator, moegs_last_error());
        for (int t = 0; t < RACE_THREADS; t++) {
            pthread_join(threads[t], NULL);
            if (args[t].wrong && !wrong) {
                wrong = args[t].wrong;
                memcpy(message, args[t].message, sizeof message);
            }
        }
    }
    CHECK(wrong == 0, "%s %s: a call racing its destroy returned %d, \"%s\"; want MOEGS_INVALID_HANDLE, \"handle ... is not a live ...\"",
          accelerator, model ? "model" : "aggregator", wrong, message);
}

/* The latency a handle keeps for `nanoseconds`: to the nearest 100 ns. */
static void latency_is_kept(moegs_handle h, int64_t nanoseconds, double want_ms)
{
    moegs_snapshot s;
    moegs_reset(h);
    CHECK(moegs_record_latency(h, nanoseconds) == MOEGS_OK, "latency %lld: %s", (long long)nanoseconds, moegs_last_error());
    CHECK(moegs_snapshot_read(h, &s) == MOEGS_OK && s.latency_measurements == 1 && fabs(s.average_latency_ms - want_ms) <= 1e-9 * want_ms,
          "latency %lld ns kept as %.17g ms (%llu measurements), want %.17g", (long long)nanoseconds, s.average_latency_ms,
          (unsigned long long)s.latency_measurements, want_ms);
}

#define M_LAYERS 3
#define M_EXPERTS 8
#define M_TOKENS 40
#define M_WINDOW 4
#define M_STEPS 7
#define M_STRIDE (M_TOKENS * TOP_K + 6) /* layers apart with a gap, as views of one larger buffer */

typedef struct { moegs_model_balance summary; moegs_layer_balance window[M_LAYERS], since_start[M_LAYERS]; uint64_t load[M_LAYERS * M_EXPERTS]; } model_reads;

static void read_model(moegs_handle h, const int32_t* ranks, model_reads* out)
{
    memset(out, 0, sizeof *out);
    CHECK(moegs_model_summary(h, ranks, &out->summary, out->window, out->since_start) == MOEGS_OK, "model summary: %s", moegs_last_error());
    /* The 10th percentile across layers, recomputed here: the sorted window balancedness at rank 0.1 * (layers - 1), interpolated. */
    double sorted[M_LAYERS];
    for (int l = 0; l < M_LAYERS; l++) {
        int at = l;
        for (; at > 0 && sorted[at - 1] > out->window[l].balancedness; at--) sorted[at] = sorted[at - 1];
        sorted[at] = out->window[l].balancedness;
    }
    double rank = 0.1 * (M_LAYERS - 1), p10 = sorted[(int)rank] + (sorted[(int)rank + 1] - sorted[(int)rank]) * (rank - (int)rank);
    CHECK(fabs(out->summary.window_p10_balancedness - p10) < 1e-12 && out->summary.window_min_balancedness == sorted[0],
          "model summary: p10 %.17g, recomputed %.17g", out->summary.window_p10_balancedness, p10);
    /* The best layer: the first whose balancedness is the largest, sorted[M_LAYERS - 1]. */
    int best = 0;
    while (out->window[best].balancedness != sorted[M_LAYERS - 1]) best++;
    CHECK(out->summary.window_max_balancedness == sorted[M_LAYERS - 1] && out->summary.window_best_layer == best,
          "model summary: max %.17g, best layer %d; recomputed %.17g, layer %d", out->summary.window_max_balancedness,
          out->summary.window_best_layer, sorted[M_LAYERS - 1], best);
    CHECK(moegs_model_window_load(h, out->load, M_LAYERS * M_EXPERTS) == MOEGS_OK, "window load: %s", moegs_last_error());
}

/* The model's integers are exact on every engine; its balance figures agree to rounding. */
static void same_model(const model_reads* a, const model_reads* b, const char* what)
{
    CHECK(memcmp(a->load, b->load, sizeof a->load) == 0, "%s: window loads differ", what);
    CHECK(a->summary.steps == b->summary.steps && a->summary.window_steps == b->summary.window_steps && a->summary.entries == b->summary.entries
          && a->summary.window_worst_layer == b->summary.window_worst_layer && a->summary.since_start_worst_layer == b->summary.since_start_worst_layer
          && a->summary.window_best_layer == b->summary.window_best_layer && a->summary.since_start_best_layer == b->summary.since_start_best_layer,
          "%s: steps %llu / %llu, window steps %d / %d, worst %d / %d, best %d / %d", what, (unsigned long long)a->summary.steps,
          (unsigned long long)b->summary.steps, a->summary.window_steps, b->summary.window_steps, a->summary.window_worst_layer,
          b->summary.window_worst_layer, a->summary.window_best_layer, b->summary.window_best_layer);
    CHECK(fabs(a->summary.window_token_weighted_balancedness - b->summary.window_token_weighted_balancedness) < 1e-12
          && fabs(a->summary.since_start_median_balancedness - b->summary.since_start_median_balancedness) < 1e-12,
          "%s: balancedness %.17g / %.17g", what, a->summary.window_token_weighted_balancedness, b->summary.window_token_weighted_balancedness);
    for (int l = 0; l < M_LAYERS; l++) {
        const moegs_layer_balance *x = &a->window[l], *y = &b->window[l];
        CHECK(x->load == y->load && x->max_load == y->max_load && x->min_load == y->min_load && x->hottest == y->hottest && x->coldest == y->coldest
              && x->dead == y->dead && fabs(x->cv - y->cv) < 1e-12 && a->since_start[l].load == b->since_start[l].load,
              "%s: layer %d's balance differs (load %llu / %llu)", what, l, (unsigned long long)x->load, (unsigned long long)y->load);
    }
}

/* A model through the C API on managed and cpu: the window load is a bincount of the last M_WINDOW steps
 * (rows past the valid count left out), both engines agree, and every refusal leaves the model as it was. */
static void model_api(void)
{
    CHECK(moegs_model_balance_size() == (int32_t)sizeof(moegs_model_balance) && moegs_layer_balance_size() == (int32_t)sizeof(moegs_layer_balance),
          "model structs: %d / %zu and %d / %zu bytes", moegs_model_balance_size(), sizeof(moegs_model_balance), moegs_layer_balance_size(),
          sizeof(moegs_layer_balance));
    moegs_handle models[2] = { 0, 0 };
    const char* kinds[] = { "managed", "cpu" };
    for (int i = 0; i < 2; i++)
        CHECK(moegs_model_create(kinds[i], M_LAYERS, M_EXPERTS, 0, M_WINDOW, -1.0f, &models[i]) == MOEGS_OK, "model create %s: %s", kinds[i], moegs_last_error());

    static int32_t ids[M_STEPS][M_LAYERS * M_STRIDE];
    uint64_t want[M_LAYERS * M_EXPERTS] = {0}, newest[M_LAYERS * M_EXPERTS] = {0}; /* newest: the last 2 steps */
    for (int step = 0; step < M_STEPS; step++) {
        int32_t valid = M_TOKENS - step; /* the last `step` rows are padding the count leaves out */
        float losses[M_LAYERS], z_losses[M_LAYERS];
        for (int l = 0; l < M_LAYERS; l++) {
            losses[l] = 0.1f * (float)(l + step);
            z_losses[l] = 0.01f * (float)l;
            for (int i = 0; i < M_STRIDE; i++) {
                int32_t id = (int32_t)(next() % (M_EXPERTS + l));  /* skewed per layer; ids past the experts are invalid */
                ids[step][l * M_STRIDE + i] = i < M_TOKENS * TOP_K ? id : -7; /* the gap is never read */
                if (step >= M_STEPS - M_WINDOW && i < valid * TOP_K && id < M_EXPERTS) want[l * M_EXPERTS + id]++;
                if (step >= M_STEPS - 2 && i < valid * TOP_K && id < M_EXPERTS) newest[l * M_EXPERTS + id]++;
            }
        }
        for (int i = 0; i < 2; i++)
            CHECK(moegs_model_record(models[i], ids[step], M_LAYERS, M_TOKENS, TOP_K, M_STRIDE, &valid, losses, z_losses, NULL) == MOEGS_OK,
                  "model record %s: %s", kinds[i], moegs_last_error());
    }

    model_reads reads[2];
    const int32_t ranks[M_EXPERTS] = { 0, 0, 1, 1, 2, 2, 3, 3 };
    for (int i = 0; i < 2; i++) {
        read_model(models[i], NULL, &reads[i]);
        CHECK(memcmp(reads[i].load, want, sizeof want) == 0, "%s: the window load is not the last %d steps' bincount", kinds[i], M_WINDOW);
        CHECK(reads[i].summary.steps == M_STEPS && reads[i].summary.window_steps == M_WINDOW && reads[i].summary.entries == M_EXPERTS,
              "%s: %llu steps, %d in the window, over %d", kinds[i], (unsigned long long)reads[i].summary.steps, reads[i].summary.window_steps,
              reads[i].summary.entries);
        uint64_t layer0 = 0;
        for (int e = 0; e < M_EXPERTS; e++) layer0 += want[e];
        CHECK(reads[i].window[0].load == layer0, "%s: layer 0's window load %llu, want %llu", kinds[i], (unsigned long long)reads[i].window[0].load,
              (unsigned long long)layer0);
    }
    same_model(&reads[0], &reads[1], "managed vs cpu");
    for (int i = 0; i < 2; i++) {
        uint64_t recent[M_LAYERS * M_EXPERTS];
        moegs_model_balance balance;
        moegs_layer_balance recent_layers[M_LAYERS];
        CHECK(moegs_model_recent_window_load(models[i], 2, recent, M_LAYERS * M_EXPERTS) == MOEGS_OK && memcmp(recent, newest, sizeof newest) == 0,
              "%s: the newest 2 steps' load is not their bincount (%s)", kinds[i], moegs_last_error());
        CHECK(moegs_model_recent_summary(models[i], 2, NULL, &balance, recent_layers, NULL) == MOEGS_OK && balance.window_steps == 2
              && balance.steps == M_STEPS && balance.since_start_min_balancedness == reads[i].summary.since_start_min_balancedness,
              "%s: recent summary: %d window steps (%s)", kinds[i], balance.window_steps, moegs_last_error());
        uint64_t layer0 = 0;
        for (int e = 0; e < M_EXPERTS; e++) layer0 += newest[e];
        CHECK(recent_layers[0].load == layer0, "%s: layer 0's load over the newest 2 steps %llu, want %llu", kinds[i],
              (unsigned long long)recent_layers[0].load, (unsigned long long)layer0);
        CHECK(moegs_model_recent_window_load(models[i], M_WINDOW, recent, M_LAYERS * M_EXPERTS) == MOEGS_OK && memcmp(recent, want, sizeof want) == 0,
              "%s: the newest %d steps are the window", kinds[i], M_WINDOW);
        REFUSED(moegs_model_recent_window_load(models[i], 0, recent, M_LAYERS * M_EXPERTS), MOEGS_INVALID_ARGUMENT, "recent_steps = 0",
                "[1, 4] (the model's window)");
        REFUSED(moegs_model_recent_summary(models[i], M_WINDOW + 1, NULL, &balance, NULL, NULL), MOEGS_INVALID_ARGUMENT, "recent_steps = 5", "[1, 4]");
        REFUSED(moegs_model_recent_summary(models[i], 1, NULL, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT, "out is NULL");
        REFUSED(moegs_model_recent_window_load(models[i], 1, NULL, 0), MOEGS_INVALID_ARGUMENT, "dst is NULL");
    }
    model_reads ranked[2];
    read_model(models[0], ranks, &ranked[0]);
    read_model(models[1], ranks, &ranked[1]);
    CHECK(ranked[0].summary.entries == 4 && ranked[0].window[0].load == reads[0].window[0].load, "placement: over %d ranks", ranked[0].summary.entries);
    same_model(&ranked[0], &ranked[1], "managed vs cpu over ranks");
    for (int l = 0; l < M_LAYERS; l++) {
        moegs_snapshot a, b;
        CHECK(moegs_model_layer_snapshot(models[0], l, &a) == MOEGS_OK && moegs_model_layer_snapshot(models[1], l, &b) == MOEGS_OK,
              "layer snapshot %d: %s", l, moegs_last_error());
        CHECK(a.total_routings == M_STEPS && a.total_tokens == b.total_tokens && a.routed_slots == b.routed_slots
              && a.invalid_expert_ids == b.invalid_expert_ids && a.most_utilized == b.most_utilized && (l == 0) == (a.invalid_expert_ids == 0)
              && fabsf(a.average_load_balance_loss - b.average_load_balance_loss) < 1e-6f,
              "layer %d: routings %llu, tokens %llu / %llu, invalid %llu / %llu", l, (unsigned long long)a.total_routings, (unsigned long long)a.total_tokens,
              (unsigned long long)b.total_tokens, (unsigned long long)a.invalid_expert_ids, (unsigned long long)b.invalid_expert_ids);
    }

    /* One moegs_model_read: every part equal to the call that reads it alone. */
    CHECK(moegs_layer_totals_size() == (int32_t)sizeof(moegs_layer_totals), "moegs_layer_totals: %d / %zu bytes", moegs_layer_totals_size(),
          sizeof(moegs_layer_totals));
    for (int i = 0; i < 2; i++) {
        moegs_handle h = models[i];
        model_reads one;
        moegs_model_balance recent, alone;
        moegs_layer_balance recent_layers[M_LAYERS], alone_layers[M_LAYERS];
        moegs_layer_totals totals[M_LAYERS];
        uint64_t counts[M_LAYERS * M_EXPERTS], layer_counts[M_EXPERTS];
        memset(&one, 0, sizeof one);
        CHECK(moegs_model_read(h, 2, NULL, &one.summary, one.window, one.since_start, &recent, recent_layers, totals, one.load, counts,
                               M_LAYERS * M_EXPERTS) == MOEGS_OK, "%s: model read: %s", kinds[i], moegs_last_error());
        same_model(&reads[i], &one, "moegs_model_read vs summary and window load");
        CHECK(memcmp(&one.summary, &reads[i].summary, sizeof one.summary) == 0, "%s: moegs_model_read's summary is not moegs_model_summary's", kinds[i]);
        CHECK(moegs_model_recent_summary(h, 2, NULL, &alone, alone_layers, NULL) == MOEGS_OK && memcmp(&recent, &alone, sizeof alone) == 0
              && memcmp(recent_layers, alone_layers, sizeof alone_layers) == 0, "%s: moegs_model_read's recent figures are not moegs_model_recent_summary's",
              kinds[i]);
        for (int l = 0; l < M_LAYERS; l++) {
            moegs_snapshot s;
            CHECK(moegs_model_layer_snapshot(h, l, &s) == MOEGS_OK && totals[l].total_routings == s.total_routings && totals[l].total_tokens == s.total_tokens
                  && totals[l].tokens_dropped == s.tokens_dropped && totals[l].routed_slots == s.routed_slots && totals[l].slots_dropped == s.slots_dropped
                  && totals[l].invalid_expert_ids == s.invalid_expert_ids && totals[l].average_load_balance_loss == s.average_load_balance_loss
                  && totals[l].average_router_z_loss == s.average_router_z_loss && totals[l].routing_efficiency == s.routing_efficiency,
                  "%s: layer %d's totals are not its snapshot's (routed %llu / %llu)", kinds[i], l, (unsigned long long)totals[l].routed_slots,
                  (unsigned long long)s.routed_slots);
            CHECK(moegs_model_layer_expert_counts(h, l, layer_counts, M_EXPERTS) == MOEGS_OK
                  && memcmp(layer_counts, counts + l * M_EXPERTS, sizeof layer_counts) == 0, "%s: layer %d's counts differ", kinds[i], l);
        }
        model_reads ranked_one;
        memset(&ranked_one, 0, sizeof ranked_one);
        CHECK(moegs_model_read(h, 0, ranks, &ranked_one.summary, ranked_one.window, ranked_one.since_start, NULL, NULL, NULL, ranked_one.load, NULL,
                               M_LAYERS * M_EXPERTS) == MOEGS_OK && memcmp(&ranked_one.summary, &ranked[i].summary, sizeof ranked_one.summary) == 0,
              "%s: moegs_model_read over ranks is not moegs_model_summary's (%s)", kinds[i], moegs_last_error());
        same_model(&ranked[i], &ranked_one, "moegs_model_read over ranks");
        REFUSED(moegs_model_read(h, M_WINDOW + 1, NULL, &alone, NULL, NULL, &recent, NULL, NULL, NULL, NULL, 0), MOEGS_INVALID_ARGUMENT,
                "recent_steps = 5", "[1, 4] (the model's window), or 0 for none");
        REFUSED(moegs_model_read(h, -1, NULL, &alone, NULL, NULL, &recent, NULL, NULL, NULL, NULL, 0), MOEGS_INVALID_ARGUMENT, "recent_steps = -1");
        REFUSED(moegs_model_read(h, 2, NULL, &alone, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0), MOEGS_INVALID_ARGUMENT, "recent_out is NULL",
                "recent_steps = 2");
        REFUSED(moegs_model_read(h, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0), MOEGS_INVALID_ARGUMENT, "out is NULL");
        REFUSED(moegs_model_read(h, 0, NULL, &alone, NULL, NULL, NULL, NULL, NULL, NULL, counts, M_LAYERS * M_EXPERTS - 1), MOEGS_INVALID_ARGUMENT,
                "capacity = 23", "expert_counts must hold layers * experts = 3 * 8 = 24");
        REFUSED(moegs_model_read(h, 0, NULL, &alone, NULL, NULL, NULL, NULL, NULL, one.load, counts, 0), MOEGS_INVALID_ARGUMENT,
                "window_load and expert_counts each must hold");
    }

    for (int i = 0; i < 2; i++) {
        moegs_handle h = models[i];
        int32_t bad_ranks[M_EXPERTS] = { 0, 0, 1, 1, 2, 2, 3, 8 };
        uint64_t small[M_LAYERS * M_EXPERTS - 1];
        moegs_model_balance summary;
        moegs_snapshot snapshot;
        float nan_losses[M_LAYERS] = { 0.0f, NAN, 0.0f };
        REFUSED(moegs_model_record(h, ids[0], M_LAYERS - 1, M_TOKENS, TOP_K, 0, NULL, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT,
                "layers = 2", "the model's layers, 3");
        REFUSED(moegs_model_record(h, ids[0], M_LAYERS, M_TOKENS, TOP_K, M_TOKENS * TOP_K - 1, NULL, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT,
                "layer_stride = 79", ">= tokens * top_k = 40 * 2 = 80");
        REFUSED(moegs_model_record(h, ids[0], M_LAYERS, M_TOKENS, TOP_K, -1, NULL, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT, "layer_stride = -1");
        /* Strides whose ids' bytes overflow an int64 (a stride of 2^62 would wrap layer l's address onto layer 0's
         * ids): refused before anything is read. */
        REFUSED(moegs_model_record(h, ids[0], M_LAYERS, M_TOKENS, TOP_K, INT64_C(1) << 62, NULL, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT,
                "layer_stride = 4611686018427387904", "exceeds 2305843009213693951 ids", "int64");
        REFUSED(moegs_model_record(h, ids[0], M_LAYERS, M_TOKENS, TOP_K, INT64_C(1) << 61, NULL, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT,
                "layer_stride = 2305843009213693952", "exceeds 2305843009213693951 ids");
        REFUSED(moegs_model_record(h, ids[0], M_LAYERS, M_TOKENS, 0, 0, NULL, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT, "top_k = 0");
        REFUSED(moegs_model_record(h, NULL, M_LAYERS, M_TOKENS, TOP_K, 0, NULL, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT, "ids is NULL", "240 ids");
        REFUSED(moegs_model_record(h, (const char*)ids[0] + 2, M_LAYERS, M_TOKENS, TOP_K, 0, NULL, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT,
                "ids = 0x", "aligned to 4 bytes");
        REFUSED(moegs_model_record(h, ids[0], M_LAYERS, M_TOKENS, TOP_K, 0, NULL, nan_losses, NULL, NULL), MOEGS_INVALID_ARGUMENT,
                "load_balance_losses[1] = NaN", "finite");
        REFUSED(moegs_model_record(h, ids[0], M_LAYERS, M_TOKENS, TOP_K, 0, NULL, NULL, NULL, (void*)16), MOEGS_INVALID_ARGUMENT, "stream = 0x10", "pass NULL");
        REFUSED(moegs_model_window_load(h, small, M_LAYERS * M_EXPERTS - 1), MOEGS_INVALID_ARGUMENT, "capacity = 23", "layers * experts = 3 * 8 = 24");
        REFUSED(moegs_model_window_load(h, NULL, M_LAYERS * M_EXPERTS), MOEGS_INVALID_ARGUMENT, "dst is NULL");
        REFUSED(moegs_model_summary(h, bad_ranks, &summary, NULL, NULL), MOEGS_INVALID_ARGUMENT, "expert_ranks[7] = 8", "[0, experts - 1 = 7]");
        REFUSED(moegs_model_summary(h, NULL, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT, "out is NULL");
        REFUSED(moegs_model_layer_snapshot(h, M_LAYERS, &snapshot), MOEGS_INVALID_ARGUMENT, "layer = 3", "[0, 2]");
        REFUSED(moegs_model_layer_snapshot(h, -1, &snapshot), MOEGS_INVALID_ARGUMENT, "layer = -1");
        REFUSED(moegs_snapshot_read(h, &snapshot), MOEGS_INVALID_HANDLE, "not a live aggregator");
        model_reads after;
        read_model(h, NULL, &after);
        same_model(&reads[i], &after, kinds[i]);
        CHECK(after.summary.steps == M_STEPS, "%s: refused calls recorded a step", kinds[i]);
    }

    /* The same steps laid out [tokens, layers, k], as SGLang's and vLLM's routed-experts buffers hold them, read
     * where they lie by moegs_model_record_strided, as int32 ids and as int64 ids into a second model: the same
     * model on both engines. */
    for (int i = 0; i < 2; i++) {
        moegs_handle h = 0, wide = 0;
        CHECK(moegs_model_create(kinds[i], M_LAYERS, M_EXPERTS, 0, M_WINDOW, -1.0f, &h) == MOEGS_OK
              && moegs_model_create(kinds[i], M_LAYERS, M_EXPERTS, 0, M_WINDOW, -1.0f, &wide) == MOEGS_OK, "model create %s: %s", kinds[i], moegs_last_error());
        static int32_t tokens_first[M_TOKENS * M_LAYERS * TOP_K];
        static int64_t tokens_first64[M_TOKENS * M_LAYERS * TOP_K];
        for (int step = 0; step < M_STEPS; step++) {
            int32_t valid = M_TOKENS - step;
            float losses[M_LAYERS], z_losses[M_LAYERS];
            for (int l = 0; l < M_LAYERS; l++) {
                losses[l] = 0.1f * (float)(l + step);
                z_losses[l] = 0.01f * (float)l;
                for (int t = 0; t < M_TOKENS; t++)
                    for (int j = 0; j < TOP_K; j++)
                        tokens_first64[(t * M_LAYERS + l) * TOP_K + j] = tokens_first[(t * M_LAYERS + l) * TOP_K + j] = ids[step][l * M_STRIDE + t * TOP_K + j];
            }
            CHECK(moegs_model_record_strided(h, tokens_first, MOEGS_IDS_INT32, M_LAYERS, M_TOKENS, TOP_K, TOP_K, M_LAYERS * TOP_K, &valid, losses, z_losses, NULL) == MOEGS_OK
                  && moegs_model_record_strided(wide, tokens_first64, MOEGS_IDS_INT64, M_LAYERS, M_TOKENS, TOP_K, TOP_K, M_LAYERS * TOP_K, &valid,
                                                losses, z_losses, NULL) == MOEGS_OK,
                  "strided record %s: %s", kinds[i], moegs_last_error());
        }
        REFUSED(moegs_model_record_strided(h, tokens_first, MOEGS_IDS_INT32, M_LAYERS, M_TOKENS, TOP_K, TOP_K, 1, NULL, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT,
                "token_stride = 1", ">= top_k = 2");
        REFUSED(moegs_model_record_strided(h, tokens_first, MOEGS_IDS_INT32, M_LAYERS, M_TOKENS, TOP_K, 3, 4, NULL, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT,
                "layer_stride = 3, token_stride = 4", "neither one after another nor interleaved");
        REFUSED(moegs_model_record_strided(h, tokens_first, MOEGS_IDS_INT32, M_LAYERS, M_TOKENS, TOP_K, TOP_K, -2, NULL, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT,
                "token_stride = -2");
        REFUSED(moegs_model_record_strided(wide, tokens_first64, (moegs_id_type)7, M_LAYERS, M_TOKENS, TOP_K, TOP_K, M_LAYERS * TOP_K, NULL, NULL,
                                           NULL, NULL), MOEGS_INVALID_ARGUMENT, "id_type = 7");
        model_reads strided, wide_reads;
        read_model(h, NULL, &strided);
        read_model(wide, NULL, &wide_reads);
        same_model(&reads[i], &wide_reads, "int32 vs int64 ids");
        CHECK(moegs_model_destroy(wide) == MOEGS_OK, "model destroy: %s", moegs_last_error());
        same_model(&reads[i], &strided, "[layers, tokens, k] vs [tokens, layers, k]");
        CHECK(memcmp(strided.load, want, sizeof want) == 0 && strided.summary.steps == M_STEPS, "%s: the interleaved window load is not the bincount", kinds[i]);
        CHECK(moegs_model_destroy(h) == MOEGS_OK, "model destroy: %s", moegs_last_error());
    }

    /* Packed layers (stride 0), no count, no losses: every row counts. */
    CHECK(moegs_model_reset(models[0]) == MOEGS_OK, "model reset: %s", moegs_last_error());
    CHECK(moegs_model_record(models[0], ids[0], M_LAYERS, 1, TOP_K, 0, NULL, NULL, NULL, NULL) == MOEGS_OK, "packed record: %s", moegs_last_error());
    moegs_snapshot first;
    CHECK(moegs_model_layer_snapshot(models[0], 1, &first) == MOEGS_OK && first.total_routings == 1, "packed: layer 1 read %llu routings",
          (unsigned long long)first.total_routings);
    const char* where = NULL;
    CHECK(moegs_model_accelerator(models[1], &where) == MOEGS_OK && where && strcmp(where, "cpu") == 0, "model runs on %s", where ? where : "NULL");

    moegs_handle h = 42;
    REFUSED(moegs_model_create("managed", 0, M_EXPERTS, 0, 0, -1.0f, &h), MOEGS_INVALID_ARGUMENT, "layers = 0", "[1, 1024]");
    CHECK(h == 0, "a refused model create leaves *out = 0");
    REFUSED(moegs_model_create("managed", M_LAYERS, 4097, 0, 0, -1.0f, &h), MOEGS_INVALID_ARGUMENT, "experts = 4097", "[1, 4096]");
    /* 0 is no capacity (nothing dropped), not a capacity of 100: the message says so. */
    REFUSED(moegs_model_create("managed", M_LAYERS, M_EXPERTS, -1, 0, -1.0f, &h), MOEGS_INVALID_ARGUMENT, "expert_capacity = -1", "0 (no capacity: nothing dropped");
    REFUSED(moegs_model_create("managed", M_LAYERS, M_EXPERTS, 0, -1, -1.0f, &h), MOEGS_INVALID_ARGUMENT, "window = -1", "default of 1000");
    REFUSED(moegs_model_create("managed", M_LAYERS, M_EXPERTS, 0, 0, 1.0f, &h), MOEGS_INVALID_ARGUMENT, "utilization_decay = 1", "[0, 1)");
    /* Under main's Swedish locale a culture-following message would read "1,5", and a handle "−7". */
    REFUSED(moegs_model_create("managed", M_LAYERS, M_EXPERTS, 0, 0, 1.5f, &h), MOEGS_INVALID_ARGUMENT, "utilization_decay = 1.5:", "[0, 1)");
    REFUSED(moegs_model_destroy(-7), MOEGS_INVALID_HANDLE, "handle -7 is not a live model");
    REFUSED(moegs_model_create("tpu", M_LAYERS, M_EXPERTS, 0, 0, -1.0f, &h), MOEGS_INVALID_ARGUMENT, "accelerator = \"tpu\"");
    REFUSED(moegs_model_create("managed", M_LAYERS, M_EXPERTS, 0, 0, -1.0f, NULL), MOEGS_INVALID_ARGUMENT, "out is NULL");

    for (int i = 0; i < 2; i++) CHECK(moegs_model_destroy(models[i]) == MOEGS_OK, "model destroy %s: %s", kinds[i], moegs_last_error());
    REFUSED(moegs_model_destroy(models[0]), MOEGS_INVALID_HANDLE, "not a live model");
    REFUSED(moegs_model_window_load(models[1], want, M_LAYERS * M_EXPERTS), MOEGS_INVALID_HANDLE, "not a live model");
    /* As moegs.h orders the checks: a NULL out before the handle, the arguments its shape bounds after it. */
    REFUSED(moegs_model_summary(models[1], NULL, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT, "out is NULL");
    REFUSED(moegs_model_record(models[1], NULL, M_LAYERS, 1, 0, 0, NULL, NULL, NULL, NULL), MOEGS_INVALID_HANDLE, "not a live model");
}

/* The arrays of moegs_model_device_arrays are the model's own memory: after every step, read straight
 * through the pointers before any other call (so the step's fold is still pending when the call comes),
 * they equal a bincount done here (the window's last M_WINDOW steps, and every step since the start);
 * afterwards the window load equals moegs_model_window_load and each token-count row the layer's
 * routed_slots. The addresses do not move; a reset clears the memory; refusals name their argument. */
static void model_device_arrays(void)
{
    CHECK(moegs_model_arrays_size() == (int32_t)sizeof(moegs_model_arrays), "moegs_model_arrays: %d / %zu bytes", moegs_model_arrays_size(),
          sizeof(moegs_model_arrays));
    moegs_handle h = 0, managed = 0;
    CHECK(moegs_model_create("cpu", M_LAYERS, M_EXPERTS, 0, M_WINDOW, -1.0f, &h) == MOEGS_OK, "arrays: create cpu: %s", moegs_last_error());
    moegs_model_arrays a, first;
    CHECK(moegs_model_device_arrays(h, NULL, &first) == MOEGS_OK, "arrays before any step: %s", moegs_last_error());
    CHECK(first.token_counts != NULL && first.window_load != NULL && first.accelerator && strcmp(first.accelerator, "cpu") == 0
          && first.layers == M_LAYERS && first.experts == M_EXPERTS && first.steps == 0 && first.window_steps == 0 && first.synchronized == 1,
          "arrays before any step: %s %d x %d, %llu steps, synchronized %d", first.accelerator ? first.accelerator : "NULL", first.layers, first.experts,
          (unsigned long long)first.steps, first.synchronized);

    static int32_t ids[M_STEPS][M_LAYERS * M_TOKENS * TOP_K];
    uint64_t since_start[M_LAYERS * M_EXPERTS] = {0};
    for (int step = 0; step < M_STEPS; step++) {
        for (int l = 0; l < M_LAYERS; l++)
            for (int i = 0; i < M_TOKENS * TOP_K; i++) {
                int32_t id = (int32_t)(next() % (M_EXPERTS + 2)) - 1; /* -1 (empty), experts, and one invalid id */
                ids[step][l * M_TOKENS * TOP_K + i] = id;
                if (id >= 0 && id < M_EXPERTS) since_start[l * M_EXPERTS + id]++;
            }
        CHECK(moegs_model_record(h, ids[step], M_LAYERS, M_TOKENS, TOP_K, 0, NULL, NULL, NULL, NULL) == MOEGS_OK, "arrays: record: %s",
              moegs_last_error());
        CHECK(moegs_model_device_arrays(h, NULL, &a) == MOEGS_OK, "arrays after step %d: %s", step, moegs_last_error());
        uint64_t window[M_LAYERS * M_EXPERTS] = {0};
        for (int s = step + 1 > M_WINDOW ? step + 1 - M_WINDOW : 0; s <= step; s++)
            for (int l = 0; l < M_LAYERS; l++)
                for (int i = 0; i < M_TOKENS * TOP_K; i++) {
                    int32_t id = ids[s][l * M_TOKENS * TOP_K + i];
                    if (id >= 0 && id < M_EXPERTS) window[l * M_EXPERTS + id]++;
                }
        CHECK(memcmp(a.window_load, window, sizeof window) == 0, "step %d: the window load at %p is not the last steps' bincount", step, a.window_load);
        CHECK(memcmp(a.token_counts, since_start, sizeof since_start) == 0, "step %d: the token counts at %p are not every step's bincount", step,
              a.token_counts);
        CHECK(a.token_counts == first.token_counts && a.window_load == first.window_load, "step %d: the arrays moved", step);
        CHECK(a.steps == (uint64_t)step + 1 && a.window_steps == (step + 1 < M_WINDOW ? step + 1 : M_WINDOW) && a.synchronized == 1,
              "step %d: %llu steps, %d in the window, synchronized %d", step, (unsigned long long)a.steps, a.window_steps, a.synchronized);
    }

    uint64_t copied[M_LAYERS * M_EXPERTS];
    CHECK(moegs_model_window_load(h, copied, M_LAYERS * M_EXPERTS) == MOEGS_OK && memcmp(copied, a.window_load, sizeof copied) == 0,
          "the window load copied out differs from the exported array");
    for (int l = 0; l < M_LAYERS; l++) {
        moegs_snapshot s;
        uint64_t row = 0;
        for (int e = 0; e < M_EXPERTS; e++) row += ((const uint64_t*)a.token_counts)[l * M_EXPERTS + e];
        CHECK(moegs_model_layer_snapshot(h, l, &s) == MOEGS_OK && s.routed_slots == row, "layer %d: routed_slots %llu, token-count row %llu", l,
              (unsigned long long)s.routed_slots, (unsigned long long)row);
    }

    CHECK(moegs_model_reset(h) == MOEGS_OK, "arrays: reset: %s", moegs_last_error());
    CHECK(moegs_model_device_arrays(h, NULL, &a) == MOEGS_OK && a.steps == 0 && a.window_load == first.window_load, "arrays after reset: %s",
          moegs_last_error());
    uint64_t zeros[M_LAYERS * M_EXPERTS] = {0};
    CHECK(memcmp(a.window_load, zeros, sizeof zeros) == 0 && memcmp(a.token_counts, zeros, sizeof zeros) == 0, "a reset left counts in the arrays");

    /* Refusals zero *out, so a caller who skips the status reads no stale address. */
    CHECK(moegs_model_create("managed", M_LAYERS, M_EXPERTS, 0, M_WINDOW, -1.0f, &managed) == MOEGS_OK, "arrays: create managed: %s", moegs_last_error());
    a.window_load = (void*)&a;
    char handle_text[64];
    snprintf(handle_text, sizeof handle_text, "handle = %lld: a model on managed", (long long)managed);
    REFUSED(moegs_model_device_arrays(managed, NULL, &a), MOEGS_INVALID_ARGUMENT, handle_text, "cuda or cpu", "moegs_model_window_load");
    CHECK(a.window_load == NULL && a.accelerator == NULL, "a refused call left an address in *out");
    REFUSED(moegs_model_device_arrays(h, (void*)16, &a), MOEGS_INVALID_ARGUMENT, "stream = 0x10", "pass NULL");
    REFUSED(moegs_model_device_arrays(h, NULL, NULL), MOEGS_INVALID_ARGUMENT, "out is NULL");
    moegs_handle aggregator = 0;
    CHECK(moegs_create("cpu", M_EXPERTS, 0, &aggregator) == MOEGS_OK, "arrays: create aggregator: %s", moegs_last_error());
    REFUSED(moegs_model_device_arrays(aggregator, NULL, &a), MOEGS_INVALID_HANDLE, "not a live model");
    CHECK(moegs_destroy(aggregator) == MOEGS_OK && moegs_model_destroy(managed) == MOEGS_OK && moegs_model_destroy(h) == MOEGS_OK,
          "arrays: destroy: %s", moegs_last_error());
    REFUSED(moegs_model_device_arrays(h, NULL, &a), MOEGS_INVALID_HANDLE, "not a live model");
}

/* A model layer's per-expert values against the test's own bincount, shares and decay, on both host
 * accelerators; zeros before the first step; refusals (no decay kept, a layer or capacity out of range). */
static void model_layer_values(void)
{
    const float decay = 0.75f;
    moegs_handle models[2] = { 0, 0 }, plain = 0;
    const char* kinds[] = { "managed", "cpu" };
    for (int i = 0; i < 2; i++)
        CHECK(moegs_model_create(kinds[i], M_LAYERS, M_EXPERTS, 0, M_WINDOW, decay, &models[i]) == MOEGS_OK, "model create %s: %s", kinds[i], moegs_last_error());
    CHECK(moegs_model_create("managed", M_LAYERS, M_EXPERTS, 0, M_WINDOW, -1.0f, &plain) == MOEGS_OK, "model create: %s", moegs_last_error());

    uint64_t counts[M_EXPERTS];
    float values[M_EXPERTS];
    for (int e = 0; e < M_EXPERTS; e++) { counts[e] = 7; values[e] = 7.0f; }
    CHECK(moegs_model_layer_expert_counts(models[0], 1, counts, M_EXPERTS) == MOEGS_OK
          && moegs_model_layer_decayed_utilization(models[1], 1, values, M_EXPERTS) == MOEGS_OK, "before a step: %s", moegs_last_error());
    for (int e = 0; e < M_EXPERTS; e++)
        CHECK(counts[e] == 0 && values[e] == 0.0f, "before a step, expert %d: count %llu, decayed %g", e, (unsigned long long)counts[e], values[e]);

    static int32_t ids[M_LAYERS * M_TOKENS * TOP_K];
    uint64_t since[M_LAYERS][M_EXPERTS] = {{0}};
    double shares[M_LAYERS][M_EXPERTS] = {{0}};
    double decayed[M_LAYERS][M_EXPERTS] = {{0}}; /* kept in f64, as the library keeps it */
    for (int step = 0; step < M_STEPS; step++) {
        int32_t step_counts[M_LAYERS][M_EXPERTS] = {{0}};
        for (int i = 0; i < M_LAYERS * M_TOKENS * TOP_K; i++) {
            int l = i / (M_TOKENS * TOP_K);
            ids[i] = (int32_t)(next() % (M_EXPERTS + 1)); /* M_EXPERTS is invalid: in no expert's count */
            if (ids[i] < M_EXPERTS) step_counts[l][ids[i]]++;
        }
        for (int i = 0; i < 2; i++)
            CHECK(moegs_model_record(models[i], ids, M_LAYERS, M_TOKENS, TOP_K, 0, NULL, NULL, NULL, NULL) == MOEGS_OK, "record %s: %s", kinds[i], moegs_last_error());
        for (int l = 0; l < M_LAYERS; l++)
            for (int e = 0; e < M_EXPERTS; e++) {
                float share = (float)step_counts[l][e] / (float)M_TOKENS;
                since[l][e] += (uint64_t)step_counts[l][e];
                shares[l][e] += share;
                decayed[l][e] = (double)decay * decayed[l][e] + (1.0 - (double)decay) * share;
            }
    }

    for (int i = 0; i < 2; i++)
        for (int l = 0; l < M_LAYERS; l++) {
            float utilization[M_EXPERTS];
            CHECK(moegs_model_layer_expert_counts(models[i], l, counts, M_EXPERTS) == MOEGS_OK
                  && moegs_model_layer_expert_utilization(models[i], l, utilization, M_EXPERTS) == MOEGS_OK
                  && moegs_model_layer_decayed_utilization(models[i], l, values, M_EXPERTS) == MOEGS_OK, "%s layer %d: %s", kinds[i], l, moegs_last_error());
            for (int e = 0; e < M_EXPERTS; e++) {
                CHECK(counts[e] == since[l][e], "%s layer %d expert %d: count %llu, bincount %llu", kinds[i], l, e, (unsigned long long)counts[e],
                      (unsigned long long)since[l][e]);
                CHECK(utilization[e] == (float)(shares[l][e] / M_STEPS), "%s layer %d expert %d: utilization %.9g, mean share %.9g", kinds[i], l, e,
                      utilization[e], (float)(shares[l][e] / M_STEPS));
                CHECK(fabs(values[e] - decayed[l][e]) <= 1e-6, "%s layer %d expert %d: decayed %.9g, want %.9g", kinds[i], l, e, values[e], decayed[l][e]);
            }
        }

    char plain_name[32];
    snprintf(plain_name, sizeof plain_name, "handle %lld: ", (long long)plain);
    REFUSED(moegs_model_layer_decayed_utilization(plain, 0, values, M_EXPERTS), MOEGS_INVALID_ARGUMENT, plain_name, "keeps no decayed utilization", "utilization_decay");
    REFUSED(moegs_model_layer_expert_counts(models[0], M_LAYERS, counts, M_EXPERTS), MOEGS_INVALID_ARGUMENT, "layer = 3", "[0, 2]");
    REFUSED(moegs_model_layer_expert_utilization(models[0], -1, values, M_EXPERTS), MOEGS_INVALID_ARGUMENT, "layer = -1");
    REFUSED(moegs_model_layer_expert_utilization(models[1], 0, values, M_EXPERTS - 1), MOEGS_INVALID_ARGUMENT, "capacity = 7", ">= 8");
    REFUSED(moegs_model_layer_expert_counts(models[1], 0, NULL, M_EXPERTS), MOEGS_INVALID_ARGUMENT, "dst is NULL", "moegs_model_layer_expert_counts");
    REFUSED(moegs_model_layer_expert_counts(plain + 1000, 0, counts, M_EXPERTS), MOEGS_INVALID_HANDLE, "not a live model");
    for (int i = 0; i < 2; i++) CHECK(moegs_model_destroy(models[i]) == MOEGS_OK, "destroy %s", kinds[i]);
    CHECK(moegs_model_destroy(plain) == MOEGS_OK, "destroy");
}

/* moegs_save and moegs_model_save write a JSON file a reader can open; a NULL path and a folder that does not
 * exist are refused with their reason. (NativeApiTests reads the files back as the CLI does.) */
static void saves(void)
{
    char dir[] = "/tmp/moegs-save-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char model_path[64], router_path[64], missing[96];
    snprintf(model_path, sizeof model_path, "%s/model.json", dir);
    snprintf(router_path, sizeof router_path, "%s/router.json", dir);
    snprintf(missing, sizeof missing, "%s/no-such-folder/model.json", dir);

    moegs_handle model = 0, router = 0;
    CHECK(moegs_model_create("managed", 2, 4, 0, 3, -1.0f, &model) == MOEGS_OK, "save: model create: %s", moegs_last_error());
    CHECK(moegs_create("managed", 4, 0, &router) == MOEGS_OK, "save: create: %s", moegs_last_error());
    int32_t ids[2 * 3 * 2] = { 0, 1, 2, 3, 3, 3, 1, 1, 0, 2, -1, -1 };
    CHECK(moegs_model_record(model, ids, 2, 3, 2, 0, NULL, NULL, NULL, NULL) == MOEGS_OK, "save: record: %s", moegs_last_error());
    CHECK(moegs_model_save(model, model_path) == MOEGS_OK, "model save: %s", moegs_last_error());
    CHECK(moegs_save(router, router_path) == MOEGS_OK, "save: %s", moegs_last_error());
    for (int i = 0; i < 2; i++) {
        FILE* file = fopen(i == 0 ? model_path : router_path, "r");
        int first = file ? fgetc(file) : EOF;
        CHECK(first == '{', "%s: starts with %d, not a JSON object", i == 0 ? model_path : router_path, first);
        if (file) fclose(file);
    }
    REFUSED(moegs_model_save(model, NULL), MOEGS_INVALID_ARGUMENT, "path is NULL", "moegs_model_save");
    REFUSED(moegs_model_save(model, missing), MOEGS_IO_ERROR, missing, "cannot be written");
    REFUSED(moegs_save(router, ""), MOEGS_INVALID_ARGUMENT, "path is empty", "moegs_save");
    REFUSED(moegs_save(model, router_path), MOEGS_INVALID_HANDLE, "not a live aggregator");
    moegs_model_destroy(model);
    moegs_destroy(router);
    remove(model_path);
    remove(router_path);
    rmdir(dir);
}

/* A checkpoint (moegs_model_save_checkpoint) loads on managed and cpu, whichever saved it, and records on as the saved
 * model: the window loads, summaries, counts and decayed utilization equal to the bit. A file without the ring loads
 * on managed alone and refuses records, checkpoints and cuts of its window; a load that fails writes 0 and names why. */
static void checkpoints(void)
{
    char dir[] = "/tmp/moegs-checkpoint-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[96], plain[96], layer_path[96], missing[112];
    snprintf(path, sizeof path, "%s/checkpoint.json", dir);
    snprintf(plain, sizeof plain, "%s/plain.json", dir);
    snprintf(layer_path, sizeof layer_path, "%s/layer.json", dir);
    snprintf(missing, sizeof missing, "%s/no-such-file.json", dir);
    const char* kinds[] = { "managed", "cpu" };
    enum { WINDOW = 3, BEFORE = 5, AFTER = 4 };
    static int32_t ids[BEFORE + AFTER][M_LAYERS * M_TOKENS * TOP_K];
    for (int step = 0; step < BEFORE + AFTER; step++)
        for (int i = 0; i < M_LAYERS * M_TOKENS * TOP_K; i++) ids[step][i] = (int32_t)(next() % (M_EXPERTS + 1)) - (i % 11 == 0);

    for (int saver = 0; saver < 2; saver++) {
        moegs_handle whole = 0;
        CHECK(moegs_model_create_with_flags(kinds[saver], M_LAYERS, M_EXPERTS, 30, WINDOW, 0.999f, MOEGS_MODEL_SKIP_EMPTY_STEPS, &whole) == MOEGS_OK,
              "checkpoint: create %s: %s", kinds[saver], moegs_last_error());
        for (int step = 0; step < BEFORE; step++)
            CHECK(moegs_model_record(whole, ids[step], M_LAYERS, M_TOKENS, TOP_K, 0, NULL, NULL, NULL, NULL) == MOEGS_OK, "checkpoint: record: %s", moegs_last_error());
        CHECK(moegs_model_save_checkpoint(whole, path) == MOEGS_OK, "checkpoint: save on %s: %s", kinds[saver], moegs_last_error());
        moegs_handle resumed[2] = { 0, 0 };
        for (int k = 0; k < 2; k++) {
            CHECK(moegs_model_load(kinds[k], path, &resumed[k]) == MOEGS_OK && resumed[k] != 0, "checkpoint: load on %s: %s", kinds[k], moegs_last_error());
            const char* where = NULL;
            CHECK(moegs_model_accelerator(resumed[k], &where) == MOEGS_OK && strcmp(where, kinds[k]) == 0, "checkpoint: loaded on %s", where ? where : "?");
            int32_t layers = 0, experts = 0, capacity = 0, window = 0;
            float decay = 0;
            uint32_t flags = 0;
            CHECK(moegs_model_options(resumed[k], &layers, &experts, &capacity, &window, &decay, &flags) == MOEGS_OK && layers == M_LAYERS
                  && experts == M_EXPERTS && capacity == 30 && window == WINDOW && decay == 0.999f && flags == MOEGS_MODEL_SKIP_EMPTY_STEPS,
                  "checkpoint: options %d %d %d %d %g %u (%s)", layers, experts, capacity, window, decay, flags, moegs_last_error());
        }
        for (int step = BEFORE; step < BEFORE + AFTER; step++) {
            /* The last step is empty: each model leaves it out. */
            int32_t valid = step == BEFORE + AFTER - 1 ? 0 : M_TOKENS;
            CHECK(moegs_model_record(whole, ids[step], M_LAYERS, M_TOKENS, TOP_K, 0, &valid, NULL, NULL, NULL) == MOEGS_OK, "checkpoint: record: %s", moegs_last_error());
            for (int k = 0; k < 2; k++)
                CHECK(moegs_model_record(resumed[k], ids[step], M_LAYERS, M_TOKENS, TOP_K, 0, &valid, NULL, NULL, NULL) == MOEGS_OK,
                      "checkpoint: record resumed on %s: %s", kinds[k], moegs_last_error());
        }
        model_reads want, got;
        read_model(whole, NULL, &want);
        CHECK(want.summary.steps == BEFORE + AFTER - 1 && want.summary.window_steps == WINDOW, "checkpoint: %llu steps, %d in the window",
              (unsigned long long)want.summary.steps, want.summary.window_steps);
        for (int k = 0; k < 2; k++) {
            read_model(resumed[k], NULL, &got);
            same_model(&want, &got, kinds[k]);
            for (int l = 0; l < M_LAYERS; l++) {
                float a[M_EXPERTS], b[M_EXPERTS];
                uint64_t ca[M_EXPERTS], cb[M_EXPERTS];
                CHECK(moegs_model_layer_decayed_utilization(whole, l, a, M_EXPERTS) == MOEGS_OK
                      && moegs_model_layer_decayed_utilization(resumed[k], l, b, M_EXPERTS) == MOEGS_OK && memcmp(a, b, sizeof a) == 0,
                      "checkpoint: layer %d's decayed utilization on %s differs (%s)", l, kinds[k], moegs_last_error());
                CHECK(moegs_model_layer_expert_counts(whole, l, ca, M_EXPERTS) == MOEGS_OK
                      && moegs_model_layer_expert_counts(resumed[k], l, cb, M_EXPERTS) == MOEGS_OK && memcmp(ca, cb, sizeof ca) == 0,
                      "checkpoint: layer %d's counts on %s differ (%s)", l, kinds[k], moegs_last_error());
            }
            moegs_model_destroy(resumed[k]);
        }
        if (saver == 0) {
            CHECK(moegs_model_save(whole, plain) == MOEGS_OK, "checkpoint: plain save: %s", moegs_last_error());
        }
        moegs_model_destroy(whole);
    }

    /* Without the ring: managed alone, read but not recorded into, checkpointed or cut. */
    moegs_handle read_only = 7;
    REFUSED(moegs_model_load("cpu", plain, &read_only), MOEGS_INVALID_ARGUMENT, "accelerator = \"cpu\"", "without its window ring", "not as a checkpoint");
    CHECK(read_only == 0, "checkpoint: a refused load wrote handle %lld", (long long)read_only);
    CHECK(moegs_model_load(" Managed ", plain, &read_only) == MOEGS_OK, "checkpoint: plain load: %s", moegs_last_error());
    model_reads plain_reads;
    read_model(read_only, NULL, &plain_reads);
    CHECK(plain_reads.summary.steps == BEFORE + AFTER - 1, "checkpoint: the plain file holds %llu steps", (unsigned long long)plain_reads.summary.steps);
    REFUSED(moegs_model_record(read_only, ids[0], M_LAYERS, M_TOKENS, TOP_K, 0, NULL, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT,
            "handle", "not its ring of steps", "not recorded into");
    REFUSED(moegs_model_save_checkpoint(read_only, path), MOEGS_INVALID_ARGUMENT, "no steps to checkpoint", "save it without the ring");
    moegs_model_balance balance;
    REFUSED(moegs_model_recent_summary(read_only, 1, NULL, &balance, NULL, NULL), MOEGS_INVALID_ARGUMENT, "recent_steps = 1: fewer than the 3 steps", "give 3 to 3");
    model_reads after;
    read_model(read_only, NULL, &after);
    same_model(&plain_reads, &after, "checkpoint: refusals");
    /* A reset gives it a ring of its own: it records from there. */
    CHECK(moegs_model_reset(read_only) == MOEGS_OK
          && moegs_model_record(read_only, ids[0], M_LAYERS, M_TOKENS, TOP_K, 0, NULL, NULL, NULL, NULL) == MOEGS_OK
          && moegs_model_save_checkpoint(read_only, path) == MOEGS_OK,
          "checkpoint: a reset model from a plain file records and checkpoints: %s", moegs_last_error());
    moegs_model_destroy(read_only);

    /* Files that are not a model's, and arguments refused before any file is read. */
    moegs_handle router = 0, out = 7;
    CHECK(moegs_create("managed", 4, 0, &router) == MOEGS_OK && moegs_save(router, layer_path) == MOEGS_OK, "checkpoint: layer save: %s", moegs_last_error());
    moegs_destroy(router);
    REFUSED(moegs_model_load("managed", layer_path, &out), MOEGS_IO_ERROR, layer_path, "cannot be read as a model", "one layer's snapshot, not a model's).");
    CHECK(strstr(moegs_last_error(), "RoutingStatsFile") == NULL && strstr(strstr(moegs_last_error(), layer_path) + 1, layer_path) == NULL,
          "checkpoint: a layer's file named .NET's call, or its path twice: %s", moegs_last_error());
    CHECK(out == 0, "checkpoint: a failed load wrote handle %lld", (long long)out);
    REFUSED(moegs_model_load("managed", missing, &out), MOEGS_IO_ERROR, missing, "cannot be read as a model");
    REFUSED(moegs_model_load("managed", NULL, &out), MOEGS_INVALID_ARGUMENT, "path is NULL", "moegs_model_load reads");
    REFUSED(moegs_model_load("managed", path, NULL), MOEGS_INVALID_ARGUMENT, "out is NULL", "moegs_model_load");
    REFUSED(moegs_model_load("tpu", path, &out), MOEGS_INVALID_ARGUMENT, "accelerator = \"tpu\"");
    REFUSED(moegs_model_options(12345, NULL, NULL, NULL, NULL, NULL, NULL), MOEGS_INVALID_HANDLE, "12345");
    remove(path);
    remove(plain);
    remove(layer_path);
    rmdir(dir);
}

/* A read begun without waiting, on managed and cpu: each is the blocking reads' figures at the step it was begun,
 * whatever is recorded after it; refused in the caller's words with its handle kept; it outlives its model. */
static void model_pending_reads(void)
{
    const char* kinds[] = { "managed", "cpu" };
    const int32_t ranks[M_EXPERTS] = { 0, 1, 1, 2, 2, 3, 3, 3 };
    for (int i = 0; i < 2; i++) {
        moegs_handle m = 0, whole = 0, recent = 0, unread = 0, outliving = 0;
        CHECK(moegs_model_create(kinds[i], M_LAYERS, M_EXPERTS, 0, M_WINDOW, -1.0f, &m) == MOEGS_OK, "model create %s: %s", kinds[i], moegs_last_error());
        static int32_t ids[M_LAYERS * M_TOKENS * TOP_K];
        for (int step = 0; step < M_STEPS; step++) {
            for (int j = 0; j < M_LAYERS * M_TOKENS * TOP_K; j++) ids[j] = (int32_t)(next() % M_EXPERTS);
            CHECK(moegs_model_record(m, ids, M_LAYERS, M_TOKENS, TOP_K, 0, NULL, NULL, NULL, NULL) == MOEGS_OK, "record %s: %s", kinds[i], moegs_last_error());
        }

        model_reads blocking, pending;
        read_model(m, NULL, &blocking);
        CHECK(moegs_model_read_begin(m, 0, NULL, NULL, &whole) == MOEGS_OK && whole != 0, "read begin %s: %s", kinds[i], moegs_last_error());
        CHECK(moegs_model_record(m, ids, M_LAYERS, M_TOKENS, TOP_K, 0, NULL, NULL, NULL, NULL) == MOEGS_OK, "record after begin: %s", moegs_last_error());

        int32_t arrived = -1;
        CHECK(moegs_model_read_ready(whole, &arrived) == MOEGS_OK && arrived == 1, "%s: arrived %d at once (%s)", kinds[i], arrived, moegs_last_error());
        REFUSED(moegs_model_read_finish(whole, &pending.summary, pending.window, pending.since_start, pending.load, M_LAYERS * M_EXPERTS - 1),
                MOEGS_INVALID_ARGUMENT, "capacity = 23", "window_load", ">= 24");
        REFUSED(moegs_model_read_finish(whole, NULL, NULL, NULL, NULL, 0), MOEGS_INVALID_ARGUMENT, "out is NULL", "moegs_model_read_destroy");
        memset(&pending, 0, sizeof pending);
        CHECK(moegs_model_read_finish(whole, &pending.summary, pending.window, pending.since_start, pending.load, M_LAYERS * M_EXPERTS) == MOEGS_OK,
              "read finish %s, its handle kept by the refusals: %s", kinds[i], moegs_last_error());
        same_model(&blocking, &pending, "a pending read against the blocking reads at its step");
        REFUSED(moegs_model_read_ready(whole, &arrived), MOEGS_INVALID_HANDLE, "is not a live pending model read");

        /* The newest steps over ranks: the recent summary at the same step. */
        moegs_model_balance want;
        moegs_layer_balance want_window[M_LAYERS];
        CHECK(moegs_model_recent_summary(m, 2, ranks, &want, want_window, NULL) == MOEGS_OK, "recent summary: %s", moegs_last_error());
        CHECK(moegs_model_read_begin(m, 2, ranks, NULL, &recent) == MOEGS_OK, "read begin recent: %s", moegs_last_error());
        CHECK(moegs_model_read_finish(recent, &pending.summary, pending.window, NULL, NULL, 0) == MOEGS_OK, "read finish recent: %s", moegs_last_error());
        CHECK(pending.summary.window_steps == 2 && pending.summary.entries == 4 && pending.summary.steps == M_STEPS + 1
              && pending.summary.window_mean_balancedness == want.window_mean_balancedness && pending.window[1].max_load == want_window[1].max_load,
              "%s: recent pending read %d steps over %d entries, mean %.17g (want %.17g)", kinds[i], pending.summary.window_steps,
              pending.summary.entries, pending.summary.window_mean_balancedness, want.window_mean_balancedness);

        /* Refusals begin nothing. */
        moegs_handle none = 5;
        REFUSED(moegs_model_read_begin(m, M_WINDOW + 1, NULL, NULL, &none), MOEGS_INVALID_ARGUMENT, "recent_steps = 5", "[1, 4]", "0 for the whole window");
        CHECK(none == 0, "a refused begin leaves *read = 0");
        const int32_t bad[M_EXPERTS] = { 0, 1, 2, 3, 4, 5, 6, M_EXPERTS };
        REFUSED(moegs_model_read_begin(m, 0, bad, NULL, &none), MOEGS_INVALID_ARGUMENT, "expert_ranks[7] = 8");
        REFUSED(moegs_model_read_begin(m, 0, NULL, NULL, NULL), MOEGS_INVALID_ARGUMENT, "read is NULL");
        REFUSED(moegs_model_read_begin(424242, 0, NULL, NULL, &none), MOEGS_INVALID_HANDLE, "is not a live model");
        REFUSED(moegs_model_read_begin(m, 0, NULL, (void*)0x10, &none), MOEGS_INVALID_ARGUMENT, "stream = 0x10", "only on cuda", "pass NULL");

        CHECK(moegs_model_read_begin(m, 0, NULL, NULL, &unread) == MOEGS_OK, "read begin: %s", moegs_last_error());
        CHECK(moegs_model_read_destroy(unread) == MOEGS_OK, "read destroy: %s", moegs_last_error());
        REFUSED(moegs_model_read_destroy(unread), MOEGS_INVALID_HANDLE, "is not a live pending model read");

        read_model(m, NULL, &blocking);
        CHECK(moegs_model_read_begin(m, 0, NULL, NULL, &outliving) == MOEGS_OK, "read begin: %s", moegs_last_error());
        CHECK(moegs_model_destroy(m) == MOEGS_OK, "model destroy: %s", moegs_last_error());
        memset(&pending, 0, sizeof pending);
        CHECK(moegs_model_read_finish(outliving, &pending.summary, pending.window, pending.since_start, pending.load, M_LAYERS * M_EXPERTS) == MOEGS_OK,
              "%s: a read finished after its model's destroy: %s", kinds[i], moegs_last_error());
        same_model(&blocking, &pending, "a pending read that outlived its model");
    }
}

/* Several finishes and a destroy racing on one pending read: exactly one has it (MOEGS_OK, the figures written), the
 * others find no live read, and a call that succeeds leaves the thread's last error as it was. */
#define FINISHERS 3

typedef struct { moegs_handle read; pthread_barrier_t* start; int status; int error_kept; int refused_right; } finish_args;

static void* finish_worker(void* p)
{
    finish_args* a = p;
    moegs_model_read_destroy(-7); /* a failing call first: its message must outlive a successful finish */
    char before[128];
    snprintf(before, sizeof before, "%s", moegs_last_error());
    model_reads out;
    pthread_barrier_wait(a->start);
    a->status = a->read < 0 ? moegs_model_read_destroy(-a->read)
                            : moegs_model_read_finish(a->read, &out.summary, out.window, out.since_start, out.load, M_LAYERS * M_EXPERTS);
    a->error_kept = a->status != MOEGS_OK || strcmp(before, moegs_last_error()) == 0;
    a->refused_right = a->status == MOEGS_OK || (a->status == MOEGS_INVALID_HANDLE && strstr(moegs_last_error(), "is not a live pending model read") != NULL);
    return NULL;
}

static void finishes_racing_on_one_read(const char* accelerator, int rounds)
{
    moegs_handle m = 0;
    CHECK(moegs_model_create(accelerator, M_LAYERS, M_EXPERTS, 0, M_WINDOW, -1.0f, &m) == MOEGS_OK, "model create %s: %s", accelerator, moegs_last_error());
    static int32_t ids[M_LAYERS * M_TOKENS * TOP_K];
    CHECK(moegs_model_record(m, ids, M_LAYERS, M_TOKENS, TOP_K, 0, NULL, NULL, NULL, NULL) == MOEGS_OK, "record %s: %s", accelerator, moegs_last_error());
    int twice = 0, none = 0, error_lost = 0, wrong_refusal = 0;
    for (int round = 0; round < rounds; round++) {
        moegs_handle read = 0;
        CHECK(moegs_model_read_begin(m, 0, NULL, NULL, &read) == MOEGS_OK, "read begin %s: %s", accelerator, moegs_last_error());
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, FINISHERS + 1);
        pthread_t threads[FINISHERS + 1];
        finish_args args[FINISHERS + 1];
        for (int t = 0; t <= FINISHERS; t++) {
            args[t] = (finish_args){ t == FINISHERS ? -read : read, &start, -1, 0, 0 };
            pthread_create(&threads[t], NULL, finish_worker, &args[t]);
        }
        int ok = 0;
        for (int t = 0; t <= FINISHERS; t++) {
            pthread_join(threads[t], NULL);
            ok += args[t].status == MOEGS_OK;
            error_lost += !args[t].error_kept;
            wrong_refusal += !args[t].refused_right;
        }
        pthread_barrier_destroy(&start);
        twice += ok > 1;
        none += ok == 0;
    }
    CHECK(twice == 0 && none == 0, "%s: %d of %d rounds had more than one finish or destroy succeed on one read, %d none", accelerator, twice, rounds, none);
    CHECK(error_lost == 0 && wrong_refusal == 0, "%s: %d successful calls changed the thread's last error, %d refusals were not \"is not a live pending model read\"",
          accelerator, error_lost, wrong_refusal);
    moegs_model_destroy(m);
}

/* MOEGS_MODEL_SKIP_EMPTY_STEPS: a step of no valid row (valid_tokens 0) or of padding rows alone takes no
 * place in the window and counts nowhere; a step with one token in one layer is kept whole. Without the flag
 * each is a step. A bit that is no flag is refused, naming it. */
static void model_skips_empty_steps(void)
{
    const char* kinds[] = { "managed", "cpu" };
    for (int i = 0; i < 2; i++) {
        moegs_handle skipping = 0, counting = 0;
        CHECK(moegs_model_create_with_flags(kinds[i], M_LAYERS, M_EXPERTS, 0, M_WINDOW, -1.0f, MOEGS_MODEL_SKIP_EMPTY_STEPS, &skipping) == MOEGS_OK
              && moegs_model_create_with_flags(kinds[i], M_LAYERS, M_EXPERTS, 0, M_WINDOW, -1.0f, 0, &counting) == MOEGS_OK,
              "model create with flags %s: %s", kinds[i], moegs_last_error());
        int32_t step[M_LAYERS * 2 * 2], padding[M_LAYERS * 2 * 2], one[M_LAYERS * 2 * 2], none = 0;
        for (int j = 0; j < M_LAYERS * 4; j++) {
            step[j] = j % M_EXPERTS;
            padding[j] = -1;
            one[j] = j == M_LAYERS * 4 - 1 ? 3 : -1;
        }
        moegs_handle both[] = { skipping, counting };
        for (int m = 0; m < 2; m++) {
            CHECK(moegs_model_record(both[m], step, M_LAYERS, 2, 2, 0, NULL, NULL, NULL, NULL) == MOEGS_OK
                  && moegs_model_record(both[m], step, M_LAYERS, 2, 2, 0, &none, NULL, NULL, NULL) == MOEGS_OK
                  && moegs_model_record(both[m], padding, M_LAYERS, 2, 2, 0, NULL, NULL, NULL, NULL) == MOEGS_OK
                  && moegs_model_record(both[m], one, M_LAYERS, 2, 2, 0, NULL, NULL, NULL, NULL) == MOEGS_OK,
                  "records %s: %s", kinds[i], moegs_last_error());
        }
        model_reads kept, all;
        read_model(skipping, NULL, &kept);
        read_model(counting, NULL, &all);
        CHECK(kept.summary.steps == 2 && kept.summary.window_steps == 2, "%s skipping: %llu steps, %d in the window (want 2, 2)", kinds[i],
              (unsigned long long)kept.summary.steps, kept.summary.window_steps);
        CHECK(all.summary.steps == 4 && all.summary.window_steps == 4, "%s counting: %llu steps (want 4)", kinds[i], (unsigned long long)all.summary.steps);
        for (int j = 0; j < M_LAYERS * M_EXPERTS; j++) {
            CHECK(kept.load[j] == all.load[j], "%s: window load %d is %llu skipping, %llu counting: empty steps hold no load", kinds[i], j,
                  (unsigned long long)kept.load[j], (unsigned long long)all.load[j]);
        }
        moegs_snapshot layer;
        CHECK(moegs_model_layer_snapshot(skipping, M_LAYERS - 1, &layer) == MOEGS_OK && layer.total_routings == 2 && layer.total_tokens == 3,
              "%s skipping, last layer: %llu batches, %llu tokens (want 2, 3)", kinds[i], (unsigned long long)layer.total_routings,
              (unsigned long long)layer.total_tokens);
        moegs_model_destroy(skipping);
        moegs_model_destroy(counting);
    }

    moegs_handle h = 42;
    REFUSED(moegs_model_create_with_flags("managed", M_LAYERS, M_EXPERTS, 0, 0, -1.0f, 6, &h), MOEGS_INVALID_ARGUMENT, "flags = 0x6",
            "MOEGS_MODEL_SKIP_EMPTY_STEPS (0x1)", "0x6 is none of them");
    CHECK(h == 0, "a refused model create leaves *out = 0");
}

static void* failing_thread(void* p)
{
    int32_t ids[2] = {0, 1};
    moegs_record(*(moegs_handle*)p, ids, 2, 1, 0, 0.0f, 0.0f, NULL); /* top_k 0: refused, with a message */
    return NULL;
}

static void run_failing_threads(moegs_handle h, int threads)
{
    int started = 0;
    for (int i = 0; i < threads; i++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, failing_thread, &h) == 0) {
            pthread_join(thread, NULL);
            started++;
        }
    }
    CHECK(started == threads, "%d of %d threads started", started, threads);
}

static long resident_kib(void)
{
    FILE* f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* A failure's message belongs to its thread (moegs_last_error()), and goes with it when the thread ends: a host that
 * starts a thread per task must not grow by a message for every thread that ended after a failure. After 5,000 such
 * threads (the runtime's own per-thread state warmed up), a batch of 40,000 more grows the resident set by less than
 * half what their messages took when kept (3.5 MB a batch; with them freed, the growth measured -1.5 to +0.2 MB).
 * The smaller of two batches' growths is bounded: a kept message grows every batch alike, while the runtime's heap,
 * on a loaded machine, once grew by 4.3 MB in one batch. */
static void messages_of_ended_threads_are_freed(void)
{
    moegs_handle h = 0;
    CHECK(moegs_create("managed", EXPERTS, 0, &h) == MOEGS_OK, "create: %s", moegs_last_error());
    run_failing_threads(h, 5000);
    long least = 0;
    for (int batch = 0; batch < 2; batch++) {
        long before = resident_kib();
        run_failing_threads(h, 40000);
        long grown = resident_kib() - before;
        least = batch == 0 || grown < least ? grown : least;
    }
    CHECK(least < 1500, "each of two batches of 40,000 threads that ended after a failure grew the resident set by %ld KiB or more", least);
    moegs_destroy(h);
}

int main(void)
{
    /* The library's messages are written alike in every locale, as C's and Python's own are: the runtime
     * starts at the first call, so it starts under a locale that writes 1.5 as "1,5" and -7 with U+2212. */
    setenv("LC_ALL", "sv_SE.UTF-8", 1);
    setenv("LANG", "sv_SE.UTF-8", 1);
    /* An ended thread's message is freed by a finalizer, after a collection: the runtime sizes its youngest generation
     * by the CPU's cache (52 MB on some hosts), so the check of messages_of_ended_threads_are_freed fixes it at 16 MB. */
    setenv("DOTNET_GCgen0size", "0x1000000", 1);

    /* The library writes moegs_snapshot_size() bytes into a moegs_snapshot: the struct this header declares. */
    CHECK(moegs_snapshot_size() == (int32_t)sizeof(moegs_snapshot), "moegs_snapshot is %zu bytes here, the library writes %d: %s",
          sizeof(moegs_snapshot), moegs_snapshot_size(), moegs_last_error());

    moegs_handle managed = 0, cpu = 0;
    CHECK(moegs_create("managed", EXPERTS, 0, &managed) == MOEGS_OK, "create managed: %s", moegs_last_error());
    int cpu_status = moegs_create("cpu", EXPERTS, 0, &cpu);
    CHECK(cpu_status == MOEGS_OK, "create cpu: %s", moegs_last_error());

    static int32_t ids[TOKENS * TOP_K];
    uint64_t expected[EXPERTS] = {0}, invalid = 0;
    for (int b = 0; b < BATCHES; b++) {
        fill(ids, TOKENS * TOP_K);
        for (int i = 0; i < TOKENS * TOP_K; i++) {
            if (ids[i] >= 0 && ids[i] < EXPERTS) expected[ids[i]]++; else invalid++;
        }
        float loss = 1.0f + 0.01f * (float)b;
        CHECK(moegs_record(managed, ids, TOKENS * TOP_K, TOKENS, TOP_K, loss, 0.02f, NULL) == MOEGS_OK, "record managed: %s", moegs_last_error());
        CHECK(moegs_record(cpu, ids, TOKENS * TOP_K, TOKENS, TOP_K, loss, 0.02f, NULL) == MOEGS_OK, "record cpu: %s", moegs_last_error());
        moegs_record_latency(managed, 1000 + b * 100);
        moegs_record_latency(cpu, 1000 + b * 100);
    }

    uint64_t counts_managed[EXPERTS], counts_cpu[EXPERTS];
    float util_managed[EXPERTS], util_cpu[EXPERTS];
    CHECK(moegs_expert_counts(managed, counts_managed, EXPERTS) == MOEGS_OK, "counts managed: %s", moegs_last_error());
    CHECK(moegs_expert_counts(cpu, counts_cpu, EXPERTS) == MOEGS_OK, "counts cpu: %s", moegs_last_error());
    CHECK(moegs_expert_utilization(managed, util_managed, EXPERTS) == MOEGS_OK, "util managed");
    CHECK(moegs_expert_utilization(cpu, util_cpu, EXPERTS) == MOEGS_OK, "util cpu");
    for (int e = 0; e < EXPERTS; e++) {
        CHECK(counts_managed[e] == expected[e], "expert %d: managed %llu, bincount %llu", e, (unsigned long long)counts_managed[e], (unsigned long long)expected[e]);
        CHECK(counts_cpu[e] == expected[e], "expert %d: cpu %llu, bincount %llu", e, (unsigned long long)counts_cpu[e], (unsigned long long)expected[e]);
        CHECK(fabsf(util_managed[e] - util_cpu[e]) <= 1e-5f * fabsf(util_managed[e]) + 1e-6f, "expert %d utilization: %g vs %g", e, util_managed[e], util_cpu[e]);
        CHECK(fabsf(util_managed[e] - (float)expected[e] / BATCHES / TOKENS) < 1e-4f, "expert %d utilization %g, expected about %g", e, util_managed[e], (float)expected[e] / BATCHES / TOKENS);
    }

    moegs_snapshot sm, sc;
    CHECK(moegs_snapshot_read(managed, &sm) == MOEGS_OK, "snapshot managed: %s", moegs_last_error());
    CHECK(moegs_snapshot_read(cpu, &sc) == MOEGS_OK, "snapshot cpu: %s", moegs_last_error());
    CHECK(sm.total_routings == BATCHES && sc.total_routings == BATCHES, "routings %llu %llu", (unsigned long long)sm.total_routings, (unsigned long long)sc.total_routings);
    CHECK(sm.total_tokens == (uint64_t)BATCHES * TOKENS && sc.total_tokens == sm.total_tokens, "tokens");
    uint64_t routed = 0;
    for (int e = 0; e < EXPERTS; e++) routed += expected[e];
    /* No capacity: every valid id is a routed slot, none dropped. */
    CHECK(sm.routed_slots == routed && sc.routed_slots == routed && sm.slots_dropped == 0 && sc.slots_dropped == 0
          && sm.routing_efficiency == 100.0f && sc.routing_efficiency == 100.0f,
          "routed slots %llu / %llu (want %llu), dropped %llu / %llu, efficiency %g / %g", (unsigned long long)sm.routed_slots,
          (unsigned long long)sc.routed_slots, (unsigned long long)routed, (unsigned long long)sm.slots_dropped,
          (unsigned long long)sc.slots_dropped, sm.routing_efficiency, sc.routing_efficiency);
    CHECK(sm.invalid_expert_ids == invalid && sc.invalid_expert_ids == invalid, "invalid %llu %llu, expected %llu", (unsigned long long)sm.invalid_expert_ids, (unsigned long long)sc.invalid_expert_ids, (unsigned long long)invalid);
    CHECK(sm.experts == EXPERTS && sm.most_utilized == 0 && sc.most_utilized == 0, "experts %d, most %d / %d", sm.experts, sm.most_utilized, sc.most_utilized);
    CHECK(fabsf(sm.utilization_cv - sc.utilization_cv) <= 1e-5f * sm.utilization_cv, "cv %g vs %g", sm.utilization_cv, sc.utilization_cv);
    CHECK(fabsf(sm.average_load_balance_loss - sc.average_load_balance_loss) < 1e-6f && sm.average_load_balance_loss > 1.0f, "losses");
    CHECK(sm.load_variance_history_len == BATCHES && sm.latency_measurements == BATCHES, "history %d, latencies %llu", sm.load_variance_history_len, (unsigned long long)sm.latency_measurements);
    CHECK(fabs(sm.average_latency_ms - sc.average_latency_ms) < 1e-12, "latency");

    /* Bad input: a status and a message, never a crash, and nothing recorded. */
    refusals_leave_the_statistics(managed, "managed", ids);
    refusals_leave_the_statistics(cpu, "cpu", ids);
    CHECK(moegs_snapshot_read(cpu, &sc) == MOEGS_OK && sc.total_routings == BATCHES, "bad calls recorded nothing");

    /* A buffer longer than 2^31 - 1 ids is fine: a record reads only tokens * top_k of them. */
    CHECK(moegs_record(managed, ids, INT64_C(1) << 40, 5, 2, 0, 0, NULL) == MOEGS_OK, "long buffer, managed: %s", moegs_last_error());
    CHECK(moegs_record(cpu, ids, INT64_C(1) << 40, 5, 2, 0, 0, NULL) == MOEGS_OK, "long buffer, cpu: %s", moegs_last_error());
    CHECK(moegs_snapshot_read(managed, &sm) == MOEGS_OK && sm.total_routings == BATCHES + 1 && sm.total_tokens == (uint64_t)BATCHES * TOKENS + 5,
          "long buffer: %llu routings, %llu tokens", (unsigned long long)sm.total_routings, (unsigned long long)sm.total_tokens);

    moegs_handle h = 42;
    REFUSED(moegs_create("tpu", EXPERTS, 0, &h), MOEGS_INVALID_ARGUMENT, "accelerator = \"tpu\"", "auto", "managed");
    CHECK(h == 0, "a refused create leaves *out = 0, not %lld", (long long)h);
    REFUSED(moegs_create("cpu", EXPERTS, 0, NULL), MOEGS_INVALID_ARGUMENT, "out", "NULL");
    /* A name with line breaks in it is echoed escaped: the message stays one line. */
    REFUSED(moegs_create("cpu\nmanaged\r", EXPERTS, 0, &h), MOEGS_INVALID_ARGUMENT, "accelerator = \"cpu\\nmanaged\\r\"", "must be one of");
    REFUSED(moegs_model_create("c\tpu\x01", M_LAYERS, M_EXPERTS, 0, 0, -1.0f, &h), MOEGS_INVALID_ARGUMENT, "accelerator = \"c\\tpu\\u0001\"");
    REFUSED(moegs_create("cpu\xc2\x85\xe2\x80\xa8\xe2\x80\xa9x", EXPERTS, 0, &h), MOEGS_INVALID_ARGUMENT, "accelerator = \"cpu\\u0085\\u2028\\u2029x\"");
    const char* kinds[] = { "managed", "cpu" };
    for (int i = 0; i < 2; i++) {
        h = 42;
        REFUSED(moegs_create(kinds[i], EXPERTS, -1, &h), MOEGS_INVALID_ARGUMENT, "expert_capacity = -1", "0 (no capacity: nothing dropped", "default of 100 slots", "[1, 2147483647]");
        CHECK(h == 0, "a refused create leaves *out = 0");
        REFUSED(moegs_create(kinds[i], EXPERTS, INT32_MIN, &h), MOEGS_INVALID_ARGUMENT, "expert_capacity = -2147483648");
        REFUSED(moegs_create(kinds[i], 0, 0, &h), MOEGS_INVALID_ARGUMENT, "experts = 0", "must lie in [1, ");
        REFUSED(moegs_create(kinds[i], -3, 0, &h), MOEGS_INVALID_ARGUMENT, "experts = -3", "must lie in [1, ");
        capacity_is_kept(kinds[i], 0, EXPERTS * 100, ids);
        capacity_is_kept(kinds[i], 7, EXPERTS * 7, ids);
        capacity_is_kept(kinds[i], INT32_MAX, (uint64_t)EXPERTS * INT32_MAX, ids);
        padding_is_not_a_token(kinds[i]);
        capacity_drops_slots(kinds[i]);
        per_expert_values_before_a_record(kinds[i]);
    }
    REFUSED(moegs_create("cpu", 4097, 0, &h), MOEGS_INVALID_ARGUMENT, "experts = 4097", "[1, 4096] on cpu");
    REFUSED(moegs_create(NULL, 4097, 0, &h), MOEGS_INVALID_ARGUMENT, "experts = 4097", "[1, 4096] on auto");
    REFUSED(moegs_create("managed", INT32_MAX, 0, &h), MOEGS_INVALID_ARGUMENT, "experts = 2147483647", "[1, 1048576] on managed");
    CHECK(moegs_create("managed", 4097, 0, &h) == MOEGS_OK, "managed takes more than the device engine's 4096 experts: %s", moegs_last_error());
    if (h != 0) {
        int32_t last[] = { 4096, 4096, 0, 4097 };
        uint64_t many[4097];
        CHECK(moegs_record(h, last, 4, 2, 2, 0, 0, NULL) == MOEGS_OK, "record 4097 experts: %s", moegs_last_error());
        CHECK(moegs_expert_counts(h, many, 4097) == MOEGS_OK && many[4096] == 2 && many[0] == 1, "4097 experts: counts %llu %llu",
              (unsigned long long)many[4096], (unsigned long long)many[0]);
        CHECK(moegs_snapshot_read(h, &sm) == MOEGS_OK && sm.invalid_expert_ids == 1 && sm.experts == 4097, "4097 experts: %llu invalid, %d experts",
              (unsigned long long)sm.invalid_expert_ids, sm.experts);
        moegs_destroy(h);
    }

    const char* where = NULL;
    CHECK(moegs_accelerator(managed, &where) == MOEGS_OK && where != NULL && strcmp(where, "managed") == 0, "managed runs on %s", where ? where : "NULL");
    CHECK(moegs_accelerator(cpu, &where) == MOEGS_OK && where != NULL && strcmp(where, "cpu") == 0, "cpu runs on %s", where ? where : "NULL");
    CHECK(moegs_create("  Auto ", EXPERTS, 0, &h) == MOEGS_OK, "create auto: %s", moegs_last_error());
    CHECK(moegs_accelerator(h, &where) == MOEGS_OK && where != NULL
          && (strcmp(where, "cuda") == 0 || strcmp(where, "opencl") == 0 || strcmp(where, "managed") == 0), "auto runs on %s", where ? where : "NULL");
    moegs_destroy(h);
    REFUSED(moegs_accelerator(cpu, NULL), MOEGS_INVALID_ARGUMENT, "out", "NULL");
    where = "unchanged";
    REFUSED(moegs_accelerator(h, &where), MOEGS_INVALID_HANDLE, "is not a live aggregator");
    CHECK(where == NULL, "a failed moegs_accelerator leaves *out = NULL");

    latency_is_kept(managed, 0, 0.0);
    latency_is_kept(managed, 149, 0.0001);
    latency_is_kept(managed, 150, 0.0002);
    latency_is_kept(cpu, 2000000, 2.0);
    latency_is_kept(cpu, INT64_MAX, (double)(INT64_MAX / 100) / 10000.0);
    latencies_from_threads("managed");
    latencies_from_threads("cpu");

    int cuda = moegs_create("cuda", EXPERTS, 0, &h);
    CHECK(cuda == MOEGS_OK || cuda == MOEGS_NO_DEVICE, "cuda: %d %s", cuda, moegs_last_error());
    if (cuda == MOEGS_OK) moegs_destroy(h);

    /* Two threads on one handle: serialized, nothing lost. */
    moegs_reset(cpu);
    pthread_t t1, t2;
    worker_args a = { cpu, ids };
    pthread_create(&t1, NULL, worker, &a);
    pthread_create(&t2, NULL, worker, &a);
    void *r1, *r2;
    pthread_join(t1, &r1);
    pthread_join(t2, &r2);
    CHECK(r1 == NULL && r2 == NULL, "threads recorded");
    CHECK(moegs_snapshot_read(cpu, &sc) == MOEGS_OK && sc.total_routings == 200, "two threads: %llu routings", (unsigned long long)sc.total_routings);

    /* Rounds: a round on cpu opens an ILGPU context of its own; each kind has failed within a few rounds without the fix. */
    destroy_while_calls_run("managed", 0, 60);
    destroy_while_calls_run("cpu", 0, 6);
    destroy_while_calls_run("managed", 1, 60);
    destroy_while_calls_run("cpu", 1, 6);

    CHECK(moegs_destroy(cpu) == MOEGS_OK, "destroy cpu");
    CHECK(moegs_destroy(cpu) == MOEGS_INVALID_HANDLE, "destroy twice");
    CHECK(moegs_record(cpu, ids, 10, 5, 2, 0, 0, NULL) == MOEGS_INVALID_HANDLE, "record after destroy");
    CHECK(moegs_snapshot_read(424242, &sc) == MOEGS_INVALID_HANDLE, "never-created handle");
    CHECK(moegs_destroy(managed) == MOEGS_OK, "destroy managed");

    model_api();
    model_skips_empty_steps();
    messages_of_ended_threads_are_freed();
    model_pending_reads();
    finishes_racing_on_one_read("managed", 300);
    finishes_racing_on_one_read("cpu", 40);
    model_layer_values();
    model_device_arrays();
    saves();
    checkpoints();

    printf("test_moegs: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
