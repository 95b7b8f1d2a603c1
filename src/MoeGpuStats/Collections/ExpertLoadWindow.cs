using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static System.FormattableString;

namespace MoeGpuStats.Collections;

/// <summary>
/// The sliding window of expert load in managed memory: the last <c>window</c> steps' counts per
/// layer and expert beside their running sum, as the device keeps them. A layer's step of at most
/// <see cref="ListedIds"/> ids (decode) is kept as the list of its valid ids, 16 bits each, instead
/// of a row of E counts: a decode step of 8 ids then touches one cold cache line per layer of a ring
/// of 1,000 steps, not a row of E counts, and adds and evicts one count per id, with no histogram to
/// consult and no repeated expert to merge. Larger steps keep a whole row in the dense ring, as do all
/// steps of layers of at most <see cref="ListedIds"/> experts, whose rows are no longer than a list.
/// <para>
/// The running sum is kept step by step while the window is read more often than once in two windows of
/// steps. Read more rarely (a rebalance every few thousand steps; never, in a benchmark), a step only writes
/// its row or list, and the next read sums the whole ring afresh: a window's rows read once per read, where
/// keeping the sum reads a row at each step's eviction. The sum afresh reads the ring at once, out of the
/// caches, and cost about one and a half windows of evictions (5.4 ms against 3.8 at 58 × 256 × 8 × 64),
/// hence the gap of two windows. A read after such a gap chooses the second way until a read comes sooner.
/// </para>
/// </summary>
internal sealed class ExpertLoadWindow
{
    /// <summary>The most ids a layer's step may have to be kept as a list.</summary>
    public const int ListedIds = 32;

    private const int Whole = -1;

    private readonly int _layers;
    private readonly int _experts;
    private readonly int _window;
    private readonly int _listLength;
    private readonly ulong[] _load;
    private uint[]? _ring;
    private ushort[] _entries = [];
    private int[] _listed = [];

    // Whether steps only write their rows (the last read came two windows of steps or more after the one before it,
    // or none came yet), and the steps since the last read (at most two windows): while both hold, the load misses
    // those steps.
    private bool _writeOnly = true;
    private long _sinceRead;

    // The steps the ring holds, at most the window: before it wraps they sit at positions 0 to _held − 1, and a read
    // or a clear visits those rows alone, not a long window's worth of rows that hold nothing.
    private int _held;

    /// <summary>
    /// An empty window, or one holding <paramref name="ring"/> and its sum <paramref name="load"/> at
    /// <paramref name="position"/>. The ring is <c>[rows, layers, experts]</c>: all <c>window</c> rows, or
    /// before the window has wrapped only the steps it holds, at positions 0 to <paramref name="position"/> − 1
    /// (the rest hold none), so that a snapshot of a few steps of a long window copies those steps alone. The
    /// whole ring is allocated when a step is added (<see cref="EnsureWhole"/>). A window restored from its load
    /// alone (no ring) allocates nothing per step, and after <see cref="Clear"/> nothing until its next step: a file's
    /// window size costs no memory while the model is only read or reset.
    /// </summary>
    /// <exception cref="InsufficientMemoryException">The steps' arrays could not be allocated; the message gives their size.</exception>
    public ExpertLoadWindow(int layers, int experts, int window, ulong[]? load = null, uint[]? ring = null, int position = 0)
    {
        // A model's experts are at most RoutingStatsOptions.MaxDeviceExperts (4,096), which its options check.
        Debug.Assert(experts <= ushort.MaxValue + 1, "a list entry is an expert in 16 bits");
        (_layers, _experts, _window) = (layers, experts, window);
        _load = load ?? new ulong[layers * experts];

        // Up to 32 experts a row is no longer than a list, and sliding it costs less than keeping one: rows alone.
        _listLength = experts > ListedIds ? ListedIds : 0;
        if (load is null)
        {
            AllocateSteps();
        }
        else if (ring is not null && ring.LongLength == WholeLength)
        {
            AllocateSteps(ring);
        }
        else if (ring is not null)
        {
            Debug.Assert(ring.Length == position * layers * experts, "a ring short of the window holds the steps before its position");
            _ring = ring;
            _listed = new int[ring.Length / experts];
            Array.Fill(_listed, Whole);
        }

        Position = position;
        _held = ring is null ? 0 : ring.LongLength == WholeLength ? window : position;
    }

    /// <summary>The counts of a whole ring: <c>window × layers × experts</c>.</summary>
    private long WholeLength => (long)_window * _layers * _experts;

    /// <summary>
    /// The managed memory a window's steps take, in bytes: the ring of counts (<c>4 × window × layers × experts</c>),
    /// the decode steps' lists (<c>2 × window × layers × 32</c>, where the experts are more than 32) and the rows'
    /// list lengths (<c>4 × window × layers</c>).
    /// </summary>
    public static long StepBytes(int layers, int experts, int window)
    {
        long rows = (long)window * layers;
        return rows * ((sizeof(uint) * (experts + 1L)) + (experts > ListedIds ? sizeof(ushort) * ListedIds : 0));
    }

