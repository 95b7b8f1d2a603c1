using System.Text.Json.Serialization;
using ILGPU;
using ILGPU.Runtime;
using Microsoft.Extensions.Logging;
using MoeGpuStats.Device;
using MoeGpuStats.Engines;
using MoeGpuStats.Serialization;
using static System.FormattableString;

namespace MoeGpuStats;

/// <summary>
/// Routing statistics of a whole Mixture-of-Experts model: every MoE layer's statistics (each a
/// <see cref="RoutingStats"/> with the seed's API, <see cref="Layer"/>), the sliding window of
/// expert load that feeds rebalancing (<see cref="WindowLoad()"/>, the input of DeepSeek's EPLB), and
/// the model's balance (<see cref="Summary()"/>). On a device engine, a step is one kernel launch
/// for all layers, which returns without waiting and needs nothing from earlier launches, and the
/// device counts the steps: a launch a CUDA graph replays records as a <c>RecordStep</c> does (README
/// says how to order the reads after it). A summary or a window load waits on the host once, for one
/// copy back of what it returns (the step count with it), with the model's lock released: a step recorded
/// on another thread meanwhile does not wait for the queue ahead of the copy (the read waits for the stream
/// first, then copies: a step may still wait for the short copy itself), and comes after the reading (a
/// placement that differs from the last one given is copied to the device first: one more wait). Recording ids on the device never waits; a step of
/// host ids copies them to the device and waits for that copy.
/// </summary>
/// <remarks>
/// Layer l equals a <see cref="RoutingStats"/> with the model's <see cref="ModelRoutingStatsOptions.Experts"/>,
/// <see cref="ModelRoutingStatsOptions.ExpertCapacity"/> and <see cref="ModelRoutingStatsOptions.UtilizationDecay"/>
/// fed layer l's ids alone, on every engine, to the bit. Thread-safe: calls are serialized, but for a device
/// engine's copies back, which a step or reset on another thread does not wait for. <c>JsonSerializer</c> writes
/// and reads the snapshot's JSON (a model read back is on the managed engine); a JSON <c>null</c> reads as null,
/// as for any class.
/// </remarks>
[JsonConverter(typeof(ModelRoutingStatsJsonConverter))]
public sealed partial class ModelRoutingStats : IDisposable
{
    private readonly ModelRoutingEngine _engine;
    private bool _disposed;

    /// <summary>Creates empty statistics on the managed engine.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range; the message names it.</exception>
    /// <exception cref="InsufficientMemoryException">
    /// The window could not be allocated (about <c>4 × Window × Layers × (Experts + 17)</c> bytes on this engine, <c>Experts + 1</c> up to 32 experts, as
    /// <see cref="ModelRoutingStatsOptions.DeviceStateBytes"/> says); the message gives the size.
    /// </exception>
    public ModelRoutingStats(ModelRoutingStatsOptions options)
        : this(new ManagedModelEngine(Validated(options)))
    {
    }

    internal ModelRoutingStats(ModelRoutingEngine engine) => _engine = engine;

