using System.Diagnostics.Metrics;
using MoeGpuStats.Engines;
using static System.FormattableString;

namespace MoeGpuStats.Telemetry;

/// <summary>
/// Publishes a <see cref="ModelRoutingStats"/> through <c>System.Diagnostics.Metrics</c> (meter
/// <see cref="RoutingStatsMetrics.MeterName"/>) with bounded cardinality: series per layer and per
/// top-K position, not per (layer, expert) unless asked.
/// </summary>
/// <remarks>
/// <para>
/// Every balance figure is over the sliding window (<see cref="ModelRoutingSummary.Window"/>), the
/// load that rebalancing acts on; formulas in <see cref="LayerBalance"/>. Per layer (tag <c>layer</c>):
/// gauges <c>moegs.layer.balancedness</c>, <c>moegs.layer.max_mean_ratio</c>, <c>moegs.layer.cv</c>,
/// <c>moegs.layer.dead_experts</c>, <c>moegs.layer.gini</c>, <c>moegs.layer.top10_share</c>, <c>moegs.layer.loss.load_balance</c> and <c>moegs.layer.loss.router_z</c>
/// (mean losses since the start); the counters <c>moegs.layer.slots</c> (token-expert slots since the
/// start), <c>moegs.layer.tokens.dropped</c>, <c>moegs.layer.slots.dropped</c> (beyond the expert
/// capacity) and <c>moegs.layer.expert_ids.invalid</c>, named as <see cref="RoutingStatsMetrics"/>'s. Across layers: gauges <c>moegs.model.balancedness.min</c>, <c>.p10</c>, <c>.median</c>, <c>.mean</c>,
/// <c>.max</c>, <c>.token_weighted</c>, <c>moegs.model.worst_layer</c>, <c>moegs.model.best_layer</c>, <c>moegs.model.window.steps</c> (the steps the
/// window holds) and <c>moegs.model.window.mean_expert_load</c> (the mean slots per expert in the window,
/// over every layer: what tells an idle window, balanced by convention, from a balanced one); the counter
/// <c>moegs.model.steps</c>.
/// </para>
/// <para>
/// With <c>recentSteps</c>, the same balance over the window's newest steps only, which moves within
/// those steps where the window's takes the whole window to (SGLang logs balancedness over the last
/// 10, 100 and 1,000 passes): per layer <c>moegs.layer.recent.balancedness</c>, across layers
/// <c>moegs.model.recent.balancedness.min</c>, <c>.mean</c> and <c>.token_weighted</c>, and
/// <c>moegs.model.recent.steps</c>, the steps they cover (fewer than asked early in a run). A model
/// that keeps its window's load but not its ring (read from JSON) reports none of them while its
/// window holds more steps than asked.
/// </para>
/// <para>
/// The K hottest and coldest experts of each layer in the window (tags <c>layer</c> and
/// <c>position</c>, 1 the hottest or coldest): <c>moegs.layer.hot_expert</c> and
/// <c>moegs.layer.cold_expert</c> give the expert's id, <c>moegs.layer.hot_expert.load</c> and
/// <c>moegs.layer.cold_expert.load</c> its slots. The expert is a value, not a tag, so the series
/// stay the same <c>4 × layers × K</c> however the ranking moves. Among the hottest, ties go to the higher expert id (position 1 is the summary's hottest); among the coldest, to the lower.
/// </para>
/// <para>
/// With <c>expertSeries</c>, one series per (layer, expert) as well: the counter
/// <c>moegs.expert.tokens</c> (slots since the start) and the gauge <c>moegs.expert.window_load</c>,
/// tags <c>layer</c> and <c>expert</c>. DeepSeek-V3 (58 × 256) makes 14,848 of each per instance,
/// which is why they are off by default (vLLM's metrics design keeps per-expert series out of its
/// default metrics for the same reason).
/// </para>
/// <para>
/// A collection reads every instrument from one reading of the model: a summary (a few scalars per
/// layer come back from a device) and the window load (one copy of <c>layers × experts</c>
/// counts), plus the layers' counts with <c>expertSeries</c> and a summary of the window's newest
/// steps with <c>recentSteps</c>, all of one state (enqueued under the
/// model's lock, so no step comes between them). On a device engine the reading is staged on the
/// device and copied back at once: one wait for the stream per reading, made with the model's lock
/// released, so a step recorded meanwhile does not wait for it. The next collection takes a new reading when the
/// last is older than <c>refreshInterval</c>. A collection is the callbacks one thread runs back to
/// back: it keeps its reading to the end however long it takes, unless its listener pauses over a
/// second between two instruments (time in any publisher's callback, its reading included, is work, not a pause);
/// two listeners of different instruments collecting on one thread
/// less than a second apart count as one collection. Collections may run on any threads, while
/// another thread records.
/// </para>
/// </remarks>
public sealed class ModelRoutingStatsMetrics : IDisposable
{
    /// <summary>The top-K depth when none is given: as many hottest and coldest experts per layer.</summary>
    public const int DefaultTopExperts = 5;

