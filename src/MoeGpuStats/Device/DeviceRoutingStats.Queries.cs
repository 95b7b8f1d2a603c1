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
        var result = Query(0);
        return _experts == 0 ? null : (result.MostUtilized, result.MostUtilization);
    }

    /// <summary>The first least utilized expert and its utilization, or null before the first record.</summary>
    public (int Index, float Utilization)? LeastUtilizedExpert()
    {
        var result = Query(0);
        return _experts == 0 ? null : (result.LeastUtilized, result.LeastUtilization);
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
            ObjectDisposedException.ThrowIf(_disposed, this);
            FoldPending();
            Span<RoutingStateBlock> block = stackalloc RoutingStateBlock[1];
            _state.View.CopyToCPU(Stream, block);
            return block[0];
        }
    }

    internal float[] ReadUtilization(bool decayed)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FoldPending();
            if (decayed && _options.UtilizationDecay is null)
            {
                return [];
            }

            var values = new float[_experts];
            (decayed ? _decayedUtilization : _utilization).View.SubView(0, _experts).CopyToCPU(Stream, values.AsSpan());
            return values;
        }
    }

    internal ulong[] ReadTokenCounts()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FoldPending();
            var values = new ulong[_experts];
            _tokenCounts.View.SubView(0, _experts).CopyToCPU(Stream, values.AsSpan());
            return values;
        }
    }

    /// <summary>The state block and the variance ring; not the per-expert arrays.</summary>
    internal float[] ReadVarianceHistory()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FoldPending();
            Span<RoutingStateBlock> block = stackalloc RoutingStateBlock[1];
            var ring = new float[RoutingStateLayout.VarianceWindow];
            _state.View.CopyToCPU(Stream, block);
            _varianceHistory.View.CopyToCPU(Stream, ring.AsSpan());
            return Unroll(ring, block[0]);
        }
    }

    /// <summary>The query's result: one launch, one 36-byte copy.</summary>
    internal UtilizationQueryResult Query(int window)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FoldPending();
            return LaunchQuery(window);
        }
    }

    /// <summary>The query's result and the state block (for the summary), in one call.</summary>
    internal UtilizationQueryResult Query(int window, out RoutingStateBlock block)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FoldPending();
            var result = LaunchQuery(window);
            Span<RoutingStateBlock> blocks = stackalloc RoutingStateBlock[1];
            _state.View.CopyToCPU(Stream, blocks);
            block = blocks[0];
            return result;
        }
    }

    /// <summary>Launches the query and copies its result back (ILGPU's host copy waits for the stream).</summary>
    private UtilizationQueryResult LaunchQuery(int window)
    {
        _query(Stream, _views, window, _queryResult.View);
        Span<UtilizationQueryResult> result = stackalloc UtilizationQueryResult[1];
        _queryResult.View.CopyToCPU(Stream, result);
        return result[0];
    }
}