    /// <summary>The ring position the next step writes.</summary>
    public int Position { get; private set; }

    /// <summary>
    /// The window's load, <c>[layers, experts]</c>. Where steps only wrote their rows since the last read, it is summed
    /// from the ring first; the gap since the last read decides how the next steps keep it. The caller holds the
    /// engine's lock, as for every call.
    /// </summary>
    public ReadOnlySpan<ulong> Load
    {
        get
        {
            // Steps that wrote their rows alone since the last read are counted by summing the ring afresh; a second
            // look within one read (no step between) changes nothing.
            if (_sinceRead > 0)
            {
                if (_writeOnly)
                {
                    Array.Clear(_load);
                    AddNewest(_held, _load);
                }

                (_writeOnly, _sinceRead) = (_sinceRead >= 2L * _window, 0);
            }

            return _load;
        }
    }

    /// <summary>
    /// Whether steps keep the running sum as they are added (the window was last read less than two windows of steps
    /// after the read before), rather than only writing their rows for the next read to sum.
    /// </summary>
    public bool KeepsSum => !_writeOnly;

    /// <summary>Whether a layer's step of <paramref name="ids"/> ids is kept as a list of them (<see cref="Add"/> reads them), not a row of counts.</summary>
    public bool Lists(int ids) => ids <= _listLength;

    /// <summary>False for a window restored from its load alone (without its steps), which cannot slide.</summary>
    public bool CanSlide => _ring is not null;

    /// <summary>
    /// Puts layer <paramref name="layer"/>'s step at <see cref="Position"/>, evicting the step kept
    /// there: <paramref name="ids"/> are the step's ids (those outside <c>[0, experts)</c> count
    /// nowhere), <paramref name="counts"/> their histogram. A step the window lists (<see cref="Lists"/>)
    /// is read from its ids alone, a whole row from the histogram alone: the caller gives both from one read.
    /// </summary>
    public void Add(int layer, ReadOnlySpan<int> ids, ReadOnlySpan<int> counts)
    {
        var row = (Position * _layers) + layer;
        var ringRow = _ring.AsSpan(row * _experts, _experts);
        var entries = _entries.AsSpan(row * _listLength, _listLength);
        if (_writeOnly)
        {
            if (Lists(ids.Length))
            {
                _listed[row] = List(entries, ids, _experts);
                return;
            }

            MemoryMarshal.Cast<int, uint>(counts[.._experts]).CopyTo(ringRow);
            _listed[row] = Whole;
            return;
        }

        var load = _load.AsSpan(layer * _experts, _experts);
        var held = _listed[row];
        if (!Lists(ids.Length))
        {
            if (held == Whole)
            {
                Slide(counts, ringRow, load);
            }
            else
            {
                Evict(entries[..held], load);
                Write(counts, ringRow, load);
            }

            _listed[row] = Whole;
            return;
        }

        if (held == Whole)
        {
            // The row's counts leave the load and the row reads as zeros; the list takes the step.
            Slide(default, ringRow, load);
            held = 0;
        }

        _listed[row] = Replace(entries, held, ids, load);
    }

    /// <summary>Lists <paramref name="ids"/>' valid ids in <paramref name="entries"/>; returns how many it listed.</summary>
    private static int List(Span<ushort> entries, ReadOnlySpan<int> ids, int experts)
    {
        var length = 0;
        foreach (var id in ids)
        {
            if ((uint)id < (uint)experts)
            {
                entries[length++] = (ushort)id;
            }
        }

        return length;
    }

    private static void Evict(ReadOnlySpan<ushort> entries, Span<ulong> load)
    {
        foreach (var expert in entries)
        {
            load[expert]--;
        }
    }

    /// <summary>
    /// Takes the <paramref name="evicted"/> experts listed in <paramref name="entries"/> out of <paramref name="load"/> and
    /// lists <paramref name="ids"/>' valid ids in their place, adding them; returns how many it listed. One loop does both,
    /// so that an eviction and an addition run side by side: entry i is read before any write reaches it (the writes
    /// lag the reads, as ids outside the experts are not listed).
    /// </summary>
    private static int Replace(Span<ushort> entries, int evicted, ReadOnlySpan<int> ids, Span<ulong> load)
    {
        var length = 0;
        for (var i = 0; i < ids.Length; i++)
        {
            if (i < evicted)
            {
                load[entries[i]]--;
            }

            var id = ids[i];
            if ((uint)id < (uint)load.Length)
            {
                entries[length++] = (ushort)id;
                load[id]++;
            }
        }

        if (evicted > ids.Length)
        {
            Evict(entries[ids.Length..evicted], load);
        }

        return length;
    }

