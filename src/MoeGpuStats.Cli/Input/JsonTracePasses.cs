namespace MoeGpuStats.Cli.Input;

/// <summary>
/// Groups the lines of a JSON-lines trace into forward passes as they are read, and checks them:
/// the index a replay reads each pass again from (where its lines start and end, its tokens), not the ids.
/// </summary>
/// <remarks>
/// The first line decides which of the layer, pass and position fields the trace has; every line has
/// the same. A new forward pass starts
/// <list type="bullet">
/// <item>with a pass field: where its value changes (a pass's lines come together; an id seen before is refused);</item>
/// <item>else with a position field: at a line of position 0 whose layer already has tokens in the pass;</item>
/// <item>else: at a line whose layer already has tokens in the pass (each line holds all of a layer's tokens).</item>
/// </list>
/// Lines of one layer in a pass add tokens in file order (a position must be the count so far). The
/// first pass sets the layers, those its lines name; they are the model's layers 0 to L − 1 in ascending
/// order, so that a hook logging a model's own layer indices (DeepSeek-V3's MoE layers are 3 to 60, some
/// models' every other layer) is read as it is, with a note. Every later pass holds the same layers, each
/// with the pass's tokens, at least one.
/// </remarks>
internal sealed class JsonTracePasses(string path)
{
    private readonly int[] _tokens = new int[ModelRoutingStatsOptions.MaxLayers];
    private readonly long[] _lastLine = new long[ModelRoutingStatsOptions.MaxLayers];
    // The first line of each pass id seen; a number is its own key, so that a trace of numbered steps keeps no string per pass.
    private readonly Dictionary<long, long> _numbersSeen = new(SeededLongComparer.Instance);
    private readonly Dictionary<string, long> _stringsSeen = [];
    private readonly int[] _indexOf = Enumerable.Repeat(-1, ModelRoutingStatsOptions.MaxLayers).ToArray();
    private int[] _layerIds = [];

    private (string? Layer, string? Pass, string? Position) _fields;
    private long _firstNumber;
    private bool _inPass;
    private int _maxLayer = -1;
    private long _passStart;
    private long _passEnd;
    private long _passFirstLine;
    private long _passLastLine;

    /// <summary>The largest id before the pass at hand: a dropped pass takes its ids with it.</summary>
    private long _maxIdBeforePass = -1;
    private JsonTraceLine.PassId? _passId;
    private string? _passText;

    /// <summary>The trace's k, from its first token; 0 before it.</summary>
    public int TopK { get; private set; }

    /// <summary>Layers per pass, set by the first pass; 0 before it ends.</summary>
    public int Layers => _layerIds.Length;

    /// <summary>The model's layer (0 to <see cref="Layers"/> − 1) of a layer field's value; −1 for a layer the first pass does not hold.</summary>
    public int LayerIndex(int layer) => _indexOf[layer];

    /// <summary>A note where the first pass's layers are not 0 to L − 1, saying how they are read; null where they are.</summary>
    public string? LayerNote => Layers == 0 || _layerIds[^1] == Layers - 1
        ? null
        : Layers == 1
            ? $"note: the first forward pass holds layer {_layerIds[0]} alone: read as the model's layer 0."
            : $"note: the first forward pass holds layers {LayerList(_layerIds)}: read as the model's layers 0 to {Layers - 1}, in that order.";

    /// <summary>Whether the lines name their layer.</summary>
    public bool HasLayers => _fields.Layer is not null;

    /// <summary>The largest id, -1 if none is 0 or more.</summary>
    public long MaxId { get; private set; } = -1;

    /// <summary>How passes are told apart, for the report: <c>the step field</c>, ...</summary>
    public string Grouping => _fields.Pass is { } pass
        ? $"forward passes by {pass}"
        : _fields.Position is { } position ? $"a forward pass where {position} is 0 again" : "a line per layer and forward pass";

    /// <summary>The passes ended so far.</summary>
    public JsonTracePassIndex Index { get; } = new();

    /// <summary>Whether a pass was read: ended, or the one at hand.</summary>
    public bool HasPasses => Index.Count > 0 || _inPass;

