namespace MoeGpuStats;

/// <summary>
/// One layer's balance over its experts (or, in a per-rank summary, over its ranks). Loads are
/// token-expert slots. Formulas after vLLM's EPLB metrics (<c>docs/glossary.md</c>).
/// </summary>
/// <param name="Load">Slots over all experts (ranks).</param>
/// <param name="MeanLoad">Slots per expert (rank).</param>
/// <param name="MaxLoad">The largest expert's (rank's) slots.</param>
/// <param name="MinLoad">The smallest expert's (rank's) slots.</param>
/// <param name="Balancedness">Mean load over max load, in (0, 1]: vLLM's per-layer balancedness (vLLM's over its EP ranks, as a summary with expert ranks gives it); 1 for a layer without load.</param>
/// <param name="MaxMeanRatio">Max load over mean load, at least 1; 1 for a layer without load.</param>
/// <param name="CoefficientOfVariation">Population standard deviation of the loads over their mean; 0 for a layer without load.</param>
/// <param name="HottestExpert">The last expert (rank) with the largest load: ties broken as <see cref="RoutingStats.MostUtilizedExpert"/> breaks them (the seed's <c>max_by</c>), though that ranks experts by mean utilization per batch, not by slots.</param>
/// <param name="ColdestExpert">The first expert (rank) with the smallest load, as <see cref="RoutingStats.LeastUtilizedExpert"/> breaks ties.</param>
/// <param name="DeadExperts">Experts (ranks) without a slot.</param>
/// <param name="GiniCoefficient">
/// The Gini coefficient of the loads, <c>Σ_i Σ_j |x_i − x_j| / (2 n² · mean)</c>, computed as
/// <c>Σ_i (2i − n − 1) · x_(i) / (n · Σ x)</c> over the n loads in ascending order: 0 when every
/// expert (rank) has the same load, <c>(n − 1) / n</c> when one has all of it; 0 for a layer without
/// load. Unlike max/mean it weighs every expert, not only the hottest.
/// </param>
/// <param name="Top10PercentShare">
/// The share of the slots on the hottest tenth of the experts (ranks), <c>⌈n / 10⌉</c> of them: 0.1
/// for an even load (<c>⌈n / 10⌉ / n</c> where 10 does not divide n), 1 when they take every slot;
/// <c>⌈n / 10⌉ / n</c> for a layer without load. What replicating the hottest experts can spread.
/// </param>
public readonly record struct LayerBalance(
    ulong Load,
    double MeanLoad,
    ulong MaxLoad,
    ulong MinLoad,
    double Balancedness,
    double MaxMeanRatio,
    double CoefficientOfVariation,
    int HottestExpert,
    int ColdestExpert,
    int DeadExperts,
    double GiniCoefficient,
    double Top10PercentShare)
{
    /// <summary>The record's members in the compiler's form, numbers written invariantly (<see cref="RecordText"/>).</summary>
    public override string ToString() => RecordText.Of(this);

    /// <summary>The balance of <paramref name="count"/> entries measured as <paramref name="load"/>.</summary>
    internal static LayerBalance From(Kernels.Model.LayerLoad load, int count)
    {
        var mean = load.Total / (double)count;
        return load.Total == 0
            ? new LayerBalance(0, 0, 0, 0, 1, 1, 0, load.Hottest, load.Coldest, load.Dead, 0, Kernels.Model.LayerBalanceKernel.TopEntries(count) / (double)count)
            : new LayerBalance(
                load.Total,
                mean,
                load.Max,
                load.Min,
                mean / load.Max,
                load.Max / mean,
                Math.Sqrt(load.SquaredDeviations / count) / mean,
                load.Hottest,
                load.Coldest,
                load.Dead,
                load.GiniSum / ((double)count * load.Total),
                load.TopLoad / (double)load.Total);
    }
}

/// <summary>
/// Every layer's balance over one span of steps, and the model's figures across layers. Equal to
/// another with the same layers, figure by figure (so a summary read back from JSON equals its source).
/// </summary>
public sealed class BalanceSummary : IEquatable<BalanceSummary>
{
    internal BalanceSummary(IReadOnlyList<LayerBalance> layers)
    {
        Layers = layers;
        var balancedness = layers.Select(layer => layer.Balancedness).ToArray();
        var sorted = balancedness.Order().ToArray();
        MinBalancedness = sorted[0];
        P10Balancedness = LinearPercentile(sorted, 0.1);
        MedianBalancedness = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
        MeanBalancedness = sorted.Average();
        MaxBalancedness = sorted[^1];
        WorstLayer = Array.IndexOf(balancedness, MinBalancedness);
        BestLayer = Array.IndexOf(balancedness, MaxBalancedness);

        double means = 0, maxima = 0;
        foreach (var layer in layers)
        {
            means += layer.MeanLoad;
            maxima += layer.MaxLoad;
        }

        TokenWeightedBalancedness = maxima == 0 ? 1.0 : means / maxima;
    }

