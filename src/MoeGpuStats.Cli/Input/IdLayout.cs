namespace MoeGpuStats.Cli.Input;

/// <summary>
/// The order of a replayed file's axes (<c>replay --layout</c>): which of steps, layers and tokens it
/// holds, k always last. Recorders differ: vLLM's routed experts come per step as [tokens, layers, k],
/// a per-layer hook saves [layers, tokens, k].
/// </summary>
internal sealed class IdLayout
{
    public static readonly IdLayout StepsLayersTokensK = new("steps,layers,tokens,k");
    public static readonly IdLayout StepsTokensLayersK = new("steps,tokens,layers,k");
    public static readonly IdLayout LayersTokensK = new("layers,tokens,k");
    public static readonly IdLayout TokensLayersK = new("tokens,layers,k");
    public static readonly IdLayout StepsTokensK = new("steps,tokens,k");
    public static readonly IdLayout TokensK = new("tokens,k");

    private readonly string[] _axes;

    private IdLayout(string name)
    {
        Name = name;
        _axes = name.Split(',');
    }

    public static IReadOnlyList<IdLayout> All { get; } = [StepsLayersTokensK, StepsTokensLayersK, LayersTokensK, TokensLayersK, StepsTokensK, TokensK];

    /// <summary>The layouts of an .npz member that holds one layer (<c>--members layers</c>): no layers axis.</summary>
    public static IReadOnlyList<IdLayout> OneLayer { get; } = [StepsTokensK, TokensK];

    /// <summary>The axes as <c>--layout</c> takes them, comma-separated.</summary>
    public string Name { get; }

    public int Rank => _axes.Length;

    public bool HasLayers => _axes.Contains("layers");

    /// <summary>
    /// Whether a step is stored tokens first ([tokens, layers, k]): it is reordered to
    /// [layers, tokens, k] as it is read, the order a model records.
    /// </summary>
    public bool TokensBeforeLayers => HasLayers && Array.IndexOf(_axes, "tokens") < Array.IndexOf(_axes, "layers");

    /// <summary>The layout named <paramref name="text"/> (case and spaces aside), or null.</summary>
    public static IdLayout? Parse(string text)
    {
        var name = text.Replace(" ", "", StringComparison.Ordinal).ToLowerInvariant();
        return All.FirstOrDefault(layout => layout.Name == name);
    }

    /// <summary>
    /// The one-line refusal of <c>--layout <paramref name="text"/></c>, no layout's name: the layouts by the rank of
    /// file they read (the file is not read yet, so all ranks are listed), then the one it most likely meant.
    /// </summary>
    public static string Unknown(string text)
    {
        var meant = TypoSuggestion.For(text.Replace(" ", "", StringComparison.Ordinal).ToLowerInvariant(), All.Select(layout => layout.Name));
        var byRank = All.GroupBy(layout => layout.Rank).Select(rank => $"{rank.Key}-D {Listed(rank.Select(layout => layout.Name).ToList())}");
        return $"--layout {Commands.SharedOptions.Given(text)}: give one for the file's dimensions: {string.Join("; ", byRank)}.{(meant is null ? "" : $" Did you mean {meant}?")}";
    }

    private static string Listed(IReadOnlyList<string> names) =>
        names.Count == 1 ? names[0] : $"{string.Join(", ", names.Take(names.Count - 1))} or {names[^1]}";

    /// <summary>
    /// A note for a trace read in <paramref name="defaulted"/>, the layout chosen without <c>--layout</c>:
    /// the default for 4-D, [steps, layers, tokens, k], has the rank of [steps, tokens, layers, k] (vLLM's
    /// routed experts of each step, stacked), and nothing in the ids tells the two apart. Empty for any
    /// other layout, and for null (a layout given, or none).
    /// </summary>
    public static IEnumerable<string> DefaultNote(IdLayout? defaulted, int steps, int layers, int tokens, int topK)
    {
        if (defaulted == StepsLayersTokensK)
        {
            yield return $"note: read as [{defaulted.Name}] = [{steps}, {layers}, {tokens}, {topK}], the default for 4-D; give --layout {StepsTokensLayersK.Name} if each step is [tokens, layers, k] (vLLM's routed experts, stacked): the ids cannot tell.";
        }
    }

