using System.CommandLine;
using System.Diagnostics;
using static System.FormattableString;

namespace MoeGpuStats.Bench;

/// <summary>
/// The CPU target measured by alternation: the managed engine's <see cref="ModelRoutingStats.RecordStep(ReadOnlySpan{int}, int, int, long, ReadOnlySpan{float}, ReadOnlySpan{float}, long)"/>
/// against L single-layer records of the same ids, and the step with a window of one step (no ring to evict),
/// in rounds of <see cref="StepsPerRound"/> steps each, taking turns in one process. A slow or shared machine
/// drifts by more than the difference between them over a BenchmarkDotNet run of one method after the other;
/// a ratio taken per round, between neighbours in time, does not. Each is called through an
/// <see cref="Action"/>, as a server's callback calls it, with the runtime's defaults (tiered compilation and
/// dynamic PGO), which is where the JIT's inlining decides how fast the step is.
/// Prints a Markdown table: per shape, the median step time of each, and the median and range of the per-round
/// ratio step / L records. <c>--model-step-alternation [--model-shapes 58x256x8x64,..] [--rounds N]</c>.
/// </summary>
internal static class ModelStepAlternation
{
    private const int StepsPerRound = 1_000;
    private static readonly TimeSpan WarmUp = TimeSpan.FromSeconds(2);

    private static readonly Option<ModelShape[]> Shapes = QuickOptions.Shapes("58x256x8x1,58x256x8x64,58x256x8x256,32x8x2x64");
    private static readonly Option<int> Rounds = QuickOptions.WholeNumber("--rounds", 30, 1, int.MaxValue, "the rounds each contender takes");

    public static QuickMode Mode { get; } = new(
        new Option<bool>("--model-step-alternation"),
        "Times the managed engine's RecordStep against L single-layer records, taking turns in one process.",
        [Shapes, Rounds],
        Run);

    private static int Run(ParseResult parsed)
    {
        var shapes = parsed.GetRequiredValue(Shapes);
        var rounds = parsed.GetValue(Rounds);

        Console.WriteLine(Invariant($"Managed engine; {rounds} rounds of {StepsPerRound:N0} steps per contender, taking turns, each called through an Action; median µs per step; \"window of 1\": the step with Window = 1 (no ring to evict); the ratio is the step's over the L records', per round."));
        Console.WriteLine();
        Console.WriteLine("| L × E × k × T | L single-layer records | RecordStep | step, window of 1 | step / L records, median of rounds | range |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- |");
        foreach (var shape in shapes)
        {
            Console.WriteLine(Measure(shape, rounds));
        }

        return 0;
    }

    private static string Measure(ModelShape shape, int rounds)
    {
        var ids = shape.Ids();
        var perLayer = (int)shape.LayerIds;
        var options = new ModelRoutingStatsOptions { Layers = shape.Layers, Experts = shape.Experts };
        using var model = new ModelRoutingStats(options);
        using var windowOfOne = new ModelRoutingStats(options with { Window = 1 });
        var layers = Enumerable.Range(0, shape.Layers).Select(_ => new RoutingStats(new RoutingStatsOptions { Experts = shape.Experts })).ToArray();

        Action[] contenders =
        [
            () =>
            {
                for (var l = 0; l < layers.Length; l++)
                {
                    layers[l].RecordRouting(ids.AsSpan(l * perLayer, perLayer), shape.Tokens, shape.TopK);
                }
            },
            () => model.RecordStep(ids, shape.Tokens, shape.TopK),
            () => windowOfOne.RecordStep(ids, shape.Tokens, shape.TopK),
        ];

        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < WarmUp)
        {
            foreach (var contender in contenders)
            {
                RunRound(contender);
            }
        }

        var times = contenders.Select(_ => new double[rounds]).ToArray();
        for (var round = 0; round < rounds; round++)
        {
            for (var c = 0; c < contenders.Length; c++)
            {
                times[c][round] = RunRound(contenders[c]);
            }
        }

        foreach (var layer in layers)
        {
            layer.Dispose();
        }

        var ratios = Enumerable.Range(0, rounds).Select(round => times[1][round] / times[0][round]).ToArray();
        return Invariant($"| {shape.Layers} × {shape.Experts} × {shape.TopK} × {shape.Tokens} | {Median(times[0]):F2} µs | {Median(times[1]):F2} µs | {Median(times[2]):F2} µs | {Median(ratios):F2} | {ratios.Min():F2}–{ratios.Max():F2} |");
    }

    /// <summary>Microseconds per step over one round.</summary>
    private static double RunRound(Action step)
    {
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < StepsPerRound; i++)
        {
            step();
        }

        return clock.Elapsed.TotalMicroseconds / StepsPerRound;
    }

    /// <summary>The middle value; of an even count, the upper of the two middle ones.</summary>
    internal static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted[sorted.Length / 2];
    }
}