    private const int ModelWideSeries = 11;
    private const int SeriesPerLayer = 12;
    private const int RecentModelWideSeries = 4;
    private const int RecentSeriesPerLayer = 1;
    private const int EpModelWideSeries = 2;
    private const int SeriesPerRank = 4;
    private const int SeriesPerExpert = 2;

    private readonly ModelRoutingStats _stats;
    private readonly int _topExperts;
    private readonly KeyValuePair<string, object?>[][] _layerTags;
    private readonly CollectionReading<Reading> _reading;
    private readonly SharedInstruments _shared;
    private int _disposed;

    /// <summary>Creates the instruments for <paramref name="stats"/>.</summary>
    /// <param name="stats">The model to publish; the caller keeps ownership.</param>
    /// <param name="topExperts">K: the hottest and coldest experts published per layer, 0 to the model's experts; default <see cref="DefaultTopExperts"/> (at most the experts).</param>
    /// <param name="expertSeries">Whether to publish one series per (layer, expert) as well.</param>
    /// <param name="refreshInterval">How old a reading may be before a collection takes a new one; default 1 s.</param>
    /// <param name="meterFactory">The host's meter factory; null creates the meter directly.</param>
    /// <param name="recentSteps">The newest steps of the window the recent series cover, 1 to the model's window; null (the default) publishes none.</param>
    /// <param name="epSize">
    /// Expert-parallel ranks holding the experts in order, <c>experts / epSize</c> each, dividing the experts:
    /// publishes <c>moegs.model.ep.balancedness.token_weighted</c> and <c>.min</c>, the window's balance over
    /// those ranks, which is vLLM's logged balancedness before a rebalance (computed from the window load the
    /// reading copies anyway); null (the default) publishes none.
    /// </param>
    /// <exception cref="ArgumentNullException"><paramref name="stats"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="stats"/> were disposed (or, on a device, their accelerator).</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="topExperts"/> is negative or more than the experts, <paramref name="refreshInterval"/> is negative, <paramref name="recentSteps"/> is outside <c>[1, Window]</c>, or <paramref name="epSize"/> does not divide the experts.</exception>
    public ModelRoutingStatsMetrics(ModelRoutingStats stats, int? topExperts = null, bool expertSeries = false, TimeSpan? refreshInterval = null, IMeterFactory? meterFactory = null, int? recentSteps = null, int? epSize = null)
    {
        ArgumentNullException.ThrowIfNull(stats);
        if (stats.Gone() is { } gone)
        {
            throw Disposed.ArgumentError(nameof(stats), gone);
        }

        var experts = stats.Experts;
        _topExperts = topExperts ?? Math.Min(DefaultTopExperts, experts);
        if (_topExperts < 0 || _topExperts > experts)
        {
            throw OutOfRange.Error(nameof(topExperts), topExperts, Invariant($"give 0 to {experts:N0}, the model's experts."));
        }

        var window = stats.Options.Window;
        if (recentSteps is < 1 || recentSteps > window)
        {
            throw OutOfRange.Error(nameof(recentSteps), recentSteps, Invariant($"give 1 to {window:N0}, the model's window, or null for no recent series."));
        }

        if (epSize is { } ranks && (ranks < 1 || ranks > experts || experts % ranks != 0))
        {
            throw OutOfRange.Error(nameof(epSize), epSize, Invariant($"give a divisor of the model's {experts:N0} experts, or null for no EP series."));
        }

        var interval = refreshInterval ?? TimeSpan.FromSeconds(1);
        OutOfRange.ThrowIfNegative(interval, nameof(refreshInterval));
        _stats = stats;
        _reading = new CollectionReading<Reading>(() => Reading.Of(stats, _topExperts, expertSeries, recentSteps, epSize), interval);
        _layerTags = [.. Enumerable.Range(0, stats.Layers).Select(l => new KeyValuePair<string, object?>[] { new("layer", l.ToString(System.Globalization.CultureInfo.InvariantCulture)) })];
        _shared = SharedInstruments.Acquire(meterFactory);
        try
        {
            Publish(expertSeries, recentSteps is not null, epSize is not null);
        }
        catch
        {
            _shared.Release(this);
            throw;
        }
    }

