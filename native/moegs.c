/*
 * libmoegs: the C API of include/moegs.h. ILGPU compiles kernels from IL at run time, so the
 * library cannot be compiled ahead of time; this shim hosts the .NET runtime through hostfxr
 * (found with nethost) on the first call and forwards each function to an [UnmanagedCallersOnly]
 * method of MoeGpuStats.Native.dll, which must sit beside libmoegs.so.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <coreclr_delegates.h>
#include <hostfxr.h>
#include <nethost.h>

#include "moegs.h"

typedef int (*create_fn)(const char*, int32_t, int32_t, moegs_handle*);
typedef int (*record_fn)(moegs_handle, const void*, int64_t, int32_t, int32_t, float, float, void*);
typedef int (*latency_fn)(moegs_handle, int64_t);
typedef int (*snapshot_fn)(moegs_handle, moegs_snapshot*);
typedef int (*counts_fn)(moegs_handle, uint64_t*, int32_t);
typedef int (*utilization_fn)(moegs_handle, float*, int32_t);
typedef int (*handle_fn)(moegs_handle);
typedef const char* (*error_fn)(void);
typedef int (*accelerator_fn)(moegs_handle, const char**);
typedef int (*size_fn)(void);
typedef int (*model_create_fn)(const char*, int32_t, int32_t, int32_t, int32_t, float, moegs_handle*);
typedef int (*model_create_with_flags_fn)(const char*, int32_t, int32_t, int32_t, int32_t, float, uint32_t, moegs_handle*);
typedef int (*model_record_fn)(moegs_handle, const void*, int32_t, int32_t, int32_t, int32_t, int64_t, int64_t, const void*, const void*, const void*, void*);
typedef int (*model_summary_fn)(moegs_handle, const int32_t*, moegs_model_balance*, moegs_layer_balance*, moegs_layer_balance*);
typedef int (*window_load_fn)(moegs_handle, uint64_t*, int32_t);
typedef int (*model_recent_summary_fn)(moegs_handle, int32_t, const int32_t*, moegs_model_balance*, moegs_layer_balance*, moegs_layer_balance*);
typedef int (*recent_window_load_fn)(moegs_handle, int32_t, uint64_t*, int32_t);
typedef int (*model_read_fn)(moegs_handle, int32_t, const int32_t*, moegs_model_balance*, moegs_layer_balance*, moegs_layer_balance*,
                             moegs_model_balance*, moegs_layer_balance*, moegs_layer_totals*, uint64_t*, uint64_t*, int32_t);
typedef int (*layer_snapshot_fn)(moegs_handle, int32_t, moegs_snapshot*);
typedef int (*device_arrays_fn)(moegs_handle, void*, moegs_model_arrays*);
typedef int (*layer_counts_fn)(moegs_handle, int32_t, uint64_t*, int32_t);
typedef int (*layer_utilization_fn)(moegs_handle, int32_t, float*, int32_t);
typedef int (*save_fn)(moegs_handle, const char*);
typedef int (*model_load_fn)(const char*, const char*, moegs_handle*);
typedef int (*model_options_fn)(moegs_handle, int32_t*, int32_t*, int32_t*, int32_t*, float*, uint32_t*);
typedef int (*read_begin_fn)(moegs_handle, int32_t, const int32_t*, void*, moegs_handle*);
typedef int (*read_ready_fn)(moegs_handle, int32_t*);
typedef int (*read_finish_fn)(moegs_handle, moegs_model_balance*, moegs_layer_balance*, moegs_layer_balance*, uint64_t*, int32_t);

static struct {
    create_fn create;
    record_fn record;
    latency_fn latency;
    snapshot_fn snapshot;
    counts_fn counts;
    utilization_fn utilization;
    handle_fn reset;
    handle_fn destroy;
    error_fn last_error;
    accelerator_fn accelerator;
    size_fn snapshot_size;
    model_create_fn model_create;
    model_create_with_flags_fn model_create_with_flags;
    model_record_fn model_record;
    accelerator_fn model_accelerator;
    model_summary_fn model_summary;
    size_fn model_balance_size;
    size_fn layer_balance_size;
    window_load_fn model_window_load;
    model_recent_summary_fn model_recent_summary;
    recent_window_load_fn model_recent_window_load;
    model_read_fn model_read;
    size_fn layer_totals_size;
    layer_snapshot_fn model_layer_snapshot;
    layer_counts_fn model_layer_expert_counts;
    layer_utilization_fn model_layer_expert_utilization;
    layer_utilization_fn model_layer_decayed_utilization;
    device_arrays_fn model_device_arrays;
    size_fn model_arrays_size;
    handle_fn model_reset;
    handle_fn model_destroy;
    save_fn save;
    save_fn model_save;
    save_fn model_save_checkpoint;
    model_load_fn model_load;
    model_options_fn model_options;
    read_begin_fn model_read_begin;
    read_ready_fn model_read_ready;
    read_finish_fn model_read_finish;
    handle_fn model_read_destroy;
} api;

static pthread_once_t started = PTHREAD_ONCE_INIT;
static char start_error[PATH_MAX + 1024];

/* hostfxr's own first error line while the runtime starts: it would write it to the host's stderr, and it says why. */
static char hostfxr_said[512];