    /// <summary>
    /// Layer <paramref name="layer"/>'s rows as the histograms of its batches, keyed by ring position: what a layer's
    /// <see cref="LoadVarianceWindow"/> of at most <c>window</c> batches reads its deferred variances from. Every
    /// step the model records adds one batch to each layer's variances and one row to the window, so the batch a
    /// variance window holds longest is the row the window evicts next.
    /// </summary>
    public IRecentBatchCounts Layer(int layer) => new LayerRows(this, layer);

    /// <summary>
    /// Gives a window restored with the steps it holds alone its whole ring, before a step is added (the steps
    /// kept in their rows); nothing where it has it. Only where <see cref="CanSlide"/>.
    /// </summary>
    /// <exception cref="InsufficientMemoryException">The ring could not be allocated; the window is unchanged.</exception>
    public void EnsureWhole()
    {
        if (_ring!.LongLength != WholeLength)
        {
            AllocateSteps(_ring);
        }
    }

    /// <summary>Moves on to the next position, after every layer of a step was added.</summary>
    public void Advance()
    {
        Position = Position + 1 == _window ? 0 : Position + 1;
        _held = Math.Min(_held + 1, _window);
        _sinceRead = Math.Min(_sinceRead + 1, 2L * _window);
    }

    /// <summary>
    /// Empties the window. A window without its whole ring (restored from its load alone, or with the steps it held)
    /// is left holding no step, to take its whole ring at its next step (<see cref="EnsureWhole"/>): a reset allocates
    /// nothing, whatever window a file names.
    /// </summary>
    public void Clear()
    {
        if (_ring is null || _ring.LongLength != WholeLength)
        {
            (_ring, _entries, _listed) = ([], [], []);
        }
        else
        {
            Array.Clear(_listed, 0, _held * _layers);
        }

        Array.Clear(_load);
        (Position, _writeOnly, _sinceRead, _held) = (0, true, 0, 0);
    }

    /// <summary>
    /// Allocates the steps' arrays, all or none, so a failure leaves the window as it was: empty, or holding the
    /// rows of <paramref name="held"/> (taken over when it is a whole ring, copied into one otherwise).
    /// </summary>
    private void AllocateSteps(uint[]? held = null)
    {
        try
        {
            var rows = _window * _layers;
            var entries = new ushort[rows * _listLength];
            var listed = new int[rows];
            var ring = held?.LongLength == WholeLength ? held : new uint[WholeLength];
            if (held is not null)
            {
                if (ring != held)
                {
                    held.CopyTo(ring, 0);
                }

                listed.AsSpan(0, held.Length / _experts).Fill(Whole);
            }

            (_ring, _entries, _listed) = (ring, entries, listed);
        }
        catch (OutOfMemoryException)
        {
            throw new InsufficientMemoryException(
                Invariant($"The window of {_window:N0} steps × {_layers:N0} layers × {_experts:N0} experts needs {StepBytes(_layers, _experts, _window):N0} bytes of managed memory, more than this process can allocate; give a smaller Window."));
        }
    }

    /// <summary>
    /// Adds the counts of the newest <paramref name="steps"/> steps (those before <see cref="Position"/>, at most
    /// <c>window</c>; rows that hold no step add nothing) to <paramref name="load"/> (<c>[layers, experts]</c>).
    /// Only where <see cref="CanSlide"/>.
    /// </summary>
    public void AddNewest(int steps, Span<ulong> load)
    {
        var position = Position;
        for (var s = 0; s < steps; s++)
        {
            position = position == 0 ? _window - 1 : position - 1;
            for (var layer = 0; layer < _layers; layer++)
            {
                var row = (position * _layers) + layer;
                var layerLoad = load.Slice(layer * _experts, _experts);
                if (_listed[row] == Whole)
                {
                    AddRow(_ring.AsSpan(row * _experts, _experts), layerLoad);
                    continue;
                }

                foreach (var expert in _entries.AsSpan(row * _listLength, _listed[row]))
                {
                    layerLoad[expert]++;
                }
            }
        }
    }

    /// <summary>
    /// The <paramref name="steps"/> steps the window holds as a ring of rows, <c>[rows, layers, experts]</c>: all
    /// <c>window</c> rows once it has wrapped, else those of its steps, at positions 0 to <paramref name="steps"/> − 1
    /// (as the constructor takes a ring); null where <see cref="CanSlide"/> is false.
    /// </summary>
    public uint[]? ToRing(int steps)
    {
        if (_ring is null)
        {
            return null;
        }

        Debug.Assert(steps == _window || steps == Position, "before the window wraps its steps sit before its position");
        var rows = Math.Min(steps, _window) * _layers;
        var ring = new uint[rows * _experts];
        for (var row = 0; row < rows; row++)
        {
            WriteCounts(row, ring.AsSpan(row * _experts, _experts));
        }

        return ring;
    }

