using MoeGpuStats.Device;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace MoeGpuStats.Native;

/// <summary>
/// The C API's managed side (include/moegs.h documents it). Every entry point catches everything:
/// an exception never crosses into the host process; it becomes a status code and the text that
/// <c>moegs_last_error</c> returns on the same thread. Handles are looked up in a registry, so a
/// destroyed or foreign handle is a status code, not a crash. Calls that change a handle (records, resets, a destroy)
/// are serialized on its lock, as an aggregator's reads are; a model's reads are serialized on a read lock of their
/// own and run beside its records, the model's own locks keeping each read to one state.
/// </summary>
public static unsafe partial class NativeApi
{
    /// <summary>Aggregator handles.</summary>
    internal static readonly ConcurrentDictionary<long, NativeAggregator> Handles = new();

    /// <summary>Model handles; they share the aggregators' numbering, so neither kind of handle is ever the other's.</summary>
    internal static readonly ConcurrentDictionary<long, NativeModel> Models = new();

    /// <summary>Pending model reads (<c>moegs_model_read_begin</c>), numbered with the other handles.</summary>
    internal static readonly ConcurrentDictionary<long, NativeModelRead> ModelReads = new();
    private static long _nextHandle;

    [ThreadStatic]
    private static LastErrorText? _lastError;

    /// <summary>Backs <c>moegs_create</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int Create(byte* accelerator, int experts, int expertCapacity, long* handle)
    {
        if (handle is null)
        {
            return Fail(NativeStatus.InvalidArgument, "out is NULL: moegs_create writes the new handle there.");
        }

        *handle = 0;
        return Guard(() =>
        {
            var kind = AcceleratorName(accelerator);
            NativeChecks.Create(kind, experts, expertCapacity);
            var options = new RoutingStatsOptions { Experts = experts, ExpertCapacity = expertCapacity == 0 ? null : expertCapacity };
            var id = Interlocked.Increment(ref _nextHandle);
            Handles[id] = new NativeAggregator(kind, options);
            *handle = id;
        });
    }

    /// <remarks>
    /// The per-step calls allocate nothing (static lambdas, state passed by value) and leave the CUDA
    /// context alone: the aggregator switches for the record itself (the stream ordering runs in the
    /// caller's context, the record in ILGPU's), and a latency never reaches the device.
    /// </remarks>
    [UnmanagedCallersOnly]
    public static int Record(long handle, IntPtr ids, long length, int tokens, int topK, float loadBalanceLoss, float routerZLoss, IntPtr stream) =>
        With(
            handle,
            (Ids: ids, Length: length, Tokens: tokens, TopK: topK, Loss: loadBalanceLoss, ZLoss: routerZLoss, Stream: stream),
            static (aggregator, a) => aggregator.Record(a.Ids, a.Length, a.Tokens, a.TopK, a.Loss, a.ZLoss, a.Stream),
            onDevice: false);

    /// <summary>Backs <c>moegs_record_latency</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int RecordLatency(long handle, long nanoseconds) =>
        With(
            handle,
            nanoseconds,
            static (aggregator, ns) =>
            {
                // Before the rounding: -50 ns would become 0 ticks and pass the library's sign check.
                NativeChecks.Latency(ns);
                aggregator.Stats.RecordRoutingLatency(TimeSpan.FromTicks(ns / 100 + (ns % 100 >= 50 ? 1 : 0)));
            },
            onDevice: false);

    /// <summary>Backs <c>moegs_accelerator</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int Accelerator(long handle, byte** destination)
    {
        if (destination is null)
        {
            return Fail(NativeStatus.InvalidArgument, "out is NULL: moegs_accelerator writes the accelerator's name there.");
        }

        *destination = null;
        return With(handle, (IntPtr)destination, static (aggregator, d) => *(byte**)d = (byte*)KindNames[aggregator.Kind], onDevice: false);
    }

    /// <summary>The accelerators' names as static UTF-8 strings, valid for the life of the process.</summary>
    private static readonly Dictionary<string, IntPtr> KindNames =
        AcceleratorSelection.Names.ToDictionary(kind => kind, Marshal.StringToCoTaskMemUTF8);

