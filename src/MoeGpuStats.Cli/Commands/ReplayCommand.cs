using System.CommandLine;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Engines;

namespace MoeGpuStats.Cli.Commands;

/// <summary>
/// <c>replay FILE</c>: a router's recorded top-k ids (.npy, .npz or JSON lines), recorded step by step
/// on the chosen engine; one layer's into <see cref="RoutingStats"/>, a trace with layers into
/// <see cref="ModelRoutingStats"/>. Steps may differ in tokens, as a prefill and decode batches do.
/// </summary>
internal static class ReplayCommand
{
    public static Command Create(CliConsole console)
    {
        var maxExperts = RoutingStatsOptions.MaxDeviceExperts;
        var file = new Argument<FileInfo>("FILE")
        {
            CustomParser = result => SharedOptions.ParseFile(result, "FILE")!,
            Description = $"The router's top-k ids, at most {NpyIds.MaxIdsPerStep:N0} a step; -1 marks an empty slot. A .npy file (np.save: int8, uint8, int16, uint16, int32, int64 or uint64, in one of the --layout orders); an .npz archive (np.savez or np.savez_compressed: members in the archive's order, see --members); or JSON lines (.jsonl, .ndjson), one object a line: topk_ids (one token's k ids, or a forward pass's [tokens][k]); layer (none in one layer's trace); optionally the pass's id, step, or the index of the line's first token in its pass, position (a pass starts where it is 0 again); without either, a pass ends where a layer comes again. Every layer of a pass routes the same tokens. request_id and gate_weights are checked, not used; other fields are ignored. Spellings: {JsonTraceLine.Spellings}. A .npy or zip magic in the first bytes decides over the name, as np.load reads a file.",
        };
        var layout = new Option<IdLayout?>("--layout")
        {
            Description = $"The axes of a .npy file, or of each .npz member: {string.Join(", ", IdLayout.All)}. Default: tokens,k for 2-D, steps,layers,tokens,k for 4-D; a 3-D file must say which of steps,tokens,k, layers,tokens,k and tokens,layers,k it holds (with --members layers, 3-D is steps,tokens,k).",
            CustomParser = result =>
            {
                var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
                if (IdLayout.Parse(text) is { } parsed)
                {
                    return parsed;
                }

                result.AddError(IdLayout.Unknown(text));
                return null;
            },
        };
        var members = new Option<NpzMembers?>("--members")
        {
            HelpName = "steps|layers",
            Description = "What each member of an .npz archive holds: steps (the default: forward passes, each member read as a .npy file with --layout, one pass per member without a steps axis, the members' passes one after another, tokens free to differ) or layers (member l is layer l: [steps, tokens, k], or [tokens, k] for one step, every member of one shape).",
            CustomParser = result =>
            {
                var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
                switch (text.Trim().ToLowerInvariant())
                {
                    case "steps":
                        return NpzMembers.Steps;
                    case "layers":
                        return NpzMembers.Layers;
                }

                result.AddError($"--members {text}: give steps (each member holds forward passes) or layers (member l holds layer l).");
                return null;
            },
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
        var skipEmpty = new Option<bool>("--skip-empty-steps")
        {
            Description = "With layers: leave out the steps in which no layer holds a token (padding alone, -1: an idle rank's dummy pass), as vLLM leaves its dummy passes out of its load window; they then take no place in --window, count in no statistic and are not timed. By default each is a step of no load.",
        };
        var recording = new SharedOptions.Recording(models: "a trace with layers");
        var model = new ModelOptions("With layers");
        var command = new Command("replay", "Record a router's saved top-k ids step by step on the chosen engine (best accelerator by default), then report.")
        {
            file, layout, members, experts, skip, skipEmpty,
        };
        model.AddTo(command);
        recording.AddTo(command);
        SharedOptions.DistinctFiles(command, file, [.. recording.Outputs, model.WindowLoad]);
        command.SetAction(parse =>
        {
            if ((recording.Problem(parse) ?? EngineChoice.Problem()) is { } problem)
            {
                console.Error.WriteLine(problem);
                return ExitCodes.Usage;
            }

            var path = parse.GetValue(file)!;
            IRoutingTrace trace;
            try
            {
                if (!InputFile.TryRead(console, path, $"a {TraceFile.Names} file", name => TraceFile.Open(name, parse.GetValue(layout), parse.GetValue(members), InputFile.LongReadNote(console, path)), out trace))
                {
                    return ExitCodes.BadInput;
                }
            }
            catch (IdLayoutException exception)
            {
                console.Error.WriteLine(exception.Message);
                return ExitCodes.Usage;
            }

            using (trace)
            {
                var layered = trace.HasLayers;
                var mismatch = layered
                    ? model.MetricsOption(parse) is { } metrics ? recording.ModelMetricsProblem(parse, metrics) : null
                    : model.GivenForOneLayer(parse) is var (option, why) ? $"{option}: {why}; {path} is read without layers ({trace.Axes}: {trace.LayersFrom})."
                    : parse.GetValue(skipEmpty) ? $"--skip-empty-steps: leaving steps out of the window is a model's; {path} is read without layers ({trace.Axes}: {trace.LayersFrom})."
                    : null;
                if (mismatch is not null)
                {
                    console.Error.WriteLine(mismatch);
                    return ExitCodes.Usage;
                }

                if (trace.Layers > ModelRoutingStatsOptions.MaxLayers)
                {
                    console.Error.WriteLine($"{path}: {trace.Layers:N0} layers ({trace.Axes}); a model holds at most {ModelRoutingStatsOptions.MaxLayers:N0}.");
                    return ExitCodes.BadInput;
                }

                var skipped = parse.GetValue(skip);
                if (skipped >= trace.Steps)
                {
                    console.Error.WriteLine($"--skip-steps {skipped}: {path} has {Counted.Of(trace.Steps, "step")}; leave out at most {trace.Steps - 1:N0}, so that one is replayed.");
                    return ExitCodes.Usage;
                }

                foreach (var note in trace.Notes)
                {
                    console.Error.WriteLine(note);
                }

                int e;
                // The largest id, where it is -1 saved unsigned (255 in uint8) and was taken as an expert for want of --experts.
                var unsignedPadding = -1;
                if (parse.GetValue(experts) is { } given)
                {
                    e = given;
                }
                else
                {
                    long max;
                    try
                    {
                        if (LargestIdNote(trace, path, LongIdScan) is { } note)
                        {
                            console.Error.WriteLine(note);
                        }

                        max = trace.MaxId();
                    }
                    catch (IdPastInt64Exception exception)
                    {
                        console.Error.WriteLine(exception.Message);
                        return ExitCodes.Usage;
                    }
                    catch (Exception exception) when (exception is IOException or InvalidDataException)
                    {
                        console.Error.WriteLine(exception is InvalidDataException ? exception.Message : $"{path}: {ErrorText.Of(exception)}");
                        return ExitCodes.BadInput;
                    }

                    if (max < 0 || max >= maxExperts)
                    {
                        console.Error.WriteLine(max < 0
                            ? $"{path}: no id is 0 or more, so the file does not say how many experts there are; give --experts (1 to {maxExperts:N0})."
                            : $"{path}: the largest id is {max:N0}, which would make {(decimal)max + 1:N0} experts; the engine holds 1 to {maxExperts:N0}: give --experts (larger ids then count as invalid){PaddingHint(trace, max)}.");
                        return ExitCodes.Usage;
                    }

                    e = (int)max + 1;
                    unsignedPadding = trace.UnsignedPadding(max) is null ? -1 : (int)max;
                    // An expert no token reached leaves no id: the count may be short, and every figure with it.
                    console.Error.WriteLine($"note: {Counted.Of(e, "expert")}, the largest id in {ErrorText.OneLine(path.Name)} plus one; give --experts if the model has more (an expert no token reached is not in the file){PaddingHint(trace, max)}.");
                }

                if (trace.TopK > e)
                {
                    // The ids are counted as given, but no router wrote them: the axes or the experts are likely wrong.
                    var axes = trace.Layout is null ? "does each token's topk_ids hold its own k experts?" : "is the file's last axis k (--layout)?";
                    console.Error.WriteLine($"warning: each token holds {trace.TopK:N0} ids and there {(e == 1 ? "is 1 expert" : $"are {e:N0} experts")}: a top-k router picks k different experts, so k is at most E; is --experts right, and {axes}");
                }

                if (layered && model.EpSizeProblem(parse, e) is { } ranks)
                {
                    console.Error.WriteLine(ranks);
                    return ExitCodes.Usage;
                }

                if (layered && parse.GetValue(recording.Port) is not null && model.SeriesProblem(parse, trace.Layers, e) is { } series)
                {
                    console.Error.WriteLine(series);
                    return ExitCodes.Usage;
                }

                // The buffer holds the largest step; every size in it was checked against the file when it was opened.
                var largest = trace.Layers * trace.MaxTokens * trace.TopK;
                IdBuffer ids;
                try
                {
                    ids = IdBuffer.Allocate(largest);
                }
                catch (OutOfMemoryException)
                {
                    console.Error.WriteLine($"{path}: not enough memory for a step of {IdBuffer.Describe(largest)}.");
                    return ExitCodes.BadInput;
                }

                using (ids)
                {
                    var steps = trace.Steps - skipped;
                    var checks = new TraceChecks(trace.Layers, trace.TopK, unsignedPadding < 0 ? e : unsignedPadding, trace.Layout, layered, parse.GetValue(skipEmpty));
                    int Fill(int step, Span<int> batch)
                    {
                        var tokens = trace.ReadStep(skipped + step, batch);
                        checks.Check(skipped + step, batch[..(trace.Layers * tokens * trace.TopK)], tokens);
                        return tokens;
                    }

                    var what = $"{Counted.Of(steps, "step")} of {TokensPerStep(trace, skipped)}";
                    var left = skipped > 0 ? $" (the first {(skipped == 1 ? "step" : $"{skipped:N0}")} left out)" : "";
                    if (layered)
                    {
                        var window = model.WindowFor(parse, trace.Layers, e, steps);
                        var run = recording.Model(
                            parse,
                            console,
                            new ModelRoutingStatsOptions { Layers = trace.Layers, Experts = e, Window = window.Steps, SkipEmptySteps = parse.GetValue(skipEmpty) },
                            window.Named,
                            parse.GetValue(model.WindowLoad),
                            parse.GetValue(model.EpSize),
                            parse.GetValue(model.LayersShown),
                            model.Metrics(parse),
                            $"replay {path.Name}: {what} in {Counted.Of(trace.Layers, "layer")} ({trace.Axes}){left}, top-{trace.TopK} of {Counted.Of(e, "expert")} ({trace.IdType})",
                            "one RecordStep call, which hands every layer's ids to the engine and counts them (a GPU may finish counting after it returns); reading the file is not timed, nor the first step recorded, which loads the engine (JIT, kernels)"
                            + (parse.GetValue(skipEmpty) ? ", nor the steps of padding alone the model leaves out" : ""));
                        var defaulted = parse.GetValue(layout) is null ? trace.Layout : null;
                        return Replay(console, path, () => run.Run(steps, ids.Span, trace.TopK, Fill, () => [
                            .. checks.Warnings(trace.Steps),
                            .. PaddingWarning(trace),
                            .. IdLayout.DefaultNote(defaulted, trace.Steps, trace.Layers, trace.MaxTokens, trace.TopK),
                            .. window.Notes]));
                    }

                    var session = recording.Session(
                        parse,
                        console,
                        e,
                        $"replay {path.Name}: {what}{left}, top-{trace.TopK} of {Counted.Of(e, "expert")} ({trace.IdType})",
                        "one RecordRouting call, which hands the batch's ids to the engine and counts them (a GPU may finish counting after it returns); reading the file is not timed, nor the first batch, which loads the engine (JIT, kernels)");
                    return Replay(console, path, () => session.Run(
                        steps,
                        ids.Span,
                        Fill,
                        (stats, batch, tokens) => stats.RecordRouting(batch[..(tokens * trace.TopK)], tokens, trace.TopK),
                        () => [.. checks.Warnings(trace.Steps), .. PaddingWarning(trace)]));
                }
            }
        });
        return command;
    }

    /// <summary>The ids from which reading a .npy file or an .npz archive whole for its largest id gets a note: seconds of silence (about 250 million ids a second here).</summary>
    private const long LongIdScan = 1L << 29;

    /// <summary>
    /// The note before <paramref name="trace"/> (a .npy file or an .npz archive) is read whole for its largest id, when it
    /// holds at least <paramref name="ids"/> ids: counted from its shape, as an archive's size says nothing of its
    /// members' once decompressed. Null for fewer, and for JSON lines, read whole when opened.
    /// </summary>
    internal static string? LargestIdNote(IRoutingTrace trace, FileInfo path, long ids)
    {
        if (trace is JsonLinesTrace)
        {
            return null;
        }

        var held = 0L;
        for (var step = 0; step < trace.Steps; step++)
        {
            held += (long)trace.Layers * trace.TokensAt(step) * trace.TopK;
        }

        return held >= ids
            ? $"note: reading {ErrorText.OneLine(path.Name)} ({held:N0} ids) whole for its largest id (--experts skips this), before the replay starts."
            : null;
    }

    /// <summary>Where the largest id is its unsigned dtype's largest value, what it likely is, to end a message; else nothing.</summary>
    private static string PaddingHint(IRoutingTrace trace, long maxId) =>
        trace.UnsignedPadding(maxId) is { } text ? $"; {maxId:N0} is {text}: if those ids are padding, save the ids in a signed type (int8 to int64)" : "";

    /// <summary>The trace's warning about ids at their unsigned dtype's largest value, if any were replayed.</summary>
    private static IEnumerable<string> PaddingWarning(IRoutingTrace trace) =>
        trace.UnsignedPaddingWarning() is { } warning ? [warning] : [];

    /// <summary>The replayed steps' tokens, for the title: <c>6 tokens</c>, or <c>1 to 7 tokens (16 in all)</c> when they differ.</summary>
    private static string TokensPerStep(IRoutingTrace trace, int skipped)
    {
        int min = int.MaxValue, max = 0;
        var total = 0L;
        for (var step = skipped; step < trace.Steps; step++)
        {
            var tokens = trace.TokensAt(step);
            (min, max, total) = (Math.Min(min, tokens), Math.Max(max, tokens), total + tokens);
        }

        return min == max ? Counted.Of(max, "token") : $"{min:N0} to {max:N0} tokens ({total:N0} in all)";
    }

    /// <summary>Runs a replay; a file that fails while it is read (changed or removed meanwhile) is one line and exit code 1.</summary>
    private static int Replay(CliConsole console, FileInfo path, Func<int> run)
    {
        try
        {
            return run();
        }
        catch (Exception exception) when (exception is IOException or InvalidDataException or NotSupportedException)
        {
            console.Error.WriteLine(exception switch
            {
                InvalidDataException => exception.Message,
                NotSupportedException => InputFile.NotAFile(path),
                _ => $"{path}: {ErrorText.Of(exception)}",
            });
            return ExitCodes.BadInput;
        }
    }
}

/// <summary>
/// What a trace's ids say about how it was recorded, for warnings after the replay: steps in which,
/// in every layer, every token went to the same experts in the same order (a server's warm-up and
/// profiling passes of synthetic tokens, which skew a trace's top experts), tokens routed to one
/// expert twice (a router never does that: the file's axes are likely not what the layout says), and
/// steps of padding alone (an idle rank's dummy pass), which count as batches of no load. An id that
/// names no expert (−1, or −1 saved unsigned as 255) is padding or invalid, which other warnings name:
/// it is never a repeated or a shared expert.
/// </summary>
/// <param name="layers">Layers per step, each <c>[tokens, topK]</c> in the step's ids; 1 without a layers axis.</param>
/// <param name="topK">Experts per token.</param>
/// <param name="experts">Ids from 0 to one less name an expert: the experts per layer, or fewer where the largest id is −1 padding saved unsigned.</param>
/// <param name="layout">The file's layout, named in the warning about repeated experts; null for a trace without one (JSON lines).</param>
/// <param name="model">Whether the trace is replayed as a model (a layers axis), whose window a step of padding takes a place in.</param>
/// <param name="skipEmpty">Whether the model leaves out steps of no token (<see cref="ModelRoutingStatsOptions.SkipEmptySteps"/>): then the steps of padding alone are named in a note, not a warning.</param>
internal sealed class TraceChecks(int layers, int topK, int experts, IdLayout? layout, bool model, bool skipEmpty)
{
    private int _synthetic;
    private int _first = -1;
    private int _last = -1;
    private long _repeated;
    private int _repeatedStep = -1;
    private int _padding;
    private int _firstPadding = -1;

