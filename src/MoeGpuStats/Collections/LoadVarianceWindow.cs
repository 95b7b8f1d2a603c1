using System.Collections;
using System.Diagnostics;

namespace MoeGpuStats.Collections;

/// <summary>
/// The newest <see cref="Capacity"/> per-batch load variances, oldest first, computed when first read.
/// </summary>
/// <remarks>
/// The seed sums a batch's squared deviations sequentially in f32; that dependent chain of E
/// additions costs as much as the rest of a record together, and it cannot be reordered without
/// changing the result (the variance trend amplifies last-bit differences). So a record copies its
/// histogram into a slot (E ints, no allocation) and the variance is computed, in the seed's order,
/// the first time the history is read. Batches evicted before any read are never computed.
/// Memory: <c>Capacity × E</c> ints (about 4 KB per expert).
/// A batch of at most <see cref="ListedIds"/> ids over more experts (decode) keeps its ids instead (128 bytes,
/// not a row of E counts out of the caches), and its histogram is counted again when its variance is computed;
/// the ids take <c>Capacity × 33</c> ints more (132 KB) where E is above 32. Counts and ids together take at
/// most the window's budget (<see cref="MaxDeferredCounts"/> unless its owner gives less); wider batches are
/// computed as they are added.
/// A model's layer keeps no copy: its window of expert load holds every batch's counts as long as the
/// history does, when its window is at least <see cref="Capacity"/> steps (<see cref="IRecentBatchCounts"/>),
/// and a variance is computed from the window's row.
/// </remarks>
internal sealed class LoadVarianceWindow : IReadOnlyList<float>
{
    private readonly float[] _values;
    private readonly int[] _lengths;
    private readonly long[] _sums;
    private readonly Lock _gate;
    private readonly IRecentBatchCounts? _kept;
    private readonly int[] _keys;
    private readonly int _maxDeferredCounts;
    private int[] _histograms = [];
    private int[] _ids = [];
    private int[] _listed = [];
    private int _stride;
    private int _head;
    private int _pending;

    /// <summary>
    /// The most counts and ids a window keeps for deferred variances unless its owner gives less: 1,000
    /// batches of 4,096 experts (16 MiB). Without a bound, a decision of two million experts would ask for
    /// 1,000 × 2,000,000 ints.
    /// </summary>
    public const int MaxDeferredCounts = 1 << 22;

    /// <summary>The most ids a batch may have to be kept as its ids rather than a copy of its histogram: a model window's bound for its lists.</summary>
    public const int ListedIds = ExpertLoadWindow.ListedIds;

    /// <summary>A slot's entry in <see cref="_listed"/> where it holds a copy of the histogram, not ids.</summary>
    private const int Copied = -1;

    /// <param name="capacity">The variances kept.</param>
    /// <param name="gate">
    /// The lock its owner records under (re-entrant): computing the pending variances writes the window,
    /// so a read on another thread takes it too. Unlocked, such a read could clear a batch the owner had
    /// just added as pending, whose variance then stayed the slot's old value for good.
    /// </param>
    /// <param name="kept">
    /// Where the batches' histograms are kept (a model's window of at least <paramref name="capacity"/> steps,
    /// written under <paramref name="gate"/>), each batch added here before it is kept there; null to keep copies.
    /// </param>
    /// <param name="maxDeferredCounts">
    /// The most counts and ids kept for copies (at most <see cref="MaxDeferredCounts"/>): a model's layers share one
    /// budget, which a model of a thousand layers would otherwise multiply.
    /// </param>
    public LoadVarianceWindow(int capacity, Lock gate, IRecentBatchCounts? kept = null, int maxDeferredCounts = MaxDeferredCounts)
    {
        Debug.Assert(maxDeferredCounts is >= 0 and <= MaxDeferredCounts, "a budget within the window's own");
        _maxDeferredCounts = maxDeferredCounts;
        Debug.Assert(kept is null || kept.Batches >= capacity, "the kept batches outlast every batch the history holds");
        _gate = gate;
        _kept = kept;
        _values = new float[capacity];
        _lengths = new int[capacity];
        _sums = new long[capacity];
        _keys = kept is null ? [] : new int[capacity];
    }

    public int Capacity => _values.Length;

    public int Count { get; private set; }

    public float this[int index]
    {
        get
        {
            OutOfRange.ThrowIfNotIndex(index, Count, "batch");

            Materialize();
            return _values[Slot(index)];
        }
    }

    /// <summary>
    /// Makes room to defer batches of <paramref name="experts"/> counts, allocating before anything
    /// changes (so a failed allocation leaves the window as it was). Batches whose copies (and ids, above
    /// <see cref="ListedIds"/> experts) would pass the window's budget are not deferred. Where the counts are
    /// kept elsewhere, the room is one row, to compute a variance in.
    /// </summary>
    public void Reserve(int experts)
    {
        if (experts <= _stride)
        {
            return;
        }

        var listsIds = _kept is null && experts > ListedIds;
        var copies = (long)_values.Length * (experts + (listsIds ? ListedIds + 1 : 0));
        if (_kept is null && copies > _maxDeferredCounts)
        {
            return;
        }

        var grown = new int[_kept is null ? _values.Length * experts : experts];
        var newLists = listsIds && _ids.Length == 0;
        var ids = newLists ? new int[_values.Length * ListedIds] : _ids;
        var listed = newLists ? new int[_values.Length] : _listed;
        Materialize();
        _stride = experts;
        (_histograms, _ids, _listed) = (grown, ids, listed);
    }

