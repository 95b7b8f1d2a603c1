using System.CommandLine;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Telemetry;

namespace MoeGpuStats.Cli.Commands;

/// <summary>
/// <c>replay FILE.npy</c>: a router's saved top-k ids, recorded step by step on the chosen engine; one
/// layer's into <see cref="RoutingStats"/>, a file with a layers axis into <see cref="ModelRoutingStats"/>.
/// </summary>
internal static class ReplayCommand
{
    public static Command Create(CliConsole console)
    {
        var maxExperts = RoutingStatsOptions.MaxDeviceExperts;
        var file = new Argument<FileInfo>("FILE.npy")
        {
            Description = $"Top-k expert ids saved with np.save: int8, uint8, int16, uint16, int32 or int64, in one of the --layout orders, at most {NpyIds.MaxIdsPerStep:N0} ids per step; -1 marks an empty slot.",
        };
        var layout = new Option<IdLayout?>("--layout")
        {
            Description = $"The file's axes: {string.Join(", ", IdLayout.All)}. Default: tokens,k for 2-D, steps,layers,tokens,k for 4-D; a 3-D file must say whether it holds steps or layers.",
            CustomParser = result =>
            {
                var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
                if (IdLayout.Parse(text) is { } parsed)
                {
                    return parsed;
                }

                result.AddError($"--layout {text}: give one of {string.Join("; ", IdLayout.All)}.");
                return null;
            },
        };
        var windowLoad = SharedOptions.OutputFile(
            new Option<FileInfo?>("--window-load") { Description = "With a layers axis: write the window's expert load, [layers, experts] int64, as .npy or .json (by the name), for `moegs plan`." },
            WindowLoadFile.FormatProblem);
        var window = SharedOptions.WholeNumber(
            new Option<int>("--window") { Description = "With a layers axis: steps in the sliding window of expert load (the window figures and --window-load).", DefaultValueFactory = _ => 1000 },
            1,
            int.MaxValue,
            "the steps in the window");
        var skip = SharedOptions.WholeNumber(
            new Option<int>("--skip-steps") { Description = "Leave out the first N steps: a server's warm-up and profiling passes of synthetic tokens." },
            0,
            int.MaxValue,
            "the steps to leave out");
        var experts = SharedOptions.WholeNumber(
            new Option<int?>("--experts", "-e") { Description = $"Experts (E), 1 to {maxExperts:N0}; default: the largest id in the file plus one. Ids outside [0, E) other than -1 are counted as invalid." },
            1,
            maxExperts,
            "the number of experts");
        var topExperts = SharedOptions.WholeNumber(
            new Option<int?>("--metrics-top-experts") { Description = $"With a layers axis and --metrics-port: the hottest and coldest experts published per layer (default {ModelRoutingStatsMetrics.DefaultTopExperts}, at most the experts)." },
            0,
            maxExperts,
            "the experts per layer to rank");
        var expertSeries = new Option<bool>("--metrics-expert-series")
        {
            Description = "With a layers axis and --metrics-port: publish one series per (layer, expert) as well, layers × experts of them (14,848 for DeepSeek-V3); off by default.",
        };
        var recording = new SharedOptions.Recording();
        var command = new Command("replay", "Record a router's saved top-k ids step by step on the chosen engine (best accelerator by default), then report.")
        {
            file, layout, experts, skip, window, windowLoad, topExperts, expertSeries,
        };
        recording.AddTo(command);
        command.SetAction(parse =>
        {
            if ((recording.Problem(parse) ?? EngineChoice.Problem()) is { } problem)
            {
                console.Error.WriteLine(problem);
                return ExitCodes.Usage;
            }

            var path = parse.GetValue(file)!;
            NpyIds npy;
            try
            {
                if (!TryOpen(console, path, parse.GetValue(layout), out npy))
                {
                    return ExitCodes.BadInput;
                }
            }
            catch (IdLayoutException exception)
            {
                console.Error.WriteLine(exception.Message);
                return ExitCodes.Usage;
            }

            using (npy)
            {
                var layered = npy.Layout.HasLayers;
                Option? modelMetric = parse.GetResult(topExperts) is not null ? topExperts : parse.GetValue(expertSeries) ? expertSeries : null;
                var mismatch = layered
                    ? modelMetric is null ? null : recording.ModelMetricsProblem(parse, modelMetric)
                    : parse.GetValue(windowLoad) is not null ? WithoutLayersProblem(path, npy, "--window-load", "the window load is a model's, [layers, experts]")
                    : modelMetric is not null ? WithoutLayersProblem(path, npy, modelMetric.Name, "ranks each layer's experts in a model's metrics (one layer's metrics publish every expert)")
                    : null;
                if (mismatch is not null)
                {
                    console.Error.WriteLine(mismatch);
                    return ExitCodes.Usage;
                }

                if (npy.Layers > ModelRoutingStatsOptions.MaxLayers)
                {
                    console.Error.WriteLine($"{path}: {npy.Layers:N0} layers ({npy.Layout.Name}); a model holds at most {ModelRoutingStatsOptions.MaxLayers:N0}.");
                    return ExitCodes.BadInput;
                }

                var skipped = parse.GetValue(skip);
                if (skipped >= npy.Steps)
                {
                    console.Error.WriteLine($"--skip-steps {skipped}: {path} has {npy.Steps:N0} step{(npy.Steps == 1 ? "" : "s")}; leave out fewer.");
                    return ExitCodes.Usage;
                }

                int e;
                if (parse.GetValue(experts) is { } given)
                {
                    e = given;
                }
                else
                {
                    var max = npy.MaxId();
                    if (max < 0 || max >= maxExperts)
                    {
                        console.Error.WriteLine(max < 0
                            ? $"{path}: no id is 0 or more, so the file does not say how many experts there are; give --experts (1 to {maxExperts:N0})."
                            : $"{path}: the largest id is {max:N0}, which would make {max + 1:N0} experts; the engine holds 1 to {maxExperts:N0}: give --experts (larger ids then count as invalid).");
                        return ExitCodes.Usage;
                    }

                    e = (int)max + 1;
                }

                IdBuffer ids;
                try
                {
                    ids = IdBuffer.Allocate(npy.IdsPerStep);
                }
                catch (OutOfMemoryException)
                {
                    console.Error.WriteLine($"{path}: not enough memory for a step of {IdBuffer.Describe(npy.IdsPerStep)}.");
                    return ExitCodes.BadInput;
                }

                using (ids)
                {
                    var steps = npy.Steps - skipped;
                    var checks = new TraceChecks(npy.Layers, npy.Tokens, npy.TopK, npy.Layout);
                    void Fill(int step, Span<int> batch)
                    {
                        npy.ReadStep(skipped + step, batch);
                        checks.Check(skipped + step, batch);
                    }

                    if (layered)
                    {
                        var model = recording.Model(
                            parse,
                            console,
                            new ModelRoutingStatsOptions { Layers = npy.Layers, Experts = e, Window = parse.GetValue(window) },
                            parse.GetValue(windowLoad),
                            new ModelMetrics(parse.GetValue(topExperts) ?? ModelRoutingStatsMetrics.DefaultTopExperts, parse.GetValue(expertSeries)),
                            $"replay {path.Name}: {steps:N0} step{(steps == 1 ? "" : "s")} of {npy.Tokens:N0} tokens in {npy.Layers:N0} layer{(npy.Layers == 1 ? "" : "s")} ({npy.Layout.Name}){(skipped > 0 ? $" (the first {skipped:N0} left out)" : "")}, top-{npy.TopK} of {e:N0} experts ({npy.DType})");
                        return Replay(console, path, () => model.Run(steps, ids.Span, npy.Tokens, npy.TopK, Fill, () => checks.Warnings(npy.Steps)));
                    }

                    var session = recording.Session(
                        parse,
                        console,
                        e,
                        $"replay {path.Name}: {steps:N0} step{(steps == 1 ? "" : "s")} of {npy.Tokens:N0} tokens{(skipped > 0 ? $" (the first {skipped:N0} left out)" : "")}, top-{npy.TopK} of {e:N0} experts ({npy.DType})",
                        "one RecordRouting call, which hands the step's ids to the engine and counts them (a GPU may finish counting after it returns); reading the file is not timed, nor the first step, which loads the engine (JIT, kernels)");
                    return Replay(console, path, () => session.Run(
                        steps,
                        ids.Span,
                        Fill,
                        (stats, batch) => stats.RecordRouting(batch, npy.Tokens, npy.TopK),
                        () => checks.Warnings(npy.Steps)));
                }
            }
        });
        return command;
    }