    /// <summary>Adds line <paramref name="number"/>, which runs from <paramref name="start"/> to <paramref name="next"/> (the next line's start).</summary>
    /// <exception cref="InvalidDataException">The line does not fit the trace so far; one line starting <c>path:number:</c>.</exception>
    public void Add(in JsonTraceLine line, long start, long next, long number)
    {
        var where = $"{path}:{number}";
        if (_firstNumber == 0)
        {
            _fields = (line.Layer?.Name, line.Pass?.Name, line.Position?.Name);
            _firstNumber = number;
            TopK = line.TopK;
        }

        CheckSameFields(line, where);
        var layer = line.Layer?.Value ?? 0;
        var newPass = !_inPass || (line.Pass is { } pass
            ? pass.Id != _passId
            : (line.Position is null || line.Position.Value.Value == 0) && _tokens[layer] > 0);
        if (newPass)
        {
            if (_inPass)
            {
                EndPass();
            }

            StartPass(line, start, number, where);
        }

        if (Layers > 0 && _indexOf[layer] < 0)
        {
            var grouping = _fields.Pass is null && _fields.Position is null
                ? " Without a step or position field, each line holds all of its layer's tokens in a pass and a layer's next line starts the next pass: give lines that hold part of a pass a step or position field."
                : "";
            throw new InvalidDataException($"{where}: {line.Layer!.Value.Name} {layer}, but the first forward pass holds layers {LayerList(_layerIds)}; every pass holds the same layers.{grouping}");
        }

        if (line.Position is { } position && position.Value != _tokens[layer])
        {
            var before = HasLayers ? $"layer {layer} has {Counted.Of(_tokens[layer], "token")}" : $"the pass has {Counted.Of(_tokens[layer], "token")}";
            throw new InvalidDataException($"{where}: {position.Name} {position.Value:N0}, but {before} before it in this forward pass; {position.Name} is the index of the line's first token in its pass.");
        }

        if ((long)(_tokens[layer] + (long)line.Tokens) * TopK > NpyIds.MaxIdsPerStep)
        {
            throw new InvalidDataException($"{where}: a layer's tokens in this forward pass reach more than {NpyIds.MaxIdsPerStep:N0} ids; replay reads at most that many per step.");
        }

        _tokens[layer] += line.Tokens;
        _lastLine[layer] = number;
        _maxLayer = Math.Max(_maxLayer, layer);
        _passEnd = next;
        _passLastLine = number;
        MaxId = Math.Max(MaxId, line.MaxId);
    }

    /// <summary>
    /// Drops the pass at hand, which a line cut off at the end of the file may belong to: kept only where
    /// that line cannot (without step or position fields, a pass takes no more lines once it holds every
    /// layer: each of the first pass's, or, in a trace without layers, its one line). Returns the dropped
    /// pass's first and last lines; null when none was dropped.
    /// </summary>
    public (long First, long Last)? DropUnfinishedPass()
    {
        var whole = _fields.Pass is null && _fields.Position is null && (_fields.Layer is null || (Layers > 0 && _layerIds.All(layer => _tokens[layer] > 0)));
        if (!_inPass || whole)
        {
            return null;
        }

        Array.Clear(_tokens);
        _maxLayer = -1;
        _inPass = false;
        MaxId = _maxIdBeforePass;
        return (_passFirstLine, _passLastLine);
    }

    /// <summary>Ends the last pass.</summary>
    /// <exception cref="InvalidDataException">It does not hold its layers' tokens, or the file holds no pass.</exception>
    public void Finish()
    {
        if (_inPass)
        {
            EndPass();
        }
        else if (Index.Count == 0)
        {
            throw new InvalidDataException($"{path}: no lines; a JSON-lines trace holds one object with topk_ids a line.");
        }
    }

    /// <summary>Refuses a line that has a layer, pass or position field the first line lacks, or lacks one it has.</summary>
    private void CheckSameFields(in JsonTraceLine line, string where)
    {
        Check(_fields.Layer, line.Layer?.Name, "every line names its layer", "a single-layer trace names none");
        Check(_fields.Pass, line.Pass?.Name, "every line names its forward pass", "passes are told apart without it");
        Check(_fields.Position, line.Position?.Name, "every line gives its first token's position", "passes are told apart without it");

        void Check(string? first, string? here, string has, string hasNot)
        {
            if (first is not null && here is null)
            {
                throw new InvalidDataException($"{where}: no {first}; line {_firstNumber:N0} has one, so {has}.");
            }

            if (first is null && here is not null)
            {
                throw new InvalidDataException($"{where}: {here} given, but line {_firstNumber:N0} has none, so {hasNot}; give it on every line or on none.");
            }
        }
    }