    /// <summary>
    /// Appends a batch: its variance is computed on first read, or now when the batch is wider than
    /// <see cref="Reserve"/> made room for.
    /// </summary>
    /// <param name="counts">The batch's histogram, one count per expert.</param>
    /// <param name="sum">The sum of <paramref name="counts"/>.</param>
    /// <param name="ids">The ids <paramref name="counts"/> counts (those outside <c>[0, experts)</c> count nowhere); empty for a histogram given as counts.</param>
    public void Add(ReadOnlySpan<int> counts, long sum, ReadOnlySpan<int> ids = default)
    {
        if (counts.Length > _stride)
        {
            AddComputed(RoutingMath.LoadVariance(counts, sum));
            return;
        }

        var slot = Append();
        if (_kept is not null)
        {
            _keys[slot] = _kept.NextKey;
        }
        else if (!ids.IsEmpty && ids.Length <= ListedIds && _listed.Length > 0)
        {
            ids.CopyTo(_ids.AsSpan(slot * ListedIds, ListedIds));
            _listed[slot] = ids.Length;
        }
        else
        {
            counts.CopyTo(_histograms.AsSpan(slot * _stride, counts.Length));
            if (_listed.Length > 0)
            {
                _listed[slot] = Copied;
            }
        }

        _lengths[slot] = counts.Length;
        _sums[slot] = sum;
        _pending = Math.Min(_pending + 1, Count);
    }

    /// <summary>Appends an already computed variance (a restored state).</summary>
    public void AddComputed(float variance)
    {
        Materialize();
        _values[Append()] = variance;
    }

    public void Clear()
    {
        _head = 0;
        Count = 0;
        _pending = 0;
    }

    /// <summary>
    /// The last <paramref name="count"/> values as at most two spans, oldest first. Unlocked, as the managed engine's
    /// trend reads it: <see cref="Count"/> is read once, so a reset meanwhile cannot put the start before the buffer.
    /// </summary>
    public void GetTail(int count, out ReadOnlySpan<float> first, out ReadOnlySpan<float> second)
    {
        Materialize();
        var available = Count;
        count = Math.Min(count, available);
        var start = Slot(available - count);
        var firstLength = Math.Min(count, _values.Length - start);
        first = _values.AsSpan(start, firstLength);
        second = _values.AsSpan(0, count - firstLength);
    }

    /// <summary>
    /// The values, oldest first. Pending variances are computed into the copy, not stored, so the
    /// window is never left changed by it. The caller holds the gate (the engine's export does): a record
    /// meanwhile could pair a grown row stride with the slots of the old one, or put a newer batch's counts
    /// in the row of the oldest one pending where the counts are kept elsewhere.
    /// </summary>
    public float[] ToArray()
    {
        var count = Count;
        var computed = count - _pending;
        var values = new float[count];
        var scratch = computed == count ? [] : new int[_stride];
        for (var i = 0; i < count; i++)
        {
            var slot = Slot(i);
            values[i] = i < computed ? _values[slot] : Variance(slot, scratch);
        }

        return values;
    }

    public IEnumerator<float> GetEnumerator()
    {
        Materialize();
        for (var i = 0; i < Count; i++)
        {
            yield return _values[Slot(i)];
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private int Append()
    {
        if (Count < _values.Length)
        {
            return Slot(Count++);
        }

        var slot = _head;
        _head = _head + 1 == _values.Length ? 0 : _head + 1;
        return slot;
    }

    private void Materialize()
    {
        // Nothing pending is the common read; the lock re-checks, as a record may add one meanwhile.
        if (Volatile.Read(ref _pending) == 0)
        {
            return;
        }

        lock (_gate)
        {
            for (var i = Count - _pending; i < Count; i++)
            {
                var slot = Slot(i);
                // A listed batch is counted into its own unused row; kept ones into the one row there is.
                var scratch = _kept is null ? _histograms.AsSpan(slot * _stride, _stride) : _histograms;
                _values[slot] = Variance(slot, scratch);
            }

            _pending = 0;
        }
    }

    /// <summary>
    /// The variance of the batch in <paramref name="slot"/>, from its copy in its row, or counted into
    /// <paramref name="scratch"/> (a row's length) from its ids or from where it is kept.
    /// </summary>
    private float Variance(int slot, Span<int> scratch)
    {
        var length = Math.Min(_lengths[slot], _stride);
        if (_kept is not null)
        {
            _kept.CopyCounts(_keys[slot], scratch);
            return RoutingMath.LoadVariance(scratch[..length], _sums[slot]);
        }

        if (_listed.Length == 0 || _listed[slot] == Copied)
        {
            return RoutingMath.LoadVariance(_histograms.AsSpan(slot * _stride, length), _sums[slot]);
        }

        var counts = scratch[..length];
        counts.Clear();
        foreach (var id in _ids.AsSpan(slot * ListedIds, _listed[slot]))
        {
            if ((uint)id < (uint)length)
            {
                counts[id]++;
            }
        }

        return RoutingMath.LoadVariance(counts, _sums[slot]);
    }

    private int Slot(int index)
    {
        var slot = _head + index;
        return slot >= _values.Length ? slot - _values.Length : slot;
    }
}