    private void Publish(bool expertSeries, bool recentSeries, bool epSeries)
    {
        if (epSeries)
        {
            _shared.ObservableGauge(this, "moegs.model.ep.balancedness.token_weighted", _reading.ObserveOne(r => new Measurement<double>(r.Ep!.Value.TokenWeighted)), null, "Sum over layers of the mean EP rank load over the sum of the max rank load, in the window: vLLM's logged balancedness, its experts in order on the ranks.");
            _shared.ObservableGauge(this, "moegs.model.ep.balancedness.min", _reading.ObserveOne(r => new Measurement<double>(r.Ep!.Value.Min)), null, "The smallest layer balancedness over EP ranks (mean rank load over max) in the window.");
        }

        _shared.ObservableCounter(this, "moegs.model.steps", _reading.ObserveOne(r => new Measurement<long>((long)r.Summary.Steps)), "{step}", "Forward passes recorded.");
        _shared.ObservableGauge(this, "moegs.model.balancedness.min", _reading.ObserveOne(r => new Measurement<double>(r.Summary.Window.MinBalancedness)), null, "The smallest layer balancedness in the window.");
        _shared.ObservableGauge(this, "moegs.model.balancedness.p10", _reading.ObserveOne(r => new Measurement<double>(r.Summary.Window.P10Balancedness)), null, "The 10th percentile of the layer balancedness in the window (linear interpolation, as numpy.percentile).");
        _shared.ObservableGauge(this, "moegs.model.balancedness.median", _reading.ObserveOne(r => new Measurement<double>(r.Summary.Window.MedianBalancedness)), null, "The median layer balancedness in the window.");
        _shared.ObservableGauge(this, "moegs.model.balancedness.mean", _reading.ObserveOne(r => new Measurement<double>(r.Summary.Window.MeanBalancedness)), null, "The mean layer balancedness in the window.");
        _shared.ObservableGauge(this, "moegs.model.balancedness.max", _reading.ObserveOne(r => new Measurement<double>(r.Summary.Window.MaxBalancedness)), null, "The largest layer balancedness in the window.");
        _shared.ObservableGauge(this, "moegs.model.balancedness.token_weighted", _reading.ObserveOne(r => new Measurement<double>(r.Summary.Window.TokenWeightedBalancedness)), null, "Sum over layers of the mean expert load over the sum of the max expert load, in the window (vLLM's formula, over experts; vLLM logs it over EP ranks).");
        _shared.ObservableGauge(this, "moegs.model.worst_layer", _reading.ObserveOne(r => new Measurement<long>((long)r.Summary.Window.WorstLayer)), null, "The first layer with the smallest balancedness in the window.");
        _shared.ObservableGauge(this, "moegs.model.best_layer", _reading.ObserveOne(r => new Measurement<long>((long)r.Summary.Window.BestLayer)), null, "The first layer with the largest balancedness in the window.");
        _shared.ObservableGauge(this, "moegs.model.window.steps", _reading.ObserveOne(r => new Measurement<long>(r.Summary.WindowSteps)), "{step}", "Steps the window holds, up to its length.");
        _shared.ObservableGauge(this, "moegs.model.window.mean_expert_load", _reading.ObserveOne(r => new Measurement<double>(MeanExpertLoad(r.Summary.Window))), "{slot}", "Mean slots per expert in the window, over every layer: 0 for an idle window, whose balance is 1 by convention; under about 20, an expert without a slot may be chance.");
        _shared.ObservableCounter(this, "moegs.layer.slots", _reading.Observe(r => PerLayer(r.Summary.SinceStart.Layers, b => (long)b.Load)), "{slot}", "Token-expert slots since the start (tag: layer).");
        _shared.ObservableGauge(this, "moegs.layer.balancedness", _reading.Observe(r => PerLayer(r.Summary.Window.Layers, b => b.Balancedness)), null, "Mean over max expert load in the window (tag: layer).");
        _shared.ObservableGauge(this, "moegs.layer.max_mean_ratio", _reading.Observe(r => PerLayer(r.Summary.Window.Layers, b => b.MaxMeanRatio)), null, "Max over mean expert load in the window (tag: layer).");
        _shared.ObservableGauge(this, "moegs.layer.cv", _reading.Observe(r => PerLayer(r.Summary.Window.Layers, b => b.CoefficientOfVariation)), null, "Coefficient of variation of expert load in the window (tag: layer).");
        _shared.ObservableGauge(this, "moegs.layer.dead_experts", _reading.Observe(r => PerLayer(r.Summary.Window.Layers, b => (long)b.DeadExperts)), "{expert}", "Experts without a slot in the window (tag: layer).");
        _shared.ObservableGauge(this, "moegs.layer.gini", _reading.Observe(r => PerLayer(r.Summary.Window.Layers, b => b.GiniCoefficient)), null, "Gini coefficient of expert load in the window (tag: layer).");
        _shared.ObservableGauge(this, "moegs.layer.top10_share", _reading.Observe(r => PerLayer(r.Summary.Window.Layers, b => b.Top10PercentShare)), null, "Share of the window's slots on the layer's hottest tenth of the experts (tag: layer).");
        _shared.ObservableCounter(this, "moegs.layer.tokens.dropped", _reading.Observe(r => PerLayer(r.Totals, t => (long)t.TokensDropped)), "{token}", "Tokens reported dropped since the start, 0 from RecordStep, which reports none; a capacity drops slots, counted in moegs.layer.slots.dropped (tag: layer).");
        _shared.ObservableCounter(this, "moegs.layer.slots.dropped", _reading.Observe(r => PerLayer(r.Totals, t => (long)t.SlotsDropped)), "{slot}", "Routed slots dropped beyond the expert capacity since the start (tag: layer).");
        _shared.ObservableCounter(this, "moegs.layer.expert_ids.invalid", _reading.Observe(r => PerLayer(r.Totals, t => (long)t.InvalidExpertIds)), "{id}", "Top-k ids outside [0, E) since the start (tag: layer).");
        _shared.ObservableGauge(this, "moegs.layer.loss.load_balance", _reading.Observe(r => PerLayer(r.Totals, t => FloatStatistic.ToDouble(t.AverageLoadBalanceLoss))), null, "Mean load-balancing loss since the start (tag: layer).");
        _shared.ObservableGauge(this, "moegs.layer.loss.router_z", _reading.Observe(r => PerLayer(r.Totals, t => FloatStatistic.ToDouble(t.AverageRouterZLoss))), null, "Mean router z-loss since the start (tag: layer).");
        if (_topExperts > 0)
        {
            _shared.ObservableGauge(this, "moegs.layer.hot_expert", _reading.Observe(r => Ranked(r, r.Hottest, id: true)), null, "The id of the expert at this position among the layer's hottest in the window (tags: layer, position).");
            _shared.ObservableGauge(this, "moegs.layer.hot_expert.load", _reading.Observe(r => Ranked(r, r.Hottest, id: false)), "{slot}", "Window slots of the expert at this position among the layer's hottest (tags: layer, position).");
            _shared.ObservableGauge(this, "moegs.layer.cold_expert", _reading.Observe(r => Ranked(r, r.Coldest, id: true)), null, "The id of the expert at this position among the layer's coldest in the window (tags: layer, position).");
            _shared.ObservableGauge(this, "moegs.layer.cold_expert.load", _reading.Observe(r => Ranked(r, r.Coldest, id: false)), "{slot}", "Window slots of the expert at this position among the layer's coldest (tags: layer, position).");
        }

        if (recentSeries)
        {
            _shared.ObservableGauge(this, "moegs.model.recent.steps", _reading.Observe(r => Recent(r, s => new Measurement<long>(s.WindowSteps))), "{step}", "The newest steps of the window the recent balance covers.");
            _shared.ObservableGauge(this, "moegs.model.recent.balancedness.min", _reading.Observe(r => Recent(r, s => new Measurement<double>(s.Window.MinBalancedness))), null, "The smallest layer balancedness over the window's newest steps.");
            _shared.ObservableGauge(this, "moegs.model.recent.balancedness.mean", _reading.Observe(r => Recent(r, s => new Measurement<double>(s.Window.MeanBalancedness))), null, "The mean layer balancedness over the window's newest steps.");
            _shared.ObservableGauge(this, "moegs.model.recent.balancedness.token_weighted", _reading.Observe(r => Recent(r, s => new Measurement<double>(s.Window.TokenWeightedBalancedness))), null, "Sum over layers of the mean load over the sum of the max load, over the window's newest steps.");
            _shared.ObservableGauge(this, "moegs.layer.recent.balancedness", _reading.Observe(r => r.Recent is { } recent ? PerLayer(recent.Window.Layers, b => b.Balancedness) : []), null, "Mean over max expert load over the window's newest steps (tag: layer).");
        }

        if (expertSeries)
        {
            _shared.ObservableCounter(this, "moegs.expert.tokens", _reading.Observe(r => PerExpert(r.TokenCounts!)), "{slot}", RoutingStatsMetrics.ExpertTokensDescription);
            _shared.ObservableGauge(this, "moegs.expert.window_load", _reading.Observe(r => PerExpert(r.WindowLoad)), "{slot}", "Token-expert slots per expert in the window (tags: layer, expert).");
        }
    }

