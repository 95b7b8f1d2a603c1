using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using System.Text.Json;
using System.Text.Json.Serialization;
using MoeGpuStats.Engines;
using static System.FormattableString;

namespace MoeGpuStats.Serialization;

/// <summary>
/// Reads and writes <see cref="RoutingStats"/> in the shape of the seed's serde derive: snake_case
/// names, <c>routing_latency_stats</c> and <c>capacity_stats</c> nested, non-finite floats as
/// <c>null</c> (a <c>null</c> minimum latency is +infinity: no measurement yet). Fields the seed lacks
/// are written only when they carry information, and unknown fields are skipped, as serde does (up to
/// <see cref="SnapshotFields.MaxFields"/> fields an object, which serde does not bound).
/// A deserialized object is on the managed engine and continues exactly where the written one stopped.
/// </summary>
internal sealed class RoutingStatsJsonConverter : JsonConverter<RoutingStats>
{
    public override RoutingStats Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        JsonTokenCount.CheckSnapshotValue(reader);
        using var document = JsonDocument.ParseValue(ref reader);
        return RoutingStatsJson.FromElement(document.RootElement);
    }

    public override void Write(Utf8JsonWriter writer, RoutingStats value, JsonSerializerOptions options) =>
        RoutingStatsJson.Write(writer, value);
}

/// <summary>The seed-compatible JSON shape, shared by the converter and the snapshot files.</summary>
internal static class RoutingStatsJson
{
    public static void Write(Utf8JsonWriter writer, RoutingStats stats)
    {
        var state = stats.ExportState();
        // One copy: fields read one by one while another thread records would disagree (a recent latency above the largest).
        var latency = stats.RoutingLatencyStats.Copy();
        var options = stats.Options;
        writer.WriteStartObject();
        writer.WriteNumber("total_routings", state.TotalRoutings);
        writer.WriteNumber("total_tokens", state.TotalTokens);
        writer.WriteNumber("tokens_dropped", state.TokensDropped);
        WriteArray(writer, "expert_utilization", state.ExpertUtilization);
        WriteFloat(writer, "average_load_balance_loss", state.AverageLoadBalanceLoss);
        WriteFloat(writer, "average_router_z_loss", state.AverageRouterZLoss);
        WriteFloat(writer, "routing_efficiency", state.RoutingEfficiency);
        writer.WriteStartArray("expert_token_counts");
        foreach (var count in state.ExpertTokenCounts)
        {
            writer.WriteNumberValue(count);
        }

        writer.WriteEndArray();
        writer.WriteStartObject("routing_latency_stats");
        writer.WriteNumber("total_measurements", latency.TotalMeasurements);
        WriteDouble(writer, "total_latency_ms", latency.TotalLatencyMs);
        WriteDouble(writer, "min_latency_ms", latency.MinLatencyMs);
        WriteDouble(writer, "max_latency_ms", latency.MaxLatencyMs);
        writer.WriteStartArray("recent_latencies");
        foreach (var value in latency.RecentLatencies)
        {
            WriteDoubleValue(writer, value);
        }

        writer.WriteEndArray();
        writer.WriteEndObject();
        WriteArray(writer, "load_variance_history", state.LoadVarianceHistory);
        writer.WriteStartObject("capacity_stats");
        WriteFloat(writer, "average_utilization", state.CapacityAverageUtilization);
        WriteFloat(writer, "peak_utilization", state.CapacityPeakUtilization);
        writer.WriteNumber("capacity_exceeded_count", state.CapacityExceededCount);
        writer.WriteNumber("total_capacity", state.TotalCapacity);
        writer.WriteNumber("total_used", state.TotalUsed);
        if (options.ExpertCapacity is { } capacity)
        {
            writer.WriteNumber("slots_per_expert", capacity);
        }

        writer.WriteEndObject();
        if (state.InvalidExpertIds > 0)
        {
            writer.WriteNumber("invalid_expert_ids", state.InvalidExpertIds);
        }

        // The f64 sums behind the means, so that a state read back continues exactly (the seed
        // ignores fields it does not know).
        if (state.TotalRoutings > 0)
        {
            writer.WriteStartArray("expert_utilization_sums");
            foreach (var sum in state.UtilizationSums ?? [])
            {
                WriteDoubleValue(writer, sum);
            }

            writer.WriteEndArray();
            WriteDouble(writer, "load_balance_loss_sum", state.LoadBalanceLossSum ?? 0);
            WriteDouble(writer, "router_z_loss_sum", state.RouterZLossSum ?? 0);
        }

        // Written where records of top-k ids made them differ from the seed's token counts.
        if (state.RoutedSlots != state.TotalTokens || state.SlotsDropped != state.TokensDropped)
        {
            writer.WriteNumber("routed_slots", state.RoutedSlots);
            writer.WriteNumber("slots_dropped", state.SlotsDropped);
        }

        if (options.Experts is { } experts)
        {
            writer.WriteNumber("experts", experts);
        }

        if (stats.MergedParts > 1)
        {
            writer.WriteNumber("merged_parts", stats.MergedParts);
        }

        if (options.UtilizationDecay is { } decay)
        {
            WriteFloat(writer, "utilization_decay", decay);
            WriteArray(writer, "decayed_expert_utilization", state.DecayedExpertUtilization);
        }

        writer.WriteEndObject();
    }