    /// <summary>
    /// For each expert, the stamp of the last token that named it (<see cref="CheckRepeats"/>): made once, for the first
    /// token checked. Stamps are 64-bit: a replay's tokens over all its steps and layers pass 2^31, never 2^63.
    /// </summary>
    private long[]? _seenIn;
    private long _stamp;

    /// <summary>Checks step <paramref name="step"/>: <paramref name="ids"/> its layers' ids, <paramref name="tokens"/> tokens per layer.</summary>
    public void Check(int step, ReadOnlySpan<int> ids, int tokens)
    {
        if (ids.Length > 0 && ids.IndexOfAnyExcept(ExpertHistogram.EmptySlot) < 0)
        {
            _padding++;
            _firstPadding = _firstPadding < 0 ? step : _firstPadding;
            return;
        }

        if (!Synthetic(ids, tokens))
        {
            CheckRepeats(step, ids, tokens);
            return;
        }

        // A warm-up pass's tokens (all ids 0, say) repeat an expert too: its own warning says what they are.
        _synthetic++;
        _first = _first < 0 ? step : _first;
        _last = step;
    }

    /// <summary>
    /// Whether every layer of the step routed its tokens (two or more) all alike, or, in a step of one
    /// token, sent it to one expert k (two or more) times: a warm-up pass of one token of zeros shows
    /// only that, and its warning, not the one about the layout, says what it is. Padding rows (k empty
    /// slots) are not tokens: a warm-up pass under CUDA graphs pads its alike tokens to the captured size.
    /// </summary>
    private bool Synthetic(ReadOnlySpan<int> ids, int tokens)
    {
        if (tokens == 0)
        {
            return false;
        }

        for (var layer = 0; layer < layers; layer++)
        {
            if (!TokensAlike(ids.Slice(layer * tokens * topK, tokens * topK)))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Whether a token's ids all name one expert.</summary>
    private bool OneExpert(ReadOnlySpan<int> slots) => IsExpert(slots[0]) && slots.IndexOfAnyExcept(slots[0]) < 0;

    private bool IsExpert(int id) => (uint)id < (uint)experts;

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
                ? $"warning: the first {(_synthetic == 1 ? "step" : $"{_synthetic:N0} steps")} routed every token to the same experts, as warm-up passes of synthetic tokens do; --skip-steps {_synthetic} leaves them out."
                : $"warning: {Counted.Of(_synthetic, "step")} (first {_first:N0}, last {_last:N0}) routed every token to the same experts, as warm-up passes of synthetic tokens do; their counts are in the report.";
        }

        if (_padding > 0 && skipEmpty)
        {
            yield return $"note: {Counted.Of(_padding, "step")} held padding alone (-1), no token (the first is step {_firstPadding:N0}): left out (--skip-empty-steps), in no statistic and in no place of the window.";
        }
        else if (_padding > 0)
        {
            // The seed's record counts a batch of no token as one whose experts all had a 0 % share; a
            // model's window counts it as a step.
            var effect = model
                ? "each counts as a step with no load, which takes a place in the window (--window) though it adds no load (the load and its balance are unaffected; a layer's saved snapshot counts it as a batch); --skip-empty-steps leaves them out"
                : "each counts as a batch with no load, which lowers every expert's mean share of a batch, so the shares add up to less than k x 100 % (the load and its balance are unaffected)";
            yield return $"warning: {Counted.Of(_padding, "step")} held padding alone (-1), no token (the first is step {_firstPadding:N0}): {effect}.";
        }

        if (_repeated > 0)
        {
            var question = layout is null ? "does each token's topk_ids hold its own k experts?" : $"is the file shaped [{layout.Name}] (--layout)?";
            yield return $"warning: {Counted.Of(_repeated, "token")} (the first in step {_repeatedStep:N0}) {(_repeated == 1 ? "names one expert twice among its" : "name one expert twice among their")} {topK} ids, which a top-k router never does: {question}";
        }
    }

