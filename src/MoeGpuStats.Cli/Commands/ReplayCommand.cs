using System.CommandLine;
using MoeGpuStats.Cli.Input;

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

                result.AddError($"--members {SharedOptions.Given(text)}: give steps (each member holds forward passes) or layers (member l holds layer l).");
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
                var withoutLayers = $"{path} is read without layers ({trace.Axes}: {trace.LayersHint}).";
                var mismatch = layered
                    ? model.MetricsOption(parse) is { } metrics ? recording.ModelMetricsProblem(parse, metrics) : null
                    : model.GivenForOneLayer(parse) is var (option, why) ? $"{option}: {why}; {withoutLayers}"
                    : parse.GetValue(skipEmpty) ? $"--skip-empty-steps: leaving steps out of the window is a model's; {withoutLayers}"
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

                foreach (var note in trace.Notes.Append(LoadNote(trace, path)).OfType<string>())
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
                    console.Error.WriteLine($"note: {Counted.Of(e, "expert")}, the largest id in {UnsafeText.Escaped(path.Name)} plus one; give --experts if the model has more (an expert no token reached is not in the file){PaddingHint(trace, max)}.");
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
                    var checks = new TraceChecks(trace.Layers, trace.TopK, unsignedPadding < 0 ? e : unsignedPadding, trace.Layout, layered, parse.GetValue(skipEmpty), skipped, trace.StepName);
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
                            + (parse.GetValue(skipEmpty) ? ", nor the steps of padding alone the model leaves out" : ""),
                            skipped);
                        var defaulted = parse.GetValue(layout) is null ? trace.Layout : null;
                        return Replay(console, path, () => run.Run(steps, ids.Span, trace.TopK, Fill, recorded => [
                            .. checks.Warnings(),
                            .. PaddingWarning(trace),
                            .. IdLayout.DefaultNote(defaulted, trace.Steps, trace.Layers, trace.MaxTokens, trace.TopK),
                            .. window.Notes(recorded)]));
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
                        () => [.. checks.Warnings(), .. PaddingWarning(trace)]));
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
            ? $"note: reading {UnsafeText.Escaped(path.Name)} ({held:N0} ids) whole for its largest id (--experts skips this), before the replay starts."
            : null;
    }

    /// <summary>Where the largest id is its unsigned dtype's largest value, what it likely is, to end a message; else nothing.</summary>
    private static string PaddingHint(IRoutingTrace trace, long maxId) =>
        trace.UnsignedPadding(maxId) is { } text ? $"; {maxId:N0} is {text}: if those ids are padding, save the ids in a signed type (int8 to int64)" : "";

    /// <summary>
    /// A note when a .npy trace looks like a load instead, <c>[layers, experts]</c> (as <c>--window-load</c> writes): one
    /// step without layers, of at most <see cref="LoadMatrix.MostModelLayers"/> token rows of more than
    /// <see cref="LoadMatrix.MostTopK"/> ids, more than a router picks; else null. The reverse of plan's note on a trace;
    /// plan reads a load from a .npy, not from an .npz or JSON lines.
    /// </summary>
    private static string? LoadNote(IRoutingTrace trace, FileInfo path) =>
        !trace.HasLayers && trace.Steps == 1 && trace.MaxTokens <= LoadMatrix.MostModelLayers && trace.TopK > LoadMatrix.MostTopK && LoadMatrix.IsNpy(path.FullName)
            ? $"note: {UnsafeText.Escaped(path.ToString())} is read as {Counted.Of(trace.MaxTokens, "token row")} of {trace.TopK:N0} ids each, more than a top-k router picks; if it holds a load, [layers, experts] (as --window-load writes), it is plan's input: moegs plan {UnsafeText.Escaped(path.ToString())} --replicas R --gpus P."
            : null;

    /// <summary>The trace's warning about ids at their unsigned dtype's largest value, if any were replayed.</summary>
    private static IEnumerable<string> PaddingWarning(IRoutingTrace trace) =>
        trace.UnsignedPaddingWarning() is { } warning ? [warning] : [];

    /// <summary>The replayed steps' token rows, for the title: <c>6 token rows</c>, or <c>1 to 7 token rows (16 in all)</c> when they differ.</summary>
    private static string TokensPerStep(IRoutingTrace trace, int skipped)
    {
        int min = int.MaxValue, max = 0;
        var total = 0L;
        for (var step = skipped; step < trace.Steps; step++)
        {
            var tokens = trace.TokensAt(step);
            (min, max, total) = (Math.Min(min, tokens), Math.Max(max, tokens), total + tokens);
        }

        // Rows, not tokens: a padding row is a row of the file's step and no token (the report counts tokens).
        return min == max ? Counted.Of(max, "token row") : $"{min:N0} to {max:N0} token rows ({total:N0} in all)";
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
