using System.Text.Json;
using MoeGpuStats.Cli.Output;
using static MoeGpuStats.Tests.Support.PrometheusText;

namespace MoeGpuStats.Tests.Native;

/// <summary>
/// The Python wrapper's Prometheus collector (<c>moegs.ModelMetricsCollector</c>, python/moegs.py) against the CLI's
/// endpoint (<see cref="MetricsEndpoint"/> over <see cref="MoeGpuStats.Telemetry.ModelRoutingStatsMetrics"/>): the alert rules and the
/// dashboard in docs/monitoring/ are written for the endpoint's names, so the collector must serve the same series with the
/// same HELP, TYPE, labels and values. The same steps go into a <see cref="ModelRoutingStats"/> here and, through
/// python/tests/exposition_of_steps.py, into a managed <c>MoeModelStats</c> over libmoegs.so; each phase's two expositions
/// must hold the same samples, both ways.
/// </summary>
public sealed partial class NativeApiTests
{
    private const int MetricsLayers = 3, MetricsExperts = 8, MetricsWindow = 4, MetricsCapacity = 6, MetricsTopK = 2;

    [Theory]
    [InlineData(3, true, null)]
    [InlineData(0, false, 2)]
    [InlineData(MetricsExperts, true, MetricsWindow)]
    public async Task ThePythonCollectorServesTheDotNetEndpointsSamples(int topExperts, bool expertSeries, int? recentSteps)
    {
        var cancel = TestContext.Current.CancellationToken;
        var root = NativeOut();
        var python = PythonWithPrometheusClient() ?? Skip("neither python3 on PATH nor /usr/bin/python3 imports prometheus_client (Debian: apt install python3-prometheus-client)");

        // A scrape before any step, one after seven (ids outside the experts, padding, slots beyond the capacity, few
        // tokens so that loads tie), and one after a reset and three more (the counters go down).
        var rng = new Random(23);
        var phases = new[] { (Reset: false, Steps: 0), (Reset: false, Steps: 7), (Reset: true, Steps: 3) }
            .Select(phase => (phase.Reset, Steps: Enumerable.Range(0, phase.Steps).Select(_ => Step(rng)).ToArray()))
            .ToArray();

        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = MetricsLayers, Experts = MetricsExperts, Window = MetricsWindow, ExpertCapacity = MetricsCapacity });
        var port = FreePort();
        var dotnet = new List<string>();
        using (var endpoint = MetricsEndpoint.Start(model, "localhost", port, topExperts, expertSeries, recentSteps))
        using (var http = new HttpClient())
        {
            foreach (var (reset, steps) in phases)
            {
                if (reset)
                {
                    model.Reset();
                }

                foreach (var step in steps)
                {
                    model.RecordStep(step.Ids, step.Tokens, MetricsTopK, loadBalanceLosses: step.Losses, routerZLosses: step.ZLosses);
                }

                await Task.Delay(TimeSpan.FromSeconds(1.1), cancel); // past the publisher's 1 s refresh interval
                dotnet.Add(await http.GetStringAsync($"http://localhost:{port}/metrics", cancel));
            }
        }

        var folder = Directory.CreateTempSubdirectory("moegs-metrics-");
        try
        {
            var plan = Path.Combine(folder.FullName, "plan.json");
            await File.WriteAllTextAsync(
                plan,
                JsonSerializer.Serialize(new
                {
                    layers = MetricsLayers,
                    experts = MetricsExperts,
                    window = MetricsWindow,
                    expert_capacity = MetricsCapacity,
                    top_experts = topExperts,
                    expert_series = expertSeries,
                    recent_steps = recentSteps,
                    phases = phases.Select(phase => new
                    {
                        reset = phase.Reset,
                        steps = phase.Steps.Select(s => new { ids = s.Ids, tokens = s.Tokens, top_k = MetricsTopK, load_balance_losses = s.Losses, router_z_losses = s.ZLosses }),
                    }),
                }),
                cancel);
            var script = Path.GetFullPath(Path.Combine(root, "..", "..", "python", "tests", "exposition_of_steps.py"));
            var output = ExternalProgram.Run(python, $"\"{script}\" \"{plan}\" \"{folder.FullName}\"", out var exitCode, ("MOEGS_LIB", Path.Combine(root, "libmoegs.so")));
            Assert.True(exitCode == 0, output);

            for (var p = 0; p < phases.Length; p++)
            {
                var expected = Exposition(dotnet[p]);
                var actual = Exposition(await File.ReadAllTextAsync(Path.Combine(folder.FullName, $"scrape{p}.txt"), cancel));
                Assert.Equal(Series(topExperts, expertSeries, recentSteps is not null), expected.Samples.Count);
                Assert.Equal(expected.Help, actual.Help);
                Assert.Equal(expected.Types, actual.Types);

                // Every sample both ways, the differences named (NaN, before any step, equals NaN).
                var missing = expected.Samples.Keys.Except(actual.Samples.Keys).ToList();
                var extra = actual.Samples.Keys.Except(expected.Samples.Keys).ToList();
                var unequal = expected.Samples.Where(s => actual.Samples.TryGetValue(s.Key, out var value) && !s.Value.Equals(value))
                    .Select(s => $"{s.Key}: .NET {s.Value}, Python {actual.Samples[s.Key]}").ToList();
                Assert.True(missing.Count + extra.Count + unequal.Count == 0, $"phase {p}: missing in Python [{string.Join(", ", missing)}]; only in Python [{string.Join(", ", extra)}]; unequal [{string.Join("; ", unequal)}]");
            }

            // The steps did reach both: the counters went up, then down after the reset.
            var steps = phases.Select((_, p) => Exposition(dotnet[p]).Samples["moegpustats_moegs_model_steps_total"]).ToArray();
            Assert.Equal([0.0, 7.0, 3.0], steps);
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    private static long Series(int topExperts, bool expertSeries, bool recentSeries) =>
        MoeGpuStats.Telemetry.ModelRoutingStatsMetrics.SeriesCount(MetricsLayers, MetricsExperts, topExperts, expertSeries, recentSeries);

    /// <summary>One step: 4 to 12 tokens per layer, ids in [-1, experts] (-1 an empty slot, experts an invalid id), losses per layer.</summary>
    private static (int[] Ids, int Tokens, float[] Losses, float[] ZLosses) Step(Random rng)
    {
        var tokens = rng.Next(4, 13);
        var ids = Enumerable.Range(0, MetricsLayers * tokens * MetricsTopK).Select(_ => rng.Next(-1, MetricsExperts + 1)).ToArray();
        var losses = Enumerable.Range(0, MetricsLayers).Select(_ => (float)Math.Round(rng.NextDouble() * 2, 3)).ToArray();
        var zLosses = Enumerable.Range(0, MetricsLayers).Select(_ => (float)Math.Round(rng.NextDouble() / 10, 4)).ToArray();
        return (ids, tokens, losses, zLosses);
    }

    /// <summary>An exposition's HELP and TYPE lines per family and its samples (name with labels to value).</summary>
    private static (Dictionary<string, string> Help, Dictionary<string, string> Types, Dictionary<string, double> Samples) Exposition(string text)
    {
        var (types, samples) = Parse(text);
        var help = text.Split('\n')
            .Where(line => line.StartsWith("# HELP ", StringComparison.Ordinal))
            .Select(line => line["# HELP ".Length..].Split(' ', 2))
            .ToDictionary(parts => parts[0], parts => parts[1]);
        return (help, types, samples);
    }

    /// <summary>python3 on PATH or Debian's /usr/bin/python3 (where .ci/run installs python3-prometheus-client), whichever imports prometheus_client first; null where neither does.</summary>
    private static string? PythonWithPrometheusClient() =>
        new[] { ExternalProgram.FindOnPath("python3"), "/usr/bin/python3" }.FirstOrDefault(python =>
        {
            if (python is null || !File.Exists(python))
            {
                return false;
            }

            ExternalProgram.Run(python, "-c \"import prometheus_client\"", out var exitCode);
            return exitCode == 0;
        });
}
