using MoeGpuStats.Cli.Input;
using MoeGpuStats.Engines;

namespace MoeGpuStats.Cli.Commands;

/// <summary>
/// <c>merge</c>'s snapshots taken one at a time, in the order given: each checked against the first and added to the
/// merge, then let go, so that a job's hundreds of ranks' snapshots take the memory of one and the merge.
/// </summary>
internal sealed class SnapshotMerge
{
    /// <summary>Why ranks' experts can differ: a replay without <c>--experts</c> takes them from the largest id of its own trace.</summary>
    private const string GuessedExperts = " (a replay without --experts counts experts up to the largest id in its trace, which differs by rank: replay each rank with --experts)";

    private readonly FileInfo[] _paths;
    private RoutingStatsMerge? _layers;
    private ModelRoutingMerge? _models;
    private string _firstHolds = "";
    private string _firstShape = "";
    private int _firstExperts;
    private (ulong Steps, long Ranks) _firstSteps;
    private int? _firstCapacity;
    private string _firstCapacityText = "";
    private (int Part, int Experts)? _counted;
    private (int Part, int Experts)? _configured;
    private (int Part, double SlotsPerToken)? _firstRouting;
    private (int Part, long Parts)? _firstMergeGiven;
    private int _mergesGiven;
    private int _added;

    public SnapshotMerge(FileInfo[] paths) => _paths = paths;

    /// <summary>Whether the snapshots are models' (as the first is); false for one layer's.</summary>
    private bool OfModels => _models is not null;

    /// <summary>A note where the models hold different step counts (the first such part), or null.</summary>
    public string? StepsNote { get; private set; }

    /// <summary>
    /// A note where two parts route tokens to clearly different numbers of experts (the first part and the first that
    /// differs by half again or more), or null: ranks of one job share one top-k, and no file records it.
    /// </summary>
    public string? TopKNote { get; private set; }

    /// <summary>The snapshots the merge holds, those that parts given merged already included: a part's <c>MergedParts</c>, summed.</summary>
    public long Merged { get; private set; }

    /// <summary>
    /// A note where parts given beside others are themselves merges (the first named, the others counted), or null: no
    /// file says which ranks a merge holds, so a rank given both alone and inside one (job.json beside rank0.json) would
    /// be counted twice unseen.
    /// </summary>
    public string? MergeGivenNote => _paths.Length > 1 && _firstMergeGiven is var (part, parts)
        ? $"note: {UnsafeText.Escaped(_paths[part].ToString())} is itself a merge of {parts:N0} snapshots{(_mergesGiven > 1 ? $", as are {_mergesGiven - 1:N0} more of the files given" : "")}: a rank's snapshot given both alone and inside a merge is counted twice; give each rank once, alone or in one merge."
        : null;

    /// <summary>
    /// Checks <paramref name="part"/>, the snapshot of the next path, against the first and adds it; the reason, one
    /// line naming the files, where it cannot merge (the merge is then given up).
    /// </summary>
    public string? Add(Snapshot part)
    {
        var index = _added;
        if (index == 0)
        {
            First(part);
        }
        else if (Mismatch(index, part) is { } mismatch)
        {
            return mismatch;
        }

        try
        {
            if (part.Model is { } model)
            {
                NoteSteps(index, _models!.Add(model), model.MergedParts);
            }
            else
            {
                _layers!.Add(part.Layer!);
            }

            NoteTopK(index, part);
            var parts = part.Model?.MergedParts ?? part.Layer!.MergedParts;
            Merged += parts;
            if (parts > 1)
            {
                _firstMergeGiven ??= (index, parts);
                _mergesGiven++;
            }
        }
        catch (ArgumentException exception)
        {
            // The shapes were checked above: what the merge refuses here is a sum past what a snapshot holds.
            return $"cannot merge {UnsafeText.Escaped(_paths[index].ToString())} with the {Counted.Of(index, "snapshot")} before it: {ErrorText.Of(exception)}";
        }

        _added++;
        return null;
    }

    /// <summary>The merge of the snapshots added: a layer's or a model's, as they are.</summary>
    /// <exception cref="ArgumentException">The parts cannot be combined exactly (the message names the sum).</exception>
    public Snapshot Result() => _models is { } models ? new Snapshot(null, models.Result()) : new Snapshot(_layers!.Result(), null);

    /// <summary>The message for a merge refused at its end, which no one file caused.</summary>
    public string Refused(ArgumentException exception) => $"cannot merge the {Counted.Of(_paths.Length, "snapshot")}: {ErrorText.Of(exception)}";

    private void First(Snapshot part)
    {
        _firstHolds = part.Describe();
        if (part.Model is { } model)
        {
            _models = new ModelRoutingMerge();
            (_firstShape, _firstExperts) = (Shape(model), model.Experts);
        }
        else
        {
            _layers = new RoutingStatsMerge();
            (_firstCapacity, _firstCapacityText) = (part.Layer!.Options.ExpertCapacity, Capacity(part.Layer));
            Count(0, part.Layer);
        }
    }

