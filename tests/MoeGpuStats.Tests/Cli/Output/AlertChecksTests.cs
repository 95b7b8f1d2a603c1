using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>
/// The model report's checks: the conditions of the alerting rules, at their thresholds, named by layer;
/// the load checks not judged over a window of too little load, as the rules leave it out.
/// </summary>
public sealed class AlertChecksTests
{
    private const int Experts = 10;

    [Fact]
    public void OverloadedAndDeadLayersAreNamedWithTheWorst()
    {
        // Layer 1: one expert at 6 × the mean; layer 3: two experts without a token; layer 0 at exactly 5 × is not over.
        var window = Window(Layer(hottest: 500), Layer(hottest: 600), Layer(hottest: 200), Layer(hottest: 200, dead: 2));
        var counts = Counts(routed: 100_000, dropped: 0, invalid: 0, capacity: null);

        var checks = AlertChecks.Model(window, counts).ToList();

        Assert.Equal(
            [
                ("busiest expert over 5 x the mean", "1 layer", "layer 1; the most 6.00 x, layer 1"),
                ("experts without a token", "1 layer", "layer 3; 2 experts in all"),
                ("ids naming no expert", "none", ""),
            ],
            checks);
    }

    [Fact]
    public void AWindowOfTooLittleLoadIsNotJudgedAndCountsAreAlwaysJudged()
    {
        // 19 slots per expert: under the rules' 20.
        var layers = Enumerable.Range(0, 3).Select(_ => Balance(Enumerable.Repeat(19UL, Experts - 2).Concat([38UL, 0UL]).ToArray())).ToArray();
        var counts = Counts(routed: 1_000, dropped: 11, invalid: 3, capacity: 4);

        var checks = AlertChecks.Model(new BalanceSummary(layers), counts).ToList();

        Assert.Equal(("-", "-"), (checks[0].Value, checks[1].Value));
        Assert.StartsWith("not judged: each expert averages 19 slots in the window, under 20", checks[0].Note);
        Assert.Equal(("over 1 % of slots dropped", "1 layer", "layer 0; the most 1.1 %, layer 0"), checks[2]);
        Assert.Equal(("ids naming no expert", "3", "the router or --experts is wrong: those ids are in no expert's load"), checks[3]);
        var quiet = AlertChecks.Model(new BalanceSummary(layers), Counts(routed: 1_000, dropped: 10, invalid: 0, capacity: 4)).ElementAt(2);
        Assert.Equal(("none", "1 % of routed slots in all"), (quiet.Value, quiet.Note));

        // Each layer is judged, as the rule divides each layer's counters: 5 % in layer 2 hides in the model's 0.5 %.
        var perLayer = Counts(routed: 10_000, dropped: 50, invalid: 0, capacity: 4, layers: [(4_500, 0), (4_500, 0), (1_000, 50)]);
        Assert.Equal(("over 1 % of slots dropped", "1 layer", "layer 2; the most 5 %, layer 2"), AlertChecks.Model(new BalanceSummary(layers), perLayer).ElementAt(2));
    }

    [Fact]
    public void ManyLayersAreCountedPastTheTenthNamed()
    {
        var window = Window([.. Enumerable.Range(0, 13).Select(_ => Layer(hottest: 900, dead: 1))]);

        var checks = AlertChecks.Model(window, Counts(routed: 1, dropped: 0, invalid: 0, capacity: null)).ToList();

        Assert.Equal(("13 layers", "layers 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 3 more; the most 9.00 x, layer 0"), (checks[0].Value, checks[0].Note));
        Assert.Equal("layers 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 3 more; 13 experts in all", checks[1].Note);
    }

    /// <summary>
    /// One router is judged as its rules judge it: the busiest expert's mean share over the mean, drops where a capacity
    /// drops, invalid ids. Each batch 40 times: the experts average 20 slots or more, which the load check needs.
    /// </summary>
    [Fact]
    public void ARouterIsJudgedByItsOwnGauges()
    {
        using var collapsed = new RoutingStats(new RoutingStatsOptions { Experts = Experts, ExpertCapacity = 5 });
        using var even = new RoutingStats(new RoutingStatsOptions { Experts = Experts });
        for (var batch = 0; batch < 40; batch++)
        {
            collapsed.RecordRouting([0, 0, 0, 0, 0, 0, 0, 0, 0, 12], tokens: 10, topK: 1);
            even.RecordRouting([.. Enumerable.Range(0, Experts)], tokens: Experts, topK: 1);
        }

        Assert.Equal(
            [
                ("busiest expert over 5 x the mean", "yes", "10.00 x, expert 0"),
                ("over 1 % of slots dropped", "yes", "44.44 % of routed slots"),
                ("ids naming no expert", "40", "the router or --experts is wrong: those ids are in no expert's load"),
            ],
            AlertChecks.Router(collapsed).ToList());
        Assert.Equal(
            [
                ("busiest expert over 5 x the mean", "no", "1.00 x, expert 9"),
                ("ids naming no expert", "none", ""),
            ],
            AlertChecks.Router(even).ToList());
    }

