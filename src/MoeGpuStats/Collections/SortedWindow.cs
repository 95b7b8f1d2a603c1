namespace MoeGpuStats.Collections;

/// <summary>
/// The values of a <see cref="RingWindow{T}"/> kept in ascending order, so that an order
/// statistic is one array read instead of the seed's clone-and-sort of the whole window per query.
/// Insert and remove move at most the window's length of doubles (a few KiB of memmove).
/// </summary>
internal sealed class SortedWindow
{
    private readonly double[] _sorted;

    public SortedWindow(int capacity) => _sorted = new double[capacity];

    public int Count { get; private set; }

    public double this[int rank] => _sorted[rank];

    public void Insert(double value)
    {
        var index = Array.BinarySearch(_sorted, 0, Count, value);
        if (index < 0)
        {
            index = ~index;
        }

        Array.Copy(_sorted, index, _sorted, index + 1, Count - index);
        _sorted[index] = value;
        Count++;
    }

    /// <summary>Removes one occurrence of a value that is in the window.</summary>
    public void Remove(double value)
    {
        var index = Array.BinarySearch(_sorted, 0, Count, value);
        if (index < 0)
        {
            throw new InvalidOperationException($"The value {value} is not in the window.");
        }

        Array.Copy(_sorted, index + 1, _sorted, index, Count - index - 1);
        Count--;
    }

    public void Clear() => Count = 0;
}