    /// <summary>
    /// Replaces a whole row by <paramref name="counts"/> (none: zeros), the load losing the old
    /// counts and gaining the new, in one vectorized pass as the single-layer fold, through references as
    /// that fold (<c>ManagedRoutingEngine.UpdateExperts</c> says why).
    /// </summary>
    private static void Slide(ReadOnlySpan<int> counts, Span<uint> ringRow, Span<ulong> load)
    {
        load = load[..ringRow.Length];
        var e = 0;
        if (Vector.IsHardwareAccelerated && !counts.IsEmpty)
        {
            counts = counts[..ringRow.Length];
            ref var count0 = ref Unsafe.As<int, uint>(ref MemoryMarshal.GetReference(counts));
            ref var row0 = ref MemoryMarshal.GetReference(ringRow);
            ref var load0 = ref MemoryMarshal.GetReference(load);
            var half = (nuint)Vector<ulong>.Count;
            for (; e <= ringRow.Length - Vector<uint>.Count; e += Vector<uint>.Count)
            {
                // Unsigned throughout: a merge's ring sums ranks' rows, up to 2^32 - 1 a count.
                var at = (nuint)e;
                var count = Vector.LoadUnsafe(ref count0, at);
                var leaving = Vector.LoadUnsafe(ref row0, at);
                count.StoreUnsafe(ref row0, at);
                (Vector.LoadUnsafe(ref load0, at) - Vector.WidenLower(leaving) + Vector.WidenLower(count)).StoreUnsafe(ref load0, at);
                (Vector.LoadUnsafe(ref load0, at + half) - Vector.WidenUpper(leaving) + Vector.WidenUpper(count)).StoreUnsafe(ref load0, at + half);
            }
        }

        for (; e < ringRow.Length; e++)
        {
            var count = counts.IsEmpty ? 0u : (uint)counts[e];
            load[e] = load[e] - ringRow[e] + count;
            ringRow[e] = count;
        }
    }

    /// <summary>Adds a ring row's counts to a layer's <paramref name="load"/>, vectorized as <see cref="Slide"/>.</summary>
    private static void AddRow(ReadOnlySpan<uint> ringRow, Span<ulong> load)
    {
        load = load[..ringRow.Length];
        var e = 0;
        if (Vector.IsHardwareAccelerated)
        {
            ref var row0 = ref MemoryMarshal.GetReference(ringRow);
            ref var load0 = ref MemoryMarshal.GetReference(load);
            var half = (nuint)Vector<ulong>.Count;
            for (; e <= ringRow.Length - Vector<uint>.Count; e += Vector<uint>.Count)
            {
                var at = (nuint)e;
                var counts = Vector.LoadUnsafe(ref row0, at);
                (Vector.LoadUnsafe(ref load0, at) + Vector.WidenLower(counts)).StoreUnsafe(ref load0, at);
                (Vector.LoadUnsafe(ref load0, at + half) + Vector.WidenUpper(counts)).StoreUnsafe(ref load0, at + half);
            }
        }

        for (; e < ringRow.Length; e++)
        {
            load[e] += ringRow[e];
        }
    }

    /// <summary>Writes the counts of the row of layer <paramref name="layer"/> at <paramref name="position"/> into <paramref name="counts"/> (E ints).</summary>
    private void CopyRow(int position, int layer, Span<int> counts) =>
        WriteCounts((position * _layers) + layer, MemoryMarshal.Cast<int, uint>(counts[.._experts]));

    /// <summary>Writes ring row <paramref name="row"/>'s counts into <paramref name="counts"/> (E of them), whether the row is whole or a list.</summary>
    private void WriteCounts(int row, Span<uint> counts)
    {
        if (_listed[row] == Whole)
        {
            _ring.AsSpan(row * _experts, _experts).CopyTo(counts);
            return;
        }

        counts.Clear();
        foreach (var expert in _entries.AsSpan(row * _listLength, _listed[row]))
        {
            counts[expert]++;
        }
    }

    /// <summary>Writes <paramref name="counts"/> into a row that holds no step (its last was a list), adding them to the load.</summary>
    private static void Write(ReadOnlySpan<int> counts, Span<uint> ringRow, Span<ulong> load)
    {
        for (var e = 0; e < ringRow.Length; e++)
        {
            ringRow[e] = (uint)counts[e];
            load[e] += (uint)counts[e];
        }
    }

    private sealed class LayerRows(ExpertLoadWindow window, int layer) : IRecentBatchCounts
    {
        public int Batches => window._window;

        public int NextKey => window.Position;

        public void CopyCounts(int key, Span<int> counts) => window.CopyRow(key, layer, counts);
    }
}