    /// <summary>Refuses a shape of a rank none of <paramref name="readable"/> (<see cref="All"/> or <see cref="OneLayer"/>) has.</summary>
    /// <exception cref="InvalidDataException">It has; the message names the file and the layouts it could have.</exception>
    public static void CheckRank(string path, IReadOnlyList<long> dims, IReadOnlyList<IdLayout> readable)
    {
        if (readable.Any(layout => layout.Rank == dims.Count))
        {
            return;
        }

        throw readable == OneLayer
            ? LayerMemberRank(path, dims)
            : new InvalidDataException($"{path}: shape {NpyShape.Describe(dims)} has {Counted.Of(dims.Count, "dimension")}; replay reads 2 to 4: {string.Join(", ", All.Select(layout => $"[{layout.Name}]"))}.");
    }

    private static InvalidDataException LayerMemberRank(string path, IReadOnlyList<long> dims) =>
        new($"{path}: shape {NpyShape.Describe(dims)} has {Counted.Of(dims.Count, "dimension")}; with --members layers a member is one layer's [{StepsTokensK.Name}] or [{TokensK.Name}].");

    /// <summary>
    /// The layout of a file of <paramref name="dims"/> (a rank <see cref="CheckRank"/> passed) read with <paramref name="given"/> (null: none given).
    /// Without one, 2-D is [tokens, k] and 4-D [steps, layers, tokens, k]; 3-D could hold steps or
    /// layers, and a guess would report the wrong thing silently, so it must be given.
    /// </summary>
    /// <exception cref="IdLayoutException">No layout given for a 3-D file, or one of another rank.</exception>
    public static IdLayout For(string path, IReadOnlyList<long> dims, IdLayout? given) => For(path, dims, given, layerMember: false);

    /// <param name="path">The file or member.</param>
    /// <param name="dims">Its dimensions.</param>
    /// <param name="given">The layout given, or null.</param>
    /// <param name="layerMember">Whether the file is one layer (<c>--members layers</c>), so that no layout with a layers axis is suggested.</param>
    private static IdLayout For(string path, IReadOnlyList<long> dims, IdLayout? given, bool layerMember)
    {
        var shape = NpyShape.Describe(dims);
        var fitting = All.Where(layout => layout.Rank == dims.Count && !(layerMember && layout.HasLayers)).Select(layout => layout.Name).ToArray();
        if (given is null)
        {
            return dims.Count switch
            {
                2 => TokensK,
                4 => StepsLayersTokensK,
                _ => throw new IdLayoutException($"{path}: shape {shape} could be [steps, tokens, k], [layers, tokens, k] or [tokens, layers, k]; give --layout {StepsTokensK.Name}, {LayersTokensK.Name} or {TokensLayersK.Name}."),
            };
        }

        return given.Rank == dims.Count
            ? given
            : throw new IdLayoutException($"--layout {given.Name}: {path} has shape {shape}, {dims.Count} dimensions, and {given.Name} has {given.Rank}; give {string.Join(" or ", fitting)}.");
    }

    /// <summary>
    /// The layout of an .npz member that holds one layer (<c>--members layers</c>), of <paramref name="dims"/> (a rank
    /// <see cref="CheckRank"/> passed with <see cref="OneLayer"/>: 2 or 3) read with <paramref name="given"/> (null: none
    /// given, or one without a layers axis). Without one, 2-D is [tokens, k] and 3-D [steps, tokens, k]: the member is the
    /// layer, so 3-D is not ambiguous here.
    /// </summary>
    /// <exception cref="IdLayoutException">A layout of another rank.</exception>
    public static IdLayout ForLayerMember(string path, IReadOnlyList<long> dims, IdLayout? given) => given is not null
        ? For(path, dims, given, layerMember: true)
        : dims.Count == 2 ? TokensK : StepsTokensK;

    /// <summary>The file's sizes along steps, layers, tokens and k; 1 for an axis the layout lacks.</summary>
    public (long Steps, long Layers, long Tokens, long TopK) Sizes(IReadOnlyList<long> dims)
    {
        long Size(string axis) => Array.IndexOf(_axes, axis) is var at and >= 0 ? dims[at] : 1;
        return (Size("steps"), Size("layers"), Size("tokens"), Size("k"));
    }

    public override string ToString() => Name;
}

/// <summary>
/// The file's dimensions do not say its layout, or do not fit the one given, or an option that describes
/// a file's axes (<c>--layout</c>, <c>--members</c>) does not go with its format: a usage error naming the option.
/// </summary>
internal sealed class IdLayoutException(string message) : Exception(message);
