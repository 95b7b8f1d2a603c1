using System.Globalization;
using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Device;
using MoeGpuStats.Engines;
using MoeGpuStats.Kernels.Model;
using static System.FormattableString;

namespace MoeGpuStats;

/// <summary>The checks on a model's step and placement that run before any engine touches state.</summary>
internal static class ModelStepChecks
{
    /// <summary>
    /// Throws, naming the argument, unless <paramref name="available"/> ids hold the step in a layout
    /// <see cref="ModelIdLayout"/> allows; returns the strides with 0 resolved (a token stride of
    /// <c>topK</c>, a layer stride of <c>tokens × tokenStride</c>).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="topK"/>, <paramref name="tokens"/>, <paramref name="layerStride"/> or <paramref name="tokenStride"/> is out of range.</exception>
    /// <exception cref="ArgumentException">Too many ids per layer, a token stride below <c>topK</c>, layers neither one after another nor interleaved, strides whose step passes the range of long, or too few ids.</exception>
    public static (long LayerStride, long TokenStride) Validate(
        ModelRoutingStatsOptions options, long available, int tokens, int topK, long layerStride, long tokenStride, string idsName)
    {
        if (topK < 1)
        {
            throw OutOfRange.Error(nameof(topK), topK, "it must be at least 1.");
        }

        OutOfRange.ThrowIfNegative(tokens);

        if (layerStride < 0)
        {
            throw OutOfRange.Error(nameof(layerStride), layerStride, "it cannot be negative (0 packs the layers).");
        }

        if (tokenStride < 0)
        {
            throw OutOfRange.Error(nameof(tokenStride), tokenStride, "it cannot be negative (0 packs each layer's rows).");
        }

        var perLayer = (long)tokens * topK;
        if (perLayer > RecordChecks.MaxIdsPerRecord)
        {
            throw new ArgumentException(
                Invariant($"tokens * topK = {tokens} * {topK} = {perLayer:N0} ids per layer; a layer takes at most {RecordChecks.MaxIdsPerRecord:N0} (2^31 - 1) per step."), nameof(tokens));
        }

        var rows = tokenStride == 0 ? topK : tokenStride;
        if (rows < topK)
        {
            throw new ArgumentException(Invariant($"tokenStride is {tokenStride}; it must be at least topK = {topK} (a token's ids side by side), or 0 for topK."), nameof(tokenStride));
        }

        var layers = options.Layers;
        var stride = layerStride != 0 ? layerStride
            : ModelIdLayout.PackedLayerStride(tokens, rows)
            ?? throw new ArgumentException(Invariant($"tokenStride is {tokenStride}: tokens * tokenStride = {tokens} * {tokenStride} passes the range of long; give the layer stride."), nameof(tokenStride));
        if (!ModelIdLayout.Supported(layers, tokens, topK, stride, rows))
        {
            throw new ArgumentException(
                rows == topK
                    ? Invariant($"layerStride is {layerStride}; it must be at least tokens * topK = {perLayer:N0}, or 0 to pack the layers.")
                    : Invariant($"layerStride is {layerStride} with tokenStride {tokenStride}: the layers lie neither one after another nor interleaved token by token. Layers one after another need layerStride >= (tokens - 1) * tokenStride + topK = {ModelIdLayout.LayerExtent(tokens, topK, rows)?.ToString("N0", CultureInfo.InvariantCulture) ?? "more than long holds"}; {Interleaved()}."),
                nameof(layerStride));
        }

        // Built only to refuse: the checks run at every step, which must not allocate.
        string Interleaved()
        {
            var most = (rows - topK) / Math.Max(1, layers - 1);
            return most >= topK
                ? Invariant($"layers interleaved, as [tokens, layers, topK], need topK = {topK} <= layerStride <= (tokenStride - topK) / (layers - 1) = {most:N0}")
                : Invariant($"layers interleaved, as [tokens, layers, topK], need tokenStride >= layers * topK = {(long)layers * topK:N0}");
        }

        string Spacing() => rows == topK ? Invariant($"a layer stride of {stride}") : Invariant($"a layer stride of {stride} and a token stride of {rows}");
        // Past a long, the step is named by the stride given that took it there: the larger, or the token stride of packed layers.
        var (strideName, strideValue) = layerStride == 0 || rows > stride ? (nameof(tokenStride), tokenStride) : (nameof(layerStride), layerStride);
        var needed = ModelIdLayout.StepExtent(layers, stride, tokens, topK, rows)
            ?? throw new ArgumentException(
                Invariant($"{strideName} is {strideValue}: {Plural.Of(layers, "layer")} of tokens * topK = {tokens} * {topK} at {Spacing()} pass the range of long (no buffer holds them)."),
                strideName);
        if (available < needed)
        {
            var empty = available == 0 ? " (an empty span or view, or a view of a disposed buffer)" : "";
            throw new ArgumentException(
                Invariant($"{idsName} holds {Plural.Of(available, "value")}{empty}; {Plural.Of(layers, "layer")} of tokens * topK = {tokens} * {topK} at {Spacing()} need {needed:N0}."), idsName);
        }

        return (stride, rows);
    }