    /// <summary>Backs <c>moegs_snapshot_read</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int Snapshot(long handle, NativeSnapshot* destination)
    {
        if (destination is null)
        {
            return Fail(NativeStatus.InvalidArgument, "out is NULL: moegs_snapshot_read writes the snapshot there.");
        }

        return With(handle, aggregator =>
        {
            using var s = aggregator.Stats.Snapshot();
            NativeStruct.Write(destination, NativeSnapshot.From(s));
        });
    }

    /// <summary>
    /// The bytes <see cref="Snapshot"/> writes: libmoegs compares it with the C header's size before
    /// it starts, and bindings (the Python wrapper) with their own mirror of the struct.
    /// </summary>
    [UnmanagedCallersOnly]
    public static int SnapshotSize() => sizeof(NativeSnapshot);

    /// <summary>Backs <c>moegs_expert_counts</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ExpertCounts(long handle, ulong* destination, int capacity) =>
        CopyOut(handle, destination, capacity, "moegs_expert_counts copies each expert's count", stats => stats.ExpertTokenCounts);

    /// <summary>Backs <c>moegs_expert_utilization</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ExpertUtilization(long handle, float* destination, int capacity) =>
        CopyOut(handle, destination, capacity, "moegs_expert_utilization copies each expert's utilization", stats => stats.ExpertUtilization);

    /// <summary>Backs <c>moegs_reset</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int Reset(long handle) => With(handle, aggregator => aggregator.Stats.Reset());

    /// <summary>Backs <c>moegs_save</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int Save(long handle, byte* path)
    {
        var file = FilePath(path, "moegs_save", out var refusal);
        return file is null ? Fail(NativeStatus.InvalidArgument, refusal) : With(handle, aggregator => SaveTo(file, full => Serialization.RoutingStatsFile.Save(aggregator.Stats, full)));
    }

    /// <summary>Backs <c>moegs_destroy</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int Destroy(long handle) => Remove(Handles, "aggregator", handle);

    /// <summary>The last error's text on this thread (UTF-8, valid until the next failing call on it or the thread's end), or an empty string.</summary>
    [UnmanagedCallersOnly]
    public static IntPtr LastError() => _lastError?.Text ?? EmptyString;

    /// <summary>
    /// The C caller's accelerator name as the checks spell it: NULL is "auto"; case and surrounding
    /// blanks do not count. An unknown name is refused as the caller wrote it.
    /// </summary>
    private static string AcceleratorName(byte* accelerator)
    {
        if (accelerator is null)
        {
            return "auto";
        }

        var given = NativeChecks.Utf8(MemoryMarshal.CreateReadOnlySpanFromNullTerminated(accelerator), out var utf8);
        var name = given.Trim().ToLowerInvariant();
        NativeChecks.Accelerator(name, given, utf8);
        return name;
    }

    private static readonly IntPtr EmptyString = Marshal.StringToCoTaskMemUTF8(string.Empty);

    /// <summary>
    /// The C caller's path; null for a NULL or empty one, or one that is not UTF-8 (a replacement character would name
    /// another file than the caller's), with <paramref name="refusal"/> saying which, in <paramref name="function"/>'s words.
    /// </summary>
    private static string? FilePath(byte* path, string function, out string refusal, bool reads = false)
    {
        var writes = reads ? $"{function} reads the statistics from the JSON file it names, in UTF-8" : $"{function} writes the statistics as JSON to the file it names, in UTF-8";
        var utf8 = true;
        var text = path is null ? null : NativeChecks.Utf8(MemoryMarshal.CreateReadOnlySpanFromNullTerminated(path), out utf8);
        refusal = text switch
        {
            null => $"path is NULL: {writes}.",
            "" => $"path is empty: {writes}.",
            _ when !utf8 => $"path = \"{NativeChecks.Escaped(text, MostPathShown)}\": not UTF-8 (undecodable bytes shown as \\xNN): {writes}.",
            _ => "",
        };
        return refusal.Length == 0 ? text : null;
    }