    /// <summary>
    /// The largest count a file may hold: 2^63 − 1, which no run's batches, tokens or slots reach. The slots of capacity
    /// and used stop at it (<see cref="Kernels.StoppedCount"/>); a merge, or a managed record onto a state read near it, that
    /// would take another count past it is refused.
    /// </summary>
    internal const ulong MaxCount = Kernels.RoutingStateLayout.MaxCount;

    /// <summary>
    /// How far a written <c>routing_efficiency</c> may lie from the one its slots give, in percentage
    /// points: the engines compute it from the same counts in float32, whose steps near 100 are 7.6e-6.
    /// </summary>
    private const float EfficiencyTolerance = 1e-4f;

    /// <summary>
    /// How far, relative to it, a written average loss may lie from its f64 sum over the batches: the
    /// average is that quotient rounded to float32 (at most 6e-8 off).
    /// </summary>
    private const double AverageTolerance = 1e-6;

    /// <summary>
    /// The largest share a batch gives an expert: its count over the batch's tokens, where a count is at most
    /// 2^31 − 1 (the ids of a batch, tokens × k, or a decision's count of one expert) and the tokens at least 1.
    /// Utilization, decayed or not, is a mean of such shares.
    /// </summary>
    private const float MaxShare = int.MaxValue;

    /// <summary>
    /// The largest load variance a batch gives: the variance of counts of at most 2^31 − 1 is at most a quarter
    /// of (2^31 − 1)²; the bound is (2^31 − 1)², room for float32's rounding, and 1,000 of them sum in float32.
    /// </summary>
    private const float MaxLoadVariance = (float)int.MaxValue * int.MaxValue;

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
    private static float[] ReadDecayed(JsonElement root, RoutingStatsOptions options, int experts)
    {
        var present = root.TryGetProperty("decayed_expert_utilization", out var element);
        if (options.UtilizationDecay is not { } decay)
        {
            return present
                ? throw new JsonException("decayed_expert_utilization is given without utilization_decay; only statistics with a decay have it.")
                : [];
        }

        var decayed = present
            ? ReadFloats(PerExpert(element, "decayed_expert_utilization"), "decayed_expert_utilization")
            : throw new JsonException(Invariant($"utilization_decay is {decay} but decayed_expert_utilization is missing; statistics with a decay have one per expert."));
        return decayed.Length == experts
            ? decayed
            : throw new JsonException(Invariant($"decayed_expert_utilization has {decayed.Length} entries but expert_utilization has {experts}; it holds one per expert."));
    }

