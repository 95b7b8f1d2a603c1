using MoeGpuStats.Cli.Input;

namespace MoeGpuStats.Cli.Commands;

internal static partial class ReplayCommand
{
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

    /// <summary>The title's mention of the steps left out by --skip-steps; empty for none.</summary>
    private static string LeftOut(int skipped) => skipped > 0 ? $" (the first {(skipped == 1 ? "step" : $"{skipped:N0}")} left out)" : "";
}
