using System.Globalization;
using MoeGpuStats.Engines;
using static System.FormattableString;

namespace MoeGpuStats;

/// <summary>Combines the models of several ranks or replicas with the same shape.</summary>
internal static class ModelRoutingMerge
{
    public static ModelRoutingStats Merge(IReadOnlyList<ModelRoutingStats> parts)
    {
        var options = parts[0].Options;
        for (var i = 1; i < parts.Count; i++)
        {
            var other = parts[i].Options;
            // The merged model records on under one SkipEmptySteps: parts that differ in it would make that parts[0]'s by order alone.
            if (other.Layers != options.Layers || other.Experts != options.Experts || other.Window != options.Window || other.ExpertCapacity != options.ExpertCapacity
                || other.SkipEmptySteps != options.SkipEmptySteps)
            {
                throw new ArgumentException(
                    Invariant($"Only models of the same shape merge: parts[0] is {Shape(options)}, parts[{i}] is {Shape(other)}."), nameof(parts));
            }
        }

        var states = parts.Select(part => part.ExportState()).ToArray();
        var layerOptions = options.LayerOptions;
        var merged = new ModelState
        {
            Layers = new RoutingState[options.Layers],
            WindowLoad = new ulong[options.Layers * options.Experts],
            WindowSteps = states.Max(state => state.WindowSteps),
        };
        for (var l = 0; l < options.Layers; l++)
        {
            using var layer = RoutingStatsMerge.Merge(states.Select(state => RoutingStats.FromState(layerOptions, state.Layers[l])).ToArray(), Invariant($"layers[{l}]."));
            merged.Layers[l] = layer.ExportState();
        }

        // A window load is part of its layer's counts, whose merge above is bounded: only the steps can pass what a file holds here.
        foreach (var state in states)
        {
            merged.Steps = RoutingStatsMerge.Add("", merged.Steps, state.Steps, "steps");
            for (var i = 0; i < merged.WindowLoad.Length; i++)
            {
                merged.WindowLoad[i] += state.WindowLoad[i];
            }
        }

        if (states.All(state => state.WindowRing is not null))
        {
            merged.WindowRing = MergeRings(options, states, merged.WindowSteps);
            merged.WindowPosition = merged.WindowSteps % options.Window;
        }

        // As RoutingStats.Merge, whose layers these are: decayed utilization does not merge, so the result has no decay.
        return new ModelRoutingStats(new ManagedModelEngine(options with { UtilizationDecay = null }, merged))
        {
            MergedParts = RoutingStatsMerge.MergedParts(parts.Select(part => part.MergedParts)),
        };
    }

    /// <summary>
    /// The rings summed step by step from the newest into rows 0 to <paramref name="steps"/> − 1 (a ring short of
    /// the window where <paramref name="steps"/> is: the merged model allocates the rest when it records); the
    /// merged ring's newest step sits just before position <c>steps mod window</c>.
    /// </summary>
    private static uint[] MergeRings(ModelRoutingStatsOptions options, ModelState[] states, int steps)
    {
        var stepLength = options.Layers * options.Experts;
        var ring = new uint[(long)steps * stepLength];
        foreach (var state in states)
        {
            for (var age = 0; age < state.WindowSteps; age++)
            {
                var from = (((state.WindowPosition - 1 - age) % options.Window) + options.Window) % options.Window;
                var to = steps - 1 - age;
                for (var i = 0; i < stepLength; i++)
                {
                    var total = ring[((long)to * stepLength) + i];
                    var part = state.WindowRing![((long)from * stepLength) + i];
                    ring[((long)to * stepLength) + i] = total + part >= total
                        ? total + part
                        : throw new ArgumentException(
                            Invariant($"The merged slots of expert {i % options.Experts} in layer {i / options.Experts}, {age} steps before the newest, exceed {uint.MaxValue:N0} ({total} + {part}), the most one step of the window holds; these models cannot be combined exactly."),
                            "parts");
                }
            }
        }

        return ring;
    }

    private static string Shape(ModelRoutingStatsOptions options) =>
        Invariant($"{Plural.Of(options.Layers, "layer")} × {Plural.Of(options.Experts, "expert")}, window {options.Window}, capacity {options.ExpertCapacity?.ToString(CultureInfo.InvariantCulture) ?? "none"}{(options.SkipEmptySteps ? ", empty steps left out" : "")}");
}