static void hear_hostfxr(const char* message)
{
    if (hostfxr_said[0] || !message)
        return;
    snprintf(hostfxr_said, sizeof hostfxr_said, "%s", message);
    for (char* c = hostfxr_said; *c; c++)
        if (*c == '\n' || *c == '\r') { *c = '\0'; break; }
}

static void fail_start(const char* what, int code)
{
    /* No "moegs:" prefix: callers print the reason after their own, as the library's other errors. */
    if (code == 0)
        snprintf(start_error, sizeof start_error, "could not start the .NET runtime: %s", what);
    else if (hostfxr_said[0])
        snprintf(start_error, sizeof start_error, "could not start the .NET runtime: %s (hostfxr status 0x%x: %s)", what, (unsigned)code, hostfxr_said);
    else
        snprintf(start_error, sizeof start_error, "could not start the .NET runtime: %s (hostfxr status 0x%x)", what, (unsigned)code);
}

/* dir + "/" + name into out; 0 when it did not fit. */
static int join(char* out, size_t size, const char* dir, const char* name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    return n > 0 && (size_t)n < size;
}

/* The folder of the library's file, links resolved, found when the library is loaded: the name it was loaded by may be
 * relative to a working folder the program leaves before its first call, or a link in a folder without the files the
 * build wrote beside libmoegs.so. Empty where it could not be found. */
static char library_dir[PATH_MAX];

__attribute__((constructor)) static void find_library_dir(void)
{
    Dl_info self;
    char resolved[PATH_MAX];
    if (!dladdr((void*)&find_library_dir, &self) || !self.dli_fname || !realpath(self.dli_fname, resolved))
        return;
    char* slash = strrchr(resolved, '/');
    if (slash) *slash = '\0';
    snprintf(library_dir, sizeof library_dir, "%s", resolved);
}

