using System.CommandLine;
using MoeGpuStats.Cli.Input;

namespace MoeGpuStats.Cli.Commands;

internal static partial class ReplayCommand
{
    /// <summary>
    /// One opened trace's replay: its checks against the options, its number of experts, then its steps recorded into
    /// a whole model (a trace with layers) or one layer's statistics, and the report.
    /// </summary>
    private sealed class TraceReplay(CliConsole console, ParseResult parse, ReplayOptions options, FileInfo path, IRoutingTrace trace)
    {
        /// <summary>Replays the trace; a refusal is one line on standard error and its exit code.</summary>
        public int Run()
        {
            var skipped = parse.GetValue(options.SkipSteps);
            if ((OptionsMismatch() ?? SizeProblem(skipped)) is { } refusal)
            {
                return Refuse(refusal);
            }

            foreach (var note in trace.Notes.Append(LoadNote(trace, path)).OfType<string>())
            {
                console.Error.WriteLine(note);
            }

            if (CountExperts(out var experts, out var unsignedPadding) is { } uncounted)
            {
                return Refuse(uncounted);
            }

            WarnWhenKPassesExperts(experts);
            if (ModelProblem(experts) is { } modelProblem)
            {
                return Refuse(new(modelProblem, ExitCodes.Usage));
            }

            return Record(experts, unsignedPadding, skipped);
        }

        /// <summary>
        /// Records the steps after the first <paramref name="skipped"/>, each read into one buffer and checked as it is
        /// read; <paramref name="unsignedPadding"/>, unless -1, is the largest id, -1 padding saved unsigned, which the
        /// checks take as naming no expert.
        /// </summary>
        private int Record(int experts, int unsignedPadding, int skipped)
        {
            // The buffer holds the largest step; every size in it was checked against the file when it was opened.
            var largest = trace.Layers * trace.MaxTokens * trace.TopK;
            IdBuffer ids;
            try
            {
                ids = IdBuffer.Allocate(largest);
            }
            catch (OutOfMemoryException)
            {
                return Refuse(new($"{path}: not enough memory for a step of {IdBuffer.Describe(largest)}.", ExitCodes.BadInput));
            }

            using (ids)
            {
                var checks = new TraceChecks(trace.Layers, trace.TopK, unsignedPadding < 0 ? experts : unsignedPadding, trace.Layout, trace.HasLayers, parse.GetValue(options.SkipEmptySteps), skipped, trace.StepName);
                int Fill(int step, Span<int> batch)
                {
                    var tokens = trace.ReadStep(skipped + step, batch);
                    checks.Check(skipped + step, batch[..(trace.Layers * tokens * trace.TopK)], tokens);
                    return tokens;
                }

                return trace.HasLayers
                    ? RecordModel(ids, experts, skipped, checks, Fill)
                    : RecordLayer(ids, experts, skipped, checks, Fill);
            }
        }

        private int Refuse(Refusal refusal)
        {
            console.Error.WriteLine(refusal.Message);
            return refusal.ExitCode;
        }

        /// <summary>Why the options given do not fit whether the trace has layers; null when they fit.</summary>
        private Refusal? OptionsMismatch()
        {
            var (model, recording) = (options.Model, options.Recording);
            var withoutLayers = $"{path} is read without layers ({trace.Axes}: {trace.LayersHint}).";
            var mismatch = trace.HasLayers
                ? model.MetricsOption(parse) is { } metrics ? recording.ModelMetricsProblem(parse, metrics) : null
                : model.GivenForOneLayer(parse) is var (option, why) ? $"{option}: {why}; {withoutLayers}"
                : parse.GetValue(options.SkipEmptySteps) ? $"--skip-empty-steps: leaving steps out of the window is a model's; {withoutLayers}"
                : null;
            return mismatch is null ? null : new(mismatch, ExitCodes.Usage);
        }

        /// <summary>Why the trace has more layers than a model holds, or too few steps to leave <paramref name="skipped"/> out; null when it fits.</summary>
        private Refusal? SizeProblem(int skipped)
        {
            if (trace.Layers > ModelRoutingStatsOptions.MaxLayers)
            {
                return new($"{path}: {trace.Layers:N0} layers ({trace.Axes}); a model holds at most {ModelRoutingStatsOptions.MaxLayers:N0}.", ExitCodes.BadInput);
            }

            return skipped >= trace.Steps
                ? new($"--skip-steps {skipped}: {path} has {Counted.Of(trace.Steps, "step")}; leave out at most {trace.Steps - 1:N0}, so that one is replayed.", ExitCodes.Usage)
                : null;
        }

        /// <summary>
        /// The experts: --experts, or else the largest id in the trace plus one, with a note that the count may be short.
        /// <paramref name="unsignedPadding"/> is the largest id where it is -1 saved unsigned (255 in uint8) and was taken
        /// as an expert for want of --experts, else -1. Null, or why the trace does not say how many experts there are.
        /// </summary>
        private Refusal? CountExperts(out int experts, out int unsignedPadding)
        {
            unsignedPadding = -1;
            if (parse.GetValue(options.Experts) is { } given)
            {
                experts = given;
                return null;
            }

            experts = 0;
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
                return new(exception.Message, ExitCodes.Usage);
            }
            catch (Exception exception) when (exception is IOException or InvalidDataException)
            {
                return new(exception is InvalidDataException ? exception.Message : $"{path}: {ErrorText.Of(exception)}", ExitCodes.BadInput);
            }

