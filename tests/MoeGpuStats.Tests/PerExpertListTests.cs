namespace MoeGpuStats.Tests;

/// <summary>
/// The per-expert lists and the variance history, on every engine and a model's layer: an index outside them is
/// refused on one line in the caller's words (it was .NET's IndexOutOfRangeException, without a word), no cast
/// reaches the engine's own arrays to write into them, and a managed engine's lists stay live without allocating.
/// </summary>
public sealed class PerExpertListTests
{
    public static TheoryData<string> Sources => ["managed", "cpu", "managed model layer", "cpu model layer"];

    [Theory]
    [MemberData(nameof(Sources))]
    public void AnIndexOutsideAListIsRefusedInTheCallersWords(string source)
    {
        using var model = ModelOf(source);
        using var stats = Recorded(source, model);

        (string Name, Action Read)[] reads =
        [
            ("ExpertUtilization", () => _ = stats.ExpertUtilization[8]),
            ("DecayedExpertUtilization", () => _ = stats.DecayedExpertUtilization[-1]),
            ("ExpertTokenCounts", () => _ = stats.ExpertTokenCounts[8]),
            ("LoadVarianceHistory", () => _ = stats.LoadVarianceHistory[1]),
        ];
        foreach (var (name, read) in reads)
        {
            var error = Assert.Throws<ArgumentOutOfRangeException>(read);
            Assert.DoesNotContain('\n', error.Message);
            Assert.Equal("index", error.ParamName);
            Assert.StartsWith(
                name switch
                {
                    "DecayedExpertUtilization" => "index is -1; give 0 to 7 (8 experts).",
                    "LoadVarianceHistory" => "index is 1; give 0 to 0 (1 batch).",
                    _ => "index is 8; give 0 to 7 (8 experts).",
                },
                error.Message);
        }
    }

    [Theory]
    [MemberData(nameof(Sources))]
    public void NoCastReachesTheEnginesArrays(string source)
    {
        using var model = ModelOf(source);
        using var stats = Recorded(source, model);

        Assert.False(stats.ExpertTokenCounts is ulong[]);
        Assert.False(stats.ExpertUtilization is float[]);
        Assert.False(stats.DecayedExpertUtilization is float[]);
        Assert.False(stats.LoadVarianceHistory is float[]);
        Assert.Equal([1UL, 2, 0, 1, 0, 0, 0, 2], stats.ExpertTokenCounts);
    }

    /// <summary>A managed engine's token counts, held, show later records, and a read of the same array allocates nothing.</summary>
    [Fact]
    public void AManagedEnginesListsStayLiveWithoutAllocating()
    {
        using var stats = Single("managed");
        stats.RecordRouting([0, 1, 1, 3, 7, 7], tokens: 3, topK: 2);
        var counts = stats.ExpertTokenCounts;
        var decayed = stats.DecayedExpertUtilization;

        stats.RecordRouting([2, 2], tokens: 1, topK: 2);

        Assert.Equal(2UL, counts[2]);
        Assert.Equal(stats.DecayedExpertUtilization, decayed);
        var before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Same(counts, stats.ExpertTokenCounts);
        Assert.Same(decayed, stats.DecayedExpertUtilization);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    private static readonly RoutingStatsOptions Options = new() { Experts = 8, UtilizationDecay = 0.5f };

    private static RoutingStats Single(string engine) =>
        engine == "managed" ? new RoutingStats(Options) : RoutingStats.OnDevice(TestAccelerators.Require(engine), Options);

    /// <summary>The model whose layer <paramref name="source"/> names, after one step; null for a single layer's source.</summary>
    private static ModelRoutingStats? ModelOf(string source)
    {
        if (!source.EndsWith("model layer", StringComparison.Ordinal))
        {
            return null;
        }

        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 8, UtilizationDecay = 0.5f };
        var model = source.StartsWith("managed", StringComparison.Ordinal)
            ? new ModelRoutingStats(options)
            : ModelRoutingStats.OnDevice(TestAccelerators.Require("cpu"), options);
        model.RecordStep([4, 4, 4, 4, 4, 4, 0, 1, 1, 3, 7, 7], tokens: 3, topK: 2);
        return model;
    }

    /// <summary>Layer 1 of <paramref name="model"/>, or a single layer of <paramref name="source"/> that recorded the same ids.</summary>
    private static RoutingStats Recorded(string source, ModelRoutingStats? model)
    {
        if (model is not null)
        {
            return model.Layer(1);
        }

        var stats = Single(source);
        stats.RecordRouting([0, 1, 1, 3, 7, 7], tokens: 3, topK: 2);
        return stats;
    }
}
