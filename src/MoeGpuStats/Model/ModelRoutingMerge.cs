using System.Globalization;
using MoeGpuStats.Engines;
using static System.FormattableString;

namespace MoeGpuStats;

/// <summary>
/// Combines the models of several ranks or replicas with the same shape, one part at a time (as
/// <see cref="RoutingStatsMerge"/> its layers): a merge holds its result and the part it adds.
/// </summary>
internal sealed class ModelRoutingMerge
{
    private ModelRoutingStatsOptions? _options;
    private RoutingStatsMerge[] _layers = [];
    private ulong[] _windowLoad = [];
    private ulong _steps;
    private int _windowSteps;
    private long _mergedParts;
    private int _parts;

    // The parts' rings summed by age, newest step first, while every part has one (a model read from a file has none).
    private List<uint[]>? _ringByAge = [];

    /// <summary>Combines <paramref name="parts"/> (at least one).</summary>
    /// <exception cref="ArgumentException">
    /// The parts differ in shape, a sum passes what a snapshot holds, one step's merged slots of an expert in the window
    /// ring pass 2^32 − 1, or the parts combine more than <see cref="RoutingStats.MaxMergedParts"/> recordings.
    /// </exception>
    public static ModelRoutingStats Merge(IReadOnlyList<ModelRoutingStats> parts)
    {
        var merge = new ModelRoutingMerge();
        foreach (var part in parts)
        {
            merge.Add(part);
        }

        return merge.Result();
    }

    /// <summary>Adds the next part, named <c>parts[i]</c> by its place in the order added.</summary>
    /// <returns>The part's steps (its <see cref="ModelRoutingSummary.Steps"/>), which ranks of one job share.</returns>
    /// <exception cref="ArgumentException">The part differs in shape from the first, a sum passes what a snapshot holds, or one step's merged slots of an expert in the window ring pass 2^32 − 1.</exception>
    public ulong Add(ModelRoutingStats part)
    {
        var other = part.Options;
        // The merged model records on under one SkipEmptySteps: parts that differ in it would make that parts[0]'s by order alone.
        if (_options is { } options && (other.Layers != options.Layers || other.Experts != options.Experts || other.Window != options.Window
            || other.ExpertCapacity != options.ExpertCapacity || other.SkipEmptySteps != options.SkipEmptySteps))
        {
            throw new ArgumentException(Invariant($"Only models of the same shape merge: parts[0] is {Shape(options)}, parts[{_parts}] is {Shape(other)}."), "parts");
        }

        var state = part.ExportState();
        if (_options is null)
        {
            _options = other;
            _layers = [.. Enumerable.Range(0, other.Layers).Select(l => new RoutingStatsMerge(Invariant($"layers[{l}].")))];
            _windowLoad = new ulong[other.Layers * other.Experts];
        }

        var layerOptions = other.LayerOptions;
        for (var l = 0; l < other.Layers; l++)
        {
            _layers[l].Add(state.Layers[l], layerOptions);
        }

        // A window load is part of its layer's counts, whose merge above is bounded: only the steps can pass what a file holds here.
        _steps = RoutingStatsMerge.Add("", _steps, state.Steps, "steps");
        for (var i = 0; i < _windowLoad.Length; i++)
        {
            _windowLoad[i] += state.WindowLoad[i];
        }

        _windowSteps = Math.Max(_windowSteps, state.WindowSteps);
        _ringByAge = state.WindowRing is null ? null : _ringByAge;
        if (_ringByAge is not null)
        {
            AddRing(other, state);
        }

        _mergedParts += part.MergedParts;
        _parts++;
        return state.Steps;
    }

    /// <summary>The merge of the parts added: a managed model without decay (decayed utilization does not merge).</summary>
    /// <exception cref="ArgumentException">The parts combine more than <see cref="RoutingStats.MaxMergedParts"/> recordings.</exception>
    /// <exception cref="InvalidOperationException">No part was added.</exception>
    public ModelRoutingStats Result()
    {
        var options = _options ?? throw new InvalidOperationException("A merge needs at least one part.");
        var merged = new ModelState
        {
            Layers = new RoutingState[options.Layers],
            WindowLoad = _windowLoad,
            WindowSteps = _windowSteps,
            Steps = _steps,
        };
        for (var l = 0; l < options.Layers; l++)
        {
            using var layer = _layers[l].Result();
            merged.Layers[l] = layer.ExportState();
        }

        if (_ringByAge is { } byAge)
        {
            // The newest step sits just before position `steps mod window`: row steps - 1 - age.
            var stepLength = options.Layers * options.Experts;
            merged.WindowRing = new uint[(long)merged.WindowSteps * stepLength];
            for (var age = 0; age < byAge.Count; age++)
            {
                byAge[age].CopyTo(merged.WindowRing, (long)(merged.WindowSteps - 1 - age) * stepLength);
            }

            merged.WindowPosition = merged.WindowSteps % options.Window;
        }

        // As RoutingStats.Merge, whose layers these are: decayed utilization does not merge, so the result has no decay.
        return new ModelRoutingStats(new ManagedModelEngine(options with { UtilizationDecay = null }, merged))
        {
            MergedParts = RoutingStatsMerge.MergedParts(_mergedParts),
        };
    }

    /// <summary>Adds the part's ring, step by step from its newest, to the sums by age.</summary>
    private void AddRing(ModelRoutingStatsOptions options, ModelState state)
    {
        var stepLength = options.Layers * options.Experts;
        for (var age = 0; age < state.WindowSteps; age++)
        {
            if (age == _ringByAge!.Count)
            {
                _ringByAge.Add(new uint[stepLength]);
            }

            var row = _ringByAge[age];
            var from = (long)((((state.WindowPosition - 1 - age) % options.Window) + options.Window) % options.Window) * stepLength;
            for (var i = 0; i < stepLength; i++)
            {
                var total = row[i];
                var part = state.WindowRing![from + i];
                row[i] = total + part >= total
                    ? total + part
                    : throw new ArgumentException(
                        Invariant($"The merged slots of expert {i % options.Experts} in layer {i / options.Experts}, {age} steps before the newest, exceed {uint.MaxValue:N0} ({total} + {part}), the most one step of the window holds; these models cannot be combined exactly."),
                        "parts");
            }
        }
    }

    private static string Shape(ModelRoutingStatsOptions options) =>
        Invariant($"{Plural.Of(options.Layers, "layer")} × {Plural.Of(options.Experts, "expert")}, window {options.Window}, capacity {options.ExpertCapacity?.ToString(CultureInfo.InvariantCulture) ?? "none"}{(options.SkipEmptySteps ? ", empty steps left out" : "")}");
}
