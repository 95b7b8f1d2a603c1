using static System.FormattableString;

namespace MoeGpuStats.Collections;

/// <summary>
/// The values of a <see cref="RingWindow{T}"/> kept in ascending order, so that an order
/// statistic is one array read instead of the seed's clone-and-sort of the whole window per query.
/// A replacement moves only the values between the evicted one's position and the new one's.
/// </summary>
internal sealed class SortedWindow
{
    private readonly double[] _sorted;

    public SortedWindow(int capacity) => _sorted = new double[capacity];

    public int Count { get; private set; }

    public double this[int rank] => _sorted[rank];

    public void Insert(double value)
    {
        var index = LowerBound(value);
        Array.Copy(_sorted, index, _sorted, index + 1, Count - index);
        _sorted[index] = value;
        Count++;
    }

    /// <summary>
    /// Removes one occurrence of <paramref name="evicted"/> (which is in the window) and inserts
    /// <paramref name="value"/>, moving only the values between the two positions.
    /// </summary>
    public void Replace(double evicted, double value)
    {
        var removeAt = LowerBound(evicted);
        if (removeAt == Count || _sorted[removeAt] != evicted)
        {
            throw new InvalidOperationException(Invariant($"The value {evicted} is not in the window."));
        }

        var insertAt = LowerBound(value);
        if (insertAt > removeAt)
        {
            insertAt--;
            Array.Copy(_sorted, removeAt + 1, _sorted, removeAt, insertAt - removeAt);
        }
        else
        {
            Array.Copy(_sorted, insertAt, _sorted, insertAt + 1, removeAt - insertAt);
        }

        _sorted[insertAt] = value;
    }

    /// <summary>A position of <paramref name="value"/> if present, else where it would be inserted.</summary>
    private int LowerBound(double value)
    {
        var index = _sorted.AsSpan(0, Count).BinarySearch(value);
        return index < 0 ? ~index : index;
    }

    /// <summary>Replaces the contents with the values of <paramref name="window"/>, sorted.</summary>
    public void Load(RingWindow<double> window)
    {
        window.CopyTo(_sorted);
        _sorted.AsSpan(0, window.Count).Sort();
        Count = window.Count;
    }

    public void Clear() => Count = 0;
}