    /// <summary>
    /// A router with a capacity is judged for drops though it dropped none (the check passed, not left out); one
    /// without a slot on a valid expert has no load to judge its busiest expert by, and is not judged for overload.
    /// </summary>
    [Fact]
    public void ARouterWithACapacityIsJudgedForDropsAndOneWithoutValidSlotsNotForOverload()
    {
        using var roomy = new RoutingStats(new RoutingStatsOptions { Experts = Experts, ExpertCapacity = 5 });
        for (var batch = 0; batch < 20; batch++)
        {
            roomy.RecordRouting([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], tokens: 10, topK: 1);
        }

        using var invalid = new RoutingStats(new RoutingStatsOptions { Experts = Experts });
        invalid.RecordRouting([12, 13], tokens: 2, topK: 1);

        Assert.Equal(
            [
                ("busiest expert over 5 x the mean", "no", "1.00 x, expert 9"),
                ("over 1 % of slots dropped", "no", "0 % of routed slots"),
                ("ids naming no expert", "none", ""),
            ],
            AlertChecks.Router(roomy).ToList());
        Assert.Equal(
            [
                ("busiest expert over 5 x the mean", "-", "not judged: each expert averages 0 slots since the start, under 20, too few to tell chance from imbalance"),
                ("ids naming no expert", "2", "the router or --experts is wrong: those ids are in no expert's load"),
            ],
            AlertChecks.Router(invalid).ToList());
    }