    /// <summary>Per layer, in layer order.</summary>
    public IReadOnlyList<LayerBalance> Layers { get; }

    /// <summary>The smallest layer balancedness.</summary>
    public double MinBalancedness { get; }

    /// <summary>
    /// The 10th percentile of the layer balancedness, by linear interpolation between the two nearest
    /// layers in order (NumPy's <c>percentile</c> and <c>torch.quantile</c> by default): the layer at rank
    /// <c>0.1 × (layers − 1)</c>. vLLM summarises layers by it beside the min, median and mean; unlike the
    /// min, one outlying layer of many does not move it.
    /// </summary>
    public double P10Balancedness { get; }

    /// <summary>The median layer balancedness (the mean of the middle two for an even layer count).</summary>
    public double MedianBalancedness { get; }

    /// <summary>The mean layer balancedness.</summary>
    public double MeanBalancedness { get; }

    /// <summary>The first layer with the smallest balancedness.</summary>
    public int WorstLayer { get; }

    /// <summary>
    /// The largest layer balancedness: beside <see cref="MinBalancedness"/>, how far apart the layers are (the worst
    /// and the best layer are what operators ask a serving engine's metrics for, beside the hot and cold experts).
    /// A layer without load counts as 1.
    /// </summary>
    public double MaxBalancedness { get; }

    /// <summary>The first layer with the largest balancedness (a layer without load, where any is, as its balancedness is 1).</summary>
    public int BestLayer { get; }

    /// <summary>
    /// <c>Σ_l mean load / Σ_l max load</c>, 1 without load: the formula of vLLM's logged balancedness, which
    /// vLLM takes over its EP ranks' loads; a summary over ranks (<c>Summary(expertRanks)</c>) gives that figure,
    /// one over experts a stricter one.
    /// </summary>
    public double TokenWeightedBalancedness { get; }

    /// <summary>Whether both are null or hold the same layers.</summary>
    public static bool operator ==(BalanceSummary? left, BalanceSummary? right) => left?.Equals(right) ?? right is null;

    /// <summary>Whether one is null and the other not, or their layers differ.</summary>
    public static bool operator !=(BalanceSummary? left, BalanceSummary? right) => !(left == right);

    /// <summary>Whether <paramref name="other"/> holds the same layers (the model's figures follow from them).</summary>
    public bool Equals(BalanceSummary? other) => other is not null && (ReferenceEquals(this, other) || Layers.SequenceEqual(other.Layers));

    /// <summary>Whether <paramref name="obj"/> is a <see cref="BalanceSummary"/> with the same layers.</summary>
    public override bool Equals(object? obj) => Equals(obj as BalanceSummary);

    /// <summary>A hash of the layers' figures, equal for equal summaries.</summary>
    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var layer in Layers)
        {
            hash.Add(layer);
        }

        return hash.ToHashCode();
    }

    /// <summary>The model's figures across layers, as a record prints its members.</summary>
    public override string ToString() => string.Create(
        System.Globalization.CultureInfo.InvariantCulture,
        $"BalanceSummary {{ Layers = {Layers.Count}, MinBalancedness = {MinBalancedness}, P10Balancedness = {P10Balancedness}, MedianBalancedness = {MedianBalancedness}, MeanBalancedness = {MeanBalancedness}, MaxBalancedness = {MaxBalancedness}, WorstLayer = {WorstLayer}, BestLayer = {BestLayer}, TokenWeightedBalancedness = {TokenWeightedBalancedness} }}");

    /// <summary>The value at <paramref name="fraction"/> of <paramref name="sorted"/>'s ranks, interpolated as NumPy's <c>_lerp</c> does (from the nearer end, so a fraction of 1 gives the upper value exactly).</summary>
    private static double LinearPercentile(double[] sorted, double fraction)
    {
        var rank = fraction * (sorted.Length - 1);
        var below = (int)rank;
        if (below + 1 >= sorted.Length)
        {
            return sorted[below];
        }

        var (lower, upper, t) = (sorted[below], sorted[below + 1], rank - below);
        return t < 0.5 ? lower + ((upper - lower) * t) : upper - ((upper - lower) * (1 - t));
    }
}

/// <summary>A model's balance over the sliding window and since the start (or the last reset).</summary>
/// <param name="Steps">Steps recorded.</param>
/// <param name="WindowSteps">Steps in the window: <see cref="Steps"/>, at most <see cref="ModelRoutingStatsOptions.Window"/> (at most <c>recentSteps</c> for <see cref="ModelRoutingStats.Summary(int)"/>).</param>
/// <param name="Window">Over the last <see cref="WindowSteps"/> steps.</param>
/// <param name="SinceStart">Over every step.</param>
public sealed record ModelRoutingSummary(ulong Steps, int WindowSteps, BalanceSummary Window, BalanceSummary SinceStart)
{
    /// <summary>The record's members in the compiler's form, numbers written invariantly (<see cref="RecordText"/>).</summary>
    public override string ToString() => RecordText.Of(this);
}
