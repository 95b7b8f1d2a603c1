using System.Globalization;
using System.Text.RegularExpressions;
using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Serialization;
using static MoeGpuStats.Tests.Support.Moegs;

namespace MoeGpuStats.Tests.Cli.Commands;

/// <summary><c>moegs simulate</c> run in-process (and as a process where it must be signalled): exit codes, the one-line errors, the report and the files.</summary>
public sealed class SimulateCommandTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-cli-");

    /// <summary>
    /// --ep-size N adds the model's balance over N ranks holding the experts in order (vLLM's logged
    /// balancedness before a rebalance): each layer's rank loads summed from its window load, then
    /// Σ mean / Σ max; an N that does not divide the experts, or one without --layers, is refused.
    /// </summary>
    [Fact]
    public void EpSizeReportsTheBalanceOverRanksOfExpertsInOrder()
    {
        const int Layers = 3, Experts = 16, Ranks = 4;
        var load = Path.Combine(_folder.FullName, "load.json");
        var (code, output, error) = Run("simulate", "--layers", $"{Layers}", "--experts", $"{Experts}", "--top-k", "2", "--tokens", "32", "--steps", "20", "--ep-size", $"{Ranks}", "--json", "--window-load", load);
        Assert.True(code == ExitCodes.Ok, error);

        using var report = System.Text.Json.JsonDocument.Parse(output);
        using var window = System.Text.Json.JsonDocument.Parse(File.ReadAllText(load));
        double means = 0, maxima = 0;
        var balancedness = new List<double>();
        var rankLoads = new List<long[]>();
        foreach (var row in window.RootElement.EnumerateArray())
        {
            var loads = row.EnumerateArray().Select(v => v.GetInt64()).ToArray();
            var ranks = Enumerable.Range(0, Ranks).Select(r => loads.Skip(r * (Experts / Ranks)).Take(Experts / Ranks).Sum()).ToArray();
            rankLoads.Add(ranks);
            means += ranks.Average();
            maxima += ranks.Max();
            balancedness.Add(ranks.Average() / ranks.Max());
        }

        var ep = report.RootElement.GetProperty("ep_ranks");
        var byRank = ep.GetProperty("window");
        var sorted = balancedness.Order().ToArray();
        Assert.Equal(Ranks, ep.GetProperty("ranks").GetInt32());
        Assert.Equal(Experts / Ranks, ep.GetProperty("experts_per_rank").GetInt32());
        Assert.Equal(means / maxima, byRank.GetProperty("token_weighted_balancedness").GetDouble(), 12);
        Assert.Equal(sorted[0], byRank.GetProperty("min_balancedness").GetDouble(), 12);
        Assert.Equal(balancedness.IndexOf(sorted[0]), byRank.GetProperty("worst_layer").GetInt32());
        Assert.Equal(sorted[^1], byRank.GetProperty("max_balancedness").GetDouble(), 12);
        Assert.Equal(balancedness.IndexOf(sorted[^1]), byRank.GetProperty("best_layer").GetInt32());
        Assert.Equal(sorted[1], byRank.GetProperty("median_balancedness").GetDouble(), 12);
        // numpy.percentile's linear rank 0.1 × (3 − 1) = 0.2: a fifth of the way from the first to the second.
        Assert.Equal(sorted[0] + (0.2 * (sorted[1] - sorted[0])), byRank.GetProperty("p10_balancedness").GetDouble(), 12);
        Assert.Equal(balancedness.Average(), byRank.GetProperty("mean_balancedness").GetDouble(), 12);
        Assert.True(ep.GetProperty("window").GetProperty("token_weighted_balancedness").GetDouble() > report.RootElement.GetProperty("window").GetProperty("token_weighted_balancedness").GetDouble());
        // Each layer's balance over its ranks, a rank where the experts' per_layer names an expert.
        var perLayer = byRank.GetProperty("per_layer").EnumerateArray().ToArray();
        Assert.Equal(Layers, perLayer.Length);
        for (var l = 0; l < Layers; l++)
        {
            var ranks = rankLoads[l];
            Assert.Equal(
                (l, ranks.Sum(), ranks.Max(), ranks.Min(), System.Array.LastIndexOf(ranks, ranks.Max()), System.Array.IndexOf(ranks, ranks.Min())),
                (perLayer[l].GetProperty("layer").GetInt32(), perLayer[l].GetProperty("load").GetInt64(), perLayer[l].GetProperty("max_load").GetInt64(),
                    perLayer[l].GetProperty("min_load").GetInt64(), perLayer[l].GetProperty("hottest_expert").GetInt32(), perLayer[l].GetProperty("coldest_expert").GetInt32()));
            Assert.Equal(balancedness[l], perLayer[l].GetProperty("balancedness").GetDouble(), 12);
        }

        Assert.Equal(Layers, ep.GetProperty("since_start").GetProperty("per_layer").GetArrayLength());

        (code, output, error) = Run("simulate", "--layers", $"{Layers}", "--experts", $"{Experts}", "--steps", "2", "--ep-size", $"{Ranks}");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"Model over {Ranks} EP ranks ({Experts / Ranks} experts each, in order, as vLLM places them before a rebalance), over all 2 steps", output);
        // The ranks' section names the worst and the best layer over ranks, as the JSON's ep_ranks does.
        var overRanks = output[output.IndexOf("Model over", StringComparison.Ordinal)..].Split('\n').Skip(1).TakeWhile(line => line.Length > 0).ToArray();
        Assert.Contains(overRanks, line => line.StartsWith("  min balancedness", StringComparison.Ordinal) && line.EndsWith(", the worst", StringComparison.Ordinal));
        Assert.Contains(overRanks, line => line.StartsWith("  max balancedness", StringComparison.Ordinal) && line.EndsWith(", the best", StringComparison.Ordinal));

        (code, _, error) = Run("simulate", "--layers", $"{Layers}", "--experts", $"{Experts}", "--ep-size", "3");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("--ep-size 3: 16 experts do not split evenly over 3 ranks; give a divisor of 16.", error.Trim());
        (code, _, error) = Run("simulate", "--experts", $"{Experts}", "--ep-size", $"{Ranks}");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("--ep-size: the balance over expert-parallel ranks is a model's, across its layers; give --layers.", error.Trim());
    }

    public void Dispose() => _folder.Delete(recursive: true);

    [Theory]
    [InlineData("--report-interval -1", "--report-interval -1: give the seconds between periodic reports, from 0 (none) to 86,400")]
    [InlineData("--report-interval NaN", "--report-interval NaN:")]
    [InlineData("--report-interval 1e308", "--report-interval 1e308:")]
    [InlineData("--report-interval soon", "--report-interval soon:")]
    [InlineData("--tokens 1100000000 -k 2", "--tokens 1100000000 with --top-k 2: 2,200,000,000 ids per batch; give tokens x k of at most 2,147,483,647.")]
    [InlineData("--tokens 1e9", "--tokens 1e9: give tokens per batch, a whole number from 1 to 2,147,483,647.")]
    [InlineData("--tokens 0", "--tokens 0: give tokens per batch, a whole number from 1 to 2,147,483,647.")]
    [InlineData("-k 80", "--top-k 80: give at most --experts (64) experts per token")]
    [InlineData("--experts 0", "--experts 0: give the number of experts, a whole number from 1 to 4,096.")]
    [InlineData("--steps -5", "--steps -5:")]
    [InlineData("--steps 0", "--steps 0: give the number of batches (steps of a model), a whole number from 1 to 2,147,483,647.")]
    [InlineData("--skew NaN", "--skew NaN: give the load skew, a number above 0")]
    [InlineData("--skew -2", "--skew -2:")]
    [InlineData("--skew 0", "--skew 0: give the load skew, a number above 0 (1 is uniform).")]
    [InlineData("--skew Infinity", "--skew Infinity: give the load skew, a number above 0 (1 is uniform).")]
    [InlineData("--report-interval 86400.5", "--report-interval 86400.5: give the seconds between periodic reports, from 0 (none) to 86,400 (a day).")]
    [InlineData("--seed 2147483648", "--seed 2147483648: give a random seed, a whole number from -2,147,483,648 to 2,147,483,647.")]
    [InlineData("--capacity 0", "--capacity 0: give slots per expert per batch (of a model: per layer and step), a whole number from 1")]
    [InlineData("--metrics-port 70000", "--metrics-port 70000: give a TCP port, a whole number from 1 to 65,535.")]
    [InlineData("--layers 0", "--layers 0: give the number of layers, a whole number from 1 to 1,024.")]
    [InlineData("--layers 1024 --tokens 300000 -k 8", "--layers 1024 with --tokens 300000 and --top-k 8: 2,457,600,000 ids per step; give layers x tokens x k of at most 2,147,483,647.")]
    [InlineData("--window 10", "--window 10: the sliding window of expert load is a model's; give --layers.")]
    [InlineData("--metrics-top-experts 2", "--metrics-top-experts: shapes a whole model's metrics (one layer's metrics publish every expert); give --layers.")]
    [InlineData("--layers 2 --metrics-expert-series", "--metrics-expert-series: shapes the metrics of --metrics-port, which was not given.")]
    [InlineData("--layers 2 -e 16 --metrics-port 9 --metrics-top-experts 17", "--metrics-top-experts 17: a layer has 16 experts; give 0 to 16.")]
    [InlineData("--metrics-recent-steps 2", "--metrics-recent-steps: publishes the balance over a model's sliding window (one layer's metrics have none); give --layers.")]
    [InlineData("--layers 2 --metrics-recent-steps 2", "--metrics-recent-steps: shapes the metrics of --metrics-port, which was not given.")]
    [InlineData("--layers 2 --metrics-port 9 --metrics-recent-steps 0", "--metrics-recent-steps 0: give the window's newest steps to publish (at most --window), a whole number from 1")]
    [InlineData("--layers 2 --metrics-port 9 --window 10 --metrics-recent-steps 11", "--metrics-recent-steps 11: the window holds 10 steps (--window 10); give 1 to 10.")]
    [InlineData("--layers 600 -e 4096 -k 1 --window 1000", "--window 1000: the window ring would hold 1,000 steps x 600 layers x 4,096 experts = 2,457,600,000 counts; it holds at most 2,147,483,591. Give --window 873 or less.")]
    public void InvalidArgumentsAreOneLineUsageErrorsNamingTheOption(string arguments, string expected)
    {
        var given = arguments.Split(' ');
        string[] small = [.. given.Contains("--steps") ? [] : new[] { "--steps", "3" }, .. given.Contains("--tokens") ? [] : new[] { "--tokens", "8" }];
        var (code, output, error) = Run(["simulate", .. small, .. given]);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Contains(expected, error);
        Assert.Single(error.TrimEnd().Split('\n'));
        foreach (var other in new[] { "--skew", "--capacity", "--experts", "--seed", "--layers" }.Where(o => !expected.Contains(o, StringComparison.Ordinal)))
        {
            Assert.DoesNotContain(other, error);
        }
    }

    /// <summary>Each option's edges are taken: no periodic reports (0) or one a day, the most negative seed.</summary>
    [Theory]
    [InlineData("--report-interval", "0")]
    [InlineData("--report-interval", "86400")]
    [InlineData("--seed", "-2147483648")]
    public void AnOptionAtItsEdgeIsTaken(string option, string value)
    {
        var (code, output, error) = Run("simulate", "--steps", "2", "--tokens", "8", option, value);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.StartsWith("simulate: 2 batches of 8 tokens", output);
    }

    /// <summary>
    /// The recent series count toward the endpoint's 250,000: a refusal they take part in names an option
    /// given (never --metrics-expert-series where it was not), counts the per-expert series as 2 per layer
    /// and expert, and the top-K it advises fits with the recent series.
    /// </summary>
    [Theory]
    // 332 layers, K = 185: 249,675 series, 250,011 with the 4 + 332 recent ones.
    [InlineData("--layers 332 -e 200 --metrics-port 9 --metrics-top-experts 185 --metrics-recent-steps 5", "250,011 in all", "give at most 184.")]
    [InlineData("--layers 332 -e 200 --metrics-port 9 --metrics-top-experts 186 --metrics-recent-steps 5", "--metrics-top-experts 186: 332 layers make 247,008 series (4 per layer and position: a hot and a cold expert and their loads), 251,339 in all", "give at most 184.")]
    [InlineData("--layers 100 -e 1000 --metrics-port 9 --metrics-top-experts 1000 --metrics-recent-steps 5", "--metrics-top-experts 1000: 100 layers make 400,000 series (4 per layer and position: a hot and a cold expert and their loads), 401,315 in all", "give at most 621.")]
    [InlineData("--layers 100 -e 2000 --metrics-port 9 --metrics-top-experts 0 --metrics-expert-series --metrics-recent-steps 5", "--metrics-expert-series: 100 layers × 2,000 experts make 400,000 series (2 per layer and expert), 401,315 in all", "")]
    public void TheRecentSeriesCountTowardTheEndpointsLimitAndItsRefusalNamesTheRightOption(string arguments, string expected, string advice)
    {
        var (code, output, error) = Run(["simulate", "--steps", "1", "--tokens", "1", .. arguments.Split(' ')]);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Single(error.TrimEnd().Split('\n'));
        Assert.Contains(expected, error);
        Assert.Contains(advice, error);
        if (!arguments.Contains("--metrics-expert-series", StringComparison.Ordinal))
        {
            Assert.DoesNotContain("--metrics-expert-series", error);
        }
    }

    [Theory]
    [InlineData("--save", "nodir/x.json", "nodir does not exist")]
    [InlineData("--plot", "nodir/x.png", "nodir does not exist")]
    [InlineData("--plot", "x.gif", "PNG (.png) or JPEG (.jpg, .jpeg)")]
    [InlineData("--save", ".", "is a folder")]
    public void OutputPathsAreCheckedBeforeTheRunAndNamedAsGiven(string option, string relative, string expected)
    {
        var given = Path.Combine(_folder.FullName, relative);
        var (code, output, error) = Run("simulate", "--steps", "500", "--tokens", "64", option, given);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Equal($"{option} {given}: ", error[..(option.Length + given.Length + 3)]);
        Assert.Contains(expected, error);
        Assert.DoesNotContain(".tmp", error);
        Assert.Empty(Directory.GetFiles(_folder.FullName, "*", SearchOption.AllDirectories));
    }

    /// <summary>
    /// A port another program holds is named as the port alone, on the host given (an IPv6 address in brackets), not
    /// with advice to change a host that is fine.
    /// </summary>
    [Theory]
    [InlineData("127.0.0.1", "127.0.0.1")]
    [InlineData("::1", "[::1]")]
    public void APortTakenOnAGoodHostIsNamedAsThePortAlone(string host, string shown)
    {
        var address = System.Net.IPAddress.Parse(host);
        Assert.SkipUnless(address.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6 || System.Net.Sockets.Socket.OSSupportsIPv6, "needs IPv6");
        using var taken = new System.Net.Sockets.TcpListener(address, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;

        var (code, output, error) = Moegs.Run("simulate", "--steps", "1", "--tokens", "2", "--metrics-port", $"{port}", "--metrics-host", host);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.StartsWith($"--metrics-port {port}: cannot serve metrics on {shown}:{port} (", error);
        Assert.DoesNotContain("--metrics-host", error);
        Assert.Single(error.TrimEnd().Split('\n'));
    }

    /// <summary>
    /// A host the endpoint cannot serve on is named with the port, with what a host may be, and why where the name
    /// says it (not the listener's "The request is not supported"): a name that does not resolve, another machine's address,
    /// a mistyped IPv4 address (not called a name).
    /// </summary>
    [Theory]
    [InlineData("no-such-host.invalid", "(no-such-host.invalid does not resolve: ")]
    [InlineData("192.0.2.1", "(192.0.2.1 is not an address of this machine)")]
    [InlineData("256.1.1.1", "(256.1.1.1 is not an IPv4 address: four numbers from 0 to 255, separated by dots)")]
    public void AHostTheEndpointCannotServeOnIsNamed(string host, string why)
    {
        var (code, output, error) = Moegs.Run("simulate", "--steps", "1", "--tokens", "2", "--metrics-port", "1", "--metrics-host", host);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.StartsWith($"--metrics-host {host} --metrics-port 1: cannot serve metrics there (", error);
        Assert.Contains(why, error);
        Assert.EndsWith("give localhost, this machine's name or address (IPv4, or IPv6 bare or in brackets), or + for every interface.", error.Trim());
    }

    /// <summary>A host that is no host is a usage error before the run: an empty one served on every address of the machine.</summary>
    [Theory]
    [InlineData("", "''")]
    [InlineData("[::1]:80", "[::1]:80")]
    public void AHostThatIsNoHostIsAUsageError(string host, string shown)
    {
        var (code, output, error) = Moegs.Run("simulate", "--steps", "1", "--tokens", "2", "--metrics-port", "1", "--metrics-host", host);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.StartsWith($"--metrics-host {shown}: give localhost, this machine's name or address", error);
    }

    /// <summary>
    /// A model's endpoint takes the defaults as the model allows: the hottest and coldest 5 experts of a layer of 4 are its
    /// 4; the newest 10 steps (checked against the default window of 1,000) of a window cut to the 3 steps recorded, as a
    /// large model's is (ReplayCommandTests), are those 3. Neither is refused as a port that cannot serve.
    /// </summary>
    [Theory]
    [InlineData("--layers 2 --experts 4 --tokens 8 --steps 3")]
    [InlineData("--layers 80 --experts 4096 --top-k 1 --tokens 1 --steps 3 --metrics-recent-steps 10")]
    public void AModelsEndpointFitsItsDefaultsToTheModel(string arguments)
    {
        var port = PrometheusText.FreePort();

        var (code, output, error) = Run(["simulate", .. arguments.Split(' '), "--metrics-port", $"{port}"]);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"metrics: ", error);
        Assert.DoesNotContain("cannot serve", error);
        Assert.Contains("Layers, worst first", output);
    }

    [Fact]
    public void ServeAfterNeedsAMetricsPort()
    {
        var (code, _, error) = Run("simulate", "--steps", "1", "--serve-after");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("--serve-after: needs --metrics-port, whose endpoint it keeps serving.", error.Trim());
    }

    /// <summary>--metrics-host alone is a usage error (it was ignored without a word); with --metrics-port it places the endpoint.</summary>
    [Fact]
    public void MetricsHostNeedsAMetricsPort()
    {
        var (code, _, error) = Run("simulate", "--steps", "1", "--metrics-host", "localhost");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("--metrics-host localhost: places the endpoint of --metrics-port, which was not given.", error.Trim());
    }

    [Fact]
    public void TheReportIsPrintedOnceInOneUnitPerKindOfFigure()
    {
        var saved = Path.Combine(_folder.FullName, "run.json");
        var (code, output, error) = Run("simulate", "--steps", "20", "--tokens", "512", "--experts", "16", "--save", saved);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Single(Regex.Matches(output, "Expert load"));
        Assert.DoesNotContain("info:", output + error);
        Assert.DoesNotMatch(@"\d[eE][+-]?\d", output);
        Assert.Contains("engine: ", output);
        Assert.Contains("Capacity: none given (simulate's and replay's --capacity)", output);
        Assert.DoesNotContain("slots used", output);
        Assert.Contains("drawing the random ids is not timed", output);
        Assert.Matches(@"slowest +[0-9.,]+ ms +of 19, too few for a 95th percentile\r?\n", output);

        using var stats = RoutingStatsFile.Load(saved);
        // Drawn ids come without a router, so no loss is made up for them.
        Assert.Equal((0f, 0f), (stats.AverageLoadBalanceLoss, stats.AverageRouterZLoss));
        Assert.Contains("Router losses: none recorded", output);
        var (most, share) = stats.MostUtilizedExpert()!.Value;
        Assert.Matches(string.Create(CultureInfo.InvariantCulture, $@"busiest: expert {most} +{share * 100:0.00} %"), output);
        Assert.Contains("mean of 16 experts", output);
        Assert.Matches(string.Create(CultureInfo.InvariantCulture, $@"  tokens +{stats.TotalTokens:N0}\r?\n"), output);
    }

    [Fact]
    public void JsonIsAloneOnStandardOutputAndTheEngineOnStandardError()
    {
        var (code, output, error) = Run("simulate", "--steps", "3", "--tokens", "32", "--json");

        Assert.True(code == ExitCodes.Ok, error);
        using var document = System.Text.Json.JsonDocument.Parse(output);
        Assert.Equal(3, document.RootElement.GetProperty("total_routings").GetInt32());
        Assert.StartsWith("engine: ", error.Split('\n').Single(line => line.Contains("engine", StringComparison.Ordinal)));
    }

    [Fact]
    public void CapacityFiguresAppearOnlyWithACapacity()
    {
        var (code, output, error) = Run("simulate", "--steps", "5", "--tokens", "256", "--experts", "8", "--capacity", "40");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("Capacity: 40 slots per expert per batch", output);
        Assert.Contains("slots used, all batches", output);
        Assert.Contains("batches that dropped", output);
        Assert.DoesNotContain("none given", output);
    }

    [Fact]
    public void PeriodicReportsGoToStandardErrorInTheReportsUnits()
    {
        // Enough batches for a second report: after each, the next waits nine times that report's own time, and the
        // first compiles the report's code (some 30,000 batches of 8 tokens).
        var (code, output, error) = Run("simulate", "--steps", "100000", "--tokens", "8", "--report-interval", "0.000001");

        Assert.True(code == ExitCodes.Ok, error);
        var periodic = error.Split('\n').Where(line => line.StartsWith("after ", StringComparison.Ordinal)).ToArray();
        Assert.True(periodic.Length >= 2, error);
        Assert.All(periodic, line => Assert.Matches(@"busiest expert \d+ at \d+\.\d\d % of tokens", line));
        Assert.DoesNotMatch("(?m)^after ", output);

        // Due at the first batch, which the line counts as done; the first batch is not timed: until a second, the line
        // says so rather than a time of 0.
        Assert.StartsWith("after 1 of 100,000 batches (", periodic[0]);
        Assert.EndsWith("; no batch timed yet", periodic[0].TrimEnd());
        Assert.All(periodic.Skip(1), line => Assert.Matches(@"; recording [0-9.,]+ ms per batch \(mean\)\r?$", line));
    }

    /// <summary>A model's periodic line likewise: no time of 0 before the second step.</summary>
    [Fact]
    public void AModelsPeriodicReportsSayNoStepIsTimedBeforeTheSecond()
    {
        // Due at the first step; later ones as often as a tenth of the run allows (ReportScheduleTests): the first
        // report compiles the summary's code, and the next waits nine times as long, some 20,000 steps of this model.
        var (code, _, error) = Run("simulate", "--layers", "2", "--experts", "8", "--tokens", "4", "--steps", "100000", "--report-interval", "0.000001");

        Assert.True(code == ExitCodes.Ok, error);
        var periodic = error.Split('\n').Where(line => line.StartsWith("after ", StringComparison.Ordinal)).ToArray();
        Assert.True(periodic.Length >= 2, error);
        Assert.StartsWith("after 1 of 100,000 steps", periodic[0]);
        Assert.EndsWith("; no step timed yet", periodic[0].TrimEnd());
        Assert.All(periodic.Skip(1), line => Assert.Matches(@"window balancedness min [0-9.]+ \(layer \d\), mean [0-9.]+; recording [0-9.,]+ ms per step \(mean\)\r?$", line));
    }

    [Fact]
    public void TemporariesOfKilledSavesAreRemovedAndLiveOnesKept()
    {
        var target = Path.Combine(_folder.FullName, "run.json");
        var guid = Guid.NewGuid().ToString("N");
        var dead = Path.Combine(_folder.FullName, $".run.json.{int.MaxValue}.{guid}.tmp");
        var live = Path.Combine(_folder.FullName, $".run.json.{Environment.ProcessId}.{guid}.tmp");
        var otherTarget = Path.Combine(_folder.FullName, $".other.json.{int.MaxValue}.{guid}.tmp");
        foreach (var file in new[] { dead, live, otherTarget })
        {
            File.WriteAllText(file, "{");
        }

        var (code, _, error) = Run("simulate", "--steps", "2", "--tokens", "16", "--save", target);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.False(File.Exists(dead), "a temporary of a process that is gone stays");
        Assert.True(File.Exists(live), "a temporary of a running process was removed");
        Assert.True(File.Exists(otherTarget), "a temporary of another file was removed");
        Assert.True(File.Exists(target));
    }

    /// <summary>
    /// Names near the file system's 255 bytes are written, and a killed run's temporary of such a name
    /// is removed: a temporary carries the first <see cref="OutputPath.MaxNameBytes"/> bytes of the name.
    /// </summary>
    [Fact]
    public void OutputsWithLongNamesAreWrittenAndTheirStaleTemporariesRemoved()
    {
        var save = Path.Combine(_folder.FullName, new string('s', 240) + ".json");
        var plot = Path.Combine(_folder.FullName, new string('p', 240) + ".png");
        var dead = Path.Combine(_folder.FullName, $".{OutputPath.NameInTemporary(Path.GetFileName(save))}.{int.MaxValue}.{Guid.NewGuid():N}.tmp");
        File.WriteAllText(dead, "{");

        var (code, _, error) = Run("simulate", "--steps", "2", "--tokens", "16", "--save", save, "--plot", plot);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.True(File.Exists(save) && File.Exists(plot));
        Assert.Equal(2, _folder.GetFiles().Length);
        Assert.Equal(OutputPath.MaxNameBytes, OutputPath.NameInTemporary(new string('é', 80)).Length * 2);
    }

    /// <summary>
    /// A model whose window ring the engine cannot allocate is a one-line usage error naming the window, not
    /// an unexpected error: --window where it was given; else where the run's choice came from, the steps to
    /// record where a ring of 1,000 would pass the default's bound, at most the longest within it (109 steps of
    /// 600 × 4,096 in 1 GiB), not a --window never given. A heap limit of 512 MiB makes the managed engine's rings
    /// of 0.98 to 8 GiB fail (run as a process to set it). On ILGPU's CPU accelerator the ring is host memory the
    /// system lends past its limit, and zeroing it touched every page until the kernel killed the process (or, under a
    /// limit the GC alone honours, ran on past it): a ring above what the process has left is refused there too.
    /// </summary>
    [Theory]
    [InlineData("managed", "--layers 1 --experts 4096 --tokens 8 --steps 2 --window 524287", "--window 524287: the model's state (524,287 steps x 1 layer x 4,096 experts in the window) needs ")]
    [InlineData("managed", "--layers 600 --experts 4096 --top-k 1 --tokens 1 --steps 100", "the window of 100 steps (--window not given: the steps to record, as 1,000 would take a ring of 9.2 GiB): the model's state (100 steps x 600 layers x 4,096 experts in the window) needs ")]
    [InlineData("managed", "--layers 600 --experts 4096 --top-k 1 --tokens 1 --steps 900", "the window of 109 steps (--window not given: the longest whose ring fits in 1 GiB, as 1,000 would take a ring of 9.2 GiB): the model's state (109 steps x 600 layers x 4,096 experts in the window) needs ")]
    [InlineData("cpu", "--layers 600 --experts 4096 --top-k 1 --tokens 1 --steps 100", "the window of 100 steps (--window not given: the steps to record, as 1,000 would take a ring of 9.2 GiB): the model's state (100 steps x 600 layers x 4,096 experts in the window) needs ")]
    public void AWindowRingTooLargeForMemoryIsAUsageErrorNamingTheWindow(string accelerator, string arguments, string expected)
    {
        var text = ExternalProgram.Run(
            DotnetHost(),
            $"\"{Path.Combine(AppContext.BaseDirectory, "moegs.dll")}\" simulate {arguments}",
            out var code,
            (RoutingStats.AcceleratorVariable, accelerator),
            ("DOTNET_GCHeapHardLimit", "0x20000000"));

        Assert.Equal(ExitCodes.Usage, code);
        Assert.StartsWith(expected, text);
        Assert.EndsWith("give a shorter --window.", text.TrimEnd());
        Assert.Single(text.TrimEnd().Split('\n'));
    }

    /// <summary>
    /// A batch the machine cannot lend memory for is refused naming --tokens with --top-k, in the words it had
    /// before --layers (a step of a model adds --layers); an address-space limit makes the 8 GiB allocation fail.
    /// </summary>
    [Theory]
    [InlineData("--tokens 2147483647 --top-k 1", "--tokens 2147483647 with --top-k 1: not enough memory for a batch of 2,147,483,647 ids (8.0 GiB).")]
    [InlineData("--layers 3 --tokens 715827882 --top-k 1", "--layers 3 with --tokens 715827882 and --top-k 1: not enough memory for a step of 2,147,483,646 ids (8.0 GiB).")]
    public void IdsTooLargeForMemoryAreAUsageErrorNamingTheOptions(string arguments, string expected)
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "needs ulimit(1) to limit the address space");
        var text = ExternalProgram.Run(
            "/bin/sh",
            $"-c \"ulimit -v 6000000 && exec '{DotnetHost()}' '{Path.Combine(AppContext.BaseDirectory, "moegs.dll")}' simulate --steps 1 {arguments}\"",
            out var code,
            (RoutingStats.AcceleratorVariable, "managed"),
            ("DOTNET_GCHeapHardLimit", "0x40000000"));

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal(expected, text.Trim());
    }

    /// <summary>The help of the options that size a batch says what they size with --layers too: a step of every layer.</summary>
    [Fact]
    public void TheHelpSaysWhatTheBatchOptionsMeanWithLayers()
    {
        var (code, output, _) = Run("simulate", "--help");

        Assert.Equal(ExitCodes.Ok, code);
        var text = Regex.Replace(output, @"\s+", " ");
        string Help(string option, string next) => text[text.IndexOf(option, StringComparison.Ordinal)..text.IndexOf(next, StringComparison.Ordinal)];
        Assert.Contains("layers x tokens x k", Help("--tokens <tokens>", "--steps <steps>"));
        Assert.Contains("--layers", Help("--steps <steps>", "--skew <skew>"));
    }

    /// <summary>The variable is read by the library when the engine is made, so this runs <c>moegs</c> as a process.</summary>
    [Fact]
    public void AnUnknownAcceleratorIsAUsageErrorNotAMissingOne()
    {
        var text = ExternalProgram.Run(DotnetHost(), $"\"{Path.Combine(AppContext.BaseDirectory, "moegs.dll")}\" simulate --steps 1", out var code, (RoutingStats.AcceleratorVariable, "gpu"));

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("MOEGS_ACCELERATOR=gpu: give one of cuda, opencl, cpu, managed, or leave it unset for the best accelerator present.", text.Trim());
    }

    /// <summary>
    /// An accelerator the variable names that this machine lacks is not a usage error but exit code 3, the library's
    /// one line, for one layer and for a whole model alike; where it is present, there is nothing to refuse.
    /// </summary>
    [Theory]
    [InlineData("cuda", ILGPU.Runtime.AcceleratorType.Cuda)]
    [InlineData("opencl", ILGPU.Runtime.AcceleratorType.OpenCL)]
    public void AMissingAcceleratorIsItsOwnExitCode(string kind, ILGPU.Runtime.AcceleratorType type)
    {
        using (var context = ILGPU.Context.Create(builder => builder.Default()))
        {
            Assert.SkipWhen(context.Devices.Any(device => device.AcceleratorType == type), $"this machine has a {kind} device.");
        }

        foreach (var layers in new[] { "", " --layers 2" })
        {
            var text = ExternalProgram.Run(DotnetHost(), $"\"{Path.Combine(AppContext.BaseDirectory, "moegs.dll")}\" simulate --steps 1{layers}", out var code, (RoutingStats.AcceleratorVariable, kind));

            Assert.Equal(ExitCodes.NoAccelerator, code);
            Assert.Equal($"MOEGS_ACCELERATOR={kind}, but ILGPU finds no such accelerator on this machine.", text.Trim());
        }
    }

    /// <summary>
    /// A model's report, snapshot and window load from ILGPU's CPU accelerator are the managed engine's, figure for
    /// figure and byte for byte (the report reads one copy of the state, not the device layer by layer).
    /// </summary>
    [Fact]
    public void AModelsReportAndFilesAreTheSameOnTheCpuAcceleratorAsOnTheManagedEngine()
    {
        string[] outputs = ["snapshot.json", "load.npy"];
        var reports = new Dictionary<string, string>();
        foreach (var engine in new[] { "managed", "cpu" })
        {
            var files = outputs.Select(name => Path.Combine(_folder.FullName, $"{engine}-{name}")).ToArray();
            var text = ExternalProgram.Run(
                DotnetHost(),
                $"\"{Path.Combine(AppContext.BaseDirectory, "moegs.dll")}\" simulate --layers 3 --experts 16 --top-k 2 --tokens 40 --steps 9 --window 4 --capacity 6 --ep-size 4 --json --save \"{files[0]}\" --window-load \"{files[1]}\"",
                out var code,
                (RoutingStats.AcceleratorVariable, engine));
            Assert.True(code == ExitCodes.Ok, text);

            // Standard output, the JSON, comes first; standard error after it (a periodic "after N of M steps" line where
            // the machine is slow, then "engine:"). Times differ by nature.
            var reader = new System.Text.Json.Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(text), new System.Text.Json.JsonReaderOptions { AllowMultipleValues = true });
            using var report = System.Text.Json.JsonDocument.ParseValue(ref reader);
            reports[engine] = string.Join('\n', report.RootElement.EnumerateObject().Where(field => field.Name != "step_time").Select(field => field.ToString()))
                + string.Concat(files.Select(file => Convert.ToHexString(File.ReadAllBytes(file))));
        }

        Assert.Contains("ep_ranks", reports["managed"]);
        Assert.Equal(reports["managed"], reports["cpu"]);
    }

    /// <summary>
    /// A long run stopped with SIGINT or SIGTERM still reports and saves the batches it recorded; one signal sent twice at
    /// once, as timeout(1) sends it to the process and its group, is one request (a later second signal is InterruptionTests').
    /// </summary>
    [Theory]
    [InlineData("INT", 1)]
    [InlineData("TERM", 2)]
    public async Task AnInterruptedRunReportsAndSavesWhatItRecorded(string signal, int times)
    {
        var save = Path.Combine(_folder.FullName, "interrupted.json");
        using var moegs = StartSignallable("simulate", "--steps", "100000000", "--tokens", "64", "--experts", "8", "--report-interval", "1", "--save", save);
        using var cleanup = new ProcessCleanup(moegs);
        var output = moegs.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);

        // The first periodic report says the loop runs, with its signal handlers in place.
        var first = await moegs.StandardError.ReadLineAsync(TestContext.Current.CancellationToken).AsTask().WaitAsync(Patience.GoAhead, TestContext.Current.CancellationToken);
        Assert.NotNull(first);
        var errors = moegs.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        await Signal(moegs, signal, times);

        await moegs.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(Patience.GoAhead, TestContext.Current.CancellationToken);
        Assert.Equal(ExitCodes.Interrupted, moegs.ExitCode);
        Assert.Contains("moegs: stopping after the step at hand", await errors);
        Assert.Contains("interrupted after", await errors);
        Assert.Contains("(interrupted after", await output);
        using var saved = RoutingStatsFile.Load(save);
        Assert.InRange(saved.TotalRoutings, 1UL, 99_999_999UL);
    }

    /// <summary>
    /// A whole model's run stopped with SIGINT likewise: exit code 130, and the steps it recorded, named alike on
    /// standard error, in the report's heading, and in the saved snapshot, each of whose layers counts that many steps.
    /// </summary>
    [Fact]
    public async Task AnInterruptedModelRunReportsAndSavesTheStepsItRecorded()
    {
        var save = Path.Combine(_folder.FullName, "interrupted-model.json");

        var (code, output, error) = await InterruptModelRun(["--save", save], whileRecording: () => { });

        Assert.Equal(ExitCodes.Interrupted, code);
        var stopped = Regex.Match(error, @"(?m)^interrupted after ([0-9,]+) of 100,000,000 steps: reporting and saving what was recorded\.\r?$");
        Assert.True(stopped.Success, error);
        var done = stopped.Groups[1].Value;
        Assert.Contains($"(interrupted after {done} of 100,000,000 steps)", output);
        using var saved = SnapshotFile.Load(save).Model!;
        using var layer = saved.Layer(1);
        Assert.Equal(ulong.Parse(done, NumberStyles.AllowThousands, CultureInfo.InvariantCulture), layer.TotalRoutings);
    }

    /// <summary>An output a stopped model run cannot write (its folder removed meanwhile) wins over the interruption, as it does for one layer: exit code 4, the other files written.</summary>
    [Fact]
    public async Task AnInterruptedModelRunThatCannotWriteAFileSaysSoInItsExitCode()
    {
        var gone = Directory.CreateDirectory(Path.Combine(_folder.FullName, "gone"));
        var save = Path.Combine(_folder.FullName, "kept.json");

        var (code, _, error) = await InterruptModelRun(["--save", save, "--window-load", Path.Combine(gone.FullName, "load.npy")], whileRecording: () => gone.Delete());

        Assert.Equal(ExitCodes.WriteFailed, code);
        Assert.Contains("interrupted after", error);
        Assert.Contains("--window-load", error);
        Assert.True(File.Exists(save), error);
    }

    /// <summary>Runs a model's simulate of many steps as a process, calls <paramref name="whileRecording"/> once it reports, then sends SIGINT.</summary>
    private static async Task<(int Code, string Output, string Error)> InterruptModelRun(string[] outputs, Action whileRecording)
    {
        using var moegs = StartSignallable(["simulate", "--layers", "2", "--steps", "100000000", "--tokens", "64", "--experts", "8", "--report-interval", "1", .. outputs]);
        using var cleanup = new ProcessCleanup(moegs);
        var output = moegs.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);

        // The first periodic report says the loop runs, with its signal handlers in place.
        var first = await moegs.StandardError.ReadLineAsync(TestContext.Current.CancellationToken).AsTask().WaitAsync(Patience.GoAhead, TestContext.Current.CancellationToken);
        Assert.NotNull(first);
        var errors = moegs.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        whileRecording();
        await Interrupt(moegs);

        await moegs.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(Patience.GoAhead, TestContext.Current.CancellationToken);
        return (moegs.ExitCode, await output, await errors);
    }

    /// <summary>
    /// Every batch is recorded, each token to k distinct experts: the saved run holds steps x tokens x k slots, no invalid
    /// id, and no expert more slots than there were tokens; where k is all the experts, each has exactly one slot a
    /// token, even under a skew so steep that nearly every draw names an expert the token already has.
    /// </summary>
    [Theory]
    [InlineData(7, 50, 3, 8, "2")]
    [InlineData(3, 40, 60, 64, "50")]
    [InlineData(2, 30, 8, 8, "50")]
    [InlineData(1, 4, 4096, 4096, "50")]
    [InlineData(2, 30, 8, 8, "0.05")]
    [InlineData(2, 30, 8, 8, "0.00001")] // the title gives the skew as written: 0.### would print 0, a skew the option refuses
    public void TheSavedRunHoldsEveryBatchOfKDistinctExpertsPerToken(int steps, int tokens, int topK, int experts, string skew)
    {
        var saved = Path.Combine(_folder.FullName, "run.json");

        var (code, output, error) = Run("simulate", "--steps", $"{steps}", "--tokens", $"{tokens}", "--top-k", $"{topK}", "--experts", $"{experts}", "--skew", skew, "--save", saved);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"simulate: {Counted.Of(steps, "batch", "batches")} of {tokens} tokens, top-{topK} of {Counted.Of(experts, "expert")}, skew {skew}", output);
        Assert.Contains($"snapshot: {saved}", error);
        using var stats = RoutingStatsFile.Load(saved);
        var slots = (ulong)steps * (ulong)tokens;
        Assert.Equal((ulong)steps, stats.TotalRoutings);
        Assert.Equal(slots, stats.TotalTokens);
        Assert.Equal(experts, stats.ExpertTokenCounts.Count);
        Assert.Equal(slots * (ulong)topK, stats.ExpertTokenCounts.Aggregate(0UL, (sum, count) => sum + count));
        Assert.Equal(0UL, stats.InvalidExpertIds);
        Assert.All(stats.ExpertTokenCounts, count => Assert.InRange(count, topK == experts ? slots : 0UL, slots));
    }

    /// <summary>
    /// The draws of k distinct experts per token equal those of the plain method, token by token: an expert already
    /// drawn is drawn again up to 64 times, then the next expert not yet drawn, cyclically, is taken (a scan of the
    /// token's experts, k² a token, which the forest of free experts replaces). Over skews that keep the draws near
    /// expert 0, that reach the end and wrap, and k up to all the experts; the random source ends where the plain
    /// method leaves it.
    /// </summary>
    [Theory]
    [InlineData(1, 1)]
    [InlineData(8, 8)]
    [InlineData(64, 7)]
    [InlineData(300, 300)]
    [InlineData(4096, 64)]
    public void ATokensExpertsAreThePlainMethodsDraws(int experts, int topK)
    {
        foreach (var skew in new[] { 0.01, 0.05, 0.5, 1, 3, 50 })
        {
            var (fast, plain) = (new int[5 * topK], new int[5 * topK]);
            var (fastRandom, plainRandom) = (new Random(experts + topK), new Random(experts + topK));

            MoeGpuStats.Cli.Commands.SimulateCommand.Fill(fast, fastRandom, experts, topK, skew);
            PlainFill(plain, plainRandom, experts, topK, skew);

            Assert.Equal(plain, fast);
            Assert.Equal(plainRandom.Next(), fastRandom.Next());
        }
    }

    private static void PlainFill(int[] ids, Random random, int experts, int topK, double skew)
    {
        int Draw() => Math.Min(experts - 1, (int)(Math.Pow(random.NextDouble(), skew) * experts));
        for (var token = 0; token < ids.Length / topK; token++)
        {
            var chosen = new List<int>();
            for (var picked = 0; picked < topK; picked++)
            {
                var id = Draw();
                for (var draw = 1; chosen.Contains(id) && draw < 64; draw++)
                {
                    id = Draw();
                }

                while (chosen.Contains(id))
                {
                    id = (id + 1) % experts;
                }

                chosen.Add(id);
            }

            chosen.CopyTo(ids, token * topK);
        }
    }

    /// <summary>
    /// --layers records a whole model: every layer of a step routes the step's tokens to k distinct experts,
    /// each layer with hot experts of its own; the window load written for plan is the layers' counts
    /// (the window holds every step), the same seed repeats the run, and another seed routes other tokens through the
    /// same model (its layers' hot experts).
    /// </summary>
    [Fact]
    public void ALayersRunIsAModelWhoseLayersEachRouteEveryStep()
    {
        const int layers = 3, experts = 16, topK = 2, tokens = 20, steps = 7;
        string Simulate(string name, string seed)
        {
            var saved = Path.Combine(_folder.FullName, $"{name}.json");
            var (code, output, error) = Run(
                "simulate", "--layers", $"{layers}", "--experts", $"{experts}", "--top-k", $"{topK}", "--tokens", $"{tokens}", "--steps", $"{steps}",
                "--seed", seed, "--save", saved, "--window-load", Path.Combine(_folder.FullName, $"{name}.npy"));
            Assert.True(code == ExitCodes.Ok, error);
            Assert.Contains($"simulate: 7 steps of 20 tokens in 3 layers, top-2 of 16 experts, skew 2", output);
            Assert.Contains("Layers, worst first", output);
            return saved;
        }

        using var model = SnapshotFile.Load(Simulate("first", "5")).Model!;
        var window = LoadMatrix.Read(Path.Combine(_folder.FullName, "first.npy"));

        Assert.Equal((layers, experts), (model.Layers, model.Experts));
        var hottest = new HashSet<int>();
        for (var l = 0; l < layers; l++)
        {
            using var layer = model.Layer(l);
            Assert.Equal((ulong)steps, layer.TotalRoutings);
            Assert.Equal((ulong)(steps * tokens), layer.TotalTokens);
            Assert.Equal((ulong)(steps * tokens * topK), layer.ExpertTokenCounts.Aggregate(0UL, (sum, count) => sum + count));
            Assert.All(layer.ExpertTokenCounts, count => Assert.InRange(count, 0UL, (ulong)(steps * tokens)));
            Assert.Equal(0UL, layer.InvalidExpertIds);
            Assert.Equal(layer.ExpertTokenCounts.Select(count => (long)count), Enumerable.Range(0, experts).Select(e => window[l, e]));
            hottest.Add(layer.MostUtilizedExpert()!.Value.Index);
        }

        Assert.True(hottest.Count > 1, "every layer's hottest expert is the same: the layers do not have hot experts of their own");
        using var again = SnapshotFile.Load(Simulate("again", "5")).Model!;
        using var other = SnapshotFile.Load(Simulate("other", "6")).Model!;
        Assert.Equal(model.WindowLoad(), again.WindowLoad());
        Assert.NotEqual(model.WindowLoad(), other.WindowLoad());

        // Another seed routes other tokens through the same model, as another rank of one job: each layer's hot expert stays.
        for (var l = 0; l < layers; l++)
        {
            using var layer = model.Layer(l);
            using var otherLayer = other.Layer(l);
            Assert.Equal(layer.MostUtilizedExpert()!.Value.Index, otherLayer.MostUtilizedExpert()!.Value.Index);
        }
    }

    /// <summary>
    /// A model's run times its RecordStep calls as a layer's run times its batches: every step but the
    /// first (the engine's warm-up), in the report and in --json's step_time, and says what is timed.
    /// </summary>
    [Fact]
    public void AModelsRunReportsTheTimeOfEveryStepButTheFirst()
    {
        var (code, output, error) = Run("simulate", "--layers", "3", "--experts", "8", "--tokens", "4", "--steps", "25");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("Time per step: one RecordStep call", output);
        Assert.Contains("drawing the random ids is not timed, nor the first step", output);
        Assert.Matches(@"\n  mean +[0-9.,]+ ms\r?\n", output);
        Assert.Matches(@"95th percentile +[0-9.,]+ ms +of the newest 24\r?\n", output);
        Assert.Matches(@"tokens per second +[0-9,]+ +the timed steps' tokens, each counted once for all layers", output);

        // Of fewer than 20 times the seed's 95th percentile is not one: the slowest is shown instead, and --json's is null.
        (code, output, error) = Run("simulate", "--layers", "3", "--experts", "8", "--tokens", "4", "--steps", "7");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Matches(@"slowest +[0-9.,]+ ms +of 6, too few for a 95th percentile\r?\n", output);
        Assert.DoesNotContain("95th percentile  ", output);

        (code, output, error) = Run("simulate", "--layers", "3", "--experts", "8", "--tokens", "4", "--steps", "7", "--json");
        Assert.True(code == ExitCodes.Ok, error);
        var time = System.Text.Json.JsonDocument.Parse(output).RootElement.GetProperty("step_time");
        Assert.Equal(6, time.GetProperty("timed_steps").GetInt32());
        Assert.Equal(6, time.GetProperty("p95_steps").GetInt32());
        Assert.True(time.GetProperty("mean_ms").GetDouble() > 0, output);
        Assert.Equal(System.Text.Json.JsonValueKind.Null, time.GetProperty("p95_ms").ValueKind);
        Assert.True(time.GetProperty("max_ms").GetDouble() > 0, output);
        Assert.True(time.GetProperty("tokens_per_second").GetDouble() > 0, output);

        (code, output, error) = Run("simulate", "--layers", "3", "--experts", "8", "--tokens", "4", "--steps", "25", "--json");
        Assert.True(code == ExitCodes.Ok, error);
        time = System.Text.Json.JsonDocument.Parse(output).RootElement.GetProperty("step_time");
        Assert.InRange(time.GetProperty("p95_ms").GetDouble(), double.Epsilon, time.GetProperty("max_ms").GetDouble());

        // One step: none timed, in words and as nulls rather than times of 0.
        (code, output, error) = Run("simulate", "--layers", "3", "--experts", "8", "--tokens", "4", "--steps", "1");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Matches(@"steps timed +none\r?\n", output);
        (code, output, error) = Run("simulate", "--layers", "3", "--experts", "8", "--tokens", "4", "--steps", "1", "--json");
        Assert.True(code == ExitCodes.Ok, error);
        time = System.Text.Json.JsonDocument.Parse(output).RootElement.GetProperty("step_time");
        Assert.Equal(0, time.GetProperty("timed_steps").GetInt32());
        Assert.All(new[] { "mean_ms", "p95_ms", "max_ms", "tokens_per_second" }, name => Assert.Equal(System.Text.Json.JsonValueKind.Null, time.GetProperty(name).ValueKind));
    }

    /// <summary>--seed makes a run repeatable: the same seed saves the same counts and losses, another seed other counts.</summary>
    [Fact]
    public void TheSameSeedRepeatsTheRunAndAnotherSeedDoesNot()
    {
        string Save(string name, string seed)
        {
            var path = Path.Combine(_folder.FullName, name);
            var (code, _, error) = Run("simulate", "--steps", "5", "--tokens", "64", "--experts", "16", "--seed", seed, "--save", path);
            Assert.True(code == ExitCodes.Ok, error);
            return path;
        }

        using var first = RoutingStatsFile.Load(Save("first.json", "7"));
        using var again = RoutingStatsFile.Load(Save("again.json", "7"));
        using var other = RoutingStatsFile.Load(Save("other.json", "8"));

        Assert.Equal(first.ExpertTokenCounts, again.ExpertTokenCounts);
        Assert.Equal(first.AverageLoadBalanceLoss, again.AverageLoadBalanceLoss);
        Assert.NotEqual(first.ExpertTokenCounts, other.ExpertTokenCounts);
    }

    /// <summary>--skew 1 spreads the load evenly; a larger skew sends more of it to the low-numbered experts.</summary>
    [Fact]
    public void ALargerSkewSendsMoreTokensToTheLowNumberedExperts()
    {
        IReadOnlyList<ulong> Counts(string skew)
        {
            var path = Path.Combine(_folder.FullName, $"skew{skew}.json");
            var (code, _, error) = Run("simulate", "--steps", "20", "--tokens", "512", "--experts", "16", "--skew", skew, "--save", path);
            Assert.True(code == ExitCodes.Ok, error);
            using var stats = RoutingStatsFile.Load(path);
            return [.. stats.ExpertTokenCounts];
        }

        var uniform = Counts("1");
        var skewed = Counts("4");

        Assert.True(uniform.Max() < 2 * uniform.Min(), $"skew 1: {string.Join(", ", uniform)}");
        Assert.True(skewed[0] > 2 * uniform[0], $"skew 4: expert 0 has {skewed[0]} slots, {uniform[0]} with skew 1");
        Assert.True(skewed[0] > skewed[15], $"skew 4: {string.Join(", ", skewed)}");
    }
}