    private void StartPass(in JsonTraceLine line, long start, long number, string where)
    {
        if (line.Pass is { } pass)
        {
            var added = pass.Id.Key is { } key ? _stringsSeen.TryAdd(key, number) : _numbersSeen.TryAdd(pass.Id.Number, number);
            if (!added)
            {
                var first = pass.Id.Key is { } seen ? _stringsSeen[seen] : _numbersSeen[pass.Id.Number];
                throw new InvalidDataException($"{where}: {pass.Name} {pass.Text} again, after other passes (its lines began at line {first:N0}); a forward pass's lines come together.");
            }
        }

        _inPass = true;
        _passStart = start;
        _passFirstLine = number;
        _maxIdBeforePass = MaxId;
        _passId = line.Pass?.Id;
        _passText = line.Pass is { } p ? $" ({p.Name} {p.Text})" : "";
    }

    /// <summary>Checks the pass at hand (each layer, the same tokens) and adds it to the index; the first sets the layers.</summary>
    private void EndPass()
    {
        var layers = Layers > 0 ? _layerIds : [.. Enumerable.Range(0, _maxLayer + 1).Where(layer => _tokens[layer] > 0)];
        var first = layers[0];
        foreach (var layer in layers)
        {
            if (_tokens[layer] == 0)
            {
                throw new InvalidDataException(
                    $"{path}:{_passLastLine}: the forward pass of {Lines()}{_passText} has no tokens of layer {layer}; every pass holds layers {LayerList(layers)}, as the first does.");
            }

            if (_tokens[layer] != _tokens[first])
            {
                throw new InvalidDataException(
                    $"{path}:{_lastLine[layer]}: layer {layer} has {Counted.Of(_tokens[layer], "token")} in the forward pass of {Lines()}{_passText}, layer {first} has {_tokens[first]:N0}; every layer of a pass routes the same tokens.");
            }
        }

        if ((long)layers.Length * _tokens[first] * TopK > NpyIds.MaxIdsPerStep || Index.Count == int.MaxValue)
        {
            throw new InvalidDataException(Index.Count == int.MaxValue
                ? $"{path}:{_passFirstLine}: more than {int.MaxValue:N0} forward passes; replay reads at most that many."
                : $"{path}:{_passLastLine}: the forward pass of {Lines()} holds {(long)layers.Length * _tokens[first] * TopK:N0} ids; replay reads at most {NpyIds.MaxIdsPerStep:N0} per step.");
        }

        if (Layers == 0)
        {
            _layerIds = layers;
            for (var i = 0; i < layers.Length; i++)
            {
                _indexOf[layers[i]] = i;
            }
        }

        Index.Add(new JsonTracePassIndex.Pass(_passStart, _passEnd, _passFirstLine, _tokens[first]));
        foreach (var layer in layers)
        {
            _tokens[layer] = 0;
        }

        _maxLayer = -1;
        _inPass = false;

        // Told only in a refusal: a pass's lines are not worth a string per pass.
        string Lines() => _passFirstLine == _passLastLine ? $"line {_passFirstLine:N0}" : $"lines {_passFirstLine:N0} to {_passLastLine:N0}";
    }

    /// <summary>Layers in ascending order as runs, <c>3 to 60</c> or <c>0 to 2, 5</c>; past six runs the first three, an ellipsis, the last and the count.</summary>
    internal static string LayerList(IReadOnlyList<int> layers)
    {
        var runs = new List<string>();
        for (var i = 0; i < layers.Count;)
        {
            var last = i;
            while (last + 1 < layers.Count && layers[last + 1] == layers[last] + 1)
            {
                last++;
            }

            runs.Add(last == i ? $"{layers[i]}" : $"{layers[i]} to {layers[last]}");
            i = last + 1;
        }

        return runs.Count <= 6 ? string.Join(", ", runs) : $"{string.Join(", ", runs.Take(3))}, …, {runs[^1]} ({layers.Count} layers)";
    }
}
