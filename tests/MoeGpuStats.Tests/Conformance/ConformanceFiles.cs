using System.Text.Json;
using System.Text.Json.Nodes;

namespace MoeGpuStats.Tests.Conformance;

/// <summary>
/// The fixture files: every *.jsonl in MOE_CONFORMANCE_DIR, else the seed's recorded output kept in the
/// repository (tests/MoeGpuStats.Tests/Conformance/fixtures), read from the copy the build puts beside
/// the tests, as the golden PTX and the traces are: the packaged tests of the device check have no
/// source tree, and reading the copy everywhere keeps that copy tested.
/// </summary>
public static class ConformanceFiles
{
    public static string Directory =>
        Environment.GetEnvironmentVariable("MOE_CONFORMANCE_DIR") is { Length: > 0 } configured
            ? configured
            : Path.Combine(AppContext.BaseDirectory, "conformance");

    public static TheoryData<string> Names
    {
        get
        {
            var names = new TheoryData<string>();
            foreach (var file in System.IO.Directory.EnumerateFiles(Directory, "*.jsonl").Order())
            {
                names.Add(Path.GetFileName(file));
            }

            return names;
        }
    }

    public static TheoryData<string, string> NamesByAccelerator
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var name in Names)
            {
                foreach (var kind in TestAccelerators.Kinds)
                {
                    data.Add(name.Data, kind.Data);
                }
            }

            return data;
        }
    }

    public static IEnumerable<JsonObject> Lines(string name) =>
        File.ReadLines(Path.Combine(Directory, name)).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!.AsObject());

    public static RoutingDecision Decision(JsonObject op) => new()
    {
        ExpertCapacities = [.. op["expert_capacities"]!.AsArray().Select(v => v!.GetValue<int>())],
        TotalTokens = op["total_tokens"]!.GetValue<int>(),
        TokensDropped = op["tokens_dropped"]!.GetValue<int>(),
        LoadBalanceLoss = Float(op["load_balance_loss"]!),
        RouterZLoss = Float(op["router_z_loss"]!),
        AuxiliaryLoss = Float(op["auxiliary_loss"]!),
    };

    /// <summary>
    /// Applies one op: a latency, a routing decision, <c>{"reset": true}</c>, or <c>{"reject": OP}</c>, an
    /// input the port refuses on purpose (README, "What differs from the seed"), which the generator
    /// (bench/seed-fixtures) did not play through the seed: it must throw an <see cref="ArgumentException"/>,
    /// and the state dumped after it is the one before.
    /// </summary>
    public static void Apply(RoutingStats stats, JsonObject op)
    {
        if (op.TryGetPropertyValue("reject", out var rejected))
        {
            var refused = rejected!.AsObject();
            var thrown = Record.Exception(() => Apply(stats, refused));
            Assert.True(thrown is ArgumentException, $"{refused.ToJsonString()} should be refused with an ArgumentException; got {thrown?.GetType().Name ?? "none"}");
        }
        else if (op.ContainsKey("reset"))
        {
            stats.Reset();
        }
        else if (op.TryGetPropertyValue("latency_nanos", out var nanos))
        {
            stats.RecordRoutingLatency(TimeSpan.FromTicks(nanos!.GetValue<long>() / 100));
        }
        else
        {
            stats.RecordRouting(Decision(op));
        }
    }

    /// <summary>An f32 of an op: a number, or "NaN", "Infinity", "-Infinity" as a state writes them.</summary>
    private static float Float(JsonNode node) => node.GetValueKind() == JsonValueKind.String
        ? node.GetValue<string>() switch
        {
            "NaN" => float.NaN,
            "Infinity" => float.PositiveInfinity,
            "-Infinity" => float.NegativeInfinity,
            var text => throw new FormatException($"Unexpected float text '{text}'."),
        }
        : node.GetValue<float>();

    public static JsonElement ToElement(JsonNode node) => JsonDocument.Parse(node.ToJsonString()).RootElement;
}
