using System.Collections;

namespace MoeGpuStats.Collections;

/// <summary>
/// The newest <see cref="Capacity"/> values, oldest first. Replaces the seed's
/// <c>Vec::push</c> + <c>Vec::remove(0)</c>, which moved the whole window on every record.
/// </summary>
internal sealed class RingWindow<T> : IReadOnlyList<T>
{
    private readonly T[] _items;
    private int _head;

    public RingWindow(int capacity)
    {
        if (capacity < 1)
        {
            throw OutOfRange.Error(nameof(capacity), capacity, "a window holds at least 1 value.");
        }

        _items = new T[capacity];
    }

    public int Capacity => _items.Length;

    public int Count { get; private set; }

    public T this[int index]
    {
        get
        {
            OutOfRange.ThrowIfNotIndex(index, Count, "value");

            return _items[Slot(index)];
        }
    }

    /// <summary>Appends a value; returns true and the evicted oldest value when the window was full.</summary>
    public bool Add(T value, out T evicted)
    {
        if (Count < _items.Length)
        {
            _items[Slot(Count)] = value;
            Count++;
            evicted = default!;
            return false;
        }

        evicted = _items[_head];
        _items[_head] = value;
        _head = _head + 1 == _items.Length ? 0 : _head + 1;
        return true;
    }

    /// <summary>Copies the values, oldest first, into <paramref name="destination"/> (at least <see cref="Count"/> long).</summary>
    public void CopyTo(Span<T> destination)
    {
        var first = Math.Min(Count, _items.Length - _head);
        _items.AsSpan(_head, first).CopyTo(destination);
        _items.AsSpan(0, Count - first).CopyTo(destination[first..]);
    }

    public void Clear()
    {
        _head = 0;
        Count = 0;
    }

    public IEnumerator<T> GetEnumerator()
    {
        for (var i = 0; i < Count; i++)
        {
            yield return _items[Slot(i)];
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private int Slot(int index)
    {
        var slot = _head + index;
        return slot >= _items.Length ? slot - _items.Length : slot;
    }
}
