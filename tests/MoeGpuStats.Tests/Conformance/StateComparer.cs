using System.Text.Json.Nodes;

namespace MoeGpuStats.Tests.Conformance;

/// <summary>
/// Compares an observed value with a fixture value under the fixtures' tolerances: integers exact,
/// f32 within a relative 1e-5 (absolute 1e-6 near zero), f64 within a relative 1e-12.
/// Two allowances, both for what the port keeps exactly where the seed rounds (README, "What differs
/// from the seed"): a running mean may differ from the seed's where the fixture gives the exact mean
/// (a state's <c>exact</c>, written by bench/seed-fixtures), the port is within tolerance of it and the
/// seed is not (also what the seed's queries give on the exact means: the summary, the CV, the most and
/// least utilized expert); and the most or least utilized expert may be another index where the port's own
/// utilizations tie within tolerance, if it is the one the seed's rule picks on them.
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

    private const double F32Relative = 1e-5;
    private const double F32Absolute = 1e-6;

    public void F32(string field, JsonNode? expected, float actual) => Close(field, expected, actual, F32Relative, F32Absolute);

    public void F64(string field, JsonNode? expected, double actual) => Close(field, expected, actual, 1e-12, 1e-12);

    /// <summary>
    /// A running mean: the seed's value, or, where <paramref name="exact"/> is given and the seed's f32
    /// recurrence is off it by more than the tolerance, the exact mean.
    /// </summary>
    public void F32Mean(string field, JsonNode? expected, JsonNode? exact, float actual)
    {
        if (exact is not null && expected is not null
            && !IsClose(Decode(expected), actual, F32Relative, F32Absolute)
            && IsClose(Decode(exact), actual, F32Relative, F32Absolute)
            && !IsClose(Decode(exact), Decode(expected), F32Relative, F32Absolute))
        {
            return;
        }

        F32(field, expected, actual);
    }

    /// <summary>Running means element-wise, as <see cref="F32Mean"/>.</summary>
    public void F32Means(string field, JsonNode? expected, JsonNode? exact, IReadOnlyList<float> actual)
    {
        var values = expected!.AsArray();
        var exacts = exact?.AsArray();
        if (values.Count != actual.Count || (exacts is not null && exacts.Count != actual.Count))
        {
            _failures.Add($"{field}: expected {values.Count} values (exact: {exacts?.Count}), got {actual.Count}");
            return;
        }

        for (var i = 0; i < actual.Count; i++)
        {
            F32Mean($"{field}[{i}]", values[i], exacts?[i], actual[i]);
        }
    }

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

    /// <summary>The most utilized expert, as <see cref="Expert(string, JsonNode?, ValueTuple{int, float}?, IReadOnlyList{float}, bool, JsonNode?)"/> with the seed's rule on ties: the last maximum.</summary>
    public void MostUtilized(string field, JsonNode? expected, (int Index, float Utilization)? actual, IReadOnlyList<float> utilization, JsonNode? exact = null) =>
        Expert(field, expected, actual, utilization, most: true, exact);

    /// <summary>The least utilized expert, as <see cref="Expert(string, JsonNode?, ValueTuple{int, float}?, IReadOnlyList{float}, bool, JsonNode?)"/> with the seed's rule on ties: the first minimum.</summary>
    public void LeastUtilized(string field, JsonNode? expected, (int Index, float Utilization)? actual, IReadOnlyList<float> utilization, JsonNode? exact = null) =>
        Expert(field, expected, actual, utilization, most: false, exact);

    /// <summary>
    /// The most or least utilized expert: the seed's index, or another where the engine's own
    /// <paramref name="utilization"/> at the seed's index equals the reported value within tolerance
    /// (a tie the seed's f32 rounding broke; the port's exact means keep it), and the reported expert
    /// is the one the seed's rule (last maximum, first minimum) picks on those utilizations, with its
    /// utilization: a wrong index beside the right value, or another rule on the port's own ties, fails.
    /// </summary>
    private void Expert(string field, JsonNode? expected, (int Index, float Utilization)? actual, IReadOnlyList<float> utilization, bool most, JsonNode? exact)
    {
        if (exact is not null && actual is not null && !Matches(expected, actual.Value) && Matches(exact, actual.Value))
        {
            return;
        }

        if (expected is not null && actual is not null && expected[0]!.GetValue<int>() is var index
            && index != actual.Value.Index && index >= 0 && index < utilization.Count
            && IsClose(utilization[index], actual.Value.Utilization, F32Relative, F32Absolute)
            && utilization.Count > 0 && SeedsPick(utilization, most) == actual.Value.Index
            && utilization[actual.Value.Index].Equals(actual.Value.Utilization))
        {
            F32($"{field}.value", expected[1], actual.Value.Utilization);
            return;
        }

        Expert(field, expected, actual);
    }

    /// <summary>The seed's <c>max_by</c> (the last maximum) or <c>min_by</c> (the first minimum) with <c>partial_cmp</c>, written out here rather than taken from the port.</summary>
    private static int SeedsPick(IReadOnlyList<float> values, bool most)
    {
        var best = 0;
        for (var i = 1; i < values.Count; i++)
        {
            if (most ? !(values[best] > values[i]) : values[best] > values[i])
            {
                best = i;
            }
        }

        return best;
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

    private static bool Matches(JsonNode? pair, (int Index, float Utilization) actual) =>
        pair is not null && pair[0]!.GetValue<int>() == actual.Index && IsClose(Decode(pair[1]!), actual.Utilization, F32Relative, F32Absolute);

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
        if (!IsClose(expected, actual, relative, absolute))
        {
            _failures.Add($"{field}: expected {expected:R}, got {actual:R}");
        }
    }

    private static bool IsClose(double expected, double actual, double relative, double absolute) =>
        expected.Equals(actual) || Math.Abs(expected - actual) <= Math.Max(absolute, relative * Math.Abs(expected));
}
