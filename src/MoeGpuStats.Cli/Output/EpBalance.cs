namespace MoeGpuStats.Cli.Output;

/// <summary>
/// A model's balance over <paramref name="Ranks"/> expert-parallel ranks that hold its experts in order,
/// <c>experts / Ranks</c> each: vLLM's placement before a rebalance, over whose ranks vLLM logs its
/// balancedness (<c>expert_load_pass.reshape(layers, ep_size, -1).sum(-1)</c>).
/// </summary>
/// <param name="Ranks">The ranks (<c>--ep-size</c>); they divide the experts.</param>
/// <param name="ExpertsPerRank">The experts each rank holds.</param>
/// <param name="Summary">The model's summary over those ranks.</param>
internal sealed record EpBalance(int Ranks, int ExpertsPerRank, ModelRoutingSummary Summary)
{
    /// <summary>The balance of <paramref name="model"/> over <paramref name="ranks"/> ranks of its experts in order.</summary>
    public static EpBalance Of(ModelRoutingStats model, int ranks) =>
        new(ranks, model.Experts / ranks, model.Summary(Placement(model.Experts, ranks)));

    /// <summary>Each expert's rank: expert e on rank <c>e / (experts / ranks)</c>.</summary>
    public static int[] Placement(int experts, int ranks) =>
        [.. Enumerable.Range(0, experts).Select(e => e / (experts / ranks))];

    /// <summary>Why <paramref name="ranks"/> cannot hold <paramref name="experts"/> experts evenly, in <c>--ep-size</c>'s words; null when they can.</summary>
    public static string? Problem(int ranks, int experts) =>
        ranks >= 1 && ranks <= experts && experts % ranks == 0
            ? null
            : $"--ep-size {ranks}: {Counted.Of(experts, "expert")} do not split evenly over {Counted.Of(ranks, "rank")}; give a divisor of {experts:N0}.";
}
