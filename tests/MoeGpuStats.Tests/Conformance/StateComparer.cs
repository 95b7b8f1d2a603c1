using System.Text.Json.Nodes;

namespace MoeGpuStats.Tests.Conformance;

/// <summary>
/// Compares an observed value with a fixture value under the fixtures' tolerances: integers exact,
/// f32 within a relative 1e-5 (absolute 1e-6 near zero), f64 within a relative 1e-12.
/// </summary>
public sealed class StateComparer(string context)
{
    private readonly List<string> _failures = [];

    public void Integer(string field, JsonNode? expected, ulong actual)
    {
        if (expected!.GetValue<ulong>() != actual)
        {
            _failures.Add($"{field}: expected {expected}, got {actual}");
        }
    }

    public void F32(string field, JsonNode? expected, float actual) => Close(field, expected, actual, 1e-5, 1e-6);

    public void F64(string field, JsonNode? expected, double actual) => Close(field, expected, actual, 1e-12, 1e-12);

    public void F32s(string field, JsonNode? expected, IReadOnlyList<float> actual)
    {
        var values = expected!.AsArray();
        if (values.Count != actual.Count)
        {
            _failures.Add($"{field}: expected {values.Count} values, got {actual.Count}");
            return;
        }

        for (var i = 0; i < actual.Count; i++)
        {
            F32($"{field}[{i}]", values[i], actual[i]);
        }
    }

    public void Integers(string field, JsonNode? expected, IReadOnlyList<ulong> actual)
    {
        var values = expected!.AsArray();
        if (values.Count != actual.Count)
        {
            _failures.Add($"{field}: expected {values.Count} values, got {actual.Count}");
            return;
        }

        for (var i = 0; i < actual.Count; i++)
        {
            Integer($"{field}[{i}]", values[i], actual[i]);
        }
    }

    public void Expert(string field, JsonNode? expected, (int Index, float Utilization)? actual)
    {
        if (expected is null || actual is null)
        {
            if (expected is not null || actual is not null)
            {
                _failures.Add($"{field}: expected {expected?.ToJsonString() ?? "null"}, got {actual?.ToString() ?? "null"}");
            }

            return;
        }

        Integer($"{field}.index", expected[0], (ulong)actual.Value.Index);
        F32($"{field}.value", expected[1], actual.Value.Utilization);
    }

    public void AssertNone()
    {
        if (_failures.Count > 0)
        {
            Assert.Fail($"{context}: {_failures.Count} mismatches, first ones:\n" + string.Join("\n", _failures.Take(15)));
        }
    }

    private static double Decode(JsonNode node) => node.GetValueKind() == System.Text.Json.JsonValueKind.String
        ? node.GetValue<string>() switch
        {
            "NaN" => double.NaN,
            "Infinity" => double.PositiveInfinity,
            "-Infinity" => double.NegativeInfinity,
            var text => throw new FormatException($"Unexpected float text '{text}'."),
        }
        : node.GetValue<double>();

    private void Close(string field, JsonNode? expectedNode, double actual, double relative, double absolute)
    {
        if (expectedNode is null)
        {
            _failures.Add($"{field}: the fixture has null, got {actual}");
            return;
        }

        var expected = Decode(expectedNode);
        var same = expected.Equals(actual)
            || Math.Abs(expected - actual) <= Math.Max(absolute, relative * Math.Abs(expected));
        if (!same)
        {
            _failures.Add($"{field}: expected {expected:R}, got {actual:R}");
        }
    }
}
