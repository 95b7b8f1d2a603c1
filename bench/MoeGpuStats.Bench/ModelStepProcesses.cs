using System.CommandLine;
using System.Diagnostics;
using static System.FormattableString;

namespace MoeGpuStats.Bench;

/// <summary>
/// The issue's CPU target measured with each contender alone in its process: the managed engine's
/// <see cref="ModelRoutingStats.RecordStep(ReadOnlySpan{int}, int, int, long, ReadOnlySpan{float}, ReadOnlySpan{float}, long)"/>
/// and L single-layer records of the same ids, in child processes that take turns, so that neither runs on caches the
/// other left (in <see cref="ModelStepAlternation"/>'s one process the L records' variance copies, the ids of 1,000
/// batches a layer, and the step's window ring can evict each other between rounds). Each child warms up, times rounds of
/// <see cref="StepsPerRound"/> steps called in a plain loop and prints its median µs per step; the parent prints, per
/// shape, each contender's median over its processes and the ratio of each pair (step / L records), the pairs taking
/// the two orders in turn so that a drift within a pair favours neither.
/// <c>--model-step-processes [--model-shapes ..] [--pairs N] [--rounds N] [--warm-up S] [--read-every N]</c>: S whole
/// seconds of warm-up (default 1), more where a child runs on one CPU, whose background compiler delivers the optimized
/// code seconds late; the step's child reads the window's load (<see cref="ModelRoutingStats.WindowLoad()"/>) after every N
/// steps (default 0, never), as a server's rebalancer or scraper reads it, so that the time counts what the window's sum
/// costs at that rate: kept at every step, or summed afresh at a read that comes two windows of steps or more apart.
/// </summary>
internal static class ModelStepProcesses
{
    private const int StepsPerRound = 1_000;
    private const string ChildFlag = "--model-step-child";
    private const int DefaultWarmUpSeconds = 1;
    private static readonly string[] Contenders = ["records", "step"];
    private static readonly Option<ModelShape[]> Shapes = QuickOptions.Shapes("58x256x8x1,58x256x8x4,58x256x8x64,32x8x2x1,32x8x2x64");
    private static readonly Option<int> Pairs = QuickOptions.WholeNumber("--pairs", 5, 1, int.MaxValue, "the pairs of processes per shape");
    private static readonly Option<int> Rounds = QuickOptions.WholeNumber("--rounds", 21, 1, int.MaxValue, "the rounds each process times");
    private static readonly Option<int> WarmUp = QuickOptions.WholeNumber("--warm-up", DefaultWarmUpSeconds, 0, int.MaxValue, "the whole seconds of warm-up in each process");
    private static readonly Option<int> ReadEvery = QuickOptions.WholeNumber("--read-every", 0, 0, int.MaxValue, "the steps between the step's reads of the window's load (0: never)");
    private static readonly Option<string?> Child = QuickOptions.OneOf(ChildFlag, Contenders, "Run as one contender's child process (the parent passes it).");

    public static QuickMode Mode { get; } = new(
        new Option<bool>("--model-step-processes"),
        "Times the managed engine's RecordStep against L single-layer records, each contender in processes of its own taking turns.",
        [Shapes, Pairs, Rounds, WarmUp, ReadEvery, Child],
        Run);

