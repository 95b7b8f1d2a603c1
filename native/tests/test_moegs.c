/* Calls libmoegs on the CPU paths and checks its numbers against the managed engine and against
 * a bincount done here; then bad input, destroyed handles and two threads on one handle.
 * Exit status 0 when every check passes. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

typedef struct { moegs_handle handle; int32_t* ids; } worker_args;

static void* worker(void* p)
{
    worker_args* a = p;
    for (int i = 0; i < 100; i++)
        if (moegs_record(a->handle, a->ids, TOKENS * TOP_K, TOKENS, TOP_K, 0.1f, 0.01f, NULL) != MOEGS_OK) return (void*)1;
    return NULL;
}

int main(void)
{
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
    CHECK(sm.invalid_expert_ids == invalid && sc.invalid_expert_ids == invalid, "invalid %llu %llu, expected %llu", (unsigned long long)sm.invalid_expert_ids, (unsigned long long)sc.invalid_expert_ids, (unsigned long long)invalid);
    CHECK(sm.experts == EXPERTS && sm.most_utilized == 0 && sc.most_utilized == 0, "experts %d, most %d / %d", sm.experts, sm.most_utilized, sc.most_utilized);
    CHECK(fabsf(sm.utilization_cv - sc.utilization_cv) <= 1e-5f * sm.utilization_cv, "cv %g vs %g", sm.utilization_cv, sc.utilization_cv);
    CHECK(fabsf(sm.average_load_balance_loss - sc.average_load_balance_loss) < 1e-6f && sm.average_load_balance_loss > 1.0f, "losses");
    CHECK(sm.load_variance_history_len == BATCHES && sm.latency_measurements == BATCHES, "history %d, latencies %llu", sm.load_variance_history_len, (unsigned long long)sm.latency_measurements);
    CHECK(fabs(sm.average_latency_ms - sc.average_latency_ms) < 1e-12, "latency");

    /* Bad input: a status and a message, never a crash, and nothing recorded. */
    CHECK(moegs_record(cpu, NULL, 10, 5, 2, 0, 0, NULL) == MOEGS_INVALID_ARGUMENT, "NULL ids");
    CHECK(strstr(moegs_last_error(), "NULL") != NULL, "message for NULL ids: %s", moegs_last_error());
    CHECK(moegs_record(cpu, ids, 9, 5, 2, 0, 0, NULL) == MOEGS_INVALID_ARGUMENT, "short length");
    CHECK(strstr(moegs_last_error(), "5 * 2 = 10") != NULL, "message for short length: %s", moegs_last_error());
    CHECK(moegs_record(cpu, ids, 10, 5, 0, 0, 0, NULL) == MOEGS_INVALID_ARGUMENT, "top_k 0");
    CHECK(moegs_record(cpu, ids, 10, 5, 2, 0, 0, (void*)0x1234) == MOEGS_INVALID_ARGUMENT, "stream on a CPU handle");
    CHECK(moegs_record(managed, ids, 10, 5, 2, NAN, 0, NULL) == MOEGS_INVALID_ARGUMENT, "NaN loss");
    CHECK(moegs_expert_counts(cpu, counts_cpu, EXPERTS - 1) == MOEGS_INVALID_ARGUMENT, "small buffer");
    CHECK(moegs_snapshot_read(cpu, NULL) == MOEGS_INVALID_ARGUMENT, "NULL snapshot");
    CHECK(moegs_snapshot_read(cpu, &sc) == MOEGS_OK && sc.total_routings == BATCHES, "bad calls recorded nothing");
    moegs_handle h;
    CHECK(moegs_create("tpu", EXPERTS, 0, &h) == MOEGS_INVALID_ARGUMENT, "unknown accelerator");
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

    CHECK(moegs_destroy(cpu) == MOEGS_OK, "destroy cpu");
    CHECK(moegs_destroy(cpu) == MOEGS_INVALID_HANDLE, "destroy twice");
    CHECK(moegs_record(cpu, ids, 10, 5, 2, 0, 0, NULL) == MOEGS_INVALID_HANDLE, "record after destroy");
    CHECK(moegs_snapshot_read(424242, &sc) == MOEGS_INVALID_HANDLE, "never-created handle");
    CHECK(moegs_destroy(managed) == MOEGS_OK, "destroy managed");

    printf("test_moegs: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
