using System.Collections;

namespace MoeGpuStats.Collections;

/// <summary>
/// A read-only list over an array an engine hands out (its own, which it updates in place, or a copy): an index
/// outside it is refused in the caller's words (<see cref="OutOfRange.ThrowIfNotIndex"/>), where the array throws
/// <see cref="IndexOutOfRangeException"/> without a word, and no cast reaches the array to write into it.
/// </summary>
/// <param name="items">The array viewed, not copied.</param>
/// <param name="item">What one element is, for the refusal ("expert", "batch").</param>
/// <param name="none">Why the list is empty, where "there is no expert yet" would mislead (a list an option turns on); null for that.</param>
internal sealed class ReadOnlyArray<T>(T[] items, string item, string? none = null) : IReadOnlyList<T>
{
    public int Count => items.Length;

    public T this[int index]
    {
        get
        {
            if (items.Length == 0 && none is not null)
            {
                throw OutOfRange.Error(nameof(index), index, none);
            }

            OutOfRange.ThrowIfNotIndex(index, items.Length, item);
            return items[index];
        }
    }

    /// <summary>
    /// <paramref name="list"/> as it is where it is not an array (a list that checks its indexes itself), else a view
    /// of the array: the one in <paramref name="cached"/> where that views the same array (a read of an engine's own
    /// array allocates nothing), a new one kept there otherwise.
    /// </summary>
    public static IReadOnlyList<T> Of(IReadOnlyList<T> list, string item, ref ReadOnlyArray<T>? cached, string? none = null)
    {
        if (list is not T[] array)
        {
            return list;
        }

        var view = cached;
        if (view is null || !ReferenceEquals(view.Items, array))
        {
            view = new ReadOnlyArray<T>(array, item, none);
            cached = view;
        }

        return view;
    }

    public IEnumerator<T> GetEnumerator() => ((IEnumerable<T>)items).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => items.GetEnumerator();

    private T[] Items => items;
}