    private static int Run(ParseResult parsed)
    {
        var shapes = parsed.GetRequiredValue(Shapes);
        var rounds = parsed.GetValue(Rounds);
        var warmUp = parsed.GetValue(WarmUp);
        var readEvery = parsed.GetValue(ReadEvery);
        if (parsed.GetValue(Child) is { } contender)
        {
            return RunChild(contender, shapes[0], rounds, TimeSpan.FromSeconds(warmUp), readEvery);
        }

        var pairs = parsed.GetValue(Pairs);

        var reads = readEvery == 0 ? "no read of the window" : Invariant($"the step reading the window's load after every {readEvery:N0} steps");
        Console.WriteLine(Invariant($"Managed engine; per shape {pairs} pairs of processes taking turns (L single-layer records and RecordStep, in either order by turns), each timing {rounds} rounds of {StepsPerRound:N0} steps in a plain loop after {warmUp} s of warm-up, {reads}; µs per step, the median over the processes of each process's median; the ratio is the step's over the L records', per pair."));
        Console.WriteLine();
        Console.WriteLine("| L × E × k × T | L single-layer records | RecordStep | step / L records, median of pairs | range |");
        Console.WriteLine("| --- | --- | --- | --- | --- |");
        foreach (var shape in shapes)
        {
            var times = Contenders.Select(_ => new double[pairs]).ToArray();
            for (var pair = 0; pair < pairs; pair++)
            {
                foreach (var c in pair % 2 == 0 ? new[] { 0, 1 } : new[] { 1, 0 })
                {
                    times[c][pair] = RunProcess(Contenders[c], shape, rounds, warmUp, readEvery);
                }
            }

            var ratios = Enumerable.Range(0, pairs).Select(pair => times[1][pair] / times[0][pair]).ToArray();
            Console.WriteLine(Invariant($"| {shape.Layers} × {shape.Experts} × {shape.TopK} × {shape.Tokens} | {ModelStepAlternation.Median(times[0]):F2} µs | {ModelStepAlternation.Median(times[1]):F2} µs | {ModelStepAlternation.Median(ratios):F2} | {ratios.Min():F2}–{ratios.Max():F2} |"));
        }

        return 0;
    }

    /// <summary>Runs this program again as one contender's child and reads the median it prints.</summary>
    private static double RunProcess(string contender, ModelShape shape, int rounds, int warmUp, int readEvery)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!)
        {
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet")
        {
            // Run as "dotnet MoeGpuStats.Bench.dll": the host is the process, the assembly its first argument.
            start.ArgumentList.Add(typeof(ModelStepProcesses).Assembly.Location);
        }

        foreach (var argument in new[] { "--model-step-processes", ChildFlag, contender, "--model-shapes", shape.ToString(), "--rounds", Invariant($"{rounds}"), "--warm-up", Invariant($"{warmUp}"), "--read-every", Invariant($"{readEvery}") })
        {
            start.ArgumentList.Add(argument);
        }

        using var child = Process.Start(start)!;
        var output = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        return child.ExitCode == 0
            ? double.Parse(output.Trim(), System.Globalization.CultureInfo.InvariantCulture)
            : throw new InvalidOperationException(Invariant($"The {contender} process for {shape} exited with {child.ExitCode}: {output}"));
    }

    private static int RunChild(string contender, ModelShape shape, int rounds, TimeSpan warmUp, int readEvery)
    {
        var stepsRecorded = 0L;
        var ids = shape.Ids();
        var perLayer = (int)shape.LayerIds;
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = shape.Layers, Experts = shape.Experts });
        var layers = Enumerable.Range(0, shape.Layers).Select(_ => new RoutingStats(new RoutingStatsOptions { Experts = shape.Experts })).ToArray();
        Func<double> round = contender == "records"
            ? () =>
            {
                var clock = Stopwatch.StartNew();
                for (var i = 0; i < StepsPerRound; i++)
                {
                    for (var l = 0; l < layers.Length; l++)
                    {
                        layers[l].RecordRouting(ids.AsSpan(l * perLayer, perLayer), shape.Tokens, shape.TopK);
                    }
                }

                return clock.Elapsed.TotalMicroseconds / StepsPerRound;
            }
            : () =>
            {
                var clock = Stopwatch.StartNew();
                for (var i = 0; i < StepsPerRound; i++)
                {
                    model.RecordStep(ids, shape.Tokens, shape.TopK);
                    if (readEvery > 0 && ++stepsRecorded % readEvery == 0)
                    {
                        model.WindowLoad();
                    }
                }

                return clock.Elapsed.TotalMicroseconds / StepsPerRound;
            };

        var warm = Stopwatch.StartNew();
        while (warm.Elapsed < warmUp)
        {
            round();
        }

        var times = Enumerable.Range(0, rounds).Select(_ => round()).ToArray();
        foreach (var layer in layers)
        {
            layer.Dispose();
        }

        Console.WriteLine(ModelStepAlternation.Median(times).ToString("R", System.Globalization.CultureInfo.InvariantCulture));
        return 0;
    }
}
