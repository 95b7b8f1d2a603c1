using System.Globalization;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text;

namespace MoeGpuStats.Tests;

/// <summary>
/// Every public record prints its members as the compiler does, numbers invariantly: under sv-SE (0,5; −1 with
/// U+2212) a summary logged read differently from its JSON.
/// </summary>
[UseCulture("sv-SE")]
public sealed class RecordTextTests
{
    [Fact]
    public void ARecordPrintsItsNumbersInvariantlyInAnyCulture()
    {
        Assert.Equal(
            "ThroughputStats { TotalTokens = 1024, TotalRoutings = 2, TokensPerRouting = 0.5, RoutingEfficiency = 87.5, AverageLatency = -1.5 }",
            new ThroughputStats(1024, 2, 0.5f, 87.5f, -1.5).ToString());
        Assert.Equal(
            "ExpertAssignment { ExpertId = -1, Probability = 0.25, TokenIndex = 3, ExpertRank = 0 }",
            new ExpertAssignment(-1, 0.25f, 3, 0).ToString());
        Assert.Equal(
            "LayerBalance { Load = 8, MeanLoad = 2, MaxLoad = 4, MinLoad = 0, Balancedness = 0.5, MaxMeanRatio = 2, CoefficientOfVariation = 0.7071, HottestExpert = 1, ColdestExpert = 3, DeadExperts = 1, GiniCoefficient = 0.375, Top10PercentShare = 0.5 }",
            new LayerBalance(8, 2, 4, 0, 0.5, 2, 0.7071, 1, 3, 1, 0.375, 0.5).ToString());
        Assert.Equal(
            "RoutingStatsOptions { Experts = 8, ExpertCapacity = , UtilizationDecay = 0.9 }",
            new RoutingStatsOptions { Experts = 8, UtilizationDecay = 0.9f }.ToString());
        Assert.Equal("sv-SE", Thread.CurrentThread.CurrentCulture.Name);
    }

    [Fact]
    public void AModelsSummaryPrintsInvariantly()
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 3, UtilizationDecay = 0.5f });
        model.RecordStep([0, 0, 1, 2, 3, 3, 3, 1], tokens: 4, topK: 1);
        var summary = model.Summary();

        Assert.DoesNotContain(",5", summary.ToString());
        Assert.DoesNotContain(",3", summary.ToString());
        Assert.Contains("UtilizationDecay = 0.5", model.Options.ToString());
        Assert.Contains("MeanLoad = 1, MaxLoad = 2, MinLoad = 0, Balancedness = 0.5,", summary.Window.Layers[0].ToString());
        Assert.StartsWith("ModelRoutingSummary { Steps = 1, WindowSteps = 1, Window = BalanceSummary { Layers = 2, MinBalancedness = 0.3333333333333333,", summary.ToString());
    }

    /// <summary>The kind: a public record whose text the compiler writes (in the caller's culture) fails here.</summary>
    [Fact]
    public void NoPublicRecordKeepsTheCompilersText()
    {
        var records = PublicRecords();

        Assert.True(records.Count >= 7, string.Join(", ", records));
        Assert.All(records, type => Assert.Null(type.GetMethod(nameof(ToString), Type.EmptyTypes)!.GetCustomAttribute<CompilerGeneratedAttribute>()));
    }

    /// <summary>Each record's text lists the members the compiler's <c>PrintMembers</c> lists, in its order and form (under the invariant culture, where the two agree).</summary>
    [Fact]
    public void EveryPublicRecordListsTheCompilersMembers()
    {
        var culture = CultureInfo.CurrentCulture;
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        try
        {
            foreach (var type in PublicRecords())
            {
                var record = RuntimeHelpers.GetUninitializedObject(type);
                var compilers = new StringBuilder(type.Name).Append(" { ");
                if ((bool)type.GetMethod("PrintMembers", BindingFlags.Instance | BindingFlags.NonPublic)!.Invoke(record, [compilers])!)
                {
                    compilers.Append(' ');
                }

                Assert.Equal(compilers.Append('}').ToString(), record.ToString());
            }
        }
        finally
        {
            CultureInfo.CurrentCulture = culture;
        }
    }

    private static List<Type> PublicRecords() => typeof(RoutingStats).Assembly.GetExportedTypes()
        .Where(type => type.GetMethod("PrintMembers", BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public) is not null)
        .ToList();
}