    /// <summary>
    /// Whether one layer's tokens, padding rows aside, all went to the same experts in the same order (two or
    /// more tokens, three or more of one id each), or its one token to one expert k (two or more) times.
    /// </summary>
    private bool TokensAlike(ReadOnlySpan<int> ids)
    {
        var first = ReadOnlySpan<int>.Empty;
        var tokens = 0;
        for (var row = 0; row < ids.Length; row += topK)
        {
            var slots = ids.Slice(row, topK);
            if (slots.IndexOfAnyExcept(ExpertHistogram.EmptySlot) < 0)
            {
                continue;
            }

            if (tokens++ == 0)
            {
                first = slots;
            }
            else if (!slots.SequenceEqual(first))
            {
                return false;
            }
        }

        return tokens switch
        {
            0 => false,
            // One token is alike only where it names one expert k (two or more) times, which no router does.
            1 => topK >= 2 && OneExpert(first),
            // Two tokens of one id each meet on one expert by chance once in E steps.
            2 when topK == 1 => false,
            // A token whose ids name no expert routed nothing.
            _ => first.IndexOfAnyInRange(0, experts - 1) >= 0,
        };
    }

    private void CheckRepeats(int step, ReadOnlySpan<int> ids, int tokens)
    {
        if (topK < 2)
        {
            return;
        }

        // k is not bounded by E (a file's last axis can hold thousands of ids): each expert keeps the stamp of
        // the last token that named it, so a token's check is one pass over its k ids, not every pair of them.
        var seenIn = _seenIn ??= new long[experts];
        for (var token = 0; token < layers * tokens; token++)
        {
            _stamp++;
            foreach (var id in ids.Slice(token * topK, topK))
            {
                if (!IsExpert(id))
                {
                    continue;
                }

                if (seenIn[id] == _stamp)
                {
                    _repeated++;
                    _repeatedStep = _repeatedStep < 0 ? step : _repeatedStep;
                    break;
                }

                seenIn[id] = _stamp;
            }
        }
    }
}
