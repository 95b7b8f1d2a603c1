using System.Runtime.InteropServices;
using ILGPU;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Device;

/// <summary>Reads: the pending record folded first, then one launch and/or device-to-device copies, and one copy back, the only wait.</summary>
public sealed partial class DeviceRoutingStats
{
    /// <summary>The utilization coefficient of variation (one launch, one small copy).</summary>
    public float UtilizationCv() => Query(0).CoefficientOfVariation;

    /// <summary>The last most utilized expert and its utilization, or null before the first record.</summary>
    public (int Index, float Utilization)? MostUtilizedExpert()
    {
        var result = Query(0, out int experts);
        return experts == 0 ? null : (result.MostUtilized, result.MostUtilization);
    }

    /// <summary>The first least utilized expert and its utilization, or null before the first record.</summary>
    public (int Index, float Utilization)? LeastUtilizedExpert()
    {
        var result = Query(0, out int experts);
        return experts == 0 ? null : (result.LeastUtilized, result.LeastUtilization);
    }

    /// <summary>The least-squares slope of the last <paramref name="window"/> load variances, as <see cref="RoutingStats.RecentLoadVarianceTrend"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="window"/> is negative.</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    public float RecentLoadVarianceTrend(int window)
    {
        ThrowIfUnusable();
        OutOfRange.ThrowIfNegative(window);
        return Query(window).Trend;
    }

    internal RoutingStateBlock ReadBlock() => MemoryMarshal.Read<RoutingStateBlock>(ReadBack(_ => Stage(_views.State, 0)).Bytes);

    /// <summary>The utilization, or the decayed one rounded to f32 (empty without a decay), of the state's experts.</summary>
    internal float[] ReadUtilization(bool decayed)
    {
        if (!decayed)
        {
            return MemoryMarshal.Cast<byte, float>(ReadBack(experts => Stage(_views.Utilization.SubView(0, experts), 0)).Bytes).ToArray();
        }

        var kept = _options.UtilizationDecay is not null;
        var values = MemoryMarshal.Cast<byte, double>(ReadBack(experts => Stage(_views.DecayedUtilization.SubView(0, kept ? experts : 0), 0)).Bytes);
        var rounded = new float[values.Length];
        for (var e = 0; e < rounded.Length; e++)
        {
            rounded[e] = (float)values[e];
        }

        return rounded;
    }

    internal ulong[] ReadTokenCounts() =>
        MemoryMarshal.Cast<byte, ulong>(ReadBack(experts => Stage(_views.TokenCounts.SubView(0, experts), 0)).Bytes).ToArray();

    /// <summary>The variance ring's entries, oldest first: the state block and the ring, in one copy; not the per-expert arrays.</summary>
    internal float[] ReadVarianceHistory()
    {
        var (bytes, _) = ReadBack(_ => Stage(_views.VarianceHistory, Stage(_views.State, 0)));
        var read = 0L;
        var block = DeviceStateReader.Unstage<RoutingStateBlock>(bytes, 1, ref read)[0];
        return DeviceStateReader.Unroll(DeviceStateReader.Unstage<float>(bytes, RoutingStateLayout.VarianceWindow, ref read), block);
    }

    /// <summary>The query's result: one launch, and one copy of it with the state block.</summary>
    internal UtilizationQueryResult Query(int window) => Query(window, out int _);

    /// <summary>
    /// The query's result and the expert count it is over (0 before the first record), of one state:
    /// a reset or first record on another thread comes before or after both.
    /// </summary>
    internal UtilizationQueryResult Query(int window, out int experts) => Query(window, out experts, out _);

    /// <summary>The query's result, its expert count and the state block (for the summary), of one state and one copy.</summary>
    internal UtilizationQueryResult Query(int window, out int experts, out RoutingStateBlock block)
    {
        (var bytes, experts) = ReadBack(_ =>
        {
            _query(Stream, _views, window, _queryResult.View);
            return Stage<UtilizationQueryResult>(_queryResult.View, Stage(_views.State, 0));
        });
        var read = 0L;
        block = DeviceStateReader.Unstage<RoutingStateBlock>(bytes, 1, ref read)[0];
        return DeviceStateReader.Unstage<UtilizationQueryResult>(bytes, 1, ref read)[0];
    }

    /// <summary>
    /// A read of what <paramref name="stage"/> enqueues into the read-back buffer, given the state's expert
    /// count, copied back at once. The staging runs under the lock, the pending record folded first; the copy,
    /// the read's wait for the stream, with the lock released: a record on another thread meanwhile is
    /// enqueued behind the staged reading, which it cannot change, and waits at most for the copy's transfer, not
    /// the queue ahead of it (<see cref="DeviceStateReader.ToHost"/>). The reads' own lock, held throughout, gives
    /// the read-back buffer to one reading at a time and keeps <see cref="Dispose"/> from freeing it under one.
    /// </summary>
    private (byte[] Bytes, int Experts) ReadBack(Func<int, long> stage)
    {
        lock (_readGate)
        {
            long staged;
            int experts;
            lock (_lock)
            {
                ThrowIfUnusable();
                FoldPending();
                experts = _experts;
                staged = stage(experts);
            }

            var bytes = new byte[staged];
            _reader.ToHost(_readback.View.SubView(0, staged), bytes);
            return (bytes, experts);
        }
    }

    /// <summary>Enqueues a copy of <paramref name="view"/> into the read-back buffer at <paramref name="offset"/>; returns the offset past it.</summary>
    private long Stage<T>(ArrayView<T> view, long offset)
        where T : unmanaged
    {
        _reader.Stage(view, _readback.View, ref offset);
        return offset;
    }
}
