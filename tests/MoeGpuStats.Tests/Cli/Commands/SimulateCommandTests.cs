using System.Globalization;
using System.Text.RegularExpressions;
using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Commands;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Serialization;
using SkiaSharp;

namespace MoeGpuStats.Tests.Cli;

/// <summary><c>moegs</c> run in-process, as a user runs it: exit codes, the one-line errors, the report.</summary>
public sealed partial class CommandLineTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-cli-");

    public void Dispose() => _folder.Delete(recursive: true);

    internal static (int Code, string Out, string Error) Run(params string[] args)
    {
        using var output = new StringWriter(CultureInfo.InvariantCulture);
        using var error = new StringWriter(CultureInfo.InvariantCulture);
        var code = MoegsCommandLine.RunAsync(args, new CliConsole(output, error, ErrorIsTerminal: false)).GetAwaiter().GetResult();
        return (code, output.ToString(), error.ToString());
    }

    [Theory]
    [InlineData("--report-interval -1", "--report-interval -1: give the seconds between periodic reports, from 0 (none) to 86,400")]
    [InlineData("--report-interval NaN", "--report-interval NaN:")]
    [InlineData("--report-interval 1e308", "--report-interval 1e308:")]
    [InlineData("--report-interval soon", "--report-interval soon:")]
    [InlineData("--tokens 1100000000 -k 2", "--tokens 1100000000 with --top-k 2: 2,200,000,000 ids per batch; give tokens x k of at most 2,147,483,647.")]
    [InlineData("--tokens 1e9", "--tokens 1e9: give tokens per batch, a whole number from 0 to 2,147,483,647.")]
    [InlineData("-k 80", "--top-k 80: give at most --experts (64) experts per token")]
    [InlineData("--experts 0", "--experts 0: give the number of experts, a whole number from 1 to 4,096.")]
    [InlineData("--steps -5", "--steps -5:")]
    [InlineData("--skew NaN", "--skew NaN: give the load skew, a number above 0")]
    [InlineData("--skew -2", "--skew -2:")]
    [InlineData("--capacity 0", "--capacity 0: give slots per expert per batch, a whole number from 1")]
    [InlineData("--metrics-port 70000", "--metrics-port 70000: give a TCP port, a whole number from 1 to 65,535.")]
    public void InvalidArgumentsAreOneLineUsageErrorsNamingTheOption(string arguments, string expected)
    {
        var given = arguments.Split(' ');
        string[] small = [.. given.Contains("--steps") ? [] : new[] { "--steps", "3" }, .. given.Contains("--tokens") ? [] : new[] { "--tokens", "8" }];
        var (code, output, error) = Run(["simulate", .. small, .. given]);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Contains(expected, error);
        Assert.Single(error.TrimEnd().Split('\n'));
        foreach (var other in new[] { "--skew", "--capacity", "--experts", "--seed" }.Where(o => !expected.Contains(o, StringComparison.Ordinal)))
        {
            Assert.DoesNotContain(other, error);
        }
    }

    [Fact]
    public void ReplayExpertsOutOfRangeIsAUsageError()
    {
        var npy = NpyIdsTests.Write(Path.Combine(_folder.FullName, "ids.npy"), "<i4", "2, 1", [.. new[] { 0, 1 }.SelectMany(BitConverter.GetBytes)]);
        var (code, _, error) = Run("replay", npy, "--experts", "5000");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("--experts 5000: give the number of experts, a whole number from 1 to 4,096. Run moegs replay --help for usage.", error.Trim());
    }

    [Theory]
    [InlineData("bogus", "Unrecognized command or argument 'bogus'. Run moegs --help for usage.")]
    [InlineData("replay", "Required argument missing for command: 'replay'. Run moegs replay --help for usage.")]
    public void AParseErrorIsOneLineNamingWhatWasWrongAndWhereHelpIs(string command, string message)
    {
        var (code, _, error) = Run(command);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal(message, error.Trim());
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

    [Fact]
    public void MergeChecksItsOutputBeforeReadingAndNamesMismatchedFiles()
    {
        var four = SaveSnapshot("four.json", experts: 4);
        var eight = SaveSnapshot("eight.json", experts: 8);

        var (code, _, error) = Run("merge", four, four, "-o", Path.Combine(_folder.FullName, "nodir", "c.json"));
        Assert.Equal(ExitCodes.Usage, code);
        Assert.StartsWith($"--output {Path.Combine(_folder.FullName, "nodir", "c.json")}: the folder", error);

        (code, _, error) = Run("merge", four, eight, "-o", Path.Combine(_folder.FullName, "c.json"));
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Equal($"{four} has 4 experts, {eight} has 8; only snapshots of the same experts merge.", error.Trim());
        Assert.DoesNotContain("(Parameter", error);
    }

    [Fact]
    public void TheLargestIntIdWithoutExpertsIsExplainedNotWrapped()
    {
        var npy = NpyIdsTests.Write(Path.Combine(_folder.FullName, "max.npy"), "<i4", "1, 2", [.. new[] { 3, int.MaxValue }.SelectMany(BitConverter.GetBytes)]);
        var (code, _, error) = Run("replay", npy);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("the largest id is 2,147,483,647, which would make 2,147,483,648 experts", error);
        Assert.Contains("give --experts", error);
        Assert.DoesNotContain("-2147483648", error);
    }

    [Fact]
    public void ReplayPassesPaddingThroughAndInfersExpertsWithoutIt()
    {
        int[] ids = [-1, 2, 1, -1, 2, 0, -1, -1];
        var npy = NpyIdsTests.Write(Path.Combine(_folder.FullName, "pad.npy"), "<i4", "2, 2, 2", [.. ids.SelectMany(BitConverter.GetBytes)]);
        var saved = Path.Combine(_folder.FullName, "pad.json");

        var (code, _, error) = Run("replay", npy, "--layout", "steps,tokens,k", "--save", saved);

        Assert.True(code == ExitCodes.Ok, error);
        using var stats = RoutingStatsFile.Load(saved);
        Assert.Equal([1UL, 1UL, 2UL], stats.ExpertTokenCounts);
        Assert.Equal(2UL, stats.TotalRoutings);
    }

    /// <summary>Warm-up passes route every token alike; replay says so and --skip-steps leaves them out.</summary>
    [Fact]
    public void WarmUpStepsAreNamedAndCanBeLeftOut()
    {
        // Two synthetic steps (every token to experts 0 and 1), then a real one.
        int[] ids = [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 1, 2, 3, 0];
        var npy = NpyIdsTests.Write(Path.Combine(_folder.FullName, "warm.npy"), "<i4", "3, 3, 2", [.. ids.SelectMany(BitConverter.GetBytes)]);
        var saved = Path.Combine(_folder.FullName, "warm.json");

        var (all, _, warned) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", "4", "--save", saved);
        Assert.Equal(ExitCodes.Ok, all);
        Assert.Contains("warning: the first 2 steps routed every token to the same experts, as warm-up passes of synthetic tokens do; --skip-steps 2 leaves them out.", warned);

        var (code, output, error) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", "4", "--skip-steps", "2", "--save", saved);
        Assert.Equal(ExitCodes.Ok, code);
        Assert.DoesNotContain("warning", error);
        Assert.Contains("1 step of 3 tokens (the first 2 left out)", output);
        using var stats = RoutingStatsFile.Load(saved);
        Assert.Equal([1UL, 1UL, 2UL, 2UL], stats.ExpertTokenCounts);

        var (tooMany, _, refused) = Run("replay", npy, "--layout", "steps,tokens,k", "--skip-steps", "3");
        Assert.Equal(ExitCodes.Usage, tooMany);
        Assert.Equal($"--skip-steps 3: {npy} has 3 steps; leave out fewer.", refused.Trim());
    }

    [Fact]
    public void ATraceOfOnlyIdenticalStepsIsNamedWithoutSuggestingToSkipThemAll()
    {
        int[] ids = [3, 1, 3, 1, 3, 1, 3, 1];
        var npy = NpyIdsTests.Write(Path.Combine(_folder.FullName, "same.npy"), "<i4", "2, 2, 2", [.. ids.SelectMany(BitConverter.GetBytes)]);
        var (code, _, error) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", "4");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: every step routed every token to the same experts", error);
        Assert.DoesNotContain("--skip-steps", error);

        int[] padded = [-1, -1, -1, -1, 0, 1, 2, 3];
        var pad = NpyIdsTests.Write(Path.Combine(_folder.FullName, "padstep.npy"), "<i4", "2, 2, 2", [.. padded.SelectMany(BitConverter.GetBytes)]);
        var (padCode, _, padError) = Run("replay", pad, "--layout", "steps,tokens,k", "--experts", "4");
        Assert.Equal(ExitCodes.Ok, padCode);
        Assert.DoesNotContain("warning", padError);
    }

    [Fact]
    public void TokensThatNameAnExpertTwiceAreWarnedAbout()
    {
        int[] ids = [0, 0, 1, 2, 3, 3, 2, 1, -1, -1];
        var npy = NpyIdsTests.Write(Path.Combine(_folder.FullName, "twice.npy"), "<i4", "5, 2", [.. ids.SelectMany(BitConverter.GetBytes)]);
        var (code, _, error) = Run("replay", npy);
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: 2 tokens (the first in step 0) name one expert twice among their 2 ids", error);
    }

    /// <summary>No output overwrites an input or another output: refused before anything runs, the files left as they were.</summary>
    [Theory]
    [InlineData("replay IN --layout steps,tokens,k --save IN", "--save IN: is a file this command reads; give another name.")]
    [InlineData("replay IN --layout steps,tokens,k --plot OUT.png --save OUT.png", "--save OUT.png: --plot writes that file too; give another name.")]
    [InlineData("replay IN --layout steps,tokens,k --window-load IN", "--window-load IN: is a file this command reads; give another name.")]
    [InlineData("merge SNAP SNAP -o SNAP", "--output SNAP: is a file this command reads; give another name.")]
    [InlineData("report SNAP --plot SNAP", "--plot SNAP: ")]
    [InlineData("simulate --steps 1 --plot OUT.png --save OUT.png", "--save OUT.png: --plot writes that file too; give another name.")]
    public void NoOutputOverwritesAnInputOrAnotherOutput(string arguments, string expected)
    {
        var input = NpyIdsTests.Write(Path.Combine(_folder.FullName, "in.npy"), "<i4", "2, 1, 2", [.. new[] { 0, 1, 1, 0 }.SelectMany(BitConverter.GetBytes)]);
        var snapshot = SaveSnapshot("snap.json", experts: 4);
        var output = Path.Combine(_folder.FullName, "out");
        var (inputBefore, snapshotBefore) = (File.ReadAllBytes(input), File.ReadAllBytes(snapshot));
        string Place(string text) => text.Replace("IN", input, StringComparison.Ordinal).Replace("SNAP", snapshot, StringComparison.Ordinal).Replace("OUT", output, StringComparison.Ordinal);

        var (code, stdout, error) = Run(Place(arguments).Split(' '));

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(stdout);
        Assert.StartsWith(Place(expected), error);
        Assert.Equal(inputBefore, File.ReadAllBytes(input));
        Assert.Equal(snapshotBefore, File.ReadAllBytes(snapshot));
        Assert.False(File.Exists(output + ".png"));
    }

    /// <summary>A pipe where replay reads a file by position is one line asking for a file, not an unexpected error.</summary>
    [Fact]
    public async Task APipeIsOneLineAskingForAFile()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "needs mkfifo");
        var fifo = Path.Combine(_folder.FullName, "ids.pipe");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", [fifo]))
        {
            await mkfifo.WaitForExitAsync(TestContext.Current.CancellationToken);
        }

        var writer = Task.Run(() => File.WriteAllBytes(fifo, File.ReadAllBytes(NpyIdsTests.Write(Path.Combine(_folder.FullName, "ids.npy"), "<i4", "2, 2", [.. new[] { 0, 1, 1, 0 }.SelectMany(BitConverter.GetBytes)]))), TestContext.Current.CancellationToken);

        var (code, output, error) = Run("replay", fifo, "--experts", "2");

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal($"{fifo}: cannot be read by position (a pipe or a device?); save it to a file and give that.", error.Trim());
        await writer.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
    }

    [Fact]
    public void ServeAfterNeedsAMetricsPort()
    {
        var (code, _, error) = Run("simulate", "--steps", "1", "--serve-after");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("--serve-after: needs --metrics-port, whose endpoint it keeps serving.", error.Trim());
    }

    /// <summary>After a replay with --serve-after the endpoint still answers, with the final totals, until Ctrl-C.</summary>
    [Fact]
    public async Task TheEndpointServesTheFinalStateAfterTheRun()
    {
        int[] ids = [0, 1, 2, 3, 1, 2, 3, 0, 2, 3];
        var npy = NpyIdsTests.Write(Path.Combine(_folder.FullName, "serve.npy"), "<i4", "5, 1, 2", [.. ids.SelectMany(BitConverter.GetBytes)]);
        var port = Telemetry.MetricsEndpointTests.FreePort();
        using var moegs = StartSignallable("replay", npy, "--layout", "steps,tokens,k", "--experts", "4", "--metrics-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--serve-after");
        using var cleanup = new ProcessCleanup(moegs);
        var output = moegs.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var cancel = TestContext.Current.CancellationToken;
        await UntilServingTheFinalState(moegs);
        using var http = new HttpClient();
        var (types, samples) = Telemetry.MetricsEndpointTests.Parse(await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/metrics"), cancel));
        Assert.Equal(5, samples["moegpustats_moegs_routings_total"]);
        Assert.Equal("counter", types["moegpustats_moegs_routings_total"]);
        await Interrupt(moegs);

        await moegs.WaitForExitAsync(cancel).WaitAsync(TimeSpan.FromSeconds(60), cancel);
        Assert.Equal(ExitCodes.Ok, moegs.ExitCode);
        Assert.Contains("Batches and tokens", await output);
    }

    /// <summary>A whole model's replay with --serve-after serves its bounded series with the final state: a scraper parses them.</summary>
    [Fact]
    public async Task AModelsEndpointServesItsFinalBalanceAfterTheRun()
    {
        const int steps = 4, layers = 3, tokens = 5, topK = 2, experts = 6;
        var ids = Enumerable.Range(0, steps * layers * tokens * topK).Select(i => (i * 7 / 3) % experts).ToArray();
        var npy = NpyIdsTests.Write(Path.Combine(_folder.FullName, "model.npy"), "<i4", $"{steps}, {layers}, {tokens}, {topK}", [.. ids.SelectMany(BitConverter.GetBytes)]);
        using var expected = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = layers, Experts = experts });
        for (var step = 0; step < steps; step++)
        {
            expected.RecordStep(ids.AsSpan(step * layers * tokens * topK, layers * tokens * topK), tokens, topK);
        }

        var summary = expected.Summary();
        var port = Telemetry.MetricsEndpointTests.FreePort();
        using var moegs = StartSignallable("replay", npy, "--experts", $"{experts}", "--metrics-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--metrics-top-experts", "2", "--serve-after");
        using var cleanup = new ProcessCleanup(moegs);
        var output = moegs.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var cancel = TestContext.Current.CancellationToken;
        await UntilServingTheFinalState(moegs);
        using var http = new HttpClient();
        var (types, samples) = Telemetry.MetricsEndpointTests.Parse(await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/metrics"), cancel));
        Assert.Equal(steps, samples["moegpustats_moegs_model_steps_total"]);
        Assert.Equal("counter", types["moegpustats_moegs_model_steps_total"]);
        Assert.Equal("gauge", types["moegpustats_moegs_layer_balancedness"]);
        Assert.Equal(summary.Window.MeanBalancedness, samples["moegpustats_moegs_model_balancedness_mean"], 12);
        for (var l = 0; l < layers; l++)
        {
            Assert.Equal(summary.Window.Layers[l].Balancedness, samples[$"moegpustats_moegs_layer_balancedness{{layer=\"{l}\"}}"], 12);
            Assert.Equal(summary.Window.Layers[l].HottestExpert, samples[$"moegpustats_moegs_layer_hot_expert{{layer=\"{l}\",position=\"1\"}}"]);
        }

        Assert.Equal(6 + (5 * layers) + (4 * layers * 2), samples.Count);
        await Interrupt(moegs);

        await moegs.WaitForExitAsync(cancel).WaitAsync(TimeSpan.FromSeconds(60), cancel);
        Assert.Equal(ExitCodes.Ok, moegs.ExitCode);
        Assert.Contains("Layers, worst first", await output);
    }

    [Theory]
    [InlineData("not a header at all", "not a NumPy .npy file")]
    [InlineData("-1, 2", "dimension -1 is negative")]
    [InlineData("2147483647, 2147483647, 1", "claims more ids than any file holds")]
    [InlineData("1000000, 1000, 2", "truncated: shape (1000000, 1000, 2) needs 8,000,000,128 bytes, the file has 136")]
    [InlineData("version 2", "truncated: the header claims 4,294,967,280 bytes")]
    public void AMalformedFileIsOneLineAndExitCodeOne(string kind, string expected)
    {
        var path = Path.Combine(_folder.FullName, "bad.npy");
        if (kind == "version 2")
        {
            File.WriteAllBytes(path, [0x93, .. "NUMPY"u8, 2, 0, 0xF0, 0xFF, 0xFF, 0xFF]);
        }
        else if (kind.Contains(',', StringComparison.Ordinal))
        {
            NpyIdsTests.Write(path, "<i4", kind, new byte[8]);
        }
        else
        {
            File.WriteAllText(path, kind);
        }

        var (code, output, error) = Run("replay", path);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal($"{path}: ", error[..(path.Length + 2)]);
        Assert.Contains(expected, error);
        Assert.Single(error.TrimEnd().Split('\n'));
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
        Assert.Contains("Capacity: none given (--capacity)", output);
        Assert.DoesNotContain("slots used", output);
        Assert.Contains("drawing the random ids is not timed", output);

        using var stats = RoutingStatsFile.Load(saved);
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
    public void TheManagedFallbackSaysWhy()
    {
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable(RoutingStats.AcceleratorVariable)))
        {
            Assert.Skip($"{RoutingStats.AcceleratorVariable} is set: no fallback happens.");
        }

        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        Assert.Equal("no CUDA or OpenCL device found; using the managed engine", EngineChoice.Describe(stats));
    }

    [Fact]
    public void PeriodicReportsGoToStandardErrorInTheReportsUnits()
    {
        var (code, output, error) = Run("simulate", "--steps", "30", "--tokens", "64", "--report-interval", "0.000001");

        Assert.True(code == ExitCodes.Ok, error);
        var periodic = error.Split('\n').Where(line => line.StartsWith("after ", StringComparison.Ordinal)).ToArray();
        Assert.NotEmpty(periodic);
        Assert.All(periodic, line => Assert.Matches(@"busiest expert \d+ at \d+\.\d\d % of tokens", line));
        Assert.DoesNotMatch("(?m)^after ", output);
    }

    [Fact]
    public void AJpegPlotIsAJpeg()
    {
        var snapshot = SaveSnapshot("s.json", experts: 6);
        var jpeg = Path.Combine(_folder.FullName, "load.jpeg");

        var (code, _, error) = Run("report", snapshot, "--plot", jpeg);

        Assert.True(code == ExitCodes.Ok, error);
        var bytes = File.ReadAllBytes(jpeg);
        Assert.Equal([0xFF, 0xD8, 0xFF], bytes[..3]);
        using var bitmap = SKBitmap.Decode(jpeg);
        Assert.Equal((LoadPlot.Width, LoadPlot.Height), (bitmap.Width, bitmap.Height));
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

    [Fact]
    public void LibraryMessagesLoseTheirParameterNames()
    {
        Assert.Equal("The snapshots differ.", ErrorText.Of(new ArgumentException("The snapshots differ.", "parts")));
        Assert.Equal("Too many.", ErrorText.Of(new ArgumentOutOfRangeException("tokens", 7, "Too many.")));
        Assert.Equal("Plain.", ErrorText.Of(new InvalidOperationException("Plain.")));
    }

    /// <summary>The variable is read by the library when the engine is made, so this runs <c>moegs</c> as a process.</summary>
    [Fact]
    public void AnUnknownAcceleratorIsAUsageErrorNotAMissingOne()
    {
        var text = ExternalProgram.Run(DotnetHost(), $"\"{Path.Combine(AppContext.BaseDirectory, "moegs.dll")}\" simulate --steps 1", out var code, (RoutingStats.AcceleratorVariable, "gpu"));

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("MOEGS_ACCELERATOR=gpu: give one of cuda, opencl, cpu, managed, or leave it unset for the best accelerator present.", text.Trim());
    }

    /// <summary>A long run stopped with SIGINT still reports and saves the batches it recorded.</summary>
    [Fact]
    public async Task AnInterruptedRunReportsAndSavesWhatItRecorded()
    {
        var save = Path.Combine(_folder.FullName, "interrupted.json");
        using var moegs = StartSignallable("simulate", "--steps", "100000000", "--tokens", "64", "--experts", "8", "--report-interval", "1", "--save", save);
        using var cleanup = new ProcessCleanup(moegs);
        var output = moegs.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);

        // The first periodic report says the loop runs, with its signal handlers in place.
        var first = await moegs.StandardError.ReadLineAsync(TestContext.Current.CancellationToken).AsTask().WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
        Assert.NotNull(first);
        var errors = moegs.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        await Interrupt(moegs);

        await moegs.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
        Assert.Equal(ExitCodes.Interrupted, moegs.ExitCode);
        Assert.Contains("interrupted after", await errors);
        Assert.Contains("(interrupted after", await output);
        using var saved = RoutingStatsFile.Load(save);
        Assert.InRange(saved.TotalRoutings, 1UL, 99_999_999UL);
    }

    private string SaveSnapshot(string name, int experts)
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = experts });
        stats.RecordRouting([.. Enumerable.Range(0, 4 * experts).Select(i => i % experts)], tokens: 2 * experts, topK: 2);
        var path = Path.Combine(_folder.FullName, name);
        RoutingStatsFile.Save(stats, path);
        return path;
    }

    /// <summary>The dotnet host that runs moegs.dll as a process of its own, or a skip where there is none.</summary>
    private static string DotnetHost()
    {
        var dotnet = ExternalProgram.FindOnPath("dotnet") ?? Path.Combine(Environment.GetEnvironmentVariable("DOTNET_ROOT") ?? "/usr/share/dotnet", "dotnet");
        Assert.SkipUnless(File.Exists(dotnet), "no dotnet host to run moegs.dll with");
        return dotnet;
    }

    /// <summary>Starts moegs on the managed engine with its output redirected, for a test that signals it with kill(1).</summary>
    private static System.Diagnostics.Process StartSignallable(params string[] arguments)
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "needs kill(1) to signal moegs");
        var start = new System.Diagnostics.ProcessStartInfo(DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "moegs.dll"));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment[RoutingStats.AcceleratorVariable] = "managed";
        return System.Diagnostics.Process.Start(start)!;
    }

    /// <summary>Reads <paramref name="process"/>'s standard error until it says that it serves the final state (--serve-after); fails if it ends first.</summary>
    private static async Task UntilServingTheFinalState(System.Diagnostics.Process process)
    {
        var cancel = TestContext.Current.CancellationToken;
        string? line;
        do
        {
            line = await process.StandardError.ReadLineAsync(cancel).AsTask().WaitAsync(TimeSpan.FromSeconds(60), cancel);
        }
        while (line is not null && !line.Contains("serving the final state", StringComparison.Ordinal));

        Assert.NotNull(line);
    }

    /// <summary>Sends <paramref name="process"/> SIGINT, as Ctrl-C does.</summary>
    private static async Task Interrupt(System.Diagnostics.Process process)
    {
        using var kill = System.Diagnostics.Process.Start("kill", ["-INT", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        await kill.WaitForExitAsync(TestContext.Current.CancellationToken);
    }

    /// <summary>Ends a moegs process a test started, should the test fail before the process ends.</summary>
    private sealed class ProcessCleanup(System.Diagnostics.Process process) : IDisposable
    {
        public void Dispose()
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }
}
