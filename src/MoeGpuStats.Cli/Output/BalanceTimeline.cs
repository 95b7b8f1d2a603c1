namespace MoeGpuStats.Cli.Output;

/// <summary>
/// Each layer's balancedness over the steps of a replay, for the plot's lower panel: the steps split
/// into at most <see cref="MaxColumns"/> columns of equal length, each column the balancedness (mean
/// over max expert load, <see cref="LayerBalance.Balancedness"/>) of the load its steps routed.
/// </summary>
/// <remarks>
/// Counted on the host from the ids the replay reads: routed slots to valid experts, before any
/// capacity drops them (a plot of where tokens went, not a second set of statistics).
/// </remarks>
internal sealed class BalanceTimeline
{
    /// <summary>The most columns drawn: more would be under two pixels each.</summary>
    public const int MaxColumns = 600;

    private readonly int _layers;
    private readonly int _experts;
    private readonly long[] _load;
    private readonly bool _skipEmptySteps;
    private int _stepsInColumn;
    private int _column;

    /// <param name="layers">Layers per step.</param>
    /// <param name="experts">Experts per layer; ids outside <c>[0, experts)</c> are not load.</param>
    /// <param name="steps">The steps the replay records (at least 1), which fixes the columns.</param>
    /// <param name="skipEmptySteps">
    /// Whether steps of padding alone are left out, as the model leaves them out (<see cref="ModelRoutingStatsOptions.SkipEmptySteps"/>):
    /// the timeline then counts the model's steps, as the heat map above it does.
    /// </param>
    /// <param name="stepsSkipped">The trace's steps left out before the first added (<c>--skip-steps</c>).</param>
    public BalanceTimeline(int layers, int experts, int steps, bool skipEmptySteps = false, int stepsSkipped = 0)
    {
        _layers = layers;
        _experts = experts;
        _skipEmptySteps = skipEmptySteps;
        StepsSkipped = stepsSkipped;
        StepsPerColumn = (steps + MaxColumns - 1) / MaxColumns;
        Columns = (steps + StepsPerColumn - 1) / StepsPerColumn;
        Balancedness = new double[layers, Columns];
        _load = new long[layers * experts];
    }

    /// <summary>Whether steps of padding alone are left out, the columns then counting the steps recorded.</summary>
    public bool SkipsEmptySteps => _skipEmptySteps;

    /// <summary>The trace's steps left out before the first column's first step (<c>--skip-steps</c>).</summary>
    public int StepsSkipped { get; }

    /// <summary>Steps summed into one column (the last may hold fewer).</summary>
    public int StepsPerColumn { get; }

    /// <summary>Columns the steps fill once all are added.</summary>
    public int Columns { get; }

    /// <summary>Columns closed so far: fewer than <see cref="Columns"/> after an interrupted replay.</summary>
    public int Filled => _column;

    /// <summary><c>[layers, columns]</c>: each filled column's balancedness per layer, NaN for a column without load (nothing to balance: drawn apart, not as even).</summary>
    public double[,] Balancedness { get; }

    /// <summary>Adds one step's ids, <c>[layers, tokens, topK]</c>; a step of padding alone (-1) is left out where the model leaves it out.</summary>
    public void Add(ReadOnlySpan<int> ids, int tokens, int topK)
    {
        var perLayer = tokens * topK;
        if (_skipEmptySteps && ids[..(_layers * perLayer)].IndexOfAnyExcept(-1) < 0)
        {
            return;
        }

        for (var layer = 0; layer < _layers; layer++)
        {
            var load = _load.AsSpan(layer * _experts, _experts);
            foreach (var id in ids.Slice(layer * perLayer, perLayer))
            {
                if ((uint)id < (uint)_experts)
                {
                    load[id]++;
                }
            }
        }

        if (++_stepsInColumn == StepsPerColumn)
        {
            CloseColumn();
        }
    }

    /// <summary>Closes a part-filled last column; the timeline then holds <see cref="Filled"/> columns.</summary>
    public void Complete()
    {
        if (_stepsInColumn > 0)
        {
            CloseColumn();
        }
    }

    private void CloseColumn()
    {
        for (var layer = 0; layer < _layers; layer++)
        {
            var load = _load.AsSpan(layer * _experts, _experts);
            long total = 0, max = 0;
            foreach (var count in load)
            {
                total += count;
                max = Math.Max(max, count);
            }

            Balancedness[layer, _column] = max == 0 ? double.NaN : total / (double)_experts / max;
            load.Clear();
        }

        _column++;
        _stepsInColumn = 0;
    }
}