    /// <summary>
    /// The series a model's metrics publish: 11 for the model, 12 per layer, 4 per layer and top-K
    /// position, with <paramref name="expertSeries"/> 2 per (layer, expert), and with
    /// <paramref name="recentSeries"/> 4 more for the model and 1 more per layer, and with
    /// <paramref name="epSeries"/> 2 more for the model. What a scraper
    /// stores per instance; size <paramref name="topExperts"/> and <paramref name="expertSeries"/> by it.
    /// </summary>
    /// <param name="layers">MoE layers.</param>
    /// <param name="experts">Experts per layer.</param>
    /// <param name="topExperts">K, as the constructor takes it (at most <paramref name="experts"/>).</param>
    /// <param name="expertSeries">Whether per-expert series are published.</param>
    /// <param name="recentSeries">Whether the recent series are published (a <c>recentSteps</c> given).</param>
    /// <param name="epSeries">Whether the EP ranks' series are published (an <c>epSize</c> given).</param>
    /// <exception cref="ArgumentOutOfRangeException">
    /// <paramref name="layers"/> or <paramref name="experts"/> is outside what a model takes (1 to
    /// <see cref="ModelRoutingStatsOptions.MaxLayers"/>, 1 to <see cref="RoutingStatsOptions.MaxDeviceExperts"/>), or
    /// <paramref name="topExperts"/> outside 0 to <paramref name="experts"/>, as the constructor takes it.
    /// </exception>
    public static long SeriesCount(int layers, int experts, int topExperts, bool expertSeries, bool recentSeries = false, bool epSeries = false)
    {
        // Within a model's sizes the count cannot pass 2^33; beyond them it would wrap a long.
        if (layers is < 1 or > ModelRoutingStatsOptions.MaxLayers)
        {
            throw OutOfRange.Error(nameof(layers), layers, Invariant($"give 1 to {ModelRoutingStatsOptions.MaxLayers:N0}, as a model takes."));
        }

        if (experts is < 1 or > RoutingStatsOptions.MaxDeviceExperts)
        {
            throw OutOfRange.Error(nameof(experts), experts, Invariant($"give 1 to {RoutingStatsOptions.MaxDeviceExperts:N0}, as a model takes."));
        }

        if (topExperts < 0 || topExperts > experts)
        {
            throw OutOfRange.Error(nameof(topExperts), topExperts, Invariant($"give 0 to {experts:N0}, the experts."));
        }

        return ModelWideSeries
            + ((long)SeriesPerLayer * layers)
            + ((long)SeriesPerRank * layers * topExperts)
            + (expertSeries ? (long)SeriesPerExpert * layers * experts : 0)
            + (recentSeries ? RecentModelWideSeries + ((long)RecentSeriesPerLayer * layers) : 0)
            + (epSeries ? EpModelWideSeries : 0);
    }

