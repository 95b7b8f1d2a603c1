using System.Text.RegularExpressions;
using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>
/// The alerting rules in docs/monitoring: every series they read is one the endpoint serves, and
/// Prometheus's promtool accepts them and passes their unit tests (moegpustats-alerts.test.yml).
/// </summary>
public sealed partial class AlertRulesTests
{
    private static readonly string Rules = Path.Combine(AppContext.BaseDirectory, "monitoring", "moegpustats-alerts.yml");
    private static readonly string RuleTests = Path.Combine(AppContext.BaseDirectory, "monitoring", "moegpustats-alerts.test.yml");

    [Fact]
    public async Task EverySeriesTheRulesReadIsServed()
    {
        var cancel = TestContext.Current.CancellationToken;
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 4, ExpertCapacity = 1 };
        using var model = new ModelRoutingStats(options);
        model.RecordStep(ModelTrace.Ids(1, options.Layers, tokens: 3, seed: 2), tokens: 3, topK: 2);
        using var router = new RoutingStats(new RoutingStatsOptions { Experts = 4, ExpertCapacity = 1 });
        router.RecordRouting([0, 0, 1, 9], tokens: 2, topK: 2);
        var (modelPort, routerPort) = (PrometheusText.FreePort(), PrometheusText.FreePort());
        using var modelEndpoint = MetricsEndpoint.Start(model, "localhost", modelPort, topExperts: 1, expertSeries: false);
        using var routerEndpoint = MetricsEndpoint.Start(router, "localhost", routerPort);
        using var http = new HttpClient();

        var served = new HashSet<string>();
        foreach (var port in new[] { modelPort, routerPort })
        {
            var (_, samples) = PrometheusText.Parse(await http.GetStringAsync($"http://localhost:{port}/metrics", cancel));
            served.UnionWith(samples.Keys.Select(sample => sample.Split('{')[0]));
        }

        var read = SeriesName().Matches(await File.ReadAllTextAsync(Rules, cancel)).Select(match => match.Value).ToHashSet();
        Assert.Contains("moegpustats_moegs_layer_slots_dropped_total", read);
        Assert.Contains("moegpustats_moegs_slots_routed_total", read);
        Assert.All(read, name => Assert.Contains(name, served));
    }

    [Fact]
    public void PromtoolAcceptsTheRulesAndPassesTheirTests()
    {
        var promtool = FindPromtool();
        Assert.SkipWhen(promtool is null, "No promtool here: set MOEGS_PROMTOOL (bash scripts/promtool.sh fetches one) or install Prometheus.");

        var check = ExternalProgram.Run(promtool!, $"check rules \"{Rules}\"", out var checkExit);
        Assert.True(checkExit == 0, check);
        Assert.Contains("SUCCESS: 5 rules found", check);

        var tests = ExternalProgram.Run(promtool!, $"test rules \"{RuleTests}\"", out var testExit);
        Assert.True(testExit == 0, tests);
    }

    private static string? FindPromtool() =>
        new[] { Environment.GetEnvironmentVariable("MOEGS_PROMTOOL"), ExternalProgram.FindOnPath("promtool") }
            .FirstOrDefault(path => !string.IsNullOrEmpty(path) && File.Exists(path));

    [GeneratedRegex(@"\bmoegpustats_[a-z_]+")]
    private static partial Regex SeriesName();
}