    /// <summary>Counts that no sequence of records leaves behind together: such a file was edited or is another format.</summary>
    private static void CheckCounts(RoutingState state, RoutingStatsOptions options)
    {
        if (state.TokensDropped > state.TotalTokens || state.SlotsDropped > state.RoutedSlots)
        {
            throw new JsonException(
                Invariant($"More dropped than routed: tokens_dropped {state.TokensDropped} of total_tokens {state.TotalTokens}, slots_dropped {state.SlotsDropped} of routed_slots {state.RoutedSlots}."));
        }

        // The per-expert arrays have one length, not checked against experts, which fixes the count of a record of ids
        // only: a decision of another count since leaves arrays of its length, longer or shorter (the seed resizes to it).
        if (state.ExpertUtilization.Length != state.ExpertTokenCounts.Length)
        {
            throw new JsonException(
                Invariant($"expert_utilization has {state.ExpertUtilization.Length} entries but expert_token_counts has {state.ExpertTokenCounts.Length}."));
        }

        if (state.TotalRoutings == 0 && (state.TotalTokens > 0 || state.RoutedSlots > 0 || state.ExpertTokenCounts.Any(count => count > 0)))
        {
            throw new JsonException(Invariant($"total_routings is 0 but total_tokens is {state.TotalTokens}, routed_slots {state.RoutedSlots} and expert_token_counts sum to {Sum(state.ExpertTokenCounts)}: counts without a batch."));
        }

        // One load variance per batch, the newest 1,000 kept, as the seed's record_routing pushes them; a merge keeps the
        // newest 1,000 of its parts' together. Fewer would make the trend a report prints disagree with its batches.
        var histories = Math.Min(state.TotalRoutings, (ulong)ManagedRoutingEngine.HistoryWindow);
        if ((ulong)state.LoadVarianceHistory.Length != histories)
        {
            throw new JsonException(Invariant($"load_variance_history has {state.LoadVarianceHistory.Length} entries for total_routings {state.TotalRoutings}; each batch adds one, the newest {ManagedRoutingEngine.HistoryWindow:N0} kept, so it holds {histories}."));
        }

        // A batch counts at most one time the capacity was exceeded.
        if (state.CapacityExceededCount > state.TotalRoutings)
        {
            throw new JsonException(Invariant($"capacity_exceeded_count is {state.CapacityExceededCount} for total_routings {state.TotalRoutings}; a batch exceeds the capacity at most once."));
        }

        // Every engine, and the seed's record_routing in tokens, counts a batch as exceeding the capacity exactly when it
        // drops one or more; a merge adds both counts. Only a call of the seed's public CapacityStats.update breaks this,
        // and such a state is refused (README). Named tokens_dropped where the slots are the tokens (a seed's file has no slots_dropped).
        if (state.CapacityExceededCount > state.SlotsDropped || (state.SlotsDropped > 0 && state.CapacityExceededCount == 0))
        {
            var dropped = state.SlotsDropped == state.TokensDropped ? "tokens_dropped" : "slots_dropped";
            throw new JsonException(Invariant($"capacity_exceeded_count is {state.CapacityExceededCount} for {dropped} {state.SlotsDropped}; it counts the batches that dropped, each at least one."));
        }

        // Each batch adds its experts (at least 1) times the slots per expert, whatever it routed, up to MaxCount, where
        // the total stops. Only that lower bound is asked: the capacity of a seed's state that CapacityStats.update grew
        // without a batch still reads.
        var slots = (ulong)(options.ExpertCapacity ?? CapacityStats.DefaultSlotsPerExpert);
        var least = (UInt128)state.TotalRoutings * slots;
        if (state.TotalCapacity != MaxCount && (state.TotalCapacity % slots != 0 || state.TotalCapacity < least))
        {
            var given = options.ExpertCapacity is null ? " (the default: slots_per_expert is absent)" : "";
            throw new JsonException(
                Invariant($"capacity_stats.total_capacity is {state.TotalCapacity} for total_routings {state.TotalRoutings} at {slots} slots per expert{given}; each batch adds {slots} times its experts (1 or more), so it is a multiple of {slots}, at least {least}."));
        }

        // A batch of ids uses at most the capacity it is given (what is beyond is dropped), but a RoutingDecision is not
        // cut by it (CapacityStats): its share of the capacity is an expert's slots, at most 2^31 − 1, over the slots per
        // expert. The peak and moving average of the shares are at most that; the margin is the float32 division's.
        if (options.ExpertCapacity is { } perExpert)
        {
            var most = int.MaxValue / (double)perExpert;
            if (!(state.CapacityPeakUtilization <= most * (1 + 1e-6) && state.CapacityAverageUtilization <= most * (1 + 1e-6)))
            {
                throw new JsonException(Invariant($"capacity_stats.peak_utilization is {Shown(state.CapacityPeakUtilization)} and average_utilization {Shown(state.CapacityAverageUtilization)} with slots_per_expert {perExpert}; a batch's share of its capacity is at most (2^31 − 1) / {perExpert} = {most:G6} (an expert's slots over its capacity), and so are both."));
            }
        }

        // Each batch adds the slots it counts to those used, less the ones it dropped (a record of ids; a decision's
        // counts are all used, as the seed's): a change of the experts restarts the counts, not the slots used, and the
        // seed's public CapacityStats.update only adds to those. The slots used stop at MaxCount, where the counts go on.
        var counted = Sum(state.ExpertTokenCounts);
        if (state.TotalUsed < MaxCount && (UInt128)state.TotalUsed + state.SlotsDropped < counted)
        {
            throw new JsonException(Invariant($"capacity_stats.total_used is {state.TotalUsed} and slots_dropped {state.SlotsDropped} but expert_token_counts sum to {counted}; every slot an expert counts was used or dropped."));
        }

        // A slot routed to an expert came with a token; padding rows are tokens that routed none.
        if (state.RoutedSlots > 0 && state.TotalTokens == 0)
        {
            throw new JsonException(Invariant($"routed_slots is {state.RoutedSlots} but total_tokens is 0; a routed slot is some token's."));
        }

        // An invalid id came with a token too: a token is padding only where all its ids are -1.
        if (state.InvalidExpertIds > 0 && state.TotalTokens == 0)
        {
            throw new JsonException(Invariant($"invalid_expert_ids is {state.InvalidExpertIds} but total_tokens is 0; an invalid id is some token's (a token of -1 ids alone is padding)."));
        }

        // A batch is a record of at most 2^31 − 1 ids (tokens × k), each a routed slot or an invalid id, or a decision of at
        // most 2^31 − 1 tokens, each one routed slot: a merge adds the batches with the counts, so a merged file holds this too.
        var batchesHold = (UInt128)state.TotalRoutings * int.MaxValue;
        if (state.TotalTokens > batchesHold)
        {
            throw new JsonException(Invariant($"total_tokens is {state.TotalTokens:N0} for total_routings {state.TotalRoutings:N0}; a batch records at most {int.MaxValue:N0} tokens, so at most {batchesHold:N0}."));
        }

        var ids = (UInt128)state.RoutedSlots + state.InvalidExpertIds;
        if (ids > batchesHold)
        {
            throw new JsonException(Invariant($"routed_slots {state.RoutedSlots:N0} and invalid_expert_ids {state.InvalidExpertIds:N0} are {ids:N0} ids for total_routings {state.TotalRoutings:N0}; a batch records at most {int.MaxValue:N0} ids (tokens × k), so at most {batchesHold:N0}."));
        }
    }

