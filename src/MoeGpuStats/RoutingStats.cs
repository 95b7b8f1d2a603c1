using System.Text.Json.Serialization;
using ILGPU;
using ILGPU.Runtime;
using Microsoft.Extensions.Logging;
using MoeGpuStats.Collections;
using MoeGpuStats.Device;
using MoeGpuStats.Engines;
using MoeGpuStats.Serialization;

namespace MoeGpuStats;

/// <summary>
/// Running statistics over a Mixture-of-Experts router's decisions: tokens per expert, utilization,
/// load variance, capacity, dropped tokens, losses and latency. The C# port of the seed's
/// <c>RoutingStats</c>, with its API and numbers, backed by either engine: managed memory
/// (<c>new RoutingStats()</c>, as in the seed) or an ILGPU accelerator (<see cref="OnDevice(Accelerator, RoutingStatsOptions?)"/>,
/// <see cref="Create"/>). On a device engine, a record of ids already on the device does not wait for it, while a
/// record of host ids or of a <see cref="RoutingDecision"/> copies them to the device and waits for that copy (and the
/// stream's work queued before it); each read synchronizes once and copies back only what it returns (use
/// <see cref="Snapshot"/> to read many values).
/// </summary>
/// <remarks>
/// Threads: on a device engine every record, read, reset and snapshot holds the engine's lock, and a
/// model's layer reads a copy staged under the model's lock (the copy back waits with it released), so
/// one instance may be shared between threads.
/// On the managed engine, records, <see cref="Reset"/>, <see cref="Snapshot"/> and the scalar totals
/// (the counts such as <see cref="TotalTokens"/>, the loss averages and <see cref="RoutingEfficiency"/>) hold
/// its lock: records from several threads lose nothing, and a snapshot or a total read on another thread
/// sees whole batches. Its other reads (the per-expert lists, <see cref="LoadVarianceHistory"/>,
/// the utilization and trend queries) read the live state without the lock
/// (a read that computes pending variances takes it for that, as it writes them) and can see a batch in
/// part: while another thread records, read them from a <see cref="Snapshot"/>.
/// Latencies are thread-safe on every engine (<see cref="RecordRoutingLatency"/>, <see cref="RoutingLatencyStats"/>).
/// Once disposed (for a model's layer, once the model is; on a device, once its accelerator or stream is), every
/// record, read, reset and snapshot throws <see cref="ObjectDisposedException"/> on one line naming the object.
/// The per-expert lists and <see cref="LoadVarianceHistory"/> are read-only: an index outside one throws
/// <see cref="ArgumentOutOfRangeException"/> (<c>index is 8; give 0 to 7 (8 experts).</c>). On the managed engine
/// they are live views, so a list held across a record shows it (a per-expert list until the expert count changes or
/// a reset); on a device engine and a model's layer each read is a copy of one moment's, as
/// <see cref="CapacityStats"/> is on every engine: take a <see cref="Snapshot"/> for values that stay put on any engine.
/// </remarks>
[JsonConverter(typeof(RoutingStatsJsonConverter))]
public sealed partial class RoutingStats : IDisposable
{
    /// <summary>The variable that overrides <see cref="Create"/>'s choice: <c>cuda</c>, <c>opencl</c>, <c>cpu</c> or <c>managed</c>.</summary>
    public const string AcceleratorVariable = "MOEGS_ACCELERATOR";

    /// <summary>The values <see cref="AcceleratorVariable"/> takes, the best accelerator first: <c>cuda</c>, <c>opencl</c>, <c>cpu</c> (ILGPU's CPU accelerator), <c>managed</c>.</summary>
    public static IReadOnlyList<string> AcceleratorNames { get; } = Array.AsReadOnly(Device.AcceleratorSelection.Names);

    private readonly RoutingStatsEngine _engine;
    private readonly LatencyStats _latency = new();
    private bool _disposed;

    // The views of the engine's per-expert arrays last handed out: a reading of the same array allocates nothing.
    private ReadOnlyArray<float>? _utilizationView;
    private ReadOnlyArray<float>? _decayedView;
    private ReadOnlyArray<ulong>? _tokenCountsView;
    private ReadOnlyArray<float>? _varianceView;

    /// <summary>Creates empty statistics on the managed engine, as the seed's <c>RoutingStats::new</c>.</summary>
    public RoutingStats()
        : this(new RoutingStatsOptions())
    {
    }

