using System.Text.Json;
using MoeGpuStats.Cli;

namespace MoeGpuStats.Tests.Conformance;

/// <summary>
/// Snapshots saved by earlier versions of <c>moegs</c> read with the figures those versions reported: an operator's
/// saved runs stay readable, and stay the same numbers, as the readers grow stricter and the reports grow fields.
/// Each snapshot in <c>earlier-versions/</c> sits beside the <c>report --json</c> its own version printed for it;
/// the file names give the date and commit (<c>earlier-versions/README.md</c> has the commands).
/// </summary>
public sealed class EarlierVersionsTests
{
    private const string ReportSuffix = ".report.json";

    /// <summary>Every snapshot beside its report in the build's copy of the folder, so that a pair added there is read.</summary>
    public static TheoryData<string> Snapshots() => [.. Names()];

    /// <summary>The folder holds the three versions it was made with, each snapshot beside its report.</summary>
    [Fact]
    public void EverySnapshotHasItsReport()
    {
        var snapshots = Directory.GetFiles(Data(""), "*.json").Select(Path.GetFileName).Where(name => !name!.EndsWith(ReportSuffix, StringComparison.Ordinal));

        Assert.Equal(["2026-11-30-b061888-layer", "2026-12-01-37af7cc-model", "2026-12-03-44e5ed5-merged-model"], Names());
        Assert.Equal(Names().Select(name => $"{name}.json"), snapshots.Order(StringComparer.Ordinal));
    }

    /// <summary>Every value of the earlier version's report stands at the same place in today's, equal; today's may add fields.</summary>
    [Theory]
    [MemberData(nameof(Snapshots))]
    public void TodaysReportHoldsEveryFigureTheEarlierVersionReported(string name)
    {
        var (code, output, error) = Moegs.Run("report", Data($"{name}.json"), "--json");

        Assert.True(code == ExitCodes.Ok, error);
        using var earlier = JsonDocument.Parse(File.ReadAllText(Data(name + ReportSuffix)));
        using var today = JsonDocument.Parse(output);
        var compared = AssertHolds(earlier.RootElement, today.RootElement, "$");
        Assert.True(compared > 100, $"{name}: only {compared} values compared");
    }

    private static string Data(string name) => Path.Combine(AppContext.BaseDirectory, "earlier-versions", name);

    private static string[] Names() =>
        [.. Directory.GetFiles(Data(""), "*" + ReportSuffix).Select(path => Path.GetFileName(path)[..^ReportSuffix.Length]).Order(StringComparer.Ordinal)];

    /// <summary>Asserts that every leaf of <paramref name="earlier"/> is in <paramref name="today"/> at <paramref name="path"/>, equal (numbers as doubles); returns how many leaves it compared.</summary>
    private static int AssertHolds(JsonElement earlier, JsonElement today, string path)
    {
        switch (earlier.ValueKind)
        {
            case JsonValueKind.Object:
                Assert.True(today.ValueKind == JsonValueKind.Object, $"{path}: an object earlier, {today.ValueKind} today");
                var leaves = 0;
                foreach (var property in earlier.EnumerateObject())
                {
                    Assert.True(today.TryGetProperty(property.Name, out var value), $"{path}.{property.Name}: gone today");
                    leaves += AssertHolds(property.Value, value, $"{path}.{property.Name}");
                }

                return leaves;
            case JsonValueKind.Array:
                Assert.True(today.ValueKind == JsonValueKind.Array, $"{path}: an array earlier, {today.ValueKind} today");
                Assert.True(earlier.GetArrayLength() == today.GetArrayLength(), $"{path}: {earlier.GetArrayLength()} entries earlier, {today.GetArrayLength()} today");
                return earlier.EnumerateArray().Zip(today.EnumerateArray()).Select((pair, i) => AssertHolds(pair.First, pair.Second, $"{path}[{i}]")).Sum();
            case JsonValueKind.Number:
                Assert.True(today.ValueKind == JsonValueKind.Number, $"{path}: a number earlier, {today.ValueKind} today");
                Assert.True(earlier.GetDouble() == today.GetDouble(), $"{path}: {earlier.GetRawText()} earlier, {today.GetRawText()} today");
                return 1;
            default:
                Assert.True(earlier.ValueKind == today.ValueKind && earlier.ToString() == today.ToString(), $"{path}: {earlier.GetRawText()} earlier, {today.GetRawText()} today");
                return 1;
        }
    }
}