    /// <summary>The exact sum of counts, which up to 2^31 counts of at most 2^63 − 1 cannot wrap.</summary>
    internal static UInt128 Sum(ReadOnlySpan<ulong> counts)
    {
        UInt128 sum = 0;
        foreach (var count in counts)
        {
            sum += count;
        }

        return sum;
    }

    /// <summary>
    /// Shares, their sums, load variances and the capacity's utilization figures are non-negative and
    /// finite in every state a run leaves; a null one (NaN) or a negative one was edited, and a record
    /// would carry a null capacity average on for good. Shares and variances are bounded by what a batch's
    /// counts give, and the capacity's moving average by its peak: past those, sums and means of them overflow.
    /// </summary>
    private static void CheckShares(RoutingState state)
    {
        CheckNonNegative(state.ExpertUtilization, "expert_utilization", "utilization cannot be negative or null");
        CheckNonNegative(state.DecayedExpertUtilization, "decayed_expert_utilization", "utilization cannot be negative or null");
        CheckNonNegative(state.LoadVarianceHistory, "load_variance_history", "a load variance cannot be negative or null");
        CheckNonNegative(state.UtilizationSums ?? [], "expert_utilization_sums", "a sum of shares cannot be negative or null");
        CheckNonNegative(state.CapacityAverageUtilization, "capacity_stats.average_utilization", "a utilization cannot be negative or null");
        CheckNonNegative(state.CapacityPeakUtilization, "capacity_stats.peak_utilization", "a utilization cannot be negative or null");
        const string shareRule = "utilization is a mean of shares, an expert's count over its batch's tokens, at most 2,147,483,647 (2^31 − 1 ids to one expert from one token)";
        const string varianceRule = "a batch's load variance, over counts of at most 2^31 − 1, is at most (2^31 − 1)², about 4.61e18";
        CheckAtMost(state.ExpertUtilization, "expert_utilization", MaxShare, shareRule);
        CheckAtMost(state.DecayedExpertUtilization, "decayed_expert_utilization", MaxShare, shareRule);
        CheckAtMost(state.LoadVarianceHistory, "load_variance_history", MaxLoadVariance, varianceRule);

        // The moving average of the batches' uses is at most the largest of them, and so is a merge's weighted mean of
        // such averages, within float32's rounding of each step.
        if (state.CapacityAverageUtilization > (state.CapacityPeakUtilization * (1 + AverageTolerance)) + float.Epsilon)
        {
            throw new JsonException(Invariant($"capacity_stats.average_utilization is {Shown(state.CapacityAverageUtilization)} above peak_utilization {Shown(state.CapacityPeakUtilization)}; a moving average of the batches' uses is at most the largest."));
        }
    }

