using System.Text.Json.Nodes;

namespace MoeGpuStats.Tests.Conformance;

/// <summary>The comparer's allowance for the most and least utilized expert stays as narrow as README's "Long runs" says.</summary>
public sealed class StateComparerTests
{
    private static bool Accepts(string field, string seed, (int, float) port, float[] utilization)
    {
        var c = new StateComparer("test");
        if (field == "most_utilized")
        {
            c.MostUtilized(field, JsonNode.Parse(seed), port, utilization);
        }
        else
        {
            c.LeastUtilized(field, JsonNode.Parse(seed), port, utilization);
        }

        try
        {
            c.AssertNone();
            return true;
        }
        catch (Xunit.Sdk.FailException)
        {
            return false;
        }
    }

    [Fact]
    public void AnotherIndexWhoseUtilizationIsNotTheReportedOneIsRefused()
    {
        // The port reports the right largest value under a wrong index (an argmax defect): index 1 holds 0.3.
        Assert.False(Accepts("most_utilized", "[2,0.5]", (1, 0.5f), [0.1f, 0.3f, 0.5f]));
        Assert.False(Accepts("least_utilized", "[0,0.1]", (2, 0.1f), [0.1f, 0.3f, 0.5f]));
    }

    [Fact]
    public void AnotherIndexAgainstTheSeedsRuleOnThePortsOwnTieIsRefused()
    {
        // Exactly equal in the port: the seed's rule (last maximum, first minimum) decides, so another index is a port defect.
        Assert.False(Accepts("most_utilized", "[2,0.5]", (0, 0.5f), [0.5f, 0.2f, 0.5f]));
        Assert.False(Accepts("least_utilized", "[0,0.2]", (2, 0.2f), [0.2f, 0.5f, 0.2f]));
    }

    [Fact]
    public void AnotherIndexWhereTheSeedsRoundingBrokeATieIsAccepted()
    {
        // The seed's f32 rounding put index 0 ahead; the port's utilizations put index 2 a rounding step ahead.
        Assert.True(Accepts("most_utilized", "[0,0.5]", (2, 0.50000006f), [0.5f, 0.2f, 0.50000006f]));
        Assert.True(Accepts("least_utilized", "[2,0.2]", (0, 0.19999999f), [0.19999999f, 0.5f, 0.2f]));
        Assert.True(Accepts("most_utilized", "[2,0.5]", (2, 0.5f), [0.5f, 0.2f, 0.5f]));
    }
}