    /// <summary>The most characters of a path an error shows: any path a file system takes in a component or two.</summary>
    internal const int MostPathShown = 512;

    /// <summary>Runs <paramref name="save"/>; a file that cannot be written is an <see cref="NativeIoException"/> naming it.</summary>
    private static void SaveTo(string path, Action<string> save)
    {
        try
        {
            save(path);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            // The path, and the library's reason, which names it again, escaped and bounded: one line, whatever the path holds.
            // The reason's own full stop goes: the parenthesis ends its sentence.
            var reason = ErrorText.Clause(exception);
            throw new NativeIoException(
                $"{NativeChecks.Escaped(path, MostPathShown)}: cannot be written ({NativeChecks.Escaped(reason, 2 * MostPathShown)}); the file is as it was.",
                exception);
        }
    }

    /// <summary>Copies an aggregator's per-expert values into the caller's <paramref name="destination"/>: all <c>experts</c> of them, zeros before the first record.</summary>
    /// <param name="handle">The aggregator's handle.</param>
    /// <param name="destination">The caller's array, dst.</param>
    /// <param name="capacity">The values dst holds.</param>
    /// <param name="copies">What the function copies into dst, for the message when dst is NULL.</param>
    /// <param name="read">The per-expert values to copy.</param>
    private static int CopyOut<T>(long handle, T* destination, int capacity, string copies, Func<RoutingStats, IReadOnlyList<T>> read)
        where T : unmanaged
    {
        if (destination is null)
        {
            return Fail(NativeStatus.InvalidArgument, $"dst is NULL: {copies} there (capacity values at most).");
        }

        // The aggregator's experts, not the lists' length: the lists are empty before the first record
        // (and after a reset), where dst still gets its `experts` values, zeros, as a model layer's does.
        return With(handle, aggregator =>
        {
            var values = read(aggregator.Stats);
            var experts = aggregator.Stats.Options.Experts!.Value;
            NativeChecks.Capacity(capacity, experts);
            var span = new Span<T>(destination, experts);
            span.Clear();
            for (var i = 0; i < values.Count; i++)
            {
                span[i] = values[i];
            }
        });
    }

    /// <summary>Runs <paramref name="action"/> on a live handle, serialized, with the handle's CUDA context current (if any).</summary>
    private static int With(long handle, Action<NativeAggregator> action) =>
        With(handle, action, static (aggregator, run) => run(aggregator), onDevice: true);

    /// <summary>
    /// Runs <paramref name="action"/> on a live handle, serialized; with <paramref name="onDevice"/>,
    /// the handle's CUDA context is current for it and the caller's again afterwards.
    /// </summary>
    private static int With<TState>(long handle, TState state, Action<NativeAggregator, TState> action, bool onDevice) =>
        With(Handles, "aggregator", handle, state, action, onDevice);

    /// <summary>Runs <paramref name="action"/> on a live model handle, serialized, with the handle's CUDA context current (if any).</summary>
    private static int WithModel(long handle, Action<NativeModel> action) =>
        With(Models, "model", handle, action, static (model, run) => run(model), onDevice: true);

    /// <summary>
    /// Runs <paramref name="read"/> on a live model handle under its read lock alone (<see cref="INativeHandle.ReadGate"/>),
    /// with the handle's CUDA context current: for a read of the statistics, which serialize themselves.
    /// </summary>
    private static int ReadModel(long handle, Action<NativeModel> read) =>
        With(Models, "model", handle, read, static (model, run) => run(model), onDevice: true, readOnly: true);

    private static int With<THandle, TState>(
        ConcurrentDictionary<long, THandle> registry, string kind, long handle, TState state, Action<THandle, TState> action, bool onDevice, bool readOnly = false)
        where THandle : INativeHandle
    {
        if (!registry.TryGetValue(handle, out var live))
        {
            return NotLive(handle, kind);
        }

        try
        {
            lock (readOnly ? live.ReadGate : live.Gate)
            {
                // A destroy on another thread may have freed the handle between the look-up and the lock.
                if (live.Disposed)
                {
                    return NotLive(handle, kind);
                }

                using var device = onDevice ? live.EnterDevice() : default;
                action(live, state);
            }

            return NativeStatus.Ok;
        }
        catch (Exception exception)
        {
            return Fail(exception);
        }
    }