    private static bool TryOpen(CliConsole console, FileInfo path, IdLayout? layout, out NpyIds npy) =>
        InputFile.TryRead(console, path, "a .npy file", name => NpyIds.Open(name, layout), out npy);

    /// <summary>Runs a replay; a file that fails while it is read (changed or removed meanwhile) is one line and exit code 1.</summary>
    private static int Replay(CliConsole console, FileInfo path, Func<int> run)
    {
        try
        {
            return run();
        }
        catch (Exception exception) when (exception is IOException or InvalidDataException)
        {
            console.Error.WriteLine(exception is InvalidDataException ? exception.Message : $"{path}: {ErrorText.Of(exception)}");
            return ExitCodes.BadInput;
        }
    }

    private static string WithoutLayersProblem(FileInfo path, NpyIds npy, string option, string what) =>
        $"{option}: {what}; {path} is read as [{npy.Layout.Name}], without layers (--layout says which axis holds them).";
}

/// <summary>
/// What a trace's ids say about how it was recorded, for warnings after the replay: steps in which,
/// in every layer, every token went to the same experts in the same order (a server's warm-up and
/// profiling passes of synthetic tokens, which skew a trace's top experts), and tokens routed to one
/// expert twice (a router never does that: the file's axes are likely not what the layout says).
/// </summary>
/// <param name="layers">Layers per step, each <c>[tokens, topK]</c> in the step's ids; 1 without a layers axis.</param>
/// <param name="tokens">Tokens per layer.</param>
/// <param name="topK">Experts per token.</param>
/// <param name="layout">The file's layout, named in the warning about repeated experts.</param>
internal sealed class TraceChecks(int layers, int tokens, int topK, IdLayout layout)
{
    private int _synthetic;
    private int _first = -1;
    private int _last = -1;
    private long _repeated;
    private int _repeatedStep = -1;