static void start_runtime(void)
{
    if (!library_dir[0]) {
        fail_start("cannot locate libmoegs.so's folder", 0);
        return;
    }
    const char* dir = library_dir;

    char assembly[PATH_MAX], config[PATH_MAX], local_hostfxr[PATH_MAX], hostfxr_path[PATH_MAX];
    if (!join(assembly, sizeof assembly, dir, "MoeGpuStats.Native.dll")
        || !join(config, sizeof config, dir, "MoeGpuStats.Native.runtimeconfig.json")
        || !join(local_hostfxr, sizeof local_hostfxr, dir, "libhostfxr.so")) {
        fail_start("the library's folder path is too long", 0);
        return;
    }

    size_t size = sizeof hostfxr_path;
    struct get_hostfxr_parameters parameters = { sizeof parameters, assembly, NULL };
    int rc = get_hostfxr_path(hostfxr_path, &size, &parameters);
    if (rc != 0) { fail_start("no .NET runtime found (install it or set DOTNET_ROOT)", rc); return; }

    void* hostfxr = dlopen(hostfxr_path, RTLD_NOW | RTLD_LOCAL);
    if (!hostfxr) { fail_start(dlerror(), 0); return; }
    hostfxr_initialize_for_runtime_config_fn init = (hostfxr_initialize_for_runtime_config_fn)dlsym(hostfxr, "hostfxr_initialize_for_runtime_config");
    hostfxr_get_runtime_delegate_fn get_delegate = (hostfxr_get_runtime_delegate_fn)dlsym(hostfxr, "hostfxr_get_runtime_delegate");
    hostfxr_close_fn close = (hostfxr_close_fn)dlsym(hostfxr, "hostfxr_close");
    if (!init || !get_delegate || !close) { fail_start("hostfxr lacks the hosting API", 0); return; }
    hostfxr_set_error_writer_fn set_error_writer = (hostfxr_set_error_writer_fn)dlsym(hostfxr, "hostfxr_set_error_writer");
    if (set_error_writer) set_error_writer(hear_hostfxr);

    /* A framework-dependent build loads as a component; a self-contained one (hostfxr beside the
     * library, no runtime installed, e.g. the GPU machine) must start as an app, then load the assembly. */
    int self_contained = access(local_hostfxr, F_OK) == 0;
    hostfxr_handle context = NULL;
    if (self_contained) {
        hostfxr_initialize_for_dotnet_command_line_fn init_app =
            (hostfxr_initialize_for_dotnet_command_line_fn)dlsym(hostfxr, "hostfxr_initialize_for_dotnet_command_line");
        const char* argv[] = { assembly };
        rc = init_app ? init_app(1, argv, NULL, &context) : -1;
    } else {
        rc = init(config, NULL, &context);
    }
    if (rc < 0 || !context) {
        char what[PATH_MAX + 128];
        snprintf(what, sizeof what, "%s cannot start it; the files the build wrote beside libmoegs.so must stay beside it",
                 self_contained ? assembly : config);
        fail_start(what, rc);
        if (set_error_writer) set_error_writer(NULL);
        return;
    }
    load_assembly_and_get_function_pointer_fn load = NULL;
    load_assembly_fn load_assembly = NULL;
    get_function_pointer_fn get_function = NULL;
    if (self_contained) {
        rc = get_delegate(context, hdt_load_assembly, (void**)&load_assembly);
        if (rc == 0) rc = get_delegate(context, hdt_get_function_pointer, (void**)&get_function);
        if (rc == 0) rc = load_assembly(assembly, NULL, NULL);
    } else {
        rc = get_delegate(context, hdt_load_assembly_and_get_function_pointer, (void**)&load);
    }
    close(context);
    if (set_error_writer) set_error_writer(NULL);
    if (rc != 0) { fail_start("getting the runtime's loader", rc); return; }

    const char* type = "MoeGpuStats.Native.NativeApi, MoeGpuStats.Native";
    struct { const char* name; void** slot; } entries[] = {
        { "Create", (void**)&api.create },
        { "Record", (void**)&api.record },
        { "RecordLatency", (void**)&api.latency },
        { "Snapshot", (void**)&api.snapshot },
        { "ExpertCounts", (void**)&api.counts },
        { "ExpertUtilization", (void**)&api.utilization },
        { "Reset", (void**)&api.reset },
        { "Destroy", (void**)&api.destroy },
        { "LastError", (void**)&api.last_error },
        { "Accelerator", (void**)&api.accelerator },
        { "SnapshotSize", (void**)&api.snapshot_size },
        { "ModelCreate", (void**)&api.model_create },
        { "ModelCreateWithFlags", (void**)&api.model_create_with_flags },
        { "ModelRecord", (void**)&api.model_record },
        { "ModelAccelerator", (void**)&api.model_accelerator },
        { "ModelSummary", (void**)&api.model_summary },
        { "ModelBalanceSize", (void**)&api.model_balance_size },
        { "LayerBalanceSize", (void**)&api.layer_balance_size },
        { "ModelWindowLoad", (void**)&api.model_window_load },
        { "ModelRecentSummary", (void**)&api.model_recent_summary },
        { "ModelRecentWindowLoad", (void**)&api.model_recent_window_load },
        { "ModelRead", (void**)&api.model_read },
        { "LayerTotalsSize", (void**)&api.layer_totals_size },
        { "ModelLayerSnapshot", (void**)&api.model_layer_snapshot },
        { "ModelLayerExpertCounts", (void**)&api.model_layer_expert_counts },
        { "ModelLayerExpertUtilization", (void**)&api.model_layer_expert_utilization },
        { "ModelLayerDecayedUtilization", (void**)&api.model_layer_decayed_utilization },
        { "ModelDeviceArrays", (void**)&api.model_device_arrays },
        { "ModelArraysSize", (void**)&api.model_arrays_size },
        { "ModelReset", (void**)&api.model_reset },
        { "ModelDestroy", (void**)&api.model_destroy },
        { "Save", (void**)&api.save },
        { "ModelSave", (void**)&api.model_save },
        { "ModelSaveCheckpoint", (void**)&api.model_save_checkpoint },
        { "ModelLoad", (void**)&api.model_load },
        { "ModelOptions", (void**)&api.model_options },
        { "ModelReadBegin", (void**)&api.model_read_begin },
        { "ModelReadReady", (void**)&api.model_read_ready },
        { "ModelReadFinish", (void**)&api.model_read_finish },
        { "ModelReadDestroy", (void**)&api.model_read_destroy },
    };
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) {
        rc = self_contained
            ? get_function(type, entries[i].name, UNMANAGEDCALLERSONLY_METHOD, NULL, NULL, entries[i].slot)
            : load(assembly, type, entries[i].name, UNMANAGEDCALLERSONLY_METHOD, NULL, entries[i].slot);
        if (rc != 0 || !*entries[i].slot) {
            memset(&api, 0, sizeof api);
            fail_start(entries[i].name, rc);
            return;
        }
    }

    /* The managed side writes the structs through the caller's pointers: a MoeGpuStats.Native.dll from
     * another build could write past the structs this header declares, so refuse to start instead. */
    struct { const char* name; int managed; size_t here; } sizes[] = {
        { "moegs_snapshot", api.snapshot_size(), sizeof(moegs_snapshot) },
        { "moegs_model_balance", api.model_balance_size(), sizeof(moegs_model_balance) },
        { "moegs_layer_balance", api.layer_balance_size(), sizeof(moegs_layer_balance) },
        { "moegs_layer_totals", api.layer_totals_size(), sizeof(moegs_layer_totals) },
        { "moegs_model_arrays", api.model_arrays_size(), sizeof(moegs_model_arrays) },
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (sizes[i].managed != (int)sizes[i].here) {
            memset(&api, 0, sizeof api);
            snprintf(start_error, sizeof start_error,
                     "moegs: MoeGpuStats.Native.dll writes a %d-byte %s, this libmoegs.so's moegs.h declares %zu bytes: "
                     "build both from one checkout (native/build.sh)", sizes[i].managed, sizes[i].name, sizes[i].here);
            return;
        }
    }
}

