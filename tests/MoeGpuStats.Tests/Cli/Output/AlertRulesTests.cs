using System.Text.RegularExpressions;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>
/// The alerting rules in docs/monitoring: every series they read is one the endpoint serves,
/// Prometheus's promtool accepts them and passes their unit tests (moegpustats-alerts.test.yml), and a
/// Prometheus that scrapes the endpoints evaluates them without error and fires on what they watch.
/// </summary>
public sealed partial class AlertRulesTests
{
    private static readonly string Rules = Path.Combine(AppContext.BaseDirectory, "monitoring", "moegpustats-alerts.yml");
    private static readonly string RuleTests = Path.Combine(AppContext.BaseDirectory, "monitoring", "moegpustats-alerts.test.yml");

    [Fact]
    public async Task EverySeriesTheRulesReadIsServed()
    {
        var cancel = TestContext.Current.CancellationToken;
        using var routing = new MonitoredRouting();
        var served = await routing.ServedSeriesAsync(cancel);

        var read = SeriesName().Matches(await File.ReadAllTextAsync(Rules, cancel)).Select(match => match.Value).ToHashSet();
        Assert.Contains("moegpustats_moegs_layer_slots_dropped_total", read);
        Assert.Contains("moegpustats_moegs_slots_routed_total", read);
        Assert.All(read, name => Assert.Contains(name, served));
    }

    [Fact]
    public void PromtoolAcceptsTheRulesAndPassesTheirTests()
    {
        var promtool = PrometheusTools.Promtool;
        Assert.SkipWhen(promtool is null, PrometheusTools.Missing);

        var check = ExternalProgram.Run(promtool!, $"check rules \"{Rules}\"", out var checkExit);
        Assert.True(checkExit == 0, check);
        Assert.Contains("SUCCESS: 5 rules found", check);

        var tests = ExternalProgram.Run(promtool!, $"test rules \"{RuleTests}\"", out var testExit);
        Assert.True(testExit == 0, tests);
    }

    [Fact]
    public async Task TheRulesFireOnAPrometheusThatScrapesTheEndpoints()
    {
        var server = PrometheusTools.Server;
        Assert.SkipWhen(server is null, PrometheusTools.Missing);
        var cancel = TestContext.Current.CancellationToken;
        using var routing = new MonitoredRouting();
        using var prometheus = await PrometheusServer.StartAsync(server!, [routing.ModelPort, routing.RouterPort], cancel, Rules);
        await prometheus.WaitForReadingsAsync(4, routing.Step, cancel);

        // The ids outside the experts fire at once, the drops wait their 10 minutes. The rules are evaluated
        // every second apart from the scrapes, and one whose rates saw two scrapes of one reading (the
        // endpoint refreshes it each second) is not yet pending: states are read until both show, for at most Patience.GoAhead.
        var waited = System.Diagnostics.Stopwatch.StartNew();
        var alerts = await prometheus.AlertsAsync(cancel);
        while (!(alerts.Contains(("MoeInvalidExpertIds", "ok", "firing")) && alerts.Contains(("MoeSlotsDropped", "ok", "pending"))) && waited.Elapsed < Patience.GoAhead)
        {
            routing.Step();
            await Task.Delay(250, cancel);
            alerts = await prometheus.AlertsAsync(cancel);
        }

        Assert.Equal(["MoeBalanceBelowUsual", "MoeDeadExperts", "MoeExpertOverloaded", "MoeInvalidExpertIds", "MoeSlotsDropped"], alerts.Select(alert => alert.Name).Order());
        Assert.All(alerts, alert => Assert.Equal("ok", alert.Health));
        Assert.Contains(("MoeInvalidExpertIds", "ok", "firing"), alerts);
        Assert.Contains(("MoeSlotsDropped", "ok", "pending"), alerts);
    }

    /// <summary>A Prometheus that exits at start (a rule it cannot parse) fails the test with its own reason, not only its exit code.</summary>
    [Fact]
    public async Task APrometheusThatExitsSaysWhy()
    {
        var server = PrometheusTools.Server;
        Assert.SkipWhen(server is null, PrometheusTools.Missing);
        var cancel = TestContext.Current.CancellationToken;
        var rules = Path.Combine(Path.GetTempPath(), $"moegs-broken-rules-{Guid.NewGuid():N}.yml");
        await File.WriteAllTextAsync(rules, "groups:\n  - name: broken\n    rules:\n      - alert: Broken\n        expr: sum(\n", cancel);
        try
        {
            var error = await Assert.ThrowsAnyAsync<Xunit.Sdk.XunitException>(() => PrometheusServer.StartAsync(server!, [PrometheusText.FreePort()], cancel, rules));

            Assert.Contains("Prometheus exited", error.Message);
            Assert.Contains("unclosed left parenthesis", error.Message);
        }
        finally
        {
            File.Delete(rules);
        }
    }

    [GeneratedRegex(@"\bmoegpustats_[a-z0-9_]+")]
    private static partial Regex SeriesName();
}