            const int MaxExperts = RoutingStatsOptions.MaxDeviceExperts;
            if (max < 0 || max >= MaxExperts)
            {
                return new(
                    max < 0
                        ? $"{path}: no id is 0 or more, so the file does not say how many experts there are; give --experts (1 to {MaxExperts:N0})."
                        : $"{path}: the largest id is {max:N0}, which would make {(decimal)max + 1:N0} experts; the engine holds 1 to {MaxExperts:N0}: give --experts (larger ids then count as invalid){PaddingHint(trace, max)}.",
                    ExitCodes.Usage);
            }

            experts = (int)max + 1;
            unsignedPadding = trace.UnsignedPadding(max) is null ? -1 : (int)max;
            // An expert no token reached leaves no id: the count may be short, and every figure with it.
            console.Error.WriteLine($"note: {Counted.Of(experts, "expert")}, the largest id in {UnsafeText.Escaped(path.Name)} plus one; give --experts if the model has more (an expert no token reached is not in the file){PaddingHint(trace, max)}.");
            return null;
        }

        private void WarnWhenKPassesExperts(int experts)
        {
            if (trace.TopK > experts)
            {
                // The ids are counted as given, but no router wrote them: the axes or the experts are likely wrong.
                var axes = trace.Layout is null ? "does each token's topk_ids hold its own k experts?" : "is the file's last axis k (--layout)?";
                console.Error.WriteLine($"warning: each token holds {trace.TopK:N0} ids and there {(experts == 1 ? "is 1 expert" : $"are {experts:N0} experts")}: a top-k router picks k different experts, so k is at most E; is --experts right, and {axes}");
            }
        }

        /// <summary>For a trace with layers, why --ep-size or the metrics' series do not fit its experts and layers; else null.</summary>
        private string? ModelProblem(int experts)
        {
            if (!trace.HasLayers)
            {
                return null;
            }

            var model = options.Model;
            return model.EpSizeProblem(parse, experts)
                ?? (parse.GetValue(options.Recording.Port) is not null ? model.SeriesProblem(parse, trace.Layers, experts) : null);
        }

        /// <summary>Records each step's layers into one <see cref="ModelRoutingStats"/>, then reports.</summary>
        private int RecordModel(IdBuffer ids, int experts, int skipped, TraceChecks checks, FillBatch fill)
        {
            var (model, steps, skipEmpty) = (options.Model, trace.Steps - skipped, parse.GetValue(options.SkipEmptySteps));
            var window = model.WindowFor(parse, trace.Layers, experts, steps);
            var run = options.Recording.Model(
                parse,
                console,
                new ModelRoutingStatsOptions { Layers = trace.Layers, Experts = experts, Window = window.Steps, SkipEmptySteps = skipEmpty },
                window.Named,
                parse.GetValue(model.WindowLoad),
                parse.GetValue(model.EpSize),
                parse.GetValue(model.LayersShown),
                model.Metrics(parse),
                $"replay {path.Name}: {StepsReplayed(skipped)} in {Counted.Of(trace.Layers, "layer")} ({trace.Axes}){LeftOut(skipped)}, top-{trace.TopK} of {Counted.Of(experts, "expert")} ({trace.IdType})",
                "one RecordStep call, which hands every layer's ids to the engine and counts them (a GPU may finish counting after it returns); reading the file is not timed, nor the first step recorded, which loads the engine (JIT, kernels)"
                + (skipEmpty ? ", nor the steps of padding alone the model leaves out" : ""),
                skipped);
            var defaulted = parse.GetValue(options.Layout) is null ? trace.Layout : null;
            return RecordCatchingReadFailures(() => run.Run(steps, ids.Span, trace.TopK, fill, recorded => [
                .. checks.Warnings(),
                .. PaddingWarning(trace),
                .. IdLayout.DefaultNote(defaulted, trace.Steps, trace.Layers, trace.MaxTokens, trace.TopK),
                .. window.Notes(recorded)]));
        }

        /// <summary>Records each step's ids into one layer's <see cref="RoutingStats"/>, then reports.</summary>
        private int RecordLayer(IdBuffer ids, int experts, int skipped, TraceChecks checks, FillBatch fill)
        {
            var session = options.Recording.Session(
                parse,
                console,
                experts,
                $"replay {path.Name}: {StepsReplayed(skipped)}{LeftOut(skipped)}, top-{trace.TopK} of {Counted.Of(experts, "expert")} ({trace.IdType})",
                "one RecordRouting call, which hands the batch's ids to the engine and counts them (a GPU may finish counting after it returns); reading the file is not timed, nor the first batch, which loads the engine (JIT, kernels)");
            return RecordCatchingReadFailures(() => session.Run(
                trace.Steps - skipped,
                ids.Span,
                fill,
                (stats, batch, tokens) => stats.RecordRouting(batch[..(tokens * trace.TopK)], tokens, trace.TopK),
                () => [.. checks.Warnings(), .. PaddingWarning(trace)]));
        }

        /// <summary>The steps replayed, for the title: <c>5 steps of 4 token rows</c>.</summary>
        private string StepsReplayed(int skipped) => $"{Counted.Of(trace.Steps - skipped, "step")} of {TokensPerStep(trace, skipped)}";

        /// <summary>Runs a recording; a file that fails while it is read (changed or removed meanwhile) is one line and exit code 1.</summary>
        private int RecordCatchingReadFailures(Func<int> record)
        {
            try
            {
                return record();
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
}
