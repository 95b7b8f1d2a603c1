using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace MoeGpuStats.Native;

/// <summary>
/// The C API's managed side (include/moegs.h documents it). Every entry point catches everything:
/// an exception never crosses into the host process; it becomes a status code and the text that
/// <c>moegs_last_error</c> returns on the same thread. Handles are looked up in a registry, so a
/// destroyed or foreign handle is a status code, not a crash. Calls on one handle are serialized.
/// </summary>
public static unsafe class NativeApi
{
    private static readonly ConcurrentDictionary<long, NativeAggregator> Handles = new();
    private static long _nextHandle;

    [ThreadStatic]
    private static IntPtr _lastError;

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
            var kind = accelerator is null ? "auto" : Marshal.PtrToStringUTF8((IntPtr)accelerator)!.Trim().ToLowerInvariant();
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
        new[] { "cuda", "opencl", "cpu", "managed" }.ToDictionary(kind => kind, Marshal.StringToCoTaskMemUTF8);

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
            var most = s.MostUtilizedExpert();
            var least = s.LeastUtilizedExpert();
            var capacity = s.CapacityStats;
            var latency = s.RoutingLatencyStats;
            *destination = new NativeSnapshot
            {
                TotalRoutings = s.TotalRoutings,
                TotalTokens = s.TotalTokens,
                TokensDropped = s.TokensDropped,
                RoutedSlots = s.RoutedSlots,
                SlotsDropped = s.SlotsDropped,
                InvalidExpertIds = s.InvalidExpertIds,
                CapacityExceededCount = capacity.CapacityExceededCount,
                TotalCapacity = capacity.TotalCapacity,
                TotalUsed = capacity.TotalUsed,
                LatencyMeasurements = latency.TotalMeasurements,
                AverageLatencyMs = latency.AverageLatency(),
                P95LatencyMs = latency.P95Latency(),
                P99LatencyMs = latency.P99Latency(),
                AverageLoadBalanceLoss = s.AverageLoadBalanceLoss,
                AverageRouterZLoss = s.AverageRouterZLoss,
                RoutingEfficiency = s.RoutingEfficiency,
                UtilizationCv = s.UtilizationCv(),
                CapacityAverageUtilization = capacity.AverageUtilization,
                CapacityPeakUtilization = capacity.PeakUtilization,
                MostUtilization = most?.Utilization ?? 0f,
                LeastUtilization = least?.Utilization ?? 0f,
                LoadVarianceTrend100 = s.RecentLoadVarianceTrend(100),
                Experts = s.ExpertUtilization.Count,
                MostUtilized = most?.Index ?? -1,
                LeastUtilized = least?.Index ?? -1,
                LoadVarianceHistoryLength = s.LoadVarianceHistory.Count,
            };
        });
    }

    /// <summary>
    /// The bytes <see cref="Snapshot"/> writes: libmoegs compares it with the C header's size before
    /// it starts, and bindings (the Python wrapper) with their own mirror of the struct.
    /// </summary>
    [UnmanagedCallersOnly]
    public static int SnapshotSize() => sizeof(NativeSnapshot);

    [UnmanagedCallersOnly]
    public static int ExpertCounts(long handle, ulong* destination, int capacity) =>
        CopyOut(handle, destination, capacity, stats => stats.ExpertTokenCounts);

    [UnmanagedCallersOnly]
    public static int ExpertUtilization(long handle, float* destination, int capacity) =>
        CopyOut(handle, destination, capacity, stats => stats.ExpertUtilization);

    [UnmanagedCallersOnly]
    public static int Reset(long handle) => With(handle, aggregator => aggregator.Stats.Reset());

    [UnmanagedCallersOnly]
    public static int Destroy(long handle)
    {
        if (!Handles.TryRemove(handle, out var aggregator))
        {
            return NotLive(handle);
        }

        return Guard(() =>
        {
            lock (aggregator.Gate)
            {
                using var device = aggregator.EnterDevice();
                aggregator.Dispose();
            }
        });
    }

    /// <summary>The last error's text on this thread (UTF-8, valid until the next failing call on it), or an empty string.</summary>
    [UnmanagedCallersOnly]
    public static IntPtr LastError() => _lastError == IntPtr.Zero ? EmptyString : _lastError;

    private static readonly IntPtr EmptyString = Marshal.StringToCoTaskMemUTF8(string.Empty);

    private static int CopyOut<T>(long handle, T* destination, int capacity, Func<RoutingStats, IReadOnlyList<T>> read)
        where T : unmanaged
    {
        if (destination is null)
        {
            return Fail(NativeStatus.InvalidArgument, "dst is NULL.");
        }

        return With(handle, aggregator =>
        {
            var values = read(aggregator.Stats);
            NativeChecks.Capacity(capacity, values.Count);

            for (var i = 0; i < values.Count; i++)
            {
                destination[i] = values[i];
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
    private static int With<TState>(long handle, TState state, Action<NativeAggregator, TState> action, bool onDevice)
    {
        if (!Handles.TryGetValue(handle, out var aggregator))
        {
            return NotLive(handle);
        }

        try
        {
            lock (aggregator.Gate)
            {
                using var device = onDevice ? aggregator.EnterDevice() : default;
                action(aggregator, state);
            }

            return NativeStatus.Ok;
        }
        catch (Exception exception)
        {
            return Fail(exception);
        }
    }

    private static int NotLive(long handle) =>
        Fail(NativeStatus.InvalidHandle, $"handle {handle} is not a live aggregator (never created, or destroyed).");

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
        NoDeviceException => Fail(NativeStatus.NoDevice, NativeChecks.OneLine(exception)),
        ArgumentException => Fail(NativeStatus.InvalidArgument, NativeChecks.OneLine(exception)),
        ObjectDisposedException => Fail(NativeStatus.InvalidHandle, NativeChecks.OneLine(exception)),
        ILGPU.Runtime.AcceleratorException or InsufficientMemoryException or InvalidOperationException or DllNotFoundException
            => Fail(NativeStatus.DeviceError, NativeChecks.OneLine(exception)),
        _ => Fail(NativeStatus.RuntimeError, $"{exception.GetType().Name}: {NativeChecks.OneLine(exception)}"),
    };

    private static int Fail(int status, string message)
    {
        var previous = _lastError;
        _lastError = Marshal.StringToCoTaskMemUTF8(message);
        if (previous != IntPtr.Zero)
        {
            Marshal.FreeCoTaskMem(previous);
        }

        return status;
    }
}