    private string? Mismatch(int index, Snapshot part)
    {
        if ((part.Model is not null) != OfModels)
        {
            return $"{_paths[0]} holds {_firstHolds}, {_paths[index]} holds {part.Describe()}; merge layers with layers and models with models.";
        }

        if (part.Model is { } model)
        {
            if (Shape(model) != _firstShape)
            {
                return $"{_paths[0]} holds {_firstShape}, {_paths[index]} holds {Shape(model)}; only models of the same layers, experts, window, capacity and --skip-empty-steps merge"
                    + (model.Experts != _firstExperts ? $"{GuessedExperts}." : ".");
            }

            return null;
        }

        var layer = part.Layer!;
        var countedExperts = layer.ExpertUtilization.Count;
        if (countedExperts > 0 && _counted is var (first, counted) && countedExperts != counted)
        {
            return $"{_paths[first]} has {counted:N0} experts, {_paths[index]} has {countedExperts:N0}; only snapshots of the same experts merge{GuessedExperts}.";
        }

        // As the library's merge: the experts counted must agree, and so must the experts the options fix (an idle rank's).
        if (layer.Options.Experts is { } configured && _configured is var (fixedBy, fixedExperts) && configured != fixedExperts)
        {
            return $"{_paths[fixedBy]} has experts = {fixedExperts:N0}, {_paths[index]} has experts = {configured:N0}; only snapshots of the same experts merge{GuessedExperts}.";
        }

        // A capacity derives drops and an unset one does not, even where its placeholder is the same number.
        if (layer.Options.ExpertCapacity != _firstCapacity)
        {
            return $"{_paths[0]} has {_firstCapacityText}, {_paths[index]} has {Capacity(layer)}; only snapshots of the same capacity merge.";
        }

        Count(index, layer);
        return null;
    }

    /// <summary>Keeps the first part's steps, and the note on the first part whose steps per rank differ.</summary>
    /// <param name="index">The part's place among the paths.</param>
    /// <param name="steps">The steps the part holds.</param>
    /// <param name="ranks">The ranks the part merged already (its <c>MergedParts</c>), whose steps it sums.</param>
    private void NoteSteps(int index, ulong steps, long ranks)
    {
        // A merge takes its parts as ranks of one job that step together and aligns their windows from the newest
        // step, which is not a span of time for parts that did not (one rank's snapshots at two times, say).
        if (index == 0)
        {
            _firstSteps = (steps, ranks);
        }
        else if (StepsNote is null && (UInt128)steps * (ulong)_firstSteps.Ranks != (UInt128)_firstSteps.Steps * (ulong)ranks)
        {
            StepsNote = $"note: {UnsafeText.Escaped(_paths[0].ToString())} holds {Held(_firstSteps.Steps, _firstSteps.Ranks)}, {UnsafeText.Escaped(_paths[index].ToString())} {Held(steps, ranks)}: merge takes the snapshots as ranks of one job, sums each one's own last window of steps from its newest, and counts every step of each; snapshots of one rank at two times are not ranks (docs/scaling.md).";
        }

        static string Held(ulong steps, long ranks) => ranks > 1 ? $"{Counted.Of(steps, "step")} of {ranks:N0} merged ranks" : Counted.Of(steps, "step");
    }

    /// <summary>
    /// Keeps the first part's slots per token, and the note on the first part whose figure is half again as large or
    /// more, or as small: ids naming no expert and partly padded tokens lower a rank's figure below its top-k a little,
    /// a top-k of 2 beside one of 8 by a factor of 4. The slots are the experts' counts, which a decision's histogram
    /// and a file without <c>routed_slots</c> hold as a record of ids does. Parts without a token say nothing.
    /// </summary>
    private void NoteTopK(int index, Snapshot part)
    {
        var layers = part.Model is { } model ? Enumerable.Range(0, model.Layers).Select(model.Layer) : [part.Layer!];
        var (slots, tokens) = layers.Aggregate(
            (Slots: 0.0, Tokens: 0.0),
            (sum, layer) => (sum.Slots + layer.ExpertTokenCounts.Sum(count => (double)count), sum.Tokens + layer.TotalTokens));
        if (tokens == 0)
        {
            return;
        }

        var perToken = slots / tokens;
        if (_firstRouting is not var (first, firstPerToken))
        {
            _firstRouting = (index, perToken);
        }
        else if (TopKNote is null && Math.Max(perToken, firstPerToken) >= 1.5 * Math.Min(perToken, firstPerToken))
        {
            TopKNote = $"note: {UnsafeText.Escaped(_paths[first].ToString())} routes {Slots(firstPerToken)} per token on average, {UnsafeText.Escaped(_paths[index].ToString())} {Slots(perToken)}: ranks of one job route each token to the same top-k (ids naming no expert and partly padded tokens lower the average a little); snapshots of routers of different top-k add up to no router's load.";
        }
    }

    private static string Slots(double perToken)
    {
        var text = FormattableString.Invariant($"{perToken:0.##}");
        return text == "1" ? "1 slot" : $"{text} slots";
    }

    /// <summary>Keeps the first part that counts experts, and the first whose options fix them: every later one must have their counts.</summary>
    private void Count(int index, RoutingStats layer)
    {
        _counted ??= layer.ExpertUtilization.Count > 0 ? (index, layer.ExpertUtilization.Count) : null;
        _configured ??= layer.Options.Experts is { } configured ? (index, configured) : null;
    }

    private static string Shape(ModelRoutingStats model) =>
        $"{Counted.Of(model.Layers, "layer")} of {Counted.Of(model.Experts, "expert")} with a window of {Counted.Of(model.Options.Window, "step")} and "
        + (model.Options.ExpertCapacity is { } capacity ? $"a capacity of {Counted.Of(capacity, "slot")} per expert" : "no capacity")
        + (model.Options.SkipEmptySteps ? ", empty steps left out (--skip-empty-steps)" : "");

    private static string Capacity(RoutingStats stats) =>
        stats.Options.ExpertCapacity is { } slots ? $"a capacity of {slots:N0} slots per expert" : $"no capacity (the seed's placeholder of {CapacityStats.DefaultSlotsPerExpert} slots per expert)";
}
