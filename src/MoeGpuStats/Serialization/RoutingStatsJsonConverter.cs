using System.Text.Json;
using System.Text.Json.Serialization;

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
