using BenchmarkDotNet.Attributes;
using MoeGpuStats.Placement;

namespace MoeGpuStats.Bench;

/// <summary>
/// The planner of <c>moegs plan</c> (<see cref="ExpertPlacement.Rebalance"/>, DeepSeek's EPLB) on
/// DeepSeek-V3's shape, and its balanced packing at the largest shape the CLI allows (65,536 slots
/// on 32,768 GPUs), where a scan of every pack for every slot costs O(slots × GPUs).
/// </summary>
[MemoryDiagnoser]
public class PlacementBenchmarks
{
    private long[,] _deepSeekLoads = null!;
    private float[] _slotWeights = null!;
    private int[] _pack = null!;
    private int[] _rank = null!;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(3);
        _deepSeekLoads = new long[58, 256];
        for (var l = 0; l < 58; l++)
        {
            for (var e = 0; e < 256; e++)
            {
                _deepSeekLoads[l, e] = random.NextInt64(1, 1_000_000);
            }
        }

        _slotWeights = Enumerable.Range(0, 65_536).Select(i => (float)((i * 7_919) % 65_521)).ToArray();
        _pack = new int[_slotWeights.Length];
        _rank = new int[_slotWeights.Length];
    }

    /// <summary>58 layers × 256 experts on 288 slots: 8 groups, 4 nodes, 32 GPUs (DeepSeek-V3's serving shape).</summary>
    [Benchmark]
    public PlacementPlan DeepSeekV3Plan() => ExpertPlacement.Rebalance(_deepSeekLoads, replicas: 288, groups: 8, nodes: 4, gpus: 32);

    [Benchmark]
    public void PackingOf65536SlotsOn32768Gpus() => Eplb.BalancedPacking(_slotWeights, 32_768, _pack, _rank);
}