    /// <summary>Creates empty statistics on the managed engine with <paramref name="options"/>.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public RoutingStats(RoutingStatsOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _engine = new ManagedRoutingEngine(options);
    }

    internal RoutingStats(RoutingStatsEngine engine) => _engine = engine;

    /// <summary>
    /// Creates statistics kept on <paramref name="accelerator"/> (CUDA, OpenCL or ILGPU's CPU
    /// accelerator). The caller keeps ownership of the accelerator.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range, or <see cref="RoutingStatsOptions.Experts"/> exceeds <see cref="RoutingStatsOptions.MaxDeviceExperts"/> (4,096); the exception names the option.</exception>
    /// <exception cref="ArgumentException"><paramref name="accelerator"/> was disposed.</exception>
    /// <exception cref="InsufficientMemoryException">The device could not allocate the state; the message gives the size.</exception>
    public static RoutingStats OnDevice(Accelerator accelerator, RoutingStatsOptions? options = null) =>
        new(new DeviceRoutingEngine(new DeviceRoutingStats(accelerator, options)));

    /// <summary>
    /// Puts the seed's API over an existing device engine (for example one on a stream the caller
    /// made). The returned statistics own <paramref name="device"/> and dispose it.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="device"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="device"/> was disposed (or its accelerator or stream): the message says which.</exception>
    public static RoutingStats OnDevice(DeviceRoutingStats device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (device.Gone() is { } gone)
        {
            throw Disposed.ArgumentError(nameof(device), gone);
        }

        return new(new DeviceRoutingEngine(device));
    }

    /// <summary>
    /// Creates statistics on the best engine present: CUDA, then OpenCL, then the managed engine.
    /// The variable <c>MOEGS_ACCELERATOR</c> (<c>cuda</c>, <c>opencl</c>, <c>cpu</c>, <c>managed</c>)
    /// overrides the choice; <c>cpu</c> is ILGPU's CPU accelerator. The choice is logged once. A program that
    /// cannot generate code (native AOT; PublishAot) gets the managed engine: ILGPU compiles its kernels at run time.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range, or, where an accelerator is chosen, <see cref="RoutingStatsOptions.Experts"/> exceeds <see cref="RoutingStatsOptions.MaxDeviceExperts"/> (4,096); the exception names the option.</exception>
    /// <exception cref="InvalidOperationException">The variable names an accelerator that is not present or that this program cannot run (no code generation), or an unknown value.</exception>
    /// <exception cref="InsufficientMemoryException">The chosen accelerator could not allocate the state; the message gives the size.</exception>
    public static RoutingStats Create(RoutingStatsOptions? options = null, ILogger? logger = null)
    {
        options ??= new RoutingStatsOptions();
        options.Validate();
        var stats = AcceleratorSelection.Create(Environment.GetEnvironmentVariable(AcceleratorVariable), options, logger);
        if (logger is not null)
        {
            Log.EngineSelected(logger, stats._engine.Name, stats.DeviceName);
        }

        return stats;
    }

    /// <summary>
    /// The engine underneath, for logs: <c>managed</c>, <c>cpu</c>, <c>cuda</c> or <c>opencl</c>; a model's
    /// layer (<see cref="ModelRoutingStats.Layer"/>) reports its model's <see cref="ModelRoutingStats.Backend"/>.
    /// </summary>
    public string Backend => _engine.Name;

    /// <summary>
    /// The accelerator's name on a device engine, <c>managed</c> otherwise; a model's layer reports its
    /// model's <see cref="ModelRoutingStats.DeviceName"/>.
    /// </summary>
    public string DeviceName => _engine.DeviceName;

    /// <summary>The options these statistics were made with.</summary>
    public RoutingStatsOptions Options => _engine.Options;

    /// <summary>Batches recorded.</summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public ulong TotalRoutings => Engine.Totals.TotalRoutings;

    /// <summary>Tokens recorded; from top-k ids, padded tokens (all k ids −1) are not tokens.</summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public ulong TotalTokens => Engine.Totals.TotalTokens;

    /// <summary>
    /// Dropped tokens as callers reported them (<see cref="RoutingDecision.TokensDropped"/>, or the
    /// <c>tokensDropped</c> of a record of ids), at most a batch's real tokens: padded rows are not
    /// tokens, so a record's drops beyond its rows that are not padding count as those rows, on every
    /// engine (a device engine learns the padding on the device and cannot refuse them). A capacity drops
    /// token-expert slots, not whole tokens: those are <see cref="SlotsDropped"/>, and do not count here.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public ulong TokensDropped => Engine.Totals.TokensDropped;

    /// <summary>
    /// The routed units <see cref="RoutingEfficiency"/> is a share of: for records of top-k ids, the
    /// token-expert slots sent to a valid expert (−1 and invalid ids excluded); for a
    /// <see cref="RoutingDecision"/>, its tokens, the seed's unit. Not in the seed.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public ulong RoutedSlots => Engine.Totals.RoutedSlots;

    /// <summary>
    /// Of <see cref="RoutedSlots"/>, those dropped: slots beyond <see cref="RoutingStatsOptions.ExpertCapacity"/>
    /// (<c>sum over experts of max(0, count − capacity)</c>) for ids recorded with a capacity; for ids without one, k
    /// per reported dropped token, at most the batch's routed slots; a decision's dropped tokens. Not in the seed.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public ulong SlotsDropped => Engine.Totals.SlotsDropped;

    /// <summary>Top-k ids outside <c>[0, E)</c> seen when recording from ids, other than −1 (an empty slot); not in the seed.</summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public ulong InvalidExpertIds => Engine.Totals.InvalidExpertIds;

    /// <summary>
    /// Per expert, the mean over batches of <c>count / tokens</c> (the seed's cumulative mean; with top-k
    /// it sums to about k). Restarts when the expert count changes, still divided by every batch, as the
    /// seed's <c>alpha = 1 / total_routings</c> does. Kept as an f64 sum, so it does not stall on long
    /// runs as the seed's f32 update does.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public IReadOnlyList<float> ExpertUtilization => ReadOnlyArray<float>.Of(Engine.ExpertUtilization, "expert", ref _utilizationView);

    /// <summary>Per expert, <c>count / tokens</c> decayed by <see cref="RoutingStatsOptions.UtilizationDecay"/> from 0; empty when that is not set.</summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public IReadOnlyList<float> DecayedExpertUtilization => ReadOnlyArray<float>.Of(
        Engine.DecayedExpertUtilization, "expert", ref _decayedView, Options.UtilizationDecay is null ? "there is none without RoutingStatsOptions.UtilizationDecay." : null);

    /// <summary>Mean of the load-balancing loss over batches (an f64 sum over the batches, as f32).</summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public float AverageLoadBalanceLoss => Engine.Totals.AverageLoadBalanceLoss;

    /// <summary>Mean of the router z-loss over batches (an f64 sum over the batches, as f32).</summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public float AverageRouterZLoss => Engine.Totals.AverageRouterZLoss;

    /// <summary>
    /// Percentage of routed units kept: <c>(RoutedSlots − SlotsDropped) / RoutedSlots × 100</c>, token-expert
    /// slots for top-k ids and tokens for decisions (the seed's <c>routing_efficiency</c>); 0 until something is
    /// routed, and unchanged by a batch that routes nothing.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public float RoutingEfficiency => Engine.Totals.RoutingEfficiency;

    /// <summary>Per expert, slots received over all batches. Restarts when the expert count changes.</summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public IReadOnlyList<ulong> ExpertTokenCounts => ReadOnlyArray<ulong>.Of(Engine.ExpertTokenCounts, "expert", ref _tokenCountsView);

    /// <summary>
    /// Routing latency statistics, kept on the host whatever the engine: the statistics' own, as the seed's, so that
    /// repeated percentile queries read a sorted window kept up to date instead of sorting a copy. Thread-safe:
    /// latencies may be recorded and read from any threads at once, and none is lost. Record them with
    /// <see cref="RecordRoutingLatency"/>: one recorded through this object's own <see cref="LatencyStats.RecordLatency"/>
    /// (the seed's way) is kept, but reaches no <see cref="Telemetry.RoutingStatsMetrics"/> histogram. A model's layer,
    /// which keeps no latencies, gives an empty copy.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public LatencyStats RoutingLatencyStats => Engine.IsReadOnly ? _latency.Copy() : _latency;

    /// <summary>
    /// The newest 1,000 per-batch load variances, oldest first: each the population variance of one batch's
    /// per-expert slot counts, in slots² (the seed's <c>calculate_load_variance</c>; for a <see cref="RoutingDecision"/>,
    /// of its <see cref="RoutingDecision.ExpertCapacities"/>).
    /// </summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public IReadOnlyList<float> LoadVarianceHistory => ReadOnlyArray<float>.Of(Engine.LoadVarianceHistory, "batch", ref _varianceView);

    /// <summary>
    /// Slot capacity statistics: a copy of one moment's, taken when asked for (on a device engine, read back). The
    /// seed hands out its own object, whose public <c>update</c> then changes the statistics without a batch; a
    /// <see cref="CapacityStats.Update"/> on this copy changes only the copy.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public CapacityStats CapacityStats => Engine.Capacity;

    /// <summary>Why these statistics cannot be used (disposed; a model's layer, its model; on a device, its accelerator or stream), or null where they can.</summary>
    internal ObjectDisposedException? Gone() => Disposed.Of(() => _ = Engine);

    /// <summary>Why these statistics take no record (a model's layer), or null where they do.</summary>
    internal InvalidOperationException? RecordRefusal() => Engine.RecordRefusal();

    /// <summary>The engine, once these statistics (and a layer's model, and a device's accelerator) are known usable: every call checks that before its arguments.</summary>
    private RoutingStatsEngine Engine
    {
        get
        {
            Disposed.ThrowIf(_disposed, nameof(RoutingStats));
            _engine.ThrowIfDisposed();
            return _engine;
        }
    }

    /// <summary>Folds one batch in, as the seed's <c>record_routing</c>.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="routingDecision"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// No experts, more than <see cref="RoutingStatsOptions.MaxExperts"/> (on a device engine, more than
    /// <see cref="RoutingStatsOptions.MaxDeviceExperts"/>, 4,096), a negative count, negative tokens,
    /// <c>TokensDropped</c> outside [0, TotalTokens], a non-finite loss, or <c>ExpertCapacities</c> that change while
    /// they are read (another number of experts, a negative count). The statistics are left unchanged.
    /// </exception>
    /// <exception cref="InvalidOperationException">
    /// These are a model's layer (<see cref="ModelRoutingStats.Layer"/>), which is read-only: record through the model; or
    /// the batch would take a count past 2^63 − 1, the most a snapshot holds (statistics read from a file near it).
    /// </exception>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public void RecordRouting(RoutingDecision routingDecision)
    {
        var engine = Engine;
        var experts = RoutingDecisionValidator.Validate(routingDecision, nameof(routingDecision));
        engine.Record(routingDecision, experts);
    }

    /// <summary>
    /// Folds one batch of the router's top-k ids (<c>[tokens, topK]</c>) in. On a device engine the ids
    /// stay on the device and the call returns without waiting; on the managed engine they are copied
    /// to the host. The expert count is <see cref="RoutingStatsOptions.Experts"/>, else the current one.
    /// An id of −1 is an empty slot, neither counted nor invalid, and a token whose k ids are all −1 is
    /// padding, not a token; other ids outside <c>[0, E)</c> count in <see cref="InvalidExpertIds"/>. With
    /// <see cref="RoutingStatsOptions.ExpertCapacity"/> set, slots beyond it are dropped (<see cref="SlotsDropped"/>).
    /// A call that throws leaves the statistics as they were.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="topK"/> is below 1 or <paramref name="tokens"/> negative.</exception>
    /// <exception cref="ArgumentException">
    /// Too few ids, more than 2^31 − 1 (<c>tokens × topK</c>), a view on another accelerator or of a disposed buffer, a
    /// non-finite loss, <paramref name="tokensDropped"/> outside [0, tokens] or non-zero while a capacity derives the drops.
    /// </exception>
    /// <exception cref="InvalidOperationException">
    /// No expert count is known, these are a model's layer (<see cref="ModelRoutingStats.Layer"/>), which is read-only, or
    /// the batch would take a count past 2^63 − 1, the most a snapshot holds (statistics read from a file near it).
    /// </exception>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public void RecordRouting(ArrayView<int> topKExpertIds, int tokens, int topK, float loadBalanceLoss = 0f, float routerZLoss = 0f, int tokensDropped = 0)
    {
        var engine = Engine;
        RecordChecks.Validate(engine.Options, topKExpertIds.IsValid ? topKExpertIds.Length : 0, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss, nameof(topKExpertIds));
        ViewAccelerator.CheckAlive(topKExpertIds, nameof(topKExpertIds));
        engine.Record(topKExpertIds, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss);
    }

    /// <summary>
    /// Folds one batch of top-k ids that is on the host in, as the view overload does; on a device engine the ids are
    /// copied to the device first, and the call waits for that copy (the caller may reuse the span once it returns).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="topK"/> is below 1 or <paramref name="tokens"/> negative.</exception>
    /// <exception cref="ArgumentException">As the view overload: the ids, a loss or <paramref name="tokensDropped"/>.</exception>
    /// <exception cref="InvalidOperationException">
    /// No expert count is known, these are a model's layer (<see cref="ModelRoutingStats.Layer"/>), which is read-only, or
    /// the batch would take a count past 2^63 − 1, the most a snapshot holds (statistics read from a file near it).
    /// </exception>
    /// <exception cref="InsufficientMemoryException">On a device engine, the device could not hold the batch's ids (the buffer they are copied into grows to the largest batch).</exception>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public void RecordRouting(ReadOnlySpan<int> topKExpertIds, int tokens, int topK, float loadBalanceLoss = 0f, float routerZLoss = 0f, int tokensDropped = 0)
    {
        var engine = Engine;
        RecordChecks.Validate(engine.Options, topKExpertIds.Length, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss, nameof(topKExpertIds));
        engine.Record(topKExpertIds, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss);
    }

    /// <summary>
    /// Records one routing latency (milliseconds in every statistic). Thread-safe on either engine, also
    /// concurrently with records, reads and <see cref="Snapshot"/> on a device engine.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="latency"/> is negative.</exception>
    /// <exception cref="InvalidOperationException">
    /// These are a model's layer (<see cref="ModelRoutingStats.Layer"/>), which takes no latencies: the model keeps none; or
    /// the measurements are at 2^63 − 1, the most a snapshot holds (statistics read from a file near it).
    /// </exception>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public void RecordRoutingLatency(TimeSpan latency)
    {
        if (Engine.RecordRefusal() is { } refused)
        {
            throw refused;
        }

        _latency.RecordLatency(latency);
        LatencyRecorded?.Invoke(LatencyStats.ToMilliseconds(latency));
    }

    /// <summary>
    /// Raised after each <see cref="RecordRoutingLatency"/> with the latency in milliseconds (telemetry hooks
    /// here), on the recording thread: handlers must be thread-safe.
    /// </summary>
    internal event Action<double>? LatencyRecorded;

    /// <summary>
    /// The coefficient of variation of <see cref="ExpertUtilization"/>: its population standard deviation over its
    /// mean (the seed's <c>utilization_cv</c>); 0 when empty or the mean is not positive.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public float UtilizationCv() => Engine.UtilizationCv();

    /// <summary>The expert with the highest utilization (the last one on ties), or null before the first record.</summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public (int Index, float Utilization)? MostUtilizedExpert()
    {
        var query = Engine.QueryUtilization();
        return query.Experts == 0 ? null : (query.MostUtilized, query.MostUtilization);
    }

    /// <summary>The expert with the lowest utilization (the first one on ties), or null before the first record.</summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public (int Index, float Utilization)? LeastUtilizedExpert()
    {
        var query = Engine.QueryUtilization();
        return query.Experts == 0 ? null : (query.LeastUtilized, query.LeastUtilization);
    }

    /// <summary>
    /// The seed's summary: <c>mean_utilization</c>, <c>min_utilization</c>, <c>max_utilization</c> (fractions of a
    /// batch's tokens, as <see cref="ExpertUtilization"/>: they sum to about k over the experts) and
    /// <c>utilization_cv</c> (unitless; these four when there are experts), <c>routing_efficiency</c> (a percentage,
    /// 0 to 100, as <see cref="RoutingEfficiency"/>), <c>average_load_balance_loss</c>, <c>average_router_z_loss</c>.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public IReadOnlyDictionary<string, float> UtilizationSummary()
    {
        var (query, totals) = Engine.QuerySummary();
        var summary = new Dictionary<string, float>(7);
        if (query.Experts > 0)
        {
            summary["mean_utilization"] = query.Mean;
            summary["min_utilization"] = query.Min;
            summary["max_utilization"] = query.Max;
            summary["utilization_cv"] = query.CoefficientOfVariation;
        }

        summary["routing_efficiency"] = totals.RoutingEfficiency;
        summary["average_load_balance_loss"] = totals.AverageLoadBalanceLoss;
        summary["average_router_z_loss"] = totals.AverageRouterZLoss;
        return summary;
    }

    /// <summary>
    /// The seed's <c>recent_load_variance_trend</c>: the least-squares slope of the last <paramref name="window"/> load
    /// variances (<see cref="LoadVarianceHistory"/>) against their batch index, in slots² per batch; a window longer than
    /// the history (at most 1,000) takes all of it, as the seed does; 0 with fewer than 2 variances.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="window"/> is negative.</exception>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public float RecentLoadVarianceTrend(int window)
    {
        var engine = Engine;
        OutOfRange.ThrowIfNegative(window);
        return engine.VarianceTrend(window);
    }

    /// <summary>Clears every statistic, latency included; the engine and options stay.</summary>
    /// <exception cref="InvalidOperationException">These are a model's layer (<see cref="ModelRoutingStats.Layer"/>), which is read-only: reset the model.</exception>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public void Reset()
    {
        Engine.Reset();
        _latency.Reset();
    }

    /// <summary>
    /// How many recordings these statistics combine: 1 for statistics recorded here or read from one
    /// recording's snapshot; for a <see cref="Merge"/>, the sum of its parts' (a merge of merges counts
    /// every rank). A merge's batches are its parts' summed and its variance history their histories
    /// joined end to end, no span of time: reports say so from this. Snapshots keep it
    /// (<c>merged_parts</c>, written above 1). Fixed for the object's life, so that every read agrees
    /// with every other thread's: <see cref="Reset"/> clears the statistics, not what they were made as.
    /// </summary>
    public int MergedParts { get; internal init; } = 1;

    /// <summary>Tokens, batches, efficiency and mean latency together.</summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public ThroughputStats GetThroughputStats()
    {
        var totals = Engine.Totals;
        return new ThroughputStats(
            totals.TotalTokens,
            totals.TotalRoutings,
            totals.TotalRoutings > 0 ? (float)totals.TotalTokens / totals.TotalRoutings : 0f,
            totals.RoutingEfficiency,
            _latency.AverageLatency());
    }

    /// <summary>
    /// A managed copy of the whole state (on a device engine: the state staged on the device and copied back
    /// at once, one wait for the queued records), which answers every query locally and continues independently.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The statistics (or, for a model's layer, the model) were disposed.</exception>
    public RoutingStats Snapshot()
    {
        var copy = new RoutingStats(Engine.Snapshot()) { MergedParts = MergedParts };
        _latency.CopyTo(copy._latency);
        return copy;
    }

    /// <summary>
    /// Combines the statistics of several ranks or replicas that route to the same E experts into one
    /// managed <see cref="RoutingStats"/>. Exact: counts, totals, dropped and invalid ids, capacity
    /// totals (the slots available and used stopping at 2^63 − 1, as a record's do), latency count/total/min/max. Weighted by each part's batches (exact up to rounding):
    /// utilization and loss averages (cumulative means over batches). Approximate, because the parts'
    /// batches interleave in an order no snapshot records: the capacity EMA (batch-weighted mean of the
    /// parts' EMAs), the variance history and the latency window (the parts' windows concatenated in
    /// the order given, newest 1,000 kept, so percentiles see a window mixing ranks). Peak utilization
    /// is the maximum. The decayed utilization is not merged. <see cref="MergedParts"/> is the parts' summed.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="parts"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// No parts, a null part, one object given twice (or two handles to one state: a model's layer read twice through
    /// <see cref="ModelRoutingStats.Layer"/>), parts with different expert counts or capacities, a merged count
    /// other than the slots available or used above 2^63 − 1 (the most a snapshot file holds), a merged total latency beyond a double's range, or
    /// merged parts above <see cref="MaxMergedParts"/>.
    /// </exception>
    /// <exception cref="ObjectDisposedException">A part (or, for a model's layer, its model) was disposed; the message names it (<c>parts[3]</c>).</exception>
    public static RoutingStats Merge(IEnumerable<RoutingStats> parts) =>
        RoutingStatsMerge.Merge(MergeParts.Collect(parts, nameof(parts), part => part.Gone(), part => part._engine.State));

    /// <summary>The most recordings one merge combines, <see cref="MergedParts"/>'s bound: far above any job's ranks.</summary>
    public const int MaxMergedParts = 1 << 20;

    /// <summary>Frees the engine's device memory (nothing on the managed engine).</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _engine.Dispose();
    }

    internal RoutingState ExportState() => Engine.Snapshot().Export();

    /// <param name="options">The statistics' options.</param>
    /// <param name="state">The state to start from, validated by the caller.</param>
    /// <param name="mergedParts">The recordings the state combines (<see cref="MergedParts"/>).</param>
    internal static RoutingStats FromState(RoutingStatsOptions options, RoutingState state, int mergedParts = 1) =>
        new(new ManagedRoutingEngine(options, state)) { MergedParts = mergedParts };

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Routing statistics run on the {Engine} engine ({Device}).", EventName = "EngineSelected")]
        public static partial void EngineSelected(ILogger logger, string engine, string device);
    }
}