    /// <summary>Creates statistics kept on <paramref name="accelerator"/> (CUDA, OpenCL or ILGPU's CPU accelerator), which the caller keeps owning.</summary>
    /// <param name="accelerator">Where the state lives.</param>
    /// <param name="options">The model's shape.</param>
    /// <param name="stream">The stream steps and reads are ordered on (the producer's, so a step follows the router's kernels without a wait); null for a stream of its own.</param>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> or <paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    /// <exception cref="ArgumentException">The accelerator or the stream was disposed, or the stream belongs to another accelerator.</exception>
    /// <exception cref="InsufficientMemoryException">The device could not allocate the state; the message gives the size.</exception>
    public static ModelRoutingStats OnDevice(Accelerator accelerator, ModelRoutingStatsOptions options, AcceleratorStream? stream = null)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        return new(new DeviceModelEngine(accelerator, Validated(options), stream));
    }

    /// <summary>
    /// Creates statistics on <paramref name="accelerator"/> that hold a copy of <paramref name="source"/>'s and record on
    /// from them as <paramref name="source"/> would, to the bit: a checkpoint read back with
    /// <see cref="RoutingStatsFile.LoadModel"/> (saved with <see cref="RoutingStatsFile.Save(ModelRoutingStats, string, bool)"/>
    /// and the window ring) resumes a run on a device. <paramref name="source"/> is read once, as <see cref="Snapshot"/>
    /// reads it, and left as it was; the copy has its <see cref="Options"/> and <see cref="MergedParts"/>.
    /// </summary>
    /// <param name="accelerator">Where the copy lives, which the caller keeps owning.</param>
    /// <param name="source">The statistics to copy, on any engine.</param>
    /// <param name="stream">As <see cref="OnDevice(Accelerator, ModelRoutingStatsOptions, AcceleratorStream?)"/>'s.</param>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> or <paramref name="source"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// The accelerator or the stream was disposed, or the stream belongs to another accelerator; or <paramref name="source"/>
    /// keeps its window's load but not its ring of steps (read from a file without the ring, or a merge of such a model),
    /// or is a merge whose window holds fewer steps than <c>min(window, steps)</c> (a device model's window holds that many);
    /// the message says which.
    /// </exception>
    /// <exception cref="ObjectDisposedException"><paramref name="source"/> was disposed.</exception>
    /// <exception cref="InsufficientMemoryException">The device could not allocate the state (or, for a source on a device, the ring's copy); the message gives the size.</exception>
    public static ModelRoutingStats OnDevice(Accelerator accelerator, ModelRoutingStats source, AcceleratorStream? stream = null)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentNullException.ThrowIfNull(source);
        var state = source.Engine.Export(withRing: true);
        return DeviceCopy(accelerator, source, state, DeviceCopyRefusal(state, source.Options.Window), stream, owned: null);
    }

    /// <summary>
    /// Creates statistics on the best engine present, as <see cref="Create(ModelRoutingStatsOptions, ILogger?)"/> chooses it,
    /// that hold a copy of <paramref name="source"/>'s and record on from them as
    /// <see cref="OnDevice(Accelerator, ModelRoutingStats, AcceleratorStream?)"/>'s copy does: a checkpoint read back with
    /// <see cref="RoutingStatsFile.LoadModel"/> resumes on the GPU where there is one. A source no device model can hold
    /// (without its window ring, or a merge of a short window) is copied onto the managed engine, unless
    /// <c>MOEGS_ACCELERATOR</c> names a device. <paramref name="source"/> is read once and left as it was.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="source"/> is null.</exception>
    /// <exception cref="ArgumentException"><c>MOEGS_ACCELERATOR</c> names a device, and no device model can hold <paramref name="source"/>; the message says why.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="source"/> was disposed.</exception>
    /// <exception cref="InvalidOperationException">As <see cref="Create(ModelRoutingStatsOptions, ILogger?)"/>'s, for the variable.</exception>
    /// <exception cref="InsufficientMemoryException">The state could not be allocated; the message gives the size.</exception>
    public static ModelRoutingStats Create(ModelRoutingStats source, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        var state = source.Engine.Export(withRing: true);
        var options = source.Options;
        var refusal = DeviceCopyRefusal(state, options.Window);
        var requested = Environment.GetEnvironmentVariable(RoutingStats.AcceleratorVariable);
        var stats = AcceleratorSelection.Choose<ModelRoutingStats>(
            refusal is null || !string.IsNullOrWhiteSpace(requested) ? requested : "managed",
            (accelerator, owned) => DeviceCopy(accelerator, source, state, refusal, stream: null, owned),
            () => new(new ManagedModelEngine(options, state)) { MergedParts = source.MergedParts },
            AcceleratorSelection.ModelBestFirst);
        if (logger is not null)
        {
            Log.EngineSelected(logger, stats.Backend, stats._engine.DeviceName);
        }

        return stats;
    }

    /// <summary>
    /// The copy of <paramref name="source"/>'s exported <paramref name="state"/> on <paramref name="accelerator"/>, or the
    /// <paramref name="refusal"/> (<see cref="DeviceCopyRefusal(ModelState, int)"/>'s) as an argument's.
    /// </summary>
    private static ModelRoutingStats DeviceCopy(
        Accelerator accelerator, ModelRoutingStats source, ModelState state, string? refusal, AcceleratorStream? stream, IDisposable? owned) =>
        refusal is null
            ? new(new DeviceModelEngine(accelerator, source.Options, stream, owned, state: state)) { MergedParts = source.MergedParts }
            : throw new ArgumentException(refusal, nameof(source));

    /// <summary>Why no device model can hold this model's state, or null where one can (a read of the state without its ring).</summary>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    internal string? DeviceCopyRefusal() => DeviceCopyRefusal(KeepsWindowRing, Engine.Export(withRing: false), Options.Window);

    /// <summary>Why no device model can hold <paramref name="state"/> (an engine's export with its ring, where it has one), or null where one can.</summary>
    internal static string? DeviceCopyRefusal(ModelState state, int window) => DeviceCopyRefusal(state.WindowRing is not null, state, window);

    /// <summary>
    /// The most a count of a state copied onto a device may hold, 2^62: a device model does not check its steps against
    /// the 2^63 − 1 a count may reach (that would read the device at every step), so it takes a state with at least half
    /// the range left, as many slots as a model started empty could record in 2^31 steps of 2^31 ids.
    /// </summary>
    internal const ulong MostDeviceCopyCount = 1UL << 62;

    /// <summary>
    /// Why no device model can hold <paramref name="state"/>, with or without its window ring (<paramref name="keepsRing"/>):
    /// no ring, a merge's window shorter than <c>min(window, steps)</c>, or a count above <see cref="MostDeviceCopyCount"/>;
    /// null where one can.
    /// </summary>
    private static string? DeviceCopyRefusal(bool keepsRing, ModelState state, int window)
    {
        if (!keepsRing)
        {
            return "The model keeps its window's load but not its ring of steps (read from a file saved without the ring, or a merge of such a model), so it cannot record on: copy a model read from a checkpoint (RoutingStatsFile.Save with withWindowRing: true) or one that recorded its steps.";
        }

        if ((ulong)state.WindowSteps != Math.Min(state.Steps, (ulong)window))
        {
            return Invariant($"The model is a merge whose window holds {Plural.Of(state.WindowSteps, "step")} (its longest part's) of its {state.Steps:N0}; a device model's window holds min(window = {window:N0}, steps) steps: copy a merge of parts whose windows are full, or keep this one on the managed engine.");
        }

        for (var l = 0; l < state.Layers.Length; l++)
        {
            if (LargestCount(state.Layers[l]) is { Value: > MostDeviceCopyCount } largest)
            {
                return Invariant($"layers[{l}].{largest.Field} is {largest.Value:N0}, above 2^62 = {MostDeviceCopyCount:N0}: a device model does not check its steps against the 2^63 − 1 a count may reach, so it takes a state with half that range left; keep this one on the managed engine, which checks every step.");
            }
        }

        return null;
    }

    /// <summary>A layer's largest count and its field's name in a snapshot.</summary>
    private static (string Field, ulong Value) LargestCount(RoutingState layer) =>
        new (string Field, ulong Value)[]
        {
            ("total_routings", layer.TotalRoutings),
            ("total_tokens", layer.TotalTokens),
            ("tokens_dropped", layer.TokensDropped),
            ("invalid_expert_ids", layer.InvalidExpertIds),
            ("routed_slots", layer.RoutedSlots),
            ("slots_dropped", layer.SlotsDropped),
            ("capacity_stats.capacity_exceeded_count", layer.CapacityExceededCount),
            ("capacity_stats.total_capacity", layer.TotalCapacity),
            ("capacity_stats.total_used", layer.TotalUsed),
            ("expert_token_counts", layer.ExpertTokenCounts.Length == 0 ? 0 : layer.ExpertTokenCounts.Max()),
        }.MaxBy(count => count.Value);

    /// <summary>
    /// Creates statistics on the best engine present: CUDA, then managed; <c>MOEGS_ACCELERATOR</c> overrides the
    /// choice, which is logged once. Unlike <see cref="RoutingStats.Create"/> it takes OpenCL only when the variable
    /// names it: the model engine has run on OpenCL only on PoCL's CPU device, where its tests pass
    /// (docs/performance.md). A program that cannot generate code (native AOT; PublishAot)
    /// gets the managed engine: ILGPU compiles its kernels at run time.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    /// <exception cref="InvalidOperationException">The variable names an accelerator that is not present or that this program cannot run (no code generation), or an unknown value.</exception>
    /// <exception cref="InsufficientMemoryException">The state could not be allocated, on the chosen accelerator or (the window) on the managed engine; the message gives the size.</exception>
    public static ModelRoutingStats Create(ModelRoutingStatsOptions options, ILogger? logger = null)
    {
        Validated(options);
        var stats = AcceleratorSelection.Choose<ModelRoutingStats>(
            Environment.GetEnvironmentVariable(RoutingStats.AcceleratorVariable),
            (accelerator, owned) => new(new DeviceModelEngine(accelerator, options, stream: null, owned)),
            () => new(options),
            AcceleratorSelection.ModelBestFirst);
        if (logger is not null)
        {
            Log.EngineSelected(logger, stats.Backend, stats._engine.DeviceName);
        }

        return stats;
    }

    /// <summary>The engine: <c>managed</c>, <c>cpu</c>, <c>cuda</c> or <c>opencl</c>; it answers after <see cref="Dispose"/>, for logs, as <see cref="RoutingStats.Backend"/> does.</summary>
    public string Backend => _engine.Name;

    /// <summary>The accelerator's name, or <c>managed</c>, as <see cref="RoutingStats.DeviceName"/>; it answers after <see cref="Dispose"/>.</summary>
    public string DeviceName => _engine.DeviceName;

    /// <summary>The options the model was made with.</summary>
    public ModelRoutingStatsOptions Options => _engine.Options;

    /// <summary>MoE layers.</summary>
    public int Layers => _engine.Options.Layers;

    /// <summary>Experts per layer.</summary>
    public int Experts => _engine.Options.Experts;

    /// <summary>The stream a device engine orders steps and reads on; null on the managed engine.</summary>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    internal AcceleratorStream? DeviceStream => (Engine as DeviceModelEngine)?.Stream;

    private ModelRoutingEngine Engine
    {
        get
        {
            Disposed.ThrowIf(_disposed, nameof(ModelRoutingStats));
            return _engine;
        }
    }

    /// <summary>
    /// Records one forward pass of every layer's top-k ids on the device, without waiting for it.
    /// Token t's <paramref name="topK"/> ids in layer l lie side by side at <c>l × layerStride + t × tokenStride</c>
    /// in <paramref name="topKExpertIds"/>: <c>[layers, tokens, topK]</c> by default, a slice of a padded
    /// buffer, or <c>[tokens, layers, topK]</c> as SGLang's (and some vLLM versions') routed-experts buffers hold a step
    /// (layerStride = topK, tokenStride = layers × topK), read where they lie, without a copy.
    /// An id of −1 is an empty slot and a token of k −1 is padding, as <see cref="RoutingStats.RecordRouting(ArrayView{int}, int, int, float, float, int)"/>.
    /// </summary>
    /// <param name="topKExpertIds">The ids, on this model's accelerator.</param>
    /// <param name="tokens">Token rows per layer (the buffer's, under a CUDA graph).</param>
    /// <param name="topK">Experts per token, at least 1.</param>
    /// <param name="layerStride">Ids from one layer's first id to the next's; 0 for <c>tokens × tokenStride</c> (layers packed).</param>
    /// <param name="tokenStride">Ids from one token's first id to the next's in a layer, at least <paramref name="topK"/>; 0 for <paramref name="topK"/> (rows packed).</param>
    /// <param name="validTokens">A device int (a view of one): the rows that hold tokens (later rows are padding, as vLLM's unpadded count under CUDA graphs), clamped to <c>[0, tokens]</c> when read; default (or empty) for all rows.</param>
    /// <param name="loadBalanceLosses">The step's load-balancing loss per layer, <c>Layers</c> floats on the device; default (or empty) for zeros. A NaN or infinite loss counts as 0 on every engine (the host overload refuses one; a device engine never reads these on the host).</param>
    /// <param name="routerZLosses">The step's router z-loss per layer, <c>Layers</c> floats; default for zeros; a non-finite one counts as 0.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="topK"/> below 1, <paramref name="tokens"/>, <paramref name="layerStride"/> or <paramref name="tokenStride"/> negative.</exception>
    /// <exception cref="ArgumentException">
    /// The ids are too few for the layers at the strides, a token stride below <paramref name="topK"/>,
    /// strides that lay the layers neither one after another nor interleaved token by token (with rows
    /// packed: a layer stride below <c>tokens × topK</c>), strides whose step passes the range of long, more than
    /// 2^31 − 1 ids per layer, a view on another accelerator or of a disposed buffer, a loss view not <c>Layers</c> long, or a <paramref name="validTokens"/> view not one int long;
    /// on the managed engine (which copies a step's ids to the host), more than <see cref="Array.MaxLength"/>
    /// ids in all (<c>Layers × tokens × topK</c>), or strided or non-int ids spanning more than <see cref="Array.MaxLength"/>
    /// values from first to last (a layer's, or the step's where the layers interleave).
    /// The statistics are left unchanged.
    /// </exception>
    /// <exception cref="InvalidOperationException">
    /// The model was read from JSON other than a checkpoint, or is a merge or snapshot of one, and not reset since (it has no
    /// window ring to record into); or, on the managed engine, the step would take a layer's count past 2^63 − 1, the most a snapshot holds (the
    /// message names the layer and the count; no layer recorded).
    /// </exception>
    /// <exception cref="InsufficientMemoryException">
    /// A snapshot or merge, or a model read from JSON and reset, at its first step could not allocate its window's
    /// whole ring (it holds its window's steps alone until then); the message gives the size. The statistics are unchanged.
    /// </exception>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    public void RecordStep(
        ArrayView<int> topKExpertIds,
        int tokens,
        int topK,
        long layerStride = 0,
        ArrayView<int> validTokens = default,
        ArrayView<float> loadBalanceLosses = default,
        ArrayView<float> routerZLosses = default,
        long tokenStride = 0) =>
        RecordView(topKExpertIds, tokens, topK, layerStride, validTokens, loadBalanceLosses, routerZLosses, tokenStride);

    /// <summary>
    /// <see cref="RecordStep(ArrayView{int}, int, int, long, ArrayView{int}, ArrayView{float}, ArrayView{float}, long)"/>
    /// for int64 ids, as <c>torch.topk</c> returns them, read where they lie (no cast, no copy): an id
    /// outside int32's range counts as invalid, never as the expert its low bits name.
    /// </summary>
    /// <inheritdoc cref="RecordStep(ArrayView{int}, int, int, long, ArrayView{int}, ArrayView{float}, ArrayView{float}, long)" path="/param"/>
    /// <inheritdoc cref="RecordStep(ArrayView{int}, int, int, long, ArrayView{int}, ArrayView{float}, ArrayView{float}, long)" path="/exception"/>
    public void RecordStep(
        ArrayView<long> topKExpertIds,
        int tokens,
        int topK,
        long layerStride = 0,
        ArrayView<int> validTokens = default,
        ArrayView<float> loadBalanceLosses = default,
        ArrayView<float> routerZLosses = default,
        long tokenStride = 0) =>
        RecordView(topKExpertIds, tokens, topK, layerStride, validTokens, loadBalanceLosses, routerZLosses, tokenStride);

    /// <summary>
    /// <see cref="RecordStep(ArrayView{int}, int, int, long, ArrayView{int}, ArrayView{float}, ArrayView{float}, long)"/>
    /// for int16 ids, as vLLM's routed-experts capture keeps them, read where they lie.
    /// </summary>
    /// <inheritdoc cref="RecordStep(ArrayView{int}, int, int, long, ArrayView{int}, ArrayView{float}, ArrayView{float}, long)" path="/param"/>
    /// <inheritdoc cref="RecordStep(ArrayView{int}, int, int, long, ArrayView{int}, ArrayView{float}, ArrayView{float}, long)" path="/exception"/>
    public void RecordStep(
        ArrayView<short> topKExpertIds,
        int tokens,
        int topK,
        long layerStride = 0,
        ArrayView<int> validTokens = default,
        ArrayView<float> loadBalanceLosses = default,
        ArrayView<float> routerZLosses = default,
        long tokenStride = 0) =>
        RecordView(topKExpertIds, tokens, topK, layerStride, validTokens, loadBalanceLosses, routerZLosses, tokenStride);

    /// <summary>The device-view overloads' checks and record, for ids of type int, long or short.</summary>
    private void RecordView<T>(
        ArrayView<T> topKExpertIds, int tokens, int topK, long layerStride, ArrayView<int> validTokens, ArrayView<float> loadBalanceLosses, ArrayView<float> routerZLosses, long tokenStride)
        where T : unmanaged
    {
        var engine = Engine;
        var (layers, rows) = ModelStepChecks.Validate(engine.Options, topKExpertIds.IsValid ? topKExpertIds.Length : 0, tokens, topK, layerStride, tokenStride, nameof(topKExpertIds));
        ModelStepChecks.ValidateViews(engine, topKExpertIds, validTokens, loadBalanceLosses, routerZLosses);
        engine.RecordStep(topKExpertIds, tokens, topK, layers, rows, validTokens, loadBalanceLosses, routerZLosses);
    }

    /// <summary>
    /// Records one forward pass whose ids are on the host, as the view overload; on a device engine the ids are copied to
    /// the device first, and the call waits for that copy (the caller may reuse the span once it returns).
    /// </summary>
    /// <param name="topKExpertIds">The ids, token t's of layer l at <c>l × layerStride + t × tokenStride</c>.</param>
    /// <param name="tokens">Tokens per layer.</param>
    /// <param name="topK">Experts per token, at least 1.</param>
    /// <param name="layerStride">Ids from one layer's first id to the next's; 0 for <c>tokens × tokenStride</c>.</param>
    /// <param name="tokenStride">Ids from one token's first id to the next's in a layer; 0 for <paramref name="topK"/>.</param>
    /// <param name="loadBalanceLosses">One finite loss per layer, or empty for zeros.</param>
    /// <param name="routerZLosses">One finite z-loss per layer, or empty for zeros.</param>
    /// <exception cref="ArgumentOutOfRangeException">As the view overload.</exception>
    /// <exception cref="ArgumentException">As the view overload, or a loss span neither empty nor <c>Layers</c> long, or a non-finite loss.</exception>
    /// <exception cref="InvalidOperationException">
    /// The model was read from JSON other than a checkpoint, or is a merge or snapshot of one, and not reset since; or, on
    /// the managed engine, the step would take a layer's count past 2^63 − 1 (no layer recorded).
    /// </exception>
    /// <exception cref="InsufficientMemoryException">
    /// As the view overload: a snapshot's or merge's first step could not allocate its whole ring; or, on a device
    /// engine, the device could not hold the step's ids (the buffer they are copied into grows to the largest step).
    /// </exception>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    public void RecordStep(
        ReadOnlySpan<int> topKExpertIds,
        int tokens,
        int topK,
        long layerStride = 0,
        ReadOnlySpan<float> loadBalanceLosses = default,
        ReadOnlySpan<float> routerZLosses = default,
        long tokenStride = 0)
    {
        var engine = Engine;
        var (layers, rows) = ModelStepChecks.Validate(engine.Options, topKExpertIds.Length, tokens, topK, layerStride, tokenStride, nameof(topKExpertIds));
        ModelStepChecks.ValidateLosses(engine.Options, loadBalanceLosses, nameof(loadBalanceLosses));
        ModelStepChecks.ValidateLosses(engine.Options, routerZLosses, nameof(routerZLosses));
        engine.RecordStep(topKExpertIds, tokens, topK, layers, rows, loadBalanceLosses, routerZLosses);
    }

    /// <summary>
    /// Layer <paramref name="layer"/>'s statistics with the seed's API, read live (each read first
    /// folds any pending step). Recording and resetting go through the model: those calls on a layer throw.
    /// The model owns the state: disposing the returned handle only ends that handle.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="layer"/> is outside <c>[0, Layers)</c>.</exception>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    public RoutingStats Layer(int layer)
    {
        var engine = Engine;
        if ((uint)layer >= (uint)Layers)
        {
            throw OutOfRange.Error(nameof(layer), layer, Invariant($"this model has layers 0 to {Layers - 1}."));
        }

        return new RoutingStats(engine.Layer(layer)) { MergedParts = MergedParts };
    }

    /// <summary>
    /// Each expert's token-expert slots over the last <see cref="ModelRoutingStatsOptions.Window"/>
    /// steps (fewer before that many), row-major <c>[layers, experts]</c>: the <c>weight</c> of
    /// DeepSeek's EPLB <c>rebalance_experts</c> and of vLLM's rebalancer. A device engine keeps it as a
    /// running sum in the accelerator's memory, so a read is one copy. The managed engine keeps the sum so
    /// while the window is read more often than once in two windows of steps; read more rarely, the read sums the
    /// ring afresh (<c>Window × Layers × Experts</c> counts read) and the steps between cost less.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    public ulong[] WindowLoad() => Engine.WindowLoad(Options.Window);

    /// <summary>
    /// Each expert's slots over the newest <paramref name="recentSteps"/> steps of the window (every
    /// step it holds while it holds fewer), row-major <c>[layers, experts]</c>: a shorter horizon read
    /// from the same ring, as SGLang logs balance over the last 10, 100 and 1,000 passes. Fewer steps
    /// than the window holds are summed from the ring's rows (on a device, there: <c>recentSteps × layers × experts</c>
    /// counts read, then one copy); as many as it holds or more read the running sum, as <see cref="WindowLoad()"/>.
    /// </summary>
    /// <param name="recentSteps">1 to <see cref="ModelRoutingStatsOptions.Window"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="recentSteps"/> is outside <c>[1, Window]</c>.</exception>
    /// <exception cref="InvalidOperationException">Fewer steps than the window holds, of a model read from JSON other than a checkpoint or a merge or snapshot of one (it keeps the window's load, not its ring of steps).</exception>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    public ulong[] WindowLoad(int recentSteps)
    {
        var engine = Engine;
        return engine.WindowLoad(CheckRecentSteps(recentSteps));
    }

    /// <summary>
    /// <see cref="WindowLoad()"/> written into a buffer of the caller's, for a rebalancer or an exporter that reads it
    /// often: the first <c>Layers × Experts</c> values of <paramref name="destination"/>, row-major
    /// <c>[layers, experts]</c>; the values after them are left as they are. No array of the load's size is allocated
    /// per read, where <see cref="WindowLoad()"/> allocates the array (116 KiB at 58 layers of 256 experts, in the
    /// large-object heap): the managed engine copies its sum, and a device engine copies back through bytes rented from
    /// the shared array pool (allocated at the pool's first rent, and again after the pool trims them).
    /// </summary>
    /// <param name="destination">At least <c>Layers × Experts</c> values.</param>
    /// <exception cref="ArgumentException"><paramref name="destination"/> holds fewer than <c>Layers × Experts</c> values; nothing is written.</exception>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    public void WindowLoad(Span<ulong> destination)
    {
        var engine = Engine;
        engine.WindowLoad(Options.Window, CheckLoadDestination(destination));
    }

    /// <summary>
    /// <see cref="WindowLoad(int)"/> written into a buffer of the caller's, as <see cref="WindowLoad(Span{ulong})"/>.
    /// </summary>
    /// <param name="recentSteps">1 to <see cref="ModelRoutingStatsOptions.Window"/>.</param>
    /// <param name="destination">At least <c>Layers × Experts</c> values.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="recentSteps"/> is outside <c>[1, Window]</c>.</exception>
    /// <exception cref="ArgumentException"><paramref name="destination"/> holds fewer than <c>Layers × Experts</c> values; nothing is written.</exception>
    /// <exception cref="InvalidOperationException">As <see cref="WindowLoad(int)"/>'s; nothing is written.</exception>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    public void WindowLoad(int recentSteps, Span<ulong> destination)
    {
        var engine = Engine;
        engine.WindowLoad(CheckRecentSteps(recentSteps), CheckLoadDestination(destination));
    }

    /// <summary>
    /// The token counts and the window load in the accelerator's memory, without a copy, each
    /// <c>[Layers, Experts]</c> 64-bit slots (<see cref="ModelDeviceArrays"/> says how long they hold
    /// and how to order a reader): for a job that sums them across ranks with its own collective (an
    /// NCCL all-reduce of the window load before EPLB) or reads them in its own kernels. The pending
    /// step is folded first, by a launch enqueued on the model's stream; the host does not wait.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model runs on the managed engine (a model read from JSON, a snapshot and a merge do too): its counts are .NET arrays, not device memory; <see cref="WindowLoad()"/> copies them.</exception>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    public ModelDeviceArrays DeviceArrays() =>
        Engine.DeviceArrays()
        ?? throw new InvalidOperationException(
            Invariant($"This model runs on the {Backend} engine, which keeps its counts in .NET arrays, not in an accelerator's memory: read WindowLoad() (a copy), or create the model on an accelerator (ModelRoutingStats.OnDevice)."));

    /// <summary>
    /// The balance of every layer over its experts, over the window and since the start (on a device
    /// engine computed on the device, and a few scalars per layer come back; on the managed engine on the host).
    /// </summary>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    public ModelRoutingSummary Summary()
    {
        var reading = Engine.Read(new() { RecentSteps = Options.Window });
        return Summarize(reading, Experts);
    }

    /// <summary>
    /// The summary with its window cut to the newest <paramref name="recentSteps"/> steps (as
    /// <see cref="WindowLoad(int)"/>): <see cref="ModelRoutingSummary.Window"/> is the balance over them and
    /// <see cref="ModelRoutingSummary.WindowSteps"/> their count, at most <paramref name="recentSteps"/>; the
    /// figures since the start are <see cref="Summary()"/>'s.
    /// </summary>
    /// <param name="recentSteps">1 to <see cref="ModelRoutingStatsOptions.Window"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="recentSteps"/> is outside <c>[1, Window]</c>.</exception>
    /// <exception cref="InvalidOperationException">As <see cref="WindowLoad(int)"/>'s.</exception>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    public ModelRoutingSummary Summary(int recentSteps)
    {
        var engine = Engine;
        var (request, entries) = SummaryRequest(recentSteps, expertRanks: null);
        return Summarize(engine.Read(request), entries);
    }

    /// <summary>
    /// The balance per rank under an expert-parallel placement: each layer's load summed over the
    /// experts each rank holds, what expert-parallel serving waits on (vLLM's balancedness with a placement).
    /// </summary>
    /// <param name="expertRanks">The rank of each expert, <c>Experts</c> values, each 0 to <c>Experts − 1</c>; the ranks counted are 0 to the largest given, each holding an expert at least.</param>
    /// <exception cref="ArgumentNullException"><paramref name="expertRanks"/> is null.</exception>
    /// <exception cref="ArgumentException">Not <c>Experts</c> values, a rank outside <c>[0, Experts)</c>, or a rank below the largest that holds no expert.</exception>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    public ModelRoutingSummary Summary(IReadOnlyList<int> expertRanks) => Summary(Options.Window, expertRanks);

    /// <summary>The balance per rank (as <see cref="Summary(IReadOnlyList{int})"/>) with the window cut to the newest <paramref name="recentSteps"/> steps (as <see cref="Summary(int)"/>).</summary>
    /// <param name="recentSteps">1 to <see cref="ModelRoutingStatsOptions.Window"/>.</param>
    /// <param name="expertRanks">The rank of each expert, <c>Experts</c> values, each 0 to <c>Experts − 1</c>; the ranks counted are 0 to the largest given, each holding an expert at least.</param>
    /// <exception cref="ArgumentNullException"><paramref name="expertRanks"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="recentSteps"/> is outside <c>[1, Window]</c>.</exception>
    /// <exception cref="ArgumentException">Not <c>Experts</c> ranks, a rank outside <c>[0, Experts)</c>, or a rank below the largest that holds no expert.</exception>
    /// <exception cref="InvalidOperationException">As <see cref="WindowLoad(int)"/>'s.</exception>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    public ModelRoutingSummary Summary(int recentSteps, IReadOnlyList<int> expertRanks)
    {
        ArgumentNullException.ThrowIfNull(expertRanks);
        var engine = Engine;
        var (request, entries) = SummaryRequest(recentSteps, expertRanks);
        return Summarize(engine.Read(request), entries);
    }

    /// <summary>
    /// Begins a read of the summary and the window load that does not wait for the device: on CUDA the reading
    /// is computed and copied back on the model's stream behind the steps recorded so far, and the call returns at
    /// once; poll <see cref="PendingModelRead.IsCompleted"/> between steps and take its results when it is true.
    /// Steps recorded meanwhile are not in it. Arguments as <see cref="Summary(int, IReadOnlyList{int})"/>'s.
    /// </summary>
    /// <param name="recentSteps">1 to <see cref="ModelRoutingStatsOptions.Window"/>, the newest steps the summary's window covers; null for the whole window.</param>
    /// <param name="expertRanks">The rank of each expert for the balance per rank (as <see cref="Summary(IReadOnlyList{int})"/>); null for the balance over experts.</param>
    /// <returns>
    /// The pending read; dispose it (or take its results) to free the host memory it holds. A read dropped without
    /// either frees it at the model's next <c>BeginRead</c> after its copy has arrived, or at the model's dispose.
    /// </returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="recentSteps"/> is outside <c>[1, Window]</c>.</exception>
    /// <exception cref="ArgumentException">Not <c>Experts</c> ranks, a rank outside <c>[0, Experts)</c>, or a rank below the largest that holds no expert.</exception>
    /// <exception cref="InvalidOperationException">As <see cref="WindowLoad(int)"/>'s.</exception>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    /// <remarks>
    /// A placement that differs from the last one given is copied to the device first, a wait; the same
    /// placement again is not. On OpenCL, where ILGPU gives no event to poll, the call waits for the copy.
    /// </remarks>
    public PendingModelRead BeginRead(int? recentSteps = null, IReadOnlyList<int>? expertRanks = null)
    {
        var engine = Engine;
        var (request, entries) = SummaryRequest(recentSteps ?? Options.Window, expertRanks);
        return new PendingModelRead(engine.BeginRead(request with { WindowLoad = true }), entries);
    }

    /// <summary>
    /// A summary's reading over the newest <paramref name="recentSteps"/> steps (checked), per rank under
    /// <paramref name="expertRanks"/> (checked) where given, and the entries its balance counts: the experts, or the ranks.
    /// </summary>
    private (ModelReadRequest Request, int Entries) SummaryRequest(int recentSteps, IReadOnlyList<int>? expertRanks)
    {
        CheckRecentSteps(recentSteps);
        if (expertRanks is null)
        {
            return (new() { RecentSteps = recentSteps }, Experts);
        }

        var ranks = ModelStepChecks.ValidatePlacement(Options, expertRanks, nameof(expertRanks));
        var rankCount = ranks.Max() + 1;
        return (new() { RecentSteps = recentSteps, Ranks = ranks, RankCount = rankCount }, rankCount);
    }

    private Span<ulong> CheckLoadDestination(Span<ulong> destination)
    {
        var needed = Layers * Experts;
        return destination.Length >= needed
            ? destination
            : throw new ArgumentException(
                Invariant($"destination holds {Plural.Of(destination.Length, "value")}; the window load needs Layers * Experts = {Layers} * {Experts} = {needed:N0}."),
                nameof(destination));
    }

    private int CheckRecentSteps(int recentSteps) =>
        recentSteps >= 1 && recentSteps <= Options.Window
            ? recentSteps
            : throw OutOfRange.Error(nameof(recentSteps), recentSteps, Invariant($"give 1 to {Options.Window:N0}, the model's window."));

    /// <summary>Clears every layer and the window (enqueued on a device; no wait).</summary>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    public void Reset() => Engine.Reset();

    /// <summary>
    /// How many recordings the model combines: 1 for a model recorded here or read from one recording's
    /// snapshot; for a <see cref="Merge"/>, the sum of its parts' (a merge of merges counts every rank). A
    /// merge's steps are its parts' summed and its window their newest steps added up step by step, so a
    /// merge of N ranks of S steps each holds N × S steps of one job's S forward passes: reports say so
    /// from this. Snapshots keep it (<c>merged_parts</c>, written above 1); each <see cref="Layer"/> has it.
    /// Fixed for the object's life, so that every read agrees with every other thread's: <see cref="Reset"/>
    /// clears the statistics, not what they were made as.
    /// </summary>
    public int MergedParts { get; internal init; } = 1;

    /// <summary>
    /// A managed copy of the whole model, which answers every read locally and records on independently. Before the
    /// window has wrapped the copy holds the steps the window holds, not its empty rows, and takes its whole ring at its
    /// first step. On a device engine the state is staged as a read's, the window ring copied on the device into a
    /// buffer of its size taken for the snapshot, and both (of the ring, the rows that hold steps) copied back with
    /// the model's lock released (a step on another thread does not wait for them).
    /// </summary>
    /// <exception cref="InsufficientMemoryException">On a device engine, the device could not hold the ring's copy; the message gives its size. The statistics are unchanged.</exception>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    public ModelRoutingStats Snapshot() => new(new ManagedModelEngine(Options, Engine.Export())) { MergedParts = MergedParts };

    /// <summary>
    /// Combines models of several ranks or replicas with the same shape into one managed model:
    /// each layer as <see cref="RoutingStats.Merge"/> (exact counts; the decayed utilization is not
    /// merged, so the result has no <see cref="ModelRoutingStatsOptions.UtilizationDecay"/>), the window's loads summed
    /// exactly, and the window rings summed step by step from the newest (ranks that record the same
    /// steps align exactly; with <see cref="ModelRoutingStatsOptions.SkipEmptySteps"/>, ranks that left out
    /// different steps do not, though every sum stays exact). The parts share one
    /// <see cref="ModelRoutingStatsOptions.SkipEmptySteps"/>, which the merged model keeps. <see cref="MergedParts"/> is the parts' summed.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="parts"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// No parts, a null part, one object given twice, parts of different layers, experts, windows, capacities or <see cref="ModelRoutingStatsOptions.SkipEmptySteps"/> (the message names
    /// the first part that differs from <c>parts[0]</c>), a merged layer count or the merged steps above 2^63 − 1 (the most
    /// a snapshot holds), as <see cref="RoutingStats.Merge"/>, one step's slots of an expert in the merged window above
    /// 2^32 − 1 (the window ring's counts are 32-bit), or merged parts above <see cref="RoutingStats.MaxMergedParts"/>;
    /// each message names the count: a layer's as a snapshot file does (<c>layers[3].expert_token_counts[5]</c>), the
    /// ring's by layer, expert and step.
    /// </exception>
    /// <exception cref="ObjectDisposedException">A part was disposed; the message names it (<c>parts[3]</c>).</exception>
    /// <exception cref="InsufficientMemoryException">A part on a device could not hold its window ring's copy (as <see cref="Snapshot"/>).</exception>
    public static ModelRoutingStats Merge(IEnumerable<ModelRoutingStats> parts) =>
        ModelRoutingMerge.Merge(MergeParts.Collect(parts, nameof(parts), part => part.Gone()));

    /// <summary>Frees the engine's device memory; the layers' statistics become unusable.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _engine.Dispose();
    }

    /// <summary>Why the model cannot be used (disposed; on a device, its accelerator or stream), or null where it can.</summary>
    internal ObjectDisposedException? Gone() => Disposed.Of(() => (Engine as DeviceModelEngine)?.ThrowIfUnusable());

    internal ModelState ExportState(bool withRing = true) => Engine.Export(withRing);

    /// <summary>Whether the model keeps its window's ring of steps: it records on and checkpoints (false for one read from a file without the ring, or a merge of one, until a reset).</summary>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    internal bool KeepsWindowRing => Engine.KeepsWindowRing;

    /// <summary>
    /// A managed copy without the window ring, as a snapshot read from JSON: it reads (every read but a
    /// <see cref="Summary(int)"/> or <see cref="WindowLoad(int)"/> of fewer steps than the window holds) and
    /// merges, and refuses to record on. One staging and one copy of the state without the ring, where
    /// <see cref="Snapshot"/> copies the ring as well; reports read it, a layer at a time, without a device
    /// read per layer and property (on ILGPU's CPU accelerator each is a launch over every layer).
    /// </summary>
    /// <exception cref="ObjectDisposedException">The statistics were disposed.</exception>
    internal ModelRoutingStats ReadOnlyCopy() => new(new ManagedModelEngine(Options, Engine.Export(withRing: false))) { MergedParts = MergedParts };

    /// <summary>
    /// One reading of the model for a collection (<see cref="ModelReadRequest"/>; one wait on a device engine):
    /// no step, reset or read from another thread comes between its parts.
    /// </summary>
    internal Engines.ModelReading Read(Engines.ModelReadRequest request) => Engine.Read(request);

    /// <summary>The summary over experts (<paramref name="entries"/> of them) or ranks of a reading: its window and since the start.</summary>
    internal static ModelRoutingSummary Summarize(Engines.ModelReading reading, int entries) =>
        Summarize(reading.Window, reading.SinceStart, reading.Steps, reading.WindowSteps, entries);

    /// <summary>The summary of a reading's second horizon (<see cref="Engines.ModelReadRequest.AlsoRecentSteps"/>); null where it has none.</summary>
    internal static ModelRoutingSummary? SummarizeRecent(Engines.ModelReading reading, int entries) =>
        reading.Recent is null ? null : Summarize(reading.Recent, reading.SinceStart, reading.Steps, reading.RecentSteps, entries);

    private static ModelRoutingSummary Summarize(Kernels.Model.LayerLoad[] window, Kernels.Model.LayerLoad[] sinceStart, ulong steps, int windowSteps, int entries) =>
        new(
            steps,
            windowSteps,
            new BalanceSummary(window.Select(load => LayerBalance.From(load, entries)).ToArray()),
            new BalanceSummary(sinceStart.Select(load => LayerBalance.From(load, entries)).ToArray()));

    private static ModelRoutingStatsOptions Validated(ModelRoutingStatsOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return options;
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Model routing statistics run on the {Engine} engine ({Device}).", EventName = "EngineSelected")]
        public static partial void EngineSelected(ILogger logger, string engine, string device);
    }
}
