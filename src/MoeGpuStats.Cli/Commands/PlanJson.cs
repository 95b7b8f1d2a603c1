using System.Text.Json;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Placement;

namespace MoeGpuStats.Cli.Commands;

/// <summary>
/// <c>plan --json</c>'s output: the plan in EPLB's shapes and the balancedness before and after. It is written layer
/// by layer: EPLB's padded log2phy has layers x E x (most replicas) entries, more than one buffer should hold.
/// </summary>
internal static class PlanJson
{
    private delegate ReadOnlySpan<int> LayerRow(int layer);

    /// <summary>The plan as one JSON object and a line end.</summary>
    /// <param name="output">Where the JSON goes.</param>
    /// <param name="plan">The placement EPLB chose.</param>
    /// <param name="before">Each layer's balancedness before the plan; null where there is none to compare.</param>
    /// <param name="after">Each layer's balancedness under the plan.</param>
    public static void Write(TextWriter output, PlacementPlan plan, double[]? before, double[] after)
    {
        using var json = new JsonOut(output);
        var writer = json.Writer;
        writer.WriteStartObject();
        writer.WriteString("algorithm", "DeepSeek EPLB");
        writer.WriteString("policy", plan.Policy == PlacementPolicy.Hierarchical ? "hierarchical" : "global");
        writer.WriteNumber("layers", plan.Layers);
        writer.WriteNumber("logical_experts", plan.LogicalExperts);
        writer.WriteNumber("physical_experts", plan.PhysicalExperts);
        writer.WriteNumber("groups", plan.Groups);
        writer.WriteNumber("nodes", plan.Nodes);
        writer.WriteNumber("gpus", plan.Gpus);
        WriteRows(json, "physical_to_logical", plan, plan.PhysicalToLogical);
        WriteLogicalToPhysical(json, plan);
        WriteRows(json, "replica_counts", plan, plan.ReplicaCounts);
        writer.WritePropertyName("balancedness_before");
        if (before is null)
        {
            writer.WriteNullValue();
        }
        else
        {
            writer.WriteStartArray();
            Array.ForEach(before, writer.WriteNumberValue);
            writer.WriteEndArray();
        }

        writer.WriteStartArray("balancedness_after");
        Array.ForEach(after, writer.WriteNumberValue);
        writer.WriteEndArray();
        writer.WriteEndObject();
        json.Drain();
        output.WriteLine();
    }

    /// <summary><c>logical_to_physical</c>: per layer, each expert's slots.</summary>
    private static void WriteLogicalToPhysical(JsonOut json, PlacementPlan plan)
    {
        var writer = json.Writer;
        writer.WriteStartArray("logical_to_physical");
        for (var layer = 0; layer < plan.Layers; layer++)
        {
            writer.WriteStartArray();
            for (var e = 0; e < plan.LogicalExperts; e++)
            {
                // EPLB's shape: one rectangular tensor, shorter lists padded with -1.
                writer.WriteStartArray();
                var replicas = plan.LogicalToPhysical(layer, e);
                for (var rank = 0; rank < plan.MaxReplicas; rank++)
                {
                    writer.WriteNumberValue(rank < replicas.Length ? replicas[rank] : -1);
                }

                writer.WriteEndArray();
                json.DrainWhenFull();
            }

            writer.WriteEndArray();
        }

        writer.WriteEndArray();
    }

    private static void WriteRows(JsonOut json, string name, PlacementPlan plan, LayerRow row)
    {
        json.Writer.WriteStartArray(name);
        for (var layer = 0; layer < plan.Layers; layer++)
        {
            WriteArray(json.Writer, row(layer));
            json.DrainWhenFull();
        }

        json.Writer.WriteEndArray();
    }

    private static void WriteArray(Utf8JsonWriter writer, ReadOnlySpan<int> values)
    {
        writer.WriteStartArray();
        foreach (var value in values)
        {
            writer.WriteNumberValue(value);
        }

        writer.WriteEndArray();
    }
}
