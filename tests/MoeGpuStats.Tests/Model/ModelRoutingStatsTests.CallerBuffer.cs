namespace MoeGpuStats.Tests.Model;

/// <summary>A caller's host buffer that another thread writes while a step records it.</summary>
public sealed partial class ModelRoutingStatsTests
{
    /// <summary>
    /// The managed engine reads a decode step's ids twice, once to count them into the layer and once to list them in
    /// the window: where the buffer changed in between, the window's load passed the layer's counts, and the model's own
    /// file was refused on reading ("the window's load is part of the run's"). Both now read one copy. A writer thread
    /// flips an id between two experts for at most 20,000 steps; before the fix the first steps showed it.
    /// </summary>
    [Fact]
    public void AStepWhoseBufferChangesWhileItRecordsKeepsTheWindowWithinTheCounts()
    {
        var options = new ModelRoutingStatsOptions { Layers = 1, Experts = 64, Window = 1 };
        using var model = new ModelRoutingStats(options);
        var ids = new int[8];
        var stop = false;
        var writer = new Thread(() =>
        {
            for (var x = 0; !Volatile.Read(ref stop); x++)
            {
                ids[0] = x & 1;
            }
        });
        writer.Start();
        try
        {
            for (var i = 0; i < 20_000; i++)
            {
                model.Reset();
                model.RecordStep([5, 5, 5, 5, 5, 5, 5, 5], tokens: 8, topK: 1);
                model.RecordStep(ids, tokens: 8, topK: 1);
                var load = model.WindowLoad();
                using var layer = model.Layer(0);
                var counts = layer.ExpertTokenCounts;
                for (var e = 0; e < 2; e++)
                {
                    Assert.True(load[e] <= counts[e], $"step pair {i}: window load {load[e]} above the layer's count {counts[e]} for expert {e}");
                }
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            writer.Join();
        }
    }
}
