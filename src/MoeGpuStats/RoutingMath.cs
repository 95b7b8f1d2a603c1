namespace MoeGpuStats;

/// <summary>
/// The seed's formulas over spans, in the seed's f32 evaluation order. The order matters: sums
/// are sequential because a reordered (vectorized) f32 sum differs in the last bits, and the
/// variance trend amplifies such differences through cancellation.
/// </summary>
internal static class RoutingMath
{
    /// <summary>Rust's <c>f32::EPSILON</c> (not .NET's <see cref="float.Epsilon"/>, the smallest subnormal).</summary>
    public const float RustF32Epsilon = 1.1920929E-07f;

    /// <summary>Population variance of one batch's slot counts, as <c>calculate_load_variance</c>.</summary>
    public static float LoadVariance(ReadOnlySpan<int> counts, long sum)
    {
        if (counts.IsEmpty)
        {
            return 0f;
        }

        var mean = (float)sum / counts.Length;
        var total = 0f;
        foreach (var count in counts)
        {
            var diff = count - mean;
            total += diff * diff;
        }

        return total / counts.Length;
    }

    public static float Mean(ReadOnlySpan<float> values)
    {
        var sum = 0f;
        foreach (var value in values)
        {
            sum += value;
        }

        return sum / values.Length;
    }

    /// <summary>Coefficient of variation as <c>utilization_cv</c>: 0 when empty or when the mean is not positive.</summary>
    public static float CoefficientOfVariation(ReadOnlySpan<float> values)
    {
        if (values.IsEmpty)
        {
            return 0f;
        }

        var mean = Mean(values);
        if (mean <= 0f)
        {
            return 0f;
        }

        var total = 0f;
        foreach (var value in values)
        {
            var diff = value - mean;
            total += diff * diff;
        }

        return MathF.Sqrt(total / values.Length) / mean;
    }

    /// <summary>Index of the last maximum, NaN comparing equal (Rust's <c>max_by</c> with <c>partial_cmp</c>).</summary>
    public static int IndexOfLastMax(ReadOnlySpan<float> values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
        {
            if (!(values[best] > values[i]))
            {
                best = i;
            }
        }

        return best;
    }

    /// <summary>Index of the first minimum, NaN comparing equal (Rust's <c>min_by</c> with <c>partial_cmp</c>).</summary>
    public static int IndexOfFirstMin(ReadOnlySpan<float> values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
        {
            if (values[best] > values[i])
            {
                best = i;
            }
        }

        return best;
    }

    /// <summary>Rust's <c>fold(INFINITY, f32::min)</c>: NaN values are skipped.</summary>
    public static float Min(ReadOnlySpan<float> values)
    {
        var min = float.PositiveInfinity;
        foreach (var value in values)
        {
            min = value < min ? value : min;
        }

        return min;
    }

    /// <summary>Rust's <c>fold(NEG_INFINITY, f32::max)</c>: NaN values are skipped.</summary>
    public static float Max(ReadOnlySpan<float> values)
    {
        var max = float.NegativeInfinity;
        foreach (var value in values)
        {
            max = value > max ? value : max;
        }

        return max;
    }

    /// <summary>
    /// vLLM's balancedness of one layer's expert load: the mean over the most slots per expert (1 = even), 1 without
    /// load, as a model's layer reads it.
    /// </summary>
    public static double Balancedness(IReadOnlyList<ulong> counts)
    {
        var max = counts.Count > 0 ? counts.Max() : 0;
        return max > 0 ? counts.Sum(count => (double)count) / counts.Count / max : 1;
    }

    /// <summary>
    /// Least-squares slope of the values (in order, <paramref name="first"/> then <paramref name="second"/>)
    /// against their index, exactly as <c>recent_load_variance_trend</c> computes it in f32.
    /// </summary>
    public static float Trend(ReadOnlySpan<float> first, ReadOnlySpan<float> second)
    {
        var length = first.Length + second.Length;
        if (length < 2)
        {
            return 0f;
        }

        var sums = default(TrendSums);
        sums.Add(first, 0);
        sums.Add(second, first.Length);
        float n = length;
        var denominator = n * sums.X2 - sums.X * sums.X;
        return MathF.Abs(denominator) < RustF32Epsilon ? 0f : (n * sums.Xy - sums.X * sums.Y) / denominator;
    }

    /// <summary>The four running f32 sums of the least-squares slope, each in index order as the seed sums it.</summary>
    private struct TrendSums
    {
        public float X;
        public float Y;
        public float Xy;
        public float X2;

        public void Add(ReadOnlySpan<float> values, int firstIndex)
        {
            for (var i = 0; i < values.Length; i++)
            {
                float x = firstIndex + i;
                X += x;
                Y += values[i];
                Xy += x * values[i];
                X2 += x * x;
            }
        }
    }
}
