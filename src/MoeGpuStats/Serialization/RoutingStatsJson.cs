using System.Globalization;
using System.Text.Json;

namespace MoeGpuStats.Serialization;

/// <summary>The seed-compatible JSON shape, shared by the converter and the snapshot files.</summary>
internal static partial class RoutingStatsJson
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
            WriteArray(writer, "expert_utilization_sums", state.UtilizationSums ?? []);
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
            // The f64 values the engines keep, so that a state read back continues exactly.
            WriteArray(writer, "decayed_expert_utilization", state.DecayedExpertUtilization);
        }

        writer.WriteEndObject();
    }

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

    private static void WriteArray(Utf8JsonWriter writer, string name, double[] values)
    {
        writer.WriteStartArray(name);
        foreach (var value in values)
        {
            WriteDoubleValue(writer, value);
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