    /// <summary>Throws unless the device views belong to the model's accelerator and are long enough.</summary>
    /// <exception cref="ArgumentException">A view on another accelerator or of a disposed buffer, a <c>validTokens</c> view neither empty nor one int long, or a loss view neither empty nor <c>Layers</c> long.</exception>
    public static void ValidateViews<T>(ModelRoutingEngine engine, ArrayView<T> ids, ArrayView<int> validTokens, ArrayView<float> loadBalanceLosses, ArrayView<float> routerZLosses)
        where T : unmanaged
    {
        var accelerator = (engine as DeviceModelEngine)?.Accelerator;
        CheckView(accelerator, ids, 0, "topKExpertIds", static _ => "ids");
        CheckView(accelerator, validTokens, 1, nameof(validTokens), static _ => "one int", exactly: true);
        // A loss view of another length is a mistake (another model's, a batch's), as a host span of another length.
        CheckView(accelerator, loadBalanceLosses, engine.Options.Layers, nameof(loadBalanceLosses), LossesNeeded, exactly: true);
        CheckView(accelerator, routerZLosses, engine.Options.Layers, nameof(routerZLosses), LossesNeeded, exactly: true);
    }

    /// <summary>Throws unless <paramref name="losses"/> is empty or one finite loss per layer.</summary>
    /// <exception cref="ArgumentException">Another length, or a non-finite loss.</exception>
    public static void ValidateLosses(ModelRoutingStatsOptions options, ReadOnlySpan<float> losses, string name)
    {
        if (!losses.IsEmpty && losses.Length != options.Layers)
        {
            throw new ArgumentException(Invariant($"{name} holds {Plural.Of(losses.Length, "value")}; it must hold one per layer ({options.Layers:N0}) or none."), name);
        }

        for (var l = 0; l < losses.Length; l++)
        {
            if (!float.IsFinite(losses[l]))
            {
                throw new ArgumentException(Invariant($"{name}[{l}] is {losses[l]}; losses must be finite."), name);
            }
        }
    }

    /// <summary>The placement as an array, checked: one rank per expert, each in <c>[0, Experts)</c>, every rank up to the largest holding one.</summary>
    /// <exception cref="ArgumentException">Not <c>Experts</c> values, a rank outside <c>[0, Experts)</c>, or a rank below the largest that holds no expert.</exception>
    public static int[] ValidatePlacement(ModelRoutingStatsOptions options, IReadOnlyList<int> expertRanks, string name)
    {
        // Read once: every check and the engine see the same ranks, whatever the list's Count says.
        var ranks = expertRanks.ToArray();
        if (ranks.Length != options.Experts)
        {
            throw new ArgumentException(Invariant($"{name} holds {Plural.Of(ranks.Length, "rank")}; it must hold one per expert ({options.Experts:N0})."), name);
        }

        for (var e = 0; e < ranks.Length; e++)
        {
            if (ranks[e] < 0 || ranks[e] >= options.Experts)
            {
                throw new ArgumentException(Invariant($"{name}[{e}] is {ranks[e]}; a rank must be 0 to {options.Experts - 1:N0} (at most one rank per expert)."), name);
            }
        }

        if (EmptyRank(ranks) is var (empty, largest))
        {
            throw new ArgumentException(
                Invariant($"{name} gives rank {empty} no expert while rank {largest} holds one; ranks are numbered from 0 with none left empty{(empty == 0 ? " (numbered from 1? subtract 1)" : "")}."), name);
        }

        return ranks;
    }

    /// <summary>
    /// The first rank below the largest that holds no expert, with the largest; null when every rank holds one.
    /// A rank of no expert would count as an idle rank and lower every balance: a placement numbered from 1, most likely.
    /// </summary>
    /// <param name="ranks">Each expert's rank, every one 0 to <c>ranks.Length − 1</c>.</param>
    public static (int Empty, int Largest)? EmptyRank(int[] ranks)
    {
        var largest = ranks.Max();
        var held = new bool[largest + 1];
        foreach (var rank in ranks)
        {
            held[rank] = true;
        }

        var empty = Array.IndexOf(held, false);
        return empty < 0 ? null : (empty, largest);
    }

    /// <summary>What a loss view must hold, for its refusal: a method, so that the checks at every step allocate no text.</summary>
    private static string LossesNeeded(long layers) => Invariant($"{Plural.Of(layers, "float")} (one per layer)");

    /// <summary>
    /// Throws unless <paramref name="view"/> is default, or at least (<paramref name="exactly"/>: exactly) <paramref name="length"/>
    /// long on <paramref name="accelerator"/>; <paramref name="what"/> words the length it needs, called only to refuse.
    /// </summary>
    private static void CheckView<T>(Accelerator? accelerator, ArrayView<T> view, long length, string name, Func<long, string> what, bool exactly = false)
        where T : unmanaged
    {
        if (!view.IsValid)
        {
            return;
        }

        if (exactly ? view.Length != length : view.Length < length)
        {
            throw new ArgumentException(Invariant($"{name} holds {Plural.Of(view.Length, "value")}; it must hold {what(length)}, or be default."), name);
        }

        ViewAccelerator.CheckAlive(view, name);

        if (accelerator is not null && view.Length > 0)
        {
            ViewAccelerator.Check(view, accelerator, name, "model");
        }
    }
}
