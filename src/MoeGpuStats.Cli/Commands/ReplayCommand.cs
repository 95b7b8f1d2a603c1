using System.CommandLine;
using MoeGpuStats.Cli.Input;

namespace MoeGpuStats.Cli.Commands;

/// <summary><c>replay FILE.npy</c>: a router's saved top-k ids, recorded step by step on the chosen engine.</summary>
internal static class ReplayCommand
{
    public static Command Create(CliConsole console)
    {
        var maxExperts = RoutingStatsOptions.MaxDeviceExperts;
        var file = new Argument<FileInfo>("FILE.npy")
        {
            Description = $"Top-k expert ids saved with np.save: int8, uint8, int16, uint16, int32 or int64, shaped [steps, tokens, k] or [tokens, k], at most {NpyIds.MaxIdsPerStep:N0} ids per step; -1 marks an empty slot.",
        };
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
        var recording = new SharedOptions.Recording();
        var command = new Command("replay", "Record a router's saved top-k ids step by step on the chosen engine (best accelerator by default), then report.")
        {
            file, experts, skip,
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
            if (!TryOpen(console, path, out var npy))
            {
                return ExitCodes.BadInput;
            }

            using (npy)
            {
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
                    var session = recording.Session(
                        parse,
                        console,
                        e,
                        $"replay {path.Name}: {npy.Steps - skipped:N0} step{(npy.Steps - skipped == 1 ? "" : "s")} of {npy.Tokens:N0} tokens{(skipped > 0 ? $" (the first {skipped:N0} left out)" : "")}, top-{npy.TopK} of {e:N0} experts ({npy.DType})",
                        "one RecordRouting call, which hands the step's ids to the engine and counts them (a GPU may finish counting after it returns); reading the file is not timed, nor the first step, which loads the engine (JIT, kernels)");
                    try
                    {
                        var checks = new TraceChecks(npy.Tokens, npy.TopK);
                        return session.Run(
                            npy.Steps - skipped,
                            ids.Span,
                            (step, batch) =>
                            {
                                npy.ReadStep(skipped + step, batch);
                                checks.Check(skipped + step, batch);
                            },
                            (stats, batch) => stats.RecordRouting(batch, npy.Tokens, npy.TopK),
                            () => checks.Warnings(npy.Steps));
                    }
                    catch (Exception exception) when (exception is IOException or InvalidDataException)
                    {
                        console.Error.WriteLine(exception is InvalidDataException ? exception.Message : $"{path}: {ErrorText.Of(exception)}");
                        return ExitCodes.BadInput;
                    }
                }
            }
        });
        return command;
    }

    private static bool TryOpen(CliConsole console, FileInfo path, out NpyIds npy) =>
        InputFile.TryRead(console, path, "a .npy file", NpyIds.Open, out npy);
}

/// <summary>
/// What a trace's ids say about how it was recorded, for warnings after the replay: steps in which
/// every token went to the same experts in the same order (a server's warm-up and profiling passes of
/// synthetic tokens, which skew a trace's top experts), and tokens routed to one expert twice (a
/// router never does that: the file's axes are likely not [tokens, k]).
/// </summary>
internal sealed class TraceChecks(int tokens, int topK)
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

        var first = ids[..topK];
        if (first.IndexOfAnyExcept(-1) < 0)
        {
            // A step of padding alone routed nothing (and a padded token is not a token).
            return;
        }

        for (var token = 1; token < tokens; token++)
        {
            if (!ids.Slice(token * topK, topK).SequenceEqual(first))
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
            yield return $"warning: {_repeated:N0} token{(_repeated == 1 ? "" : "s")} (the first in step {_repeatedStep:N0}) name one expert twice among their {topK} ids, which a top-k router never does: is the file shaped [steps, tokens, k]?";
        }
    }

    private void CheckRepeats(int step, ReadOnlySpan<int> ids)
    {
        if (topK < 2)
        {
            return;
        }

        for (var token = 0; token < tokens; token++)
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