    private static void CheckNonNegative<T>(T[] values, string name, string rule)
        where T : IFloatingPointIeee754<T>
    {
        for (var i = 0; i < values.Length; i++)
        {
            if (!(values[i] >= T.Zero))
            {
                CheckNonNegative(values[i], Invariant($"{name}[{i}]"), rule);
            }
        }
    }

    /// <summary>Refuses a value above <paramref name="most"/>: no run records it, and sums and means of it overflow float32 (a trend, a CV, a merge's mean).</summary>
    private static void CheckAtMost(float[] values, string name, float most, string rule)
    {
        for (var i = 0; i < values.Length; i++)
        {
            if (values[i] > most)
            {
                throw new JsonException(Invariant($"{name}[{i}] is {Shown(values[i])}; {rule}."));
            }
        }
    }

    private static void CheckNonNegative<T>(T value, string name, string rule)
        where T : IFloatingPointIeee754<T>
    {
        if (!(value >= T.Zero))
        {
            throw new JsonException(Invariant($"{name} is {Shown(value)}; {rule}."));
        }
    }

    /// <summary>
    /// The efficiency is the percent of routed slots kept, as every engine and a merge compute it from
    /// the slots; it stays 0 while nothing has been routed. Any other value was edited.
    /// </summary>
    private static void CheckEfficiency(RoutingState state)
    {
        var expected = state.RoutedSlots > 0 ? (float)(state.RoutedSlots - state.SlotsDropped) / state.RoutedSlots * 100.0f : 0f;
        if (!(Math.Abs(state.RoutingEfficiency - expected) <= EfficiencyTolerance))
        {
            throw new JsonException(
                Invariant($"routing_efficiency is {Shown(state.RoutingEfficiency)} but routed_slots {state.RoutedSlots} and slots_dropped {state.SlotsDropped} give {expected}; it is the percent of routed slots kept (0 before any)."));
        }
    }

