using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using System.Text.Json;
using MoeGpuStats.Engines;
using static System.FormattableString;

namespace MoeGpuStats.Serialization;

/// <summary>Reading: the fields taken from a JSON element, each refused in one line naming it where no run could have written it.</summary>
internal static partial class RoutingStatsJson
{
    /// <param name="root">The statistics' JSON object.</param>
    /// <param name="checkOptions">Refuses settings the caller does not take (a model's layer, not the model's), before the state is checked against them.</param>
    public static RoutingStats FromElement(JsonElement root, Action<RoutingStatsOptions>? checkOptions = null)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new JsonException(Invariant($"Routing statistics must be a JSON object, not {JsonShown.Kind(root.ValueKind)}."));
        }

        SnapshotFields.RefuseRepeated(root, "");
        RefuseLayerAndModel(root);
        var latencyElement = RequiredObject(root, "routing_latency_stats");
        var capacityElement = RequiredObject(root, "capacity_stats");
        SnapshotFields.RefuseRepeated(latencyElement, "routing_latency_stats.");
        SnapshotFields.RefuseRepeated(capacityElement, "capacity_stats.");
        var options = ReadOptions(root, capacityElement);
        checkOptions?.Invoke(options);
        var state = ReadState(root, capacityElement, options);
        var latency = ReadLatency(latencyElement);
        var stats = RoutingStats.FromState(options, state, ReadMergedParts(root));
        stats.RoutingLatencyStats.Restore(
            latency.Measurements,
            latency.Total,
            latency.Min,
            latency.Max,
            latency.Recent);
        return stats;
    }

    private static RoutingStatsOptions ReadOptions(JsonElement root, JsonElement capacityElement)
    {
        var options = new RoutingStatsOptions
        {
            Experts = OptionalInt(root, "experts"),
            ExpertCapacity = OptionalInt(capacityElement, "slots_per_expert"),
            // Null is no decay, as a model's file reads it (serde's null elsewhere stands for a NaN).
            UtilizationDecay = root.TryGetProperty("utilization_decay", out var decay) && decay.ValueKind != JsonValueKind.Null ? ReadFloat(decay, "utilization_decay") : null,
        };
        try
        {
            options.Validate();
        }
        catch (ArgumentException exception)
        {
            throw SettingError(exception, nameof(RoutingStatsOptions.ExpertCapacity), "The field 'capacity_stats.slots_per_expert' is {0}");
        }

        return options;
    }

    private static RoutingState ReadState(JsonElement root, JsonElement capacityElement, RoutingStatsOptions options)
    {
        var state = new RoutingState
        {
            TotalRoutings = CountField(root, "total_routings"),
            TotalTokens = CountField(root, "total_tokens"),
            TokensDropped = CountField(root, "tokens_dropped"),
            InvalidExpertIds = root.TryGetProperty("invalid_expert_ids", out var invalid) ? CountValue(invalid, "invalid_expert_ids") : 0,
            ExpertUtilization = ReadFloats(PerExpert(Required(root, "expert_utilization"), "expert_utilization"), "expert_utilization"),
            AverageLoadBalanceLoss = ReadFloat(Required(root, "average_load_balance_loss"), "average_load_balance_loss"),
            AverageRouterZLoss = ReadFloat(Required(root, "average_router_z_loss"), "average_router_z_loss"),
            RoutingEfficiency = ReadFloat(Required(root, "routing_efficiency"), "routing_efficiency"),
            ExpertTokenCounts = Counts(PerExpert(Required(root, "expert_token_counts"), "expert_token_counts"), "expert_token_counts"),
            LoadVarianceHistory = ReadFloats(AtMost(Required(root, "load_variance_history"), "load_variance_history", Kernels.RoutingStateLayout.VarianceWindow), "load_variance_history"),
            CapacityAverageUtilization = ReadFloat(Required(capacityElement, "average_utilization"), "average_utilization"),
            CapacityPeakUtilization = ReadFloat(Required(capacityElement, "peak_utilization"), "peak_utilization"),
            CapacityExceededCount = CountField(capacityElement, "capacity_exceeded_count"),
            TotalCapacity = CountField(capacityElement, "total_capacity"),
            TotalUsed = CountField(capacityElement, "total_used"),
        };
        if (root.TryGetProperty("expert_utilization_sums", out var sums))
        {
            state.UtilizationSums = ReadDoubles(PerExpert(sums, "expert_utilization_sums"), "expert_utilization_sums", double.NaN);
            if (state.UtilizationSums.Length != state.ExpertUtilization.Length)
            {
                throw new JsonException(
                    Invariant($"expert_utilization_sums has {state.UtilizationSums.Length} entries but expert_utilization has {state.ExpertUtilization.Length}."));
            }
        }

        state.LoadBalanceLossSum = root.TryGetProperty("load_balance_loss_sum", out var lossSum) ? ReadDouble(lossSum, double.NaN, "load_balance_loss_sum") : null;
        state.RouterZLossSum = root.TryGetProperty("router_z_loss_sum", out var zLossSum) ? ReadDouble(zLossSum, double.NaN, "router_z_loss_sum") : null;
        state.RoutedSlots = root.TryGetProperty("routed_slots", out var routed) ? CountValue(routed, "routed_slots") : state.TotalTokens;
        state.SlotsDropped = root.TryGetProperty("slots_dropped", out var slotsDropped) ? CountValue(slotsDropped, "slots_dropped") : state.TokensDropped;
        state.DecayedExpertUtilization = ReadDecayed(root, options, state.ExpertUtilization.Length);
        CheckCounts(state, options);
        CheckShares(state);
        CheckEfficiency(state);
        CheckUtilization(state);
        CheckAverage(state.AverageLoadBalanceLoss, state.LoadBalanceLossSum, state.TotalRoutings, "average_load_balance_loss", "load_balance_loss_sum");
        CheckAverage(state.AverageRouterZLoss, state.RouterZLossSum, state.TotalRoutings, "average_router_z_loss", "router_z_loss_sum");
        return state;
    }

    /// <summary>
    /// The decayed utilization, which the writer writes exactly when the options have a decay, one per
    /// expert (none before the first batch); any other length was edited, and is refused rather than zeroed.
    /// </summary>
    private static double[] ReadDecayed(JsonElement root, RoutingStatsOptions options, int experts)
    {
        var present = root.TryGetProperty("decayed_expert_utilization", out var element);
        if (options.UtilizationDecay is not { } decay)
        {
            return present
                ? throw new JsonException("decayed_expert_utilization is given without utilization_decay; only statistics with a decay have it.")
                : [];
        }

        var decayed = present
            ? ReadDoubles(PerExpert(element, "decayed_expert_utilization"), "decayed_expert_utilization", nullMeans: double.NaN)
            : throw new JsonException(Invariant($"utilization_decay is {decay} but decayed_expert_utilization is missing; statistics with a decay have one per expert."));
        return decayed.Length == experts
            ? decayed
            : throw new JsonException(Invariant($"decayed_expert_utilization has {decayed.Length} entries but expert_utilization has {experts}; it holds one per expert."));
    }

    private readonly record struct Latency(ulong Measurements, double Total, double Min, double Max, double[] Recent);

    /// <summary>
    /// <paramref name="element"/>, refused before any entry is read where it is an array of more than
    /// <paramref name="most"/>: the seed keeps the newest 1,000 variances and latencies, and a file of millions
    /// would otherwise be read whole before it is judged.
    /// </summary>
    private static JsonElement AtMost(JsonElement element, string name, int most) =>
        element.ValueKind == JsonValueKind.Array && element.GetArrayLength() > most
            ? throw new JsonException(Invariant($"{name} holds {element.GetArrayLength():N0} entries; the seed keeps the newest {most:N0}, and so does every state written here."))
            : element;

    /// <summary>
    /// Refuses an object with both one layer's <c>total_routings</c> and a model's <c>layers</c>: each reader would
    /// take it for its own and ignore the other's fields, so one file would hold two states.
    /// </summary>
    internal static void RefuseLayerAndModel(JsonElement root)
    {
        if (root.TryGetProperty("total_routings", out _) && root.TryGetProperty("layers", out _))
        {
            throw new JsonException("A snapshot has one layer's total_routings or a model's layers, not both: one file would read as two states.");
        }
    }

    /// <summary>A per-expert array, refused past <see cref="RoutingStatsOptions.MaxExperts"/> before its values are read: no state has more experts.</summary>
    private static JsonElement PerExpert(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Array && element.GetArrayLength() > RoutingStatsOptions.MaxExperts
            ? throw new JsonException(Invariant($"{name} holds {element.GetArrayLength():N0} entries, one per expert; statistics have at most {RoutingStatsOptions.MaxExperts:N0} experts."))
            : element;

    /// <summary>The latency statistics, refused where no run of measurements leaves them.</summary>
    private static Latency ReadLatency(JsonElement element)
    {
        var recent = ReadDoubles(AtMost(Required(element, "recent_latencies"), "recent_latencies", LatencyStats.WindowSize), "recent_latencies", nullMeans: double.NaN);
        if (recent.Any(value => !(value >= 0.0) || double.IsInfinity(value)))
        {
            throw new JsonException("recent_latencies must hold finite, non-negative milliseconds.");
        }

        var latency = new Latency(
            CountField(element, "total_measurements"),
            ReadDouble(Required(element, "total_latency_ms"), double.NaN, "total_latency_ms"),
            ReadDouble(Required(element, "min_latency_ms"), double.PositiveInfinity, "min_latency_ms"),
            ReadDouble(Required(element, "max_latency_ms"), double.NaN, "max_latency_ms"),
            recent);
        CheckLatency(latency);
        return latency;
    }

    /// <summary>
    /// A setting the options refuse, named as the file names it: the options' message names the property
    /// (<c>"UtilizationDecay is 1.5; give …"</c>, as <see cref="OutOfRange"/> words it), not the field the
    /// user would edit, so its subject is replaced by the field's.
    /// </summary>
    /// <param name="exception">The options' refusal.</param>
    /// <param name="renamedProperty">The property whose field is not its snake_case name.</param>
    /// <param name="renamedSubject">How the message names that field, with <c>{0}</c> for the value ("The field 'layers' has {0} entries").</param>
    internal static JsonException SettingError(ArgumentException exception, string renamedProperty, string renamedSubject)
    {
        var property = exception.ParamName ?? "";
        var subject = property == renamedProperty ? renamedSubject : Invariant($"The field '{JsonNamingPolicy.SnakeCaseLower.ConvertName(property)}' is {{0}}");
        var message = exception.Message.Split(" (Parameter", 2)[0];
        var prefix = Invariant($"{property} is ");
        var end = message.IndexOf("; ", StringComparison.Ordinal);
        Debug.Assert(message.StartsWith(prefix, StringComparison.Ordinal) && end > prefix.Length, Invariant($"The options' refusal is worded by OutOfRange: {message}"));
        return new JsonException(Invariant($"{string.Format(CultureInfo.InvariantCulture, subject, message[prefix.Length..end])}{message[end..]}"), exception);
    }

    private static JsonElement Required(JsonElement parent, string name) =>
        parent.TryGetProperty(name, out var value) ? value : throw new JsonException(Invariant($"The field '{name}' is missing."));

    private static JsonElement RequiredObject(JsonElement parent, string name) =>
        Required(parent, name) is { ValueKind: JsonValueKind.Object } element ? element : throw new JsonException(Invariant($"The field '{name}' must be an object."));

    /// <summary>The recordings a snapshot combines (<c>merged_parts</c>): 1 where the field is absent, as every snapshot but a merge's.</summary>
    public static int ReadMergedParts(JsonElement root) =>
        !root.TryGetProperty("merged_parts", out var value) || value.ValueKind == JsonValueKind.Null ? 1
        : value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var parts) && parts is >= 1 and <= RoutingStats.MaxMergedParts ? (int)parts
        : throw new JsonException(Invariant($"The field 'merged_parts' is {JsonShown.Value(value)}; it must be a whole number from 1 to {RoutingStats.MaxMergedParts:N0} (the recordings a merge combines)."));

    private static int? OptionalInt(JsonElement parent, string name) =>
        !parent.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null ? null
        : value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var number) ? number
        : throw new JsonException(Invariant($"The field '{name}' is {JsonShown.Value(value)}; it must be a 32-bit whole number (at most {int.MaxValue:N0})."));

    private static ulong CountField(JsonElement parent, string name) => CountValue(Required(parent, name), name);

    /// <summary>
    /// A count as every reader of counts takes it: a whole number up to <see cref="MaxCount"/>. A larger
    /// one no run records, and the next record would wrap it.
    /// </summary>
    internal static ulong CountValue(JsonElement element, string shownAs)
    {
        if (element.ValueKind != JsonValueKind.Number || !element.TryGetUInt64(out var count))
        {
            throw new JsonException(Invariant($"The field '{shownAs}' is {JsonShown.Value(element)}; a count is a whole number from 0 to {MaxCount:N0}."));
        }

        return count <= MaxCount ? count : throw new JsonException(Invariant($"The field '{shownAs}' is {count}; a count is at most {MaxCount:N0}."));
    }

    /// <summary><see cref="CountValue(JsonElement, string)"/> for entry <paramref name="index"/> of the array <paramref name="name"/>, named only when refused.</summary>
    internal static ulong CountValue(JsonElement element, string name, int index) =>
        element.ValueKind == JsonValueKind.Number && element.TryGetUInt64(out var count) && count <= MaxCount
            ? count
            : CountValue(element, Entry(name, index));

    /// <summary><paramref name="name"/>'s entry <paramref name="index"/> as a message names it (<c>expert_token_counts[3]</c>); the name alone for -1.</summary>
    internal static string Entry(string name, int index) => index < 0 ? name : Invariant($"{name}[{index}]");

    private static ulong[] Counts(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Array
            ? [.. element.EnumerateArray().Select((value, i) => CountValue(value, name, i))]
            : throw new JsonException(Invariant($"The field '{name}' must be an array."));

    /// <summary>A float as the file has it: null for NaN or an infinity (the writer's null).</summary>
    private static string Shown<T>(T value)
        where T : IFloatingPointIeee754<T> =>
        T.IsFinite(value) ? value.ToString(null, CultureInfo.InvariantCulture) : "null";

    // −0, which no record writes (every sum starts at +0, and a loss mean that rounds to −0 is taken as 0: LossMean), is
    // read as 0, so no report prints "-0.00 %".
    private static float ReadFloat(JsonElement element, string name) => element.ValueKind switch
    {
        JsonValueKind.Null => float.NaN,
        JsonValueKind.Number when element.TryGetSingle(out var value) && float.IsFinite(value) => value == 0f ? 0f : value,
        JsonValueKind.Number => throw new JsonException(Invariant($"The field '{name}' is {JsonShown.Value(element)}; beyond a float's range (null stands for NaN).")),
        _ => throw new JsonException(Invariant($"The field '{name}' must be a number or null, not {JsonShown.Kind(element.ValueKind)}.")),
    };

    private static double ReadDouble(JsonElement element, double nullMeans, string name) => element.ValueKind switch
    {
        JsonValueKind.Null => nullMeans,
        JsonValueKind.Number when element.TryGetDouble(out var value) && double.IsFinite(value) => value == 0d ? 0d : value,
        JsonValueKind.Number => throw new JsonException(Invariant($"The field '{name}' is {JsonShown.Value(element)}; beyond a double's range (null stands for NaN).")),
        _ => throw new JsonException(Invariant($"The field '{name}' must be a number or null, not {JsonShown.Kind(element.ValueKind)}.")),
    };

    private static float[] ReadFloats(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Array
            ? [.. element.EnumerateArray().Select(e => ReadFloat(e, name))]
            : throw new JsonException(Invariant($"The field '{name}' must be an array."));

    private static double[] ReadDoubles(JsonElement element, string name, double nullMeans) =>
        element.ValueKind == JsonValueKind.Array
            ? [.. element.EnumerateArray().Select(e => ReadDouble(e, nullMeans, name))]
            : throw new JsonException(Invariant($"The field '{name}' must be an array."));
}