    /// <summary>
    /// A router whose experts average under 20 slots since the start is not judged for overload, as its rule leaves it
    /// out: one token of top-2 over 10 experts puts its busiest expert at 5 x the mean by chance. From 20 it is judged.
    /// </summary>
    [Fact]
    public void ALightRouterIsNotJudgedForOverload()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = Experts });
        stats.RecordRouting([3, 7], tokens: 1, topK: 2);

        Assert.Equal(
            ("busiest expert over 5 x the mean", "-", "not judged: each expert averages 0.2 slots since the start, under 20, too few to tell chance from imbalance"),
            AlertChecks.Router(stats).First());

        // 99 more batches: 200 slots over 10 experts, 20 each on average; experts 3 and 7 hold them all (the tie named as
        // the seed names it, the last).
        for (var batch = 1; batch < 100; batch++)
        {
            stats.RecordRouting([3, 7], tokens: 1, topK: 2);
        }

        Assert.Equal(("busiest expert over 5 x the mean", "no", "5.00 x, expert 7"), AlertChecks.Router(stats).First());
    }

    /// <summary>The average shown is rounded down: 499 slots over 25 experts (19.96) read 19.9, never "20, under 20".</summary>
    [Fact]
    public void TheAverageNotJudgedIsRoundedDown()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 25 });
        stats.RecordRouting([.. Enumerable.Range(0, 499).Select(i => i % 25)], tokens: 499, topK: 1);

        Assert.StartsWith("not judged: each expert averages 19.9 slots since the start, under 20", AlertChecks.Router(stats).First().Note, StringComparison.Ordinal);
    }

    /// <summary>A window of exactly the rules' 20 slots per expert is judged (the rules leave out under 20), averaged over the layers as the rules' gauge.</summary>
    [Fact]
    public void TheLoadIsJudgedFrom20SlotsPerExpertAveragedOverTheLayers()
    {
        var counts = Counts(routed: 1, dropped: 0, invalid: 0, capacity: null);
        var twenty = Window(Balance([.. Enumerable.Repeat(20UL, Experts)]));
        // 10 and 40 slots per expert: a mean of 25 over the layers, though one layer has fewer than 20.
        var uneven = Window(Balance([.. Enumerable.Repeat(10UL, Experts)]), Balance([.. Enumerable.Repeat(40UL, Experts)]));

        Assert.Equal(("none", ""), Values(AlertChecks.Model(twenty, counts).First()));
        Assert.Equal(("none", ""), Values(AlertChecks.Model(uneven, counts).First()));
        Assert.Equal(("none", ""), Values(AlertChecks.Model(uneven, counts).ElementAt(1)));
    }

    /// <summary>The layer named for the most drops is the one of the largest share, not of the most slots; with none over, the note is the model's share.</summary>
    [Fact]
    public void TheMostDropsAreTheLargestShare()
    {
        var window = Window(Layer(hottest: 100), Layer(hottest: 100));
        // Layer 0: 2,000 of 100,000 (2 %); layer 1: 100 of 1,000 (10 %).
        var dropping = Counts(routed: 101_000, dropped: 2_100, invalid: 0, capacity: 4, layers: [(100_000, 2_000), (1_000, 100)]);
        // Neither over 1 %: 1 % and 0.5 %, 0.6 % of all.
        var quiet = Counts(routed: 5_000, dropped: 30, invalid: 0, capacity: 4, layers: [(1_000, 10), (4_000, 20)]);

        Assert.Equal(("2 layers", "layers 0, 1; the most 10 %, layer 1"), Values(AlertChecks.Model(window, dropping).ElementAt(2)));
        Assert.Equal(("none", "0.6 % of routed slots in all"), Values(AlertChecks.Model(window, quiet).ElementAt(2)));
    }

    /// <summary>Ten layers are all named, with no "and 0 more".</summary>
    [Fact]
    public void TenLayersAreNamedInFull()
    {
        var window = Window([.. Enumerable.Range(0, 10).Select(_ => Layer(hottest: 900, dead: 1))]);

        var checks = AlertChecks.Model(window, Counts(routed: 1, dropped: 0, invalid: 0, capacity: null)).ToList();

        Assert.Equal(("10 layers", "layers 0, 1, 2, 3, 4, 5, 6, 7, 8, 9; the most 9.00 x, layer 0"), Values(checks[0]));
    }

    private static (string Value, string Note) Values((string Label, string Value, string Note) check) => (check.Value, check.Note);

    /// <summary>A router whose busiest expert is at exactly 5 x the mean is not over the rule's threshold (its <c>&gt; 5</c>).</summary>
    [Fact]
    public void ARouterAtExactlyTheThresholdIsNotOverloaded()
    {
        // 8 tokens over 8 experts, top-1: expert 0 takes 5 of them, 5 / 8 over a mean of 1 / 8 (exact in binary); 20
        // batches, for the 20 slots per expert the check needs.
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 8 });
        for (var batch = 0; batch < 20; batch++)
        {
            stats.RecordRouting([0, 0, 0, 0, 0, 1, 2, 3], tokens: 8, topK: 1);
        }

        Assert.Equal(("busiest expert over 5 x the mean", "no", "5.00 x, expert 0"), AlertChecks.Router(stats).First());
    }

    /// <summary>The checks' thresholds are the rules' own: a change to one file shows here until the other follows.</summary>
    [Fact]
    public void TheThresholdsAreTheAlertingRules()
    {
        var rules = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "monitoring", "moegpustats-alerts.yml"));

        Assert.Matches($@"layer_max_mean_ratio > {AlertChecks.OverloadedMaxMean}\b", rules);
        Assert.Matches($@"window_mean_expert_load < {AlertChecks.MinMeanLoad}\b", rules);
        Assert.Matches($@"avg without \(expert\) \(moegpustats_moegs_expert_tokens_total\) < {AlertChecks.MinMeanLoad}\b", rules);
        Assert.Matches($@"\) > {AlertChecks.DroppedShare.ToString(System.Globalization.CultureInfo.InvariantCulture)}\b", rules);
    }

    /// <summary>A layer of 10 experts, 1,000 slots: the hottest with <paramref name="hottest"/>, <paramref name="dead"/> without one, the rest even.</summary>
    private static LayerBalance Layer(ulong hottest, int dead = 0)
    {
        var loads = new ulong[Experts];
        loads[0] = hottest;
        var rest = Experts - 1 - dead;
        for (var e = 1; e <= rest; e++)
        {
            loads[e] = (1_000 - hottest) / (ulong)rest;
        }

        loads[1] += 1_000 - loads.Aggregate(0UL, (sum, load) => sum + load);
        return Balance(loads);
    }

    /// <summary>The balance the summary gives of <paramref name="loads"/> (the fields the checks read).</summary>
    private static LayerBalance Balance(ulong[] loads)
    {
        var total = loads.Aggregate(0UL, (sum, load) => sum + load);
        var mean = total / (double)loads.Length;
        return new LayerBalance(total, mean, loads.Max(), loads.Min(), mean / loads.Max(), loads.Max() / mean, 0, Array.IndexOf(loads, loads.Max()), Array.IndexOf(loads, loads.Min()), loads.Count(load => load == 0), 0, 0);
    }

    private static BalanceSummary Window(params LayerBalance[] layers) => new(layers);

    /// <summary>
    /// A model's counts; its layers' routed and dropped slots <paramref name="layers"/> (which sum to <paramref name="routed"/>
    /// and <paramref name="dropped"/>), or one layer of them all; the invalid ids in the first layer.
    /// </summary>
    private static ModelCounts Counts(ulong routed, ulong dropped, ulong invalid, int? capacity, (ulong Routed, ulong Dropped)[]? layers = null)
    {
        var slots = layers ?? [(routed, dropped)];
        var counts = new ModelCounts(
            [.. slots.Select((layer, l) => new LayerCounts(0, layer.Routed, l == 0 ? invalid : 0, layer.Dropped))], capacity, WindowHoldsAll: false, MergedParts: 1);
        Assert.Equal((routed, dropped, (UInt128)invalid), (counts.RoutedSlots, counts.SlotsDropped, counts.InvalidExpertIds));
        return counts;
    }
}
