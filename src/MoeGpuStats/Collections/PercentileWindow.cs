namespace MoeGpuStats.Collections;

/// <summary>
/// The newest values and their order statistics. A record only writes the ring and logs the
/// change; the sorted copy catches up on the next order-statistic read, by replaying the logged
/// changes (a binary search and a short move each) or, after more than <see cref="ReplayLimit"/>
/// records, by sorting the window afresh. So recording is O(1), a read right after a record costs
/// one replay, and a read after many records costs one sort (what the seed paid on every read).
/// </summary>
/// <remarks>
/// Not thread-safe: even a read writes (the catch-up). <see cref="LatencyStats"/> serializes every call.
/// </remarks>
internal sealed class PercentileWindow
{
    /// <summary>
    /// Replaying a change costs ~120 ns and sorting 1,000 doubles ~11 µs (dev machine), so past
    /// 64 pending changes a sort is about as cheap and the log stops growing.
    /// </summary>
    public const int ReplayLimit = 64;

    private readonly RingWindow<double> _recent;
    private readonly SortedWindow _sorted;
    private readonly double[] _added = new double[ReplayLimit];
    private readonly double[] _evicted = new double[ReplayLimit];

    // Changes not yet in _sorted, saturating at ReplayLimit + 1 (= sort afresh). The log holds
    // inserts first, then replacements: the ring only fills between clears.
    private int _pending;
    private int _loggedInserts;

    public PercentileWindow(int capacity)
    {
        _recent = new RingWindow<double>(capacity);
        _sorted = new SortedWindow(capacity);
    }

    /// <summary>The values, oldest first.</summary>
    public IReadOnlyList<double> Recent => _recent;

    public int Count => _recent.Count;

    public void Add(double value)
    {
        var full = _recent.Add(value, out var evicted);
        if (_pending < ReplayLimit)
        {
            _added[_pending] = value;
            _evicted[_pending] = evicted;
            _loggedInserts += full ? 0 : 1;
        }

        if (_pending <= ReplayLimit)
        {
            _pending++;
        }
    }

    /// <summary>The value at <paramref name="rank"/> in ascending order (0 ≤ rank &lt; <see cref="Count"/>).</summary>
    public double OrderStatistic(int rank)
    {
        if (_pending != 0)
        {
            CatchUp();
        }

        return _sorted[rank];
    }

    public void Clear()
    {
        _recent.Clear();
        _sorted.Clear();
        _pending = 0;
        _loggedInserts = 0;
    }

    private void CatchUp()
    {
        if (_pending > ReplayLimit)
        {
            _sorted.Load(_recent);
        }
        else
        {
            for (var i = 0; i < _pending; i++)
            {
                if (i < _loggedInserts)
                {
                    _sorted.Insert(_added[i]);
                }
                else
                {
                    _sorted.Replace(_evicted[i], _added[i]);
                }
            }
        }

        _loggedInserts = 0;
        _pending = 0;
    }
}