    private static int NotLive(long handle, string kind) =>
        Fail(NativeStatus.InvalidHandle, FormattableString.Invariant($"handle {handle} is not a live {kind} ({LiveKind(handle) switch
        {
            null => "never created, or destroyed",
            var other => $"it is a live {other}'s; give the handle {CreatorOf(kind)} returned",
        }})."));

    /// <summary>What <paramref name="handle"/> is, where it is live: one counter numbers every kind, so a handle is one kind's only.</summary>
    private static string? LiveKind(long handle) =>
        Handles.ContainsKey(handle) ? "aggregator"
        : Models.ContainsKey(handle) ? "model"
        : ModelReads.ContainsKey(handle) ? "pending model read"
        : null;

    private static string CreatorOf(string kind) => kind switch
    {
        "aggregator" => "moegs_create",
        "model" => "moegs_model_create",
        _ => "moegs_model_read_begin",
    };

    /// <summary>Removes a live handle and frees it (serialized with calls still running on it, reads included).</summary>
    private static int Remove<THandle>(ConcurrentDictionary<long, THandle> registry, string kind, long handle)
        where THandle : INativeHandle
    {
        if (!registry.TryRemove(handle, out var live))
        {
            return NotLive(handle, kind);
        }

        return Guard(() => Free(live));
    }

    /// <summary>Frees a handle taken out of its registry, once the calls still running on it, reads included, are done.</summary>
    private static void Free(INativeHandle live)
    {
        // The read lock first, as a read holds it: a read in progress finishes before the handle is freed.
        lock (live.ReadGate)
        lock (live.Gate)
        {
            using var device = live.EnterDevice();
            live.Dispose();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int Guard(Action action)
    {
        try
        {
            action();
            return NativeStatus.Ok;
        }
        catch (Exception exception)
        {
            return Fail(exception);
        }
    }

    private static int Fail(Exception exception) => exception switch
    {
        NativeArgumentException => Fail(NativeStatus.InvalidArgument, exception.Message),
        NativeIoException => Fail(NativeStatus.IoError, exception.Message),
        NoDeviceException => Fail(NativeStatus.NoDevice, ErrorText.Of(exception)),
        ArgumentException => Fail(NativeStatus.InvalidArgument, ErrorText.Of(exception)),
        ObjectDisposedException => Fail(NativeStatus.InvalidHandle, ErrorText.Of(exception)),
        ILGPU.Runtime.OpenCL.CLException refused => Fail(NativeStatus.DeviceError, NativeChecks.OpenCl(refused.Error)),
        ILGPU.Runtime.AcceleratorException or InsufficientMemoryException or InvalidOperationException or DllNotFoundException
            => Fail(NativeStatus.DeviceError, ErrorText.Of(exception)),
        _ => Fail(NativeStatus.RuntimeError, $"{exception.GetType().Name}: {ErrorText.Of(exception)}"),
    };

    private static int Fail(int status, string message)
    {
        var holder = _lastError ??= new LastErrorText();
        var previous = holder.Text;
        holder.Text = Marshal.StringToCoTaskMemUTF8(message);
        Marshal.FreeCoTaskMem(previous);
        return status;
    }

    /// <summary>
    /// A thread's last failure message, UTF-8 in native memory that <c>moegs_last_error()</c> hands out. Its finalizer
    /// frees it once the thread has ended and its thread statics are gone: a host that starts a thread per task would
    /// otherwise leave one message behind for every thread that ended after a failure.
    /// </summary>
    private sealed class LastErrorText
    {
        public IntPtr Text;

        ~LastErrorText() => Marshal.FreeCoTaskMem(Text);
    }
}
