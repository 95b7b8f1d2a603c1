using System.Text.Json;
using System.Text.RegularExpressions;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>
/// The Grafana dashboard in docs/monitoring: every series it reads is one the endpoints serve, its
/// panels tile Grafana's 24-column grid and take the dashboard's data source, every variable a query
/// names is defined, and every query, run by a Prometheus that scrapes the endpoints, answers a
/// finite value for every series it draws.
/// </summary>
public sealed partial class DashboardTests
{
    private const int GridColumns = 24;

    /// <summary>What Grafana puts for the variables when "All" is chosen (their allValue), and a rate interval over several 1 s scrapes.</summary>
    private static readonly Dictionary<string, string> AllChosen = new()
    {
        ["$__rate_interval"] = "1m",
        ["$job"] = ".*",
        ["$instance"] = ".*",
        ["$layer"] = ".*",
    };

    private static readonly JsonElement Dashboard =
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "monitoring", "moegpustats-dashboard.json"))).RootElement;

    private static IEnumerable<JsonElement> Panels => Dashboard.GetProperty("panels").EnumerateArray();

    private static IEnumerable<(string Panel, string RefId, string Expr)> Queries =>
        Panels.Where(panel => panel.TryGetProperty("targets", out _)).SelectMany(panel =>
            panel.GetProperty("targets").EnumerateArray().Select(target =>
                (panel.GetProperty("title").GetString()!, target.GetProperty("refId").GetString()!, target.GetProperty("expr").GetString()!)));

    private static IEnumerable<JsonElement> Variables => Dashboard.GetProperty("templating").GetProperty("list").EnumerateArray();

    [Fact]
    public async Task EverySeriesTheDashboardReadsIsServed()
    {
        using var routing = new MonitoredRouting();
        var served = await routing.ServedSeriesAsync(TestContext.Current.CancellationToken);

        var read = Queries.SelectMany(query => SeriesName().Matches(query.Expr)).Select(match => match.Value).ToHashSet();
        Assert.Contains("moegpustats_moegs_model_balancedness_token_weighted", read);
        Assert.Contains("moegpustats_moegs_routing_latency_seconds_bucket", read);
        Assert.Contains("moegpustats_moegs_model_recent_balancedness_token_weighted", read);
        Assert.All(read, name => Assert.Contains(name, served));
    }

    [Fact]
    public void PanelsTileTheGridAndTakeTheDashboardsDataSource()
    {
        var ids = Panels.Select(panel => panel.GetProperty("id").GetInt32()).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());

        var cells = new HashSet<(int Row, int Column)>();
        foreach (var panel in Panels)
        {
            var title = panel.GetProperty("title").GetString();
            var grid = panel.GetProperty("gridPos");
            var (x, y, w, h) = (grid.GetProperty("x").GetInt32(), grid.GetProperty("y").GetInt32(), grid.GetProperty("w").GetInt32(), grid.GetProperty("h").GetInt32());
            Assert.True(x >= 0 && w >= 1 && x + w <= GridColumns && y >= 0 && h >= 1, $"{title}: x {x}, w {w}, y {y}, h {h} leaves the grid");
            for (var row = y; row < y + h; row++)
            {
                for (var column = x; column < x + w; column++)
                {
                    Assert.True(cells.Add((row, column)), $"{title} overlaps another panel at row {row}, column {column}");
                }
            }

            if (panel.GetProperty("type").GetString() == "row")
            {
                continue;
            }

            Assert.Equal("${datasource}", panel.GetProperty("datasource").GetProperty("uid").GetString());
            var targets = panel.GetProperty("targets").EnumerateArray().ToList();
            Assert.NotEmpty(targets);
            Assert.All(targets, target => Assert.Equal("${datasource}", target.GetProperty("datasource").GetProperty("uid").GetString()));
            Assert.Equal(targets.Count, targets.Select(target => target.GetProperty("refId").GetString()).Distinct().Count());
        }

        Assert.Contains(Variables, variable => variable.GetProperty("name").GetString() == "datasource" && variable.GetProperty("query").GetString() == "prometheus");
    }

    [Fact]
    public void EveryVariableAQueryUsesIsDefined()
    {
        var defined = Variables.Select(variable => "$" + variable.GetProperty("name").GetString()).Append("$__rate_interval").ToHashSet();
        var used = Queries.Select(query => query.Expr)
            .Concat(Variables.Where(variable => variable.GetProperty("type").GetString() == "query").Select(variable => variable.GetProperty("query").GetString()!))
            .SelectMany(text => VariableName().Matches(text))
            .Select(match => match.Value)
            .ToHashSet();

        Assert.Equal(["$__rate_interval", "$instance", "$job", "$layer"], used.Order());
        Assert.Subset(defined, used);
        Assert.All(AllChosen.Keys, variable => Assert.Contains(variable, defined));
        Assert.All(
            Variables.Where(variable => variable.GetProperty("type").GetString() == "query"),
            variable => Assert.Equal(".*", variable.GetProperty("allValue").GetString()));
    }

    [Fact]
    public async Task EveryQueryAnswersOnAPrometheusThatScrapesTheEndpoints()
    {
        var server = PrometheusTools.Server;
        Assert.SkipWhen(server is null, PrometheusTools.Missing);
        var cancel = TestContext.Current.CancellationToken;
        using var routing = new MonitoredRouting();
        using var prometheus = await PrometheusServer.StartAsync(server!, [routing.ModelPort, routing.RouterPort], cancel);
        await prometheus.WaitForReadingsAsync(4, routing.Step, cancel);

        foreach (var (panel, refId, expr) in Queries)
        {
            var samples = await prometheus.QueryAsync(AsGrafanaSendsIt(expr), cancel);
            Assert.True(samples.Length > 0, $"{panel} ({refId}) draws nothing: {expr}");
            Assert.All(samples, sample => Assert.True(double.IsFinite(PrometheusServer.Value(sample)), $"{panel} ({refId}): {sample}"));
        }

        foreach (var variable in Variables.Where(variable => variable.GetProperty("type").GetString() == "query"))
        {
            var match = LabelValues().Match(variable.GetProperty("query").GetString()!);
            Assert.True(match.Success, variable.ToString());
            var series = await prometheus.SeriesAsync(AsGrafanaSendsIt(match.Groups["selector"].Value), cancel);
            var label = match.Groups["label"].Value;
            Assert.Contains(series, labels => labels.TryGetProperty(label, out _));
        }
    }

    private static string AsGrafanaSendsIt(string expr) =>
        AllChosen.Aggregate(expr, (text, variable) => text.Replace(variable.Key, variable.Value, StringComparison.Ordinal));

    [GeneratedRegex(@"\bmoegpustats_[a-z0-9_]+\b(?!\()")]
    private static partial Regex SeriesName();

    [GeneratedRegex(@"\$[A-Za-z_]+")]
    private static partial Regex VariableName();

    [GeneratedRegex(@"^label_values\((?<selector>.+), (?<label>[a-z_]+)\)$")]
    private static partial Regex LabelValues();
}
