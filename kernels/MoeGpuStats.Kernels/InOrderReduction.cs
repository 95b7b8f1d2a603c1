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
/// Runs a sequential reduction over values in shared memory on one thread. Eight loads are issued
/// before their eight steps, so the thread waits for shared memory once per eight values instead of
/// once per value; the steps stay in order, because a float sum's rounding depends on it.
/// </summary>
internal static class InOrderReduction
{
    public static void Run<TReduction>(ArrayView<float> values, int length, ref TReduction reduction)
        where TReduction : struct, IInOrderReduction
    {
        var i = 0;
        for (; i + 8 <= length; i += 8)
        {
            var v0 = values[i];
            var v1 = values[i + 1];
            var v2 = values[i + 2];
            var v3 = values[i + 3];
            var v4 = values[i + 4];
            var v5 = values[i + 5];
            var v6 = values[i + 6];
            var v7 = values[i + 7];
            reduction.Add(v0, i);
            reduction.Add(v1, i + 1);
            reduction.Add(v2, i + 2);
            reduction.Add(v3, i + 3);
            reduction.Add(v4, i + 4);
            reduction.Add(v5, i + 5);
            reduction.Add(v6, i + 6);
            reduction.Add(v7, i + 7);
        }

        for (; i < length; i++)
        {
            reduction.Add(values[i], i);
        }
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

        if (LeastValue > value)
        {
            Least = index;
            LeastValue = value;
        }
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