    /// <summary>
    /// Each expert's mean share is its f64 sum over the batches divided by them, as for the losses: a
    /// record continues from the sums and divides them out again, so a mean the sums contradict would
    /// jump (a huge sum to infinity) at the next record. An expert that counted nothing has a mean share,
    /// decayed or not, of 0.
    /// </summary>
    private static void CheckUtilization(RoutingState state)
    {
        for (var e = 0; e < state.ExpertUtilization.Length; e++)
        {
            CheckAverage(state.ExpertUtilization[e], state.UtilizationSums?[e], state.TotalRoutings, "expert_utilization", "expert_utilization_sums", e);

            if (state.ExpertTokenCounts[e] == 0)
            {
                CheckNoShare(state.ExpertUtilization, "expert_utilization", e);
                CheckNoShare(state.DecayedExpertUtilization, "decayed_expert_utilization", e);
            }
        }
    }

    /// <summary>
    /// Refuses a share of expert <paramref name="e"/>, which counted nothing, in <paramref name="shares"/> (empty: none kept):
    /// a share is the expert's count over the batch's tokens, 0 in every batch.
    /// </summary>
    private static void CheckNoShare(float[] shares, string name, int e)
    {
        if (shares.Length > 0 && shares[e] != 0)
        {
            throw new JsonException(
                Invariant($"{name}[{e}] is {Shown(shares[e])} but expert_token_counts[{e}] is 0; an expert that counted no slot had a share of 0 in every batch."));
        }
    }

