using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Device;

/// <summary>Reads: the pending record folded first, then one launch and/or copy, and one wait.</summary>
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

    /// <summary>The least-squares slope of the last <paramref name="window"/> load variances.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="window"/> is negative.</exception>
    public float RecentLoadVarianceTrend(int window)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(window);
        return Query(window).Trend;
    }

    internal RoutingStateBlock ReadBlock()
    {
        lock (_lock)
        {
            ThrowIfUnusable();
            FoldPending();
            return _reader.ReadBlock(_views);
        }
    }

    internal float[] ReadUtilization(bool decayed)
    {
        lock (_lock)
        {
            ThrowIfUnusable();
            FoldPending();
            return _reader.ReadUtilization(_views, _experts, _options, decayed);
        }
    }

    internal ulong[] ReadTokenCounts()
    {
        lock (_lock)
        {
            ThrowIfUnusable();
            FoldPending();
            return _reader.ReadTokenCounts(_views, _experts);
        }
    }

    /// <summary>The state block and the variance ring; not the per-expert arrays.</summary>
    internal float[] ReadVarianceHistory()
    {
        lock (_lock)
        {
            ThrowIfUnusable();
            FoldPending();
            return _reader.ReadVarianceHistory(_views);
        }
    }

    /// <summary>The query's result: one launch, one 36-byte copy.</summary>
    internal UtilizationQueryResult Query(int window)
    {
        lock (_lock)
        {
            ThrowIfUnusable();
            FoldPending();
            return _reader.Query(_views, window, _query, _queryResult.View);
        }
    }

    /// <summary>
    /// The query's result and the expert count it is over (0 before the first record), read under
    /// one hold of the lock: a reset or first record on another thread comes before or after both.
    /// </summary>
    internal UtilizationQueryResult Query(int window, out int experts)
    {
        lock (_lock)
        {
            experts = _experts;
            return Query(window);
        }
    }

    /// <summary>The query's result, its expert count and the state block (for the summary), in one call.</summary>
    internal UtilizationQueryResult Query(int window, out int experts, out RoutingStateBlock block)
    {
        lock (_lock)
        {
            ThrowIfUnusable();
            FoldPending();
            experts = _experts;
            var result = _reader.Query(_views, window, _query, _queryResult.View);
            block = _reader.ReadBlock(_views);
            return result;
        }
    }
}
