using ILGPU;
using static MoeGpuStats.Kernels.UnfusedMath;

namespace MoeGpuStats.Kernels;

/// <summary>One of the seed's sequential reductions, fed one value at a time in index order.</summary>
internal interface IInOrderReduction
{
    /// <summary>Takes the value at <paramref name="index"/>; called for index 0, 1, 2, ... in turn.</summary>
    void Add(float value, int index);
}

/// <summary>
/// Runs a sequential reduction over values in shared memory on one thread. The next eight loads are
/// issued before the current eight steps, so the steps' dependent adds, not shared memory's
/// latency, set the pace (SASS: the loads interleave with the adds); the steps stay in order,
/// because a float sum's rounding depends on it.
/// </summary>
internal static class InOrderReduction
{
    public static void Run<TReduction>(ArrayView<float> values, int length, ref TReduction reduction)
        where TReduction : struct, IInOrderReduction
    {
        var i = 0;
        if (length >= 8)
        {
            var v0 = values[0];
            var v1 = values[1];
            var v2 = values[2];
            var v3 = values[3];
            var v4 = values[4];
            var v5 = values[5];
            var v6 = values[6];
            var v7 = values[7];
            for (i = 8; i + 8 <= length; i += 8)
            {
                var w0 = values[i];
                var w1 = values[i + 1];
                var w2 = values[i + 2];
                var w3 = values[i + 3];
                var w4 = values[i + 4];
                var w5 = values[i + 5];
                var w6 = values[i + 6];
                var w7 = values[i + 7];
                Step(ref reduction, i - 8, v0, v1, v2, v3, v4, v5, v6, v7);
                v0 = w0;
                v1 = w1;
                v2 = w2;
                v3 = w3;
                v4 = w4;
                v5 = w5;
                v6 = w6;
                v7 = w7;
            }

            Step(ref reduction, i - 8, v0, v1, v2, v3, v4, v5, v6, v7);
        }

        for (; i < length; i++)
        {
            reduction.Add(values[i], i);
        }
    }

    private static void Step<TReduction>(ref TReduction reduction, int first, float v0, float v1, float v2, float v3, float v4, float v5, float v6, float v7)
        where TReduction : struct, IInOrderReduction
    {
        reduction.Add(v0, first);
        reduction.Add(v1, first + 1);
        reduction.Add(v2, first + 2);
        reduction.Add(v3, first + 3);
        reduction.Add(v4, first + 4);
        reduction.Add(v5, first + 5);
        reduction.Add(v6, first + 6);
        reduction.Add(v7, first + 7);
    }

    /// <summary><c>((v0 + v1) + v2) + ...</c>.</summary>
    public static float Sum(ArrayView<float> values, int length)
    {
        var sum = default(Sum);
        Run(values, length, ref sum);
        return sum.Total;
    }
}

/// <summary><c>((v0 + v1) + v2) + ...</c>.</summary>
internal struct Sum : IInOrderReduction
{
    public float Total;

    public void Add(float value, int index) => Total += value;
}

/// <summary>The sum of <c>(v - Mean)²</c>, each square rounded before it is added.</summary>
internal struct SquaredDeviations : IInOrderReduction
{
    public float Mean;
    public float Total;

    public void Add(float value, int index)
    {
        var diff = value - Mean;
        Total += Mul(diff, diff);
    }
}

/// <summary>
/// Smallest and largest (NaN skipped, from ±infinity), the last maximum and the first minimum (a NaN
/// compares equal), as the managed engine's <c>RoutingMath</c>. Start it with <see cref="From"/>.
/// </summary>
internal struct Extremes : IInOrderReduction
{
    public float Min;
    public float Max;
    public int Most;
    public float MostValue;
    public int Least;
    public float LeastValue;

    public static Extremes From(float first) => new()
    {
        Min = float.PositiveInfinity,
        Max = float.NegativeInfinity,
        MostValue = first,
        LeastValue = first,
    };

    public void Add(float value, int index)
    {
        Min = value < Min ? value : Min;
        Max = value > Max ? value : Max;

        if (!(MostValue > value))
        {
            Most = index;
            MostValue = value;
        }

        // The NaN tests repeat what > already implies, for OpenCL: ILGPU 1.5.3 turned this
        // condition into its unordered opposite (LeastValue <= value, true for NaN) and its OpenCL C
        // writes that as C's ordered <=, false for NaN, so a NaN became the least there. Selects
        // rather than a branch keep the loop free of branches.
        var newLeast = LeastValue > value & !float.IsNaN(value) & !float.IsNaN(LeastValue);
        Least = newLeast ? index : Least;
        LeastValue = newLeast ? value : LeastValue;
    }
}

/// <summary>The four running sums of a least-squares slope against the index, each in index order.</summary>
internal struct TrendSums : IInOrderReduction
{
    public float X;
    public float Y;
    public float Xy;
    public float X2;

    public void Add(float value, int index)
    {
        float x = index;
        X += x;
        Y += value;
        Xy += Mul(x, value);
        X2 += Mul(x, x);
    }
}