    /// <summary>
    /// The meter that holds the instruments: one per meter factory (one per process without one), shared
    /// by every publisher created with it, <see cref="RoutingStatsMetrics"/> included.
    /// </summary>
    public Meter Meter => _shared.Meter;

    /// <summary>Readings of the model taken so far (each is one device synchronization on a device engine).</summary>
    public int ReadingsTaken => _reading.Taken;

    /// <summary>Stops publishing.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _shared.Release(this);
        }
    }

    /// <summary>One measurement per layer: <paramref name="value"/> of each layer's entry in <paramref name="layers"/>, tagged with the layer.</summary>
    private IEnumerable<Measurement<T>> PerLayer<TLayer, T>(IReadOnlyList<TLayer> layers, Func<TLayer, T> value)
        where T : struct
    {
        var measurements = new Measurement<T>[layers.Count];
        for (var l = 0; l < measurements.Length; l++)
        {
            measurements[l] = new Measurement<T>(value(layers[l]), _layerTags[l]);
        }

        return measurements;
    }

    /// <summary>One measurement of the recent summary, or none where the reading has none.</summary>
    private static IEnumerable<Measurement<T>> Recent<T>(Reading reading, Func<ModelRoutingSummary, Measurement<T>> value)
        where T : struct => reading.Recent is { } recent ? [value(recent)] : [];

    private IEnumerable<Measurement<long>> Ranked(Reading reading, int[] experts, bool id)
    {
        var measurements = new Measurement<long>[experts.Length];
        for (var i = 0; i < experts.Length; i++)
        {
            var (layer, position) = Math.DivRem(i, _topExperts);
            var expert = experts[i];
            var value = id ? expert : (long)reading.WindowLoad[(layer * _stats.Experts) + expert];
            measurements[i] = new Measurement<long>(value, [_layerTags[layer][0], new("position", position + 1)]);
        }

        return measurements;
    }

    private IEnumerable<Measurement<long>> PerExpert(ulong[] values)
    {
        var experts = _stats.Experts;
        var measurements = new Measurement<long>[values.Length];
        for (var i = 0; i < values.Length; i++)
        {
            var (layer, expert) = Math.DivRem(i, experts);
            measurements[i] = new Measurement<long>((long)values[i], [_layerTags[layer][0], new("expert", expert)]);
        }

        return measurements;
    }

    /// <summary>The mean of the layers' mean expert loads: the window's slots over layers × experts.</summary>
    private static double MeanExpertLoad(BalanceSummary window) => window.Layers.Average(layer => layer.MeanLoad);

    /// <summary>Every value the instruments report, read once and never changed.</summary>
    /// <param name="Summary">The model's balance.</param>
    /// <param name="WindowLoad">The window's load, <c>[layers, experts]</c>.</param>
    /// <param name="Totals">Each layer's running totals.</param>
    /// <param name="TokenCounts">Each layer's slots per expert since the start, <c>[layers, experts]</c>; null unless per-expert series are published.</param>
    /// <param name="Hottest">Per layer, the K hottest experts in the window, hottest first, <c>[layers, K]</c>.</param>
    /// <param name="Coldest">Per layer, the K coldest, coldest first.</param>
    /// <param name="Recent">The balance over the window's newest steps; null without recent series, or where the model cannot cut its window.</param>
    /// <param name="Ep">The window's token-weighted and smallest layer balancedness over the EP ranks; null without EP series.</param>
    private sealed record Reading(ModelRoutingSummary Summary, ulong[] WindowLoad, RoutingTotals[] Totals, ulong[]? TokenCounts, int[] Hottest, int[] Coldest, ModelRoutingSummary? Recent, (double TokenWeighted, double Min)? Ep)
    {
        public static Reading Of(ModelRoutingStats stats, int topExperts, bool expertSeries, int? recentSteps, int? epSize)
        {
            var reading = stats.Read(new() { RecentSteps = stats.Options.Window, AlsoRecentSteps = recentSteps, Totals = true, WindowLoad = true, TokenCounts = expertSeries });
            var summary = ModelRoutingStats.Summarize(reading, stats.Experts);
            var recent = ModelRoutingStats.SummarizeRecent(reading, stats.Experts);
            var (load, totals, counts) = (reading.WindowLoad!, reading.Totals!, reading.TokenCounts);
            var hottest = new int[stats.Layers * topExperts];
            var coldest = new int[stats.Layers * topExperts];
            if (topExperts > 0)
            {
                var order = new int[stats.Experts];
                for (var l = 0; l < stats.Layers; l++)
                {
                    var row = load.AsSpan(l * stats.Experts, stats.Experts);
                    Rank(row, order, descending: true).CopyTo(hottest.AsSpan(l * topExperts, topExperts));
                    Rank(row, order, descending: false).CopyTo(coldest.AsSpan(l * topExperts, topExperts));
                }
            }

            return new Reading(summary, load, totals, counts, hottest, coldest, recent, epSize is { } ranks ? EpBalance(load, stats.Layers, stats.Experts, ranks) : null);

            // The window load is already here: the ranks' loads are its columns summed, experts in order.
            static (double TokenWeighted, double Min) EpBalance(ulong[] load, int layers, int experts, int ranks)
            {
                double means = 0, maxima = 0, min = 1;
                var perRank = experts / ranks;
                for (var l = 0; l < layers; l++)
                {
                    ulong total = 0, max = 0;
                    for (var r = 0; r < ranks; r++)
                    {
                        ulong rank = 0;
                        foreach (var expertLoad in load.AsSpan((l * experts) + (r * perRank), perRank))
                        {
                            rank += expertLoad;
                        }

                        total += rank;
                        max = Math.Max(max, rank);
                    }

                    var mean = total / (double)ranks;
                    means += mean;
                    maxima += max;
                    min = Math.Min(min, max == 0 ? 1.0 : mean / max);
                }

                return (maxima == 0 ? 1.0 : means / maxima, min);
            }

            Span<int> Rank(ReadOnlySpan<ulong> row, int[] order, bool descending)
            {
                for (var e = 0; e < order.Length; e++)
                {
                    order[e] = e;
                }

                // Ties as the summary's hottest (the last expert) and coldest (the first), so position 1 is that expert.
                var values = row.ToArray();
                Array.Sort(order, (a, b) => values[a] != values[b]
                    ? (descending ? values[b].CompareTo(values[a]) : values[a].CompareTo(values[b]))
                    : (descending ? b.CompareTo(a) : a.CompareTo(b)));
                return order.AsSpan(0, topExperts);
            }
        }
    }
}
