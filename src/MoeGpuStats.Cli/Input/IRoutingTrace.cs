namespace MoeGpuStats.Cli.Input;

/// <summary>
/// A router's recorded top-k ids, read one step (one forward pass) at a time as <c>[layers, tokens, k]</c>.
/// Steps may differ in tokens (a prefill, then decode batches that shrink as requests finish); every
/// layer of a step has the step's tokens, and every step the same layers and k. Every size is checked
/// against what the file holds when it is opened, so <see cref="MaxTokens"/> bounds the buffer a replay allocates.
/// </summary>
internal interface IRoutingTrace : IDisposable
{
    /// <summary>How the ids are laid out, for the report's title: <c>steps,layers,tokens,k</c>, <c>tokens,k in each of 12 members</c>, <c>JSON lines</c>.</summary>
    string Axes { get; }

    /// <summary>
    /// How a trace of this kind gives layers, for the message on an option a trace read without them cannot take:
    /// <c>--layout names the axis that holds them</c>, <c>no line has a layer field</c>.
    /// </summary>
    string LayersHint { get; }

    /// <summary>The layout the file (or each archive member) is read in; null where <c>--layout</c> has no say (JSON lines).</summary>
    IdLayout? Layout { get; }

    /// <summary>The ids' type as stored: <c>int16</c>, <c>JSON</c>.</summary>
    string IdType { get; }

    int Steps { get; }

    /// <summary>Whether the trace has a layers axis (a model, even of one layer), not one layer's ids.</summary>
    bool HasLayers { get; }

    /// <summary>Layers per step; 1 without a layers axis.</summary>
    int Layers { get; }

    int TopK { get; }

    /// <summary>The most tokens any step holds (per layer): <c>Layers × MaxTokens × TopK</c> ids fit a step, at most <see cref="NpyIds.MaxIdsPerStep"/>.</summary>
    int MaxTokens { get; }

    /// <summary>Lines for standard error before the replay, about how the file was read; none when there is nothing to say.</summary>
    IReadOnlyList<string> Notes { get; }

    /// <summary>
    /// Step <paramref name="step"/> as a message names it: its number from 0 in the file's order, and where the file numbers
    /// its steps otherwise (a JSON-lines trace's passes carry step fields of their own) what finds it there.
    /// </summary>
    string StepName(int step) => step.ToString("N0", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Tokens per layer in step <paramref name="step"/>, at least 1.</summary>
    int TokensAt(int step);

    /// <summary>Reads step <paramref name="step"/>'s ids into the start of <paramref name="destination"/> as <c>[layers, tokens, k]</c>; returns its tokens.</summary>
    /// <exception cref="InvalidDataException">The file no longer holds what it held when opened, or an archive member is corrupt; the message names it.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    int ReadStep(int step, Span<int> destination);

    /// <summary>The largest id as stored (int64 ids keep their value); negative ids never count; -1 when there is no other id.</summary>
    long MaxId();

    /// <summary>Where <paramref name="maxId"/> (<see cref="MaxId"/>) is the largest value of the ids' unsigned dtype, what it likely is (−1 padding saved unsigned), for a message; else null.</summary>
    string? UnsignedPadding(long maxId) => null;

    /// <summary>After the steps were read: a warning where ids held the largest value of their unsigned dtype, which −1 padding becomes saved as that type; else null.</summary>
    string? UnsignedPaddingWarning() => null;
}
