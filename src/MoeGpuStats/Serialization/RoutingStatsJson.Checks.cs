using System.Numerics;
using System.Text.Json;
using MoeGpuStats.Engines;
using static System.FormattableString;

namespace MoeGpuStats.Serialization;

/// <summary>The checks of a state read: counts, shares, averages and latencies that no sequence of records leaves together are refused.</summary>
internal static partial class RoutingStatsJson
{
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
        CheckAtMost(state.DecayedExpertUtilization, "decayed_expert_utilization", (double)MaxShare, shareRule);
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
    private static void CheckAtMost<T>(T[] values, string name, T most, string rule)
        where T : IFloatingPointIeee754<T>
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
    private static void CheckNoShare<T>(T[] shares, string name, int e)
        where T : IFloatingPointIeee754<T>
    {
        if (shares.Length > 0 && shares[e] != T.Zero)
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
}