    /// <summary>
    /// An average (a loss, an expert's share) is its f64 sum over the batches divided by the batches,
    /// rounded to float32; where the file has no sum (the seed's), it is 0 before the first batch,
    /// since the sum taken for it is then 0 and the next record would replace it. With an <paramref name="index"/>
    /// (not -1) the names are of per-expert arrays, and their entry is named only when refused.
    /// </summary>
    private static void CheckAverage(float average, double? sum, ulong routings, string averageName, string sumName, int index = -1)
    {
        if (sum is not { } total)
        {
            if (routings == 0 && average != 0)
            {
                throw new JsonException(Invariant($"{Entry(averageName, index)} is {Shown(average)} with total_routings 0; an average is 0 before the first batch."));
            }

            return;
        }

        var expected = routings == 0 ? 0.0 : total / routings;
        var tolerance = (AverageTolerance * Math.Abs(expected)) + float.Epsilon;
        if (!double.IsFinite(total) || (routings == 0 && total != 0) || !(Math.Abs(average - expected) <= tolerance))
        {
            throw new JsonException(
                Invariant($"{Entry(averageName, index)} is {Shown(average)} but {Entry(sumName, index)} is {Shown(total)} over total_routings {routings}; the average is the sum over the batches divided by them."));
        }

        // The tolerance lets a sum's mean pass float32's range beside an average at its largest value; a merge's mean of
        // two such sums would then be infinite. No run's mean of float32 values rounds to an infinity.
        if (float.IsInfinity((float)expected))
        {
            throw new JsonException(
                Invariant($"{Entry(sumName, index)} is {Shown(total)} over total_routings {routings}, a mean beyond float32's range ({float.MaxValue:G9}); every value averaged is a float32."));
        }
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

    private static void CheckLatency(Latency latency)
    {
        var (measurements, total, min, max, recent) = latency;
        if (double.IsNaN(total) || double.IsNaN(max))
        {
            throw new JsonException(Invariant($"total_latency_ms {Shown(total)}, max_latency_ms {Shown(max)}: they are numbers (only min_latency_ms is null, before the first measurement)."));
        }

        if (total < 0 || min < 0 || max < 0)
        {
            throw new JsonException(Invariant($"total_latency_ms {total}, min_latency_ms {min}, max_latency_ms {max}: latencies cannot be negative."));
        }

        // The seed keeps the newest 1,000 measurements, a merge the newest 1,000 of its parts' together.
        var kept = Math.Min(measurements, (ulong)LatencyStats.WindowSize);
        if ((ulong)recent.Length != kept || (measurements > 0 && min > max))
        {
            throw new JsonException(
                Invariant($"total_measurements {measurements}, {recent.Length} recent_latencies, min_latency_ms {Shown(min)}, max_latency_ms {max}: every run keeps the newest {kept} of its measurements ({LatencyStats.WindowSize:N0} at most), and none has a smallest above the largest."));
        }

        // Before the first measurement the seed's LatencyStats::new() holds: no total, min +infinity (null), max 0.
        if (measurements == 0 && (total != 0 || max != 0 || !double.IsPositiveInfinity(min)))
        {
            throw new JsonException(
                Invariant($"total_measurements is 0 but total_latency_ms is {total}, min_latency_ms {Shown(min)}, max_latency_ms {max}; without a measurement they are 0, null and 0."));
        }

        // A sum of non-negative doubles is at least each of them, rounding included.
        if (total < max)
        {
            throw new JsonException(Invariant($"total_latency_ms {total} is below max_latency_ms {max}; the total sums every measurement."));
        }

        // n measurements sum to between n times the smallest and n times the largest: the mean lies between them. A sum
        // of n non-negative doubles is off by at most n units of its last place (2^-52 each), whatever merges summed
        // it in parts: the margin, with a millionth besides for the few measurements' case.
        var (mean, margin) = (total / measurements, 1e-6 + (measurements * Math.Pow(2, -52)));
        if (measurements > 0 && (mean > max * (1 + margin) || mean < min * (1 - margin)))
        {
            throw new JsonException(Invariant($"total_latency_ms {total} over total_measurements {measurements} is a mean of {mean} ms, outside min_latency_ms {Shown(min)} to max_latency_ms {max}; the mean of measurements lies between the smallest and the largest."));
        }

        if (recent.AsSpan().IndexOfAnyExceptInRange(min, max) is var outside and >= 0)
        {
            throw new JsonException(
                Invariant($"recent_latencies[{outside}] is {recent[outside]} but min_latency_ms is {Shown(min)} and max_latency_ms {max}; every measurement lies between them."));
        }
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

    private static void WriteArray(Utf8JsonWriter writer, string name, float[] values)
    {
        writer.WriteStartArray(name);
        foreach (var value in values)
        {
            if (float.IsFinite(value))
            {
                writer.WriteNumberValue(value);
            }
            else
            {
                writer.WriteNullValue();
            }
        }

        writer.WriteEndArray();
    }

    private static void WriteFloat(Utf8JsonWriter writer, string name, float value)
    {
        writer.WritePropertyName(name);
        if (float.IsFinite(value))
        {
            writer.WriteNumberValue(value);
        }
        else
        {
            writer.WriteNullValue();
        }
    }

    private static void WriteDouble(Utf8JsonWriter writer, string name, double value)
    {
        writer.WritePropertyName(name);
        WriteDoubleValue(writer, value);
    }

    /// <remarks>
    /// .NET 10's shortest formatting writes two exact powers of two, 2^-25 and 2^-958, one digit short, as a string that
    /// parses to the double below (dotnet/runtime#131131, fixed upstream): such a sum read back would continue one unit
    /// in the last place off. A power of two that does not come back is written with 17 digits, which always do, through
    /// a parsed number rather than <c>WriteRawValue</c>, which an indented writer leaves on its neighbour's line in an
    /// array.
    /// </remarks>
    private static void WriteDoubleValue(Utf8JsonWriter writer, double value)
    {
        if (!double.IsFinite(value))
        {
            writer.WriteNullValue();
        }
        else if (double.IsPow2(Math.Abs(value)) && double.Parse(value.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture) != value)
        {
            using var exact = JsonDocument.Parse(value.ToString("G17", CultureInfo.InvariantCulture));
            exact.RootElement.WriteTo(writer);
        }
        else
        {
            writer.WriteNumberValue(value);
        }
    }
}