static int ready(void)
{
    pthread_once(&started, start_runtime);
    return api.create != NULL;
}

/* The runtime did not start: what a failed call documents for its out-parameter (0, or a zeroed struct)
 * holds even then, so that a caller that checks *out and not the status reads no stale handle. */
static moegs_status not_started(void* out, size_t size)
{
    if (out != NULL) memset(out, 0, size);
    return MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_create(const char* accelerator, int32_t experts, int32_t expert_capacity, moegs_handle* out)
{
    return ready() ? (moegs_status)api.create(accelerator, experts, expert_capacity, out) : not_started(out, sizeof *out);
}

moegs_status moegs_record(moegs_handle handle, const void* ids, int64_t length, int32_t tokens, int32_t top_k,
                          float load_balance_loss, float router_z_loss, void* stream)
{
    return ready() ? (moegs_status)api.record(handle, ids, length, tokens, top_k, load_balance_loss, router_z_loss, stream) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_record_latency(moegs_handle handle, int64_t nanoseconds)
{
    return ready() ? (moegs_status)api.latency(handle, nanoseconds) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_accelerator(moegs_handle handle, const char** out)
{
    return ready() ? (moegs_status)api.accelerator(handle, out) : not_started(out, sizeof *out);
}

moegs_status moegs_snapshot_read(moegs_handle handle, moegs_snapshot* out)
{
    return ready() ? (moegs_status)api.snapshot(handle, out) : MOEGS_RUNTIME_ERROR;
}

int32_t moegs_snapshot_size(void)
{
    return ready() ? api.snapshot_size() : 0;
}

moegs_status moegs_expert_counts(moegs_handle handle, uint64_t* dst, int32_t capacity)
{
    return ready() ? (moegs_status)api.counts(handle, dst, capacity) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_expert_utilization(moegs_handle handle, float* dst, int32_t capacity)
{
    return ready() ? (moegs_status)api.utilization(handle, dst, capacity) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_reset(moegs_handle handle)
{
    return ready() ? (moegs_status)api.reset(handle) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_save(moegs_handle handle, const char* path)
{
    return ready() ? (moegs_status)api.save(handle, path) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_destroy(moegs_handle handle)
{
    return ready() ? (moegs_status)api.destroy(handle) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_model_create(const char* accelerator, int32_t layers, int32_t experts, int32_t expert_capacity,
                                int32_t window, float utilization_decay, moegs_handle* out)
{
    return ready() ? (moegs_status)api.model_create(accelerator, layers, experts, expert_capacity, window, utilization_decay, out)
                   : not_started(out, sizeof *out);
}

moegs_status moegs_model_create_with_flags(const char* accelerator, int32_t layers, int32_t experts, int32_t expert_capacity,
                                           int32_t window, float utilization_decay, uint32_t flags, moegs_handle* out)
{
    return ready() ? (moegs_status)api.model_create_with_flags(accelerator, layers, experts, expert_capacity, window, utilization_decay, flags, out)
                   : not_started(out, sizeof *out);
}

moegs_status moegs_model_record(moegs_handle handle, const void* ids, int32_t layers, int32_t tokens, int32_t top_k,
                                int64_t layer_stride, const void* valid_tokens, const void* load_balance_losses,
                                const void* router_z_losses, void* stream)
{
    return moegs_model_record_strided(handle, ids, MOEGS_IDS_INT32, layers, tokens, top_k, layer_stride, 0, valid_tokens,
                                      load_balance_losses, router_z_losses, stream);
}

moegs_status moegs_model_record_strided(moegs_handle handle, const void* ids, moegs_id_type id_type, int32_t layers, int32_t tokens,
                                        int32_t top_k, int64_t layer_stride, int64_t token_stride, const void* valid_tokens,
                                        const void* load_balance_losses, const void* router_z_losses, void* stream)
{
    return ready() ? (moegs_status)api.model_record(handle, ids, (int32_t)id_type, layers, tokens, top_k, layer_stride, token_stride,
                                                    valid_tokens, load_balance_losses, router_z_losses, stream)
                   : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_model_accelerator(moegs_handle handle, const char** out)
{
    return ready() ? (moegs_status)api.model_accelerator(handle, out) : not_started(out, sizeof *out);
}

moegs_status moegs_model_summary(moegs_handle handle, const int32_t* expert_ranks, moegs_model_balance* out,
                                 moegs_layer_balance* window_layers, moegs_layer_balance* since_start_layers)
{
    return ready() ? (moegs_status)api.model_summary(handle, expert_ranks, out, window_layers, since_start_layers) : MOEGS_RUNTIME_ERROR;
}

int32_t moegs_model_balance_size(void)
{
    return ready() ? api.model_balance_size() : 0;
}

int32_t moegs_layer_balance_size(void)
{
    return ready() ? api.layer_balance_size() : 0;
}

moegs_status moegs_model_window_load(moegs_handle handle, uint64_t* dst, int32_t capacity)
{
    return ready() ? (moegs_status)api.model_window_load(handle, dst, capacity) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_model_recent_summary(moegs_handle handle, int32_t recent_steps, const int32_t* expert_ranks, moegs_model_balance* out,
                                        moegs_layer_balance* window_layers, moegs_layer_balance* since_start_layers)
{
    return ready() ? (moegs_status)api.model_recent_summary(handle, recent_steps, expert_ranks, out, window_layers, since_start_layers)
                   : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_model_read(moegs_handle handle, int32_t recent_steps, const int32_t* expert_ranks,
                              moegs_model_balance* out, moegs_layer_balance* window_layers, moegs_layer_balance* since_start_layers,
                              moegs_model_balance* recent_out, moegs_layer_balance* recent_layers, moegs_layer_totals* totals,
                              uint64_t* window_load, uint64_t* expert_counts, int32_t capacity)
{
    return ready() ? (moegs_status)api.model_read(handle, recent_steps, expert_ranks, out, window_layers, since_start_layers,
                                                  recent_out, recent_layers, totals, window_load, expert_counts, capacity)
                   : MOEGS_RUNTIME_ERROR;
}

int32_t moegs_layer_totals_size(void)
{
    return ready() ? api.layer_totals_size() : 0;
}

moegs_status moegs_model_recent_window_load(moegs_handle handle, int32_t recent_steps, uint64_t* dst, int32_t capacity)
{
    return ready() ? (moegs_status)api.model_recent_window_load(handle, recent_steps, dst, capacity) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_model_layer_snapshot(moegs_handle handle, int32_t layer, moegs_snapshot* out)
{
    return ready() ? (moegs_status)api.model_layer_snapshot(handle, layer, out) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_model_layer_expert_counts(moegs_handle handle, int32_t layer, uint64_t* dst, int32_t capacity)
{
    return ready() ? (moegs_status)api.model_layer_expert_counts(handle, layer, dst, capacity) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_model_layer_expert_utilization(moegs_handle handle, int32_t layer, float* dst, int32_t capacity)
{
    return ready() ? (moegs_status)api.model_layer_expert_utilization(handle, layer, dst, capacity) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_model_layer_decayed_utilization(moegs_handle handle, int32_t layer, float* dst, int32_t capacity)
{
    return ready() ? (moegs_status)api.model_layer_decayed_utilization(handle, layer, dst, capacity) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_model_device_arrays(moegs_handle handle, void* stream, moegs_model_arrays* out)
{
    return ready() ? (moegs_status)api.model_device_arrays(handle, stream, out) : not_started(out, sizeof *out);
}

int32_t moegs_model_arrays_size(void)
{
    return ready() ? api.model_arrays_size() : 0;
}

moegs_status moegs_model_reset(moegs_handle handle)
{
    return ready() ? (moegs_status)api.model_reset(handle) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_model_save(moegs_handle handle, const char* path)
{
    return ready() ? (moegs_status)api.model_save(handle, path) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_model_save_checkpoint(moegs_handle handle, const char* path)
{
    return ready() ? (moegs_status)api.model_save_checkpoint(handle, path) : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_model_load(const char* accelerator, const char* path, moegs_handle* out)
{
    return ready() ? (moegs_status)api.model_load(accelerator, path, out) : not_started(out, sizeof *out);
}

moegs_status moegs_model_options(moegs_handle handle, int32_t* layers, int32_t* experts, int32_t* expert_capacity,
                                 int32_t* window, float* utilization_decay, uint32_t* flags)
{
    return ready() ? (moegs_status)api.model_options(handle, layers, experts, expert_capacity, window, utilization_decay, flags)
                   : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_model_destroy(moegs_handle handle)
{
    return ready() ? (moegs_status)api.model_destroy(handle) : MOEGS_RUNTIME_ERROR;
}

const char* moegs_last_error(void)
{
    if (!ready()) return start_error;
    return api.last_error();
}

moegs_status moegs_model_read_begin(moegs_handle handle, int32_t recent_steps, const int32_t* expert_ranks, void* stream, moegs_handle* read)
{
    return ready() ? (moegs_status)api.model_read_begin(handle, recent_steps, expert_ranks, stream, read) : not_started(read, sizeof *read);
}

moegs_status moegs_model_read_ready(moegs_handle read, int32_t* arrived)
{
    return ready() ? (moegs_status)api.model_read_ready(read, arrived) : not_started(arrived, sizeof *arrived);
}

moegs_status moegs_model_read_finish(moegs_handle read, moegs_model_balance* out, moegs_layer_balance* window_layers,
                                     moegs_layer_balance* since_start_layers, uint64_t* window_load, int32_t capacity)
{
    return ready() ? (moegs_status)api.model_read_finish(read, out, window_layers, since_start_layers, window_load, capacity)
                   : MOEGS_RUNTIME_ERROR;
}

moegs_status moegs_model_read_destroy(moegs_handle read)
{
    return ready() ? (moegs_status)api.model_read_destroy(read) : MOEGS_RUNTIME_ERROR;
}
