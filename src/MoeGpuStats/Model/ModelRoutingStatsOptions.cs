using System.Runtime.CompilerServices;
using static System.FormattableString;

namespace MoeGpuStats;

/// <summary>Settings of a <see cref="ModelRoutingStats"/>: the model's shape and what its layers share.</summary>
public sealed record ModelRoutingStatsOptions
{
    /// <summary>The record's members in the compiler's form, numbers written invariantly (<see cref="RecordText"/>).</summary>
    public override string ToString() => RecordText.Of(this);

    /// <summary>The most layers a model holds: 1,024.</summary>
    public const int MaxLayers = 1024;

    /// <summary>
    /// The most entries of the window ring (<c>Window × Layers × Experts</c>): 2,147,483,591, 8 GiB of
    /// counts, the most elements of a .NET array (<see cref="Array.MaxLength"/>), which the managed
    /// engine's ring is; one limit on every engine, so that a model that runs on one runs on all.
    /// </summary>
    public const long MaxWindowEntries = 0x7FFFFFC7;

    /// <summary>MoE layers, 1 to <see cref="MaxLayers"/>.</summary>
    public int Layers { get; init; } = 1;

    /// <summary>Experts per layer, the same for every layer: 1 to <see cref="RoutingStatsOptions.MaxDeviceExperts"/>.</summary>
    public int Experts { get; init; } = 1;

    /// <summary>Token-expert slots per expert per step in each layer, as <see cref="RoutingStatsOptions.ExpertCapacity"/>: at least 1, or null for none.</summary>
    public int? ExpertCapacity { get; init; }

    /// <summary>
    /// Steps in the sliding window of expert load (<see cref="ModelRoutingStats.WindowLoad()"/>): at least 1, with
    /// <c>Window × Layers × Experts</c> at most <see cref="MaxWindowEntries"/>; 1,000 by default, as vLLM's and SGLang's rings.
    /// </summary>
    public int Window { get; init; } = 1000;

    /// <summary>Decay of each layer's decayed utilization, as <see cref="RoutingStatsOptions.UtilizationDecay"/>; null for none.</summary>
    public float? UtilizationDecay { get; init; }

    /// <summary>
    /// Whether a step in which no layer holds a token (no valid row, or every valid row padding: an idle
    /// rank's dummy pass) is left out: it then takes no place in the window and counts in no statistic,
    /// as vLLM leaves its dummy passes (<c>is_dummy</c>) out of its load window. Decided on the device,
    /// from the device count of valid tokens and the ids, so that a dummy pass replayed in a CUDA graph
    /// is left out too. False by default: such a step is a batch of no load, as the seed records one,
    /// and layer l equals a <see cref="RoutingStats"/> fed every step's layer-l ids; when true, it equals
    /// one fed the steps kept. Every engine runs it.
    /// </summary>
    public bool SkipEmptySteps { get; init; }

    /// <summary>
    /// The device memory a model's state takes, in bytes: the window ring (<c>4 × Window × Layers × Experts</c>)
    /// dominates; each layer adds its single-layer state (64 KiB of batch buffers, 4 KB of load
    /// variances), 52 bytes per expert (its per-expert arrays, the window load and two buffers reads sum into) and
    /// 36 bytes per expert, and its variances again, of the buffer a read is staged in (the state without its ring,
    /// what JSON saves). 65 MB for DeepSeek-V3's 58 layers of 256 experts with the default window. The managed engine
    /// keeps the same ring, each step's list length, and each decode step's list of 32 16-bit ids where a layer has
    /// more than 32 experts: <c>4 × Window × Layers × (Experts + 17)</c> bytes for the window
    /// (<c>4 × Window × Layers × (Experts + 1)</c> up to 32 experts).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The options are invalid (as a model's constructor refuses them): no model has their size.</exception>
    public long DeviceStateBytes()
    {
        Validate();
        long layers = Layers, perLayer = layers * Experts;
        return (layers * Unsafe.SizeOf<Kernels.RoutingStateBlock>())
            + (layers * Kernels.RoutingStateLayout.BatchHistogramLength * sizeof(ulong))
            + (2 * layers * Kernels.RoutingStateLayout.BatchBuffers * sizeof(ulong))
            + (perLayer * (sizeof(double) + sizeof(ulong) + sizeof(float) + sizeof(double) + sizeof(ulong) + sizeof(ulong) + sizeof(ulong)))
            + (layers * Kernels.RoutingStateLayout.VarianceWindow * sizeof(float))
            + (WindowEntries * sizeof(uint))
            + (Kernels.Model.ModelStateLayout.ControlLength * sizeof(int))
            + (Kernels.RoutingStateLayout.BatchBuffers * layers * 2 * sizeof(float))
            + (Experts * sizeof(int))
            + (Device.DeviceModelEngine.ReadbackLoads * layers * Unsafe.SizeOf<Kernels.Model.LayerLoad>())
            + Device.DeviceModelEngine.ReadbackBytes(this)
            + Unsafe.SizeOf<Kernels.UtilizationQueryResult>()
            + (2 * layers * sizeof(float));
    }

    /// <summary>The options of one layer's <see cref="RoutingStats"/>.</summary>
    internal RoutingStatsOptions LayerOptions => new() { Experts = Experts, ExpertCapacity = ExpertCapacity, UtilizationDecay = UtilizationDecay };

    /// <summary>Entries of the window ring.</summary>
    internal long WindowEntries => (long)Window * Layers * Experts;

    /// <summary>
    /// Why the window ring is too long, after the window's value: <paramref name="entriesTerm"/> names its entries in the
    /// caller's words (the options' property names, or a file's fields).
    /// </summary>
    internal string WindowRingRefusal(string entriesTerm) =>
        Invariant($"{entriesTerm} is {WindowEntries:N0}, at most {MaxWindowEntries:N0} (the window ring's counts): give {LongestWindow(Layers, Experts):N0} steps or fewer.");

    /// <summary>The longest window whose ring of <paramref name="layers"/> × <paramref name="experts"/> counts a step fits <see cref="MaxWindowEntries"/>.</summary>
    internal static long LongestWindow(int layers, int experts) => MaxWindowEntries / ((long)layers * experts);

    /// <exception cref="ArgumentOutOfRangeException">An option is out of range; the message names it and what is allowed.</exception>
    internal void Validate()
    {
        if (Layers is < 1 or > MaxLayers)
        {
            throw OutOfRange.Error(nameof(Layers), Layers, Invariant($"give 1 to {MaxLayers:N0}."));
        }

        if (Experts is < 1 or > RoutingStatsOptions.MaxDeviceExperts)
        {
            throw OutOfRange.Error(nameof(Experts), Experts, Invariant($"give 1 to {RoutingStatsOptions.MaxDeviceExperts:N0}."));
        }

        if (Window < 1)
        {
            throw OutOfRange.Error(nameof(Window), Window, "give at least 1 step.");
        }

        if (WindowEntries > MaxWindowEntries)
        {
            throw OutOfRange.Error(nameof(Window), Window, WindowRingRefusal("Window × Layers × Experts"));
        }

        LayerOptions.Validate();
    }
}