    public void Check(int step, ReadOnlySpan<int> ids)
    {
        CheckRepeats(step, ids);
        if (tokens < 2)
        {
            return;
        }

        for (var layer = 0; layer < layers; layer++)
        {
            if (!AllTokensAlike(ids.Slice(layer * tokens * topK, tokens * topK)))
            {
                return;
            }
        }

        _synthetic++;
        _first = _first < 0 ? step : _first;
        _last = step;
    }

    /// <summary>One-line warnings, none when the trace looks as a router writes it.</summary>
    /// <param name="steps">The steps the file holds, so that a suggestion to skip never asks for all of them.</param>
    public IEnumerable<string> Warnings(int steps)
    {
        if (_synthetic > 0 && _synthetic == steps)
        {
            yield return $"warning: every step routed every token to the same experts, as warm-up passes of synthetic tokens do: this trace may hold no real traffic.";
        }
        else if (_synthetic > 0)
        {
            yield return _first == 0 && _last == _synthetic - 1
                ? $"warning: the first {_synthetic:N0} step{(_synthetic == 1 ? "" : "s")} routed every token to the same experts, as warm-up passes of synthetic tokens do; --skip-steps {_synthetic} leaves them out."
                : $"warning: {_synthetic:N0} step{(_synthetic == 1 ? "" : "s")} (first {_first:N0}, last {_last:N0}) routed every token to the same experts, as warm-up passes of synthetic tokens do; their counts are in the report.";
        }

        if (_repeated > 0)
        {
            yield return $"warning: {_repeated:N0} token{(_repeated == 1 ? "" : "s")} (the first in step {_repeatedStep:N0}) name one expert twice among their {topK} ids, which a top-k router never does: is the file shaped [{layout.Name}] (--layout)?";
        }
    }

    /// <summary>Whether one layer's tokens all went to the same experts in the same order.</summary>
    private bool AllTokensAlike(ReadOnlySpan<int> ids)
    {
        var first = ids[..topK];
        if (first.IndexOfAnyExcept(-1) < 0)
        {
            // Padding alone routed nothing (and a padded token is not a token).
            return false;
        }

        for (var token = 1; token < tokens; token++)
        {
            if (!ids.Slice(token * topK, topK).SequenceEqual(first))
            {
                return false;
            }
        }

        return true;
    }

    private void CheckRepeats(int step, ReadOnlySpan<int> ids)
    {
        if (topK < 2)
        {
            return;
        }

        for (var token = 0; token < layers * tokens; token++)
        {
            var slots = ids.Slice(token * topK, topK);
            for (var a = 1; a < slots.Length; a++)
            {
                if (slots[a] != -1 && slots[..a].Contains(slots[a]))
                {
                    _repeated++;
                    _repeatedStep = _repeatedStep < 0 ? step : _repeatedStep;
                    break;
                }
            }
        }
    }
}
