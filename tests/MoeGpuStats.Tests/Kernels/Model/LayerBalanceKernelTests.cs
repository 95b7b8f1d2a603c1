using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Kernels.Model;

namespace MoeGpuStats.Tests.Kernels.Model;

/// <summary>
/// The balance kernels on loads written straight into device memory, including loads no short run
/// produces (ties everywhere, one expert with everything, counts near 2^64 / 4,096, counts that are not
/// a power of two, so the group sort pads): every figure equals the managed engine's (the same passes
/// on arrays, with its own sort) to the bit, and the Gini coefficient and the top tenth's share equal
/// their definitions.
/// </summary>
public sealed class LayerBalanceKernelTests
{
    public static TheoryData<string> Accelerators => [.. TestAccelerators.Kinds, TestAccelerators.CpuWithWarpsOf32];

    /// <summary>Layers of <c>experts</c> loads each, row-major.</summary>
    public static IEnumerable<(string Name, int Experts, ulong[] Loads)> LoadCases()
    {
        var random = new Random(5);
        yield return ("3 x 4,096 random", 4096, [.. Enumerable.Range(0, 3 * 4096).Select(_ => (ulong)random.Next(0, 1000))]);
        yield return ("5 x 256 with ties", 256, [.. Enumerable.Range(0, 5 * 256).Select(i => (ulong)(i * 37 % 7))]);
        yield return ("2 x 8, one expert with all", 8, [0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        yield return ("1 x 1", 1, [42]);
        yield return ("2 x 10, without load and even", 10, [.. new ulong[10], .. Enumerable.Repeat(7UL, 10)]);
        yield return ("1 x 4,096 near the largest", 4096, [.. Enumerable.Range(0, 4096).Select(i => (ulong.MaxValue / 4096) - (ulong)random.Next(0, 3))]);
        yield return ("1 x 11, descending", 11, [.. Enumerable.Range(0, 11).Select(i => (ulong)(11 - i) * 1000)]);
        yield return ("2 x 3,000 random", 3000, [.. Enumerable.Range(0, 2 * 3000).Select(_ => (ulong)random.Next(0, 50))]);
        yield return ("1 x 5, one at the padding's value", 5, [0, ulong.MaxValue, 0, 0, 0]);
    }

    [Theory]
    [MemberData(nameof(Accelerators))]
    public void EveryFigureEqualsTheManagedEnginesAndTheDefinitions(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        var measure = LayerBalanceKernel.Create(device);
        foreach (var (name, experts, loads) in LoadCases())
        {
            var layers = loads.Length / experts;
            var onDevice = Run(device, measure, loads, experts, ranks: [], rankCount: 0, layers);
            for (var l = 0; l < layers; l++)
            {
                var managed = Managed(loads, (long)l * experts, experts);
                Assert.True(Bits(managed) == Bits(onDevice[l]), $"{name}, layer {l}: device {Bits(onDevice[l])}, managed {Bits(managed)}");

                var row = loads.AsSpan(l * experts, experts).ToArray();
                var balance = LayerBalance.From(onDevice[l], experts);
                Assert.Equal(Gini(row), balance.GiniCoefficient, 12);
                Assert.Equal(TopTenthShare(row), balance.Top10PercentShare, 12);
            }
        }
    }

    /// <summary>Per rank: the ranks' loads are summed from their experts', then measured, sorted in the same scratch.</summary>
    [Theory]
    [MemberData(nameof(Accelerators))]
    public void PerRankFiguresAreThoseOfTheRanksLoads(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        var measure = LayerBalanceKernel.Create(device);
        const int Experts = 16, Ranks = 5, Layers = 3;
        var random = new Random(9);
        var loads = Enumerable.Range(0, Layers * Experts).Select(_ => (ulong)random.Next(0, 50)).ToArray();
        var ranks = Enumerable.Range(0, Experts).Select(e => e * 7 % Ranks).ToArray();

        var onDevice = Run(device, measure, loads, Experts, ranks, Ranks, Layers);

        for (var l = 0; l < Layers; l++)
        {
            var rankLoads = new ulong[Ranks];
            for (var e = 0; e < Experts; e++)
            {
                rankLoads[ranks[e]] += loads[(l * Experts) + e];
            }

            var managed = Managed(rankLoads, 0, Ranks);
            Assert.Equal(Bits(managed), Bits(onDevice[l]));
            Assert.Equal(Gini(rankLoads), LayerBalance.From(onDevice[l], Ranks).GiniCoefficient, 12);
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(9, 1)]
    [InlineData(10, 1)]
    [InlineData(11, 2)]
    [InlineData(256, 26)]
    [InlineData(4096, 410)]
    public void TheTopTenthIsATenthOfTheEntriesRoundedUp(int entries, int top) =>
        Assert.Equal(top, LayerBalanceKernel.TopEntries(entries));

    private static LayerLoad[] Run(
        Accelerator device,
        Action<AcceleratorStream, int, ArrayView<ulong>, int, ArrayView<int>, int, ArrayView<ulong>, ArrayView<LayerLoad>> measure,
        ulong[] loads,
        int experts,
        int[] ranks,
        int rankCount,
        int layers)
    {
        using var loadBuffer = device.Allocate1D(loads);
        using var rankBuffer = device.Allocate1D(ranks.Length == 0 ? new[] { 0 } : ranks);
        using var scratch = device.Allocate1D<ulong>(loads.Length);
        using var results = device.Allocate1D<LayerLoad>(layers);
        measure(device.DefaultStream, layers, loadBuffer.View, experts, rankBuffer.View.SubView(0, ranks.Length), rankCount, scratch.View, results.View);
        return results.GetAsArray1D();
    }

    /// <summary>The figures as the managed engine measures them: one pass in index order, then its own sort.</summary>
    private static LayerLoad Managed(ulong[] loads, long first, int count)
    {
        var copy = new ulong[count];
        var load = LayerBalanceKernel.Measure(new ArrayLoads(loads), first, count, new ArrayLoads(copy), 0);
        Array.Sort(copy);
        LayerBalanceKernel.AddOrderFigures(ref load, new ArrayLoads(copy), 0, count);
        return load;
    }

    /// <summary>Every field, the doubles by their bits.</summary>
    private static string Bits(LayerLoad load) =>
        $"{load.Total} {load.Max} {load.Min} {BitConverter.DoubleToInt64Bits(load.SquaredDeviations)} {load.Hottest} {load.Coldest} {load.Dead} {BitConverter.DoubleToInt64Bits(load.GiniSum)} {load.TopLoad}";

    /// <summary>The Gini coefficient by its definition: the mean absolute difference over every ordered pair, over twice the mean; 0 without load.</summary>
    private static double Gini(ulong[] row)
    {
        var total = row.Sum(x => (double)x);
        if (total == 0)
        {
            return 0;
        }

        var differences = row.Sum(a => row.Sum(b => Math.Abs((double)a - b)));
        return differences / (2.0 * row.Length * total);
    }

    /// <summary>The hottest ⌈n / 10⌉ loads' share of the total, from a sort; ⌈n / 10⌉ / n without load.</summary>
    private static double TopTenthShare(ulong[] row)
    {
        var top = (row.Length + 9) / 10;
        var total = row.Sum(x => (double)x);
        return total == 0 ? top / (double)row.Length : row.OrderDescending().Take(top).Sum(x => (double)x) / total;
    }
}
