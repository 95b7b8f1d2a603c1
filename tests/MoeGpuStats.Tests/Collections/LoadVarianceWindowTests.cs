using MoeGpuStats.Collections;

namespace MoeGpuStats.Tests.Collections;

/// <summary>
/// What the variance window's deferral promises beyond the values the engines' tests check: a variance is computed
/// once, when first read, and never for a batch evicted unread; a read with nothing pending takes no lock; and the
/// room reserved is what the window's kind of batch needs (LoadVarianceWindow's remarks).
/// </summary>
public sealed class LoadVarianceWindowTests
{
    private const int Capacity = 1_000;

    /// <summary>A slot's variance, its batch's length and its sum.</summary>
    private const int SlotBytes = sizeof(float) + sizeof(int) + sizeof(long);

    [Fact]
    public void AVarianceIsComputedOnceWhenFirstReadAndNeverForABatchEvictedUnread()
    {
        const int experts = 8;
        var kept = new KeptBatches(Capacity, experts);
        var window = new LoadVarianceWindow(Capacity, new Lock(), kept);
        window.Reserve(experts);
        var expected = new List<float>();
        for (var batch = 0; batch < 1_500; batch++)
        {
            int[] counts = [batch % 7, 3, 0, batch % 5, 1, 0, 2, batch % 3];
            window.Add(counts, counts.Sum());
            kept.Keep(counts);
            expected.Add(RoutingMath.LoadVariance(counts, counts.Sum()));
        }

        Assert.Equal(0, kept.Copies);
        Assert.Equal(expected[500], window[0]);
        Assert.Equal(Capacity, kept.Copies);

        Assert.Equal(expected.TakeLast(Capacity), window);
        Assert.Equal(expected.TakeLast(Capacity), window.ToArray());
        Assert.Equal(Capacity, kept.Copies);

        // With nothing pending a copy of the values takes their array alone, no row to count a variance in.
        Assert.InRange(Allocated(() => window.ToArray()), Capacity * sizeof(float), (Capacity * sizeof(float)) + 64);
    }

    /// <summary>
    /// A batch of at most 32 ids over more experts is kept as its ids: its variance is counted from them, not from the
    /// histogram given beside them (zeros here, to tell which one was read). A batch of more ids keeps its histogram.
    /// </summary>
    [Theory]
    [InlineData(ExpertLoadWindow.ListedIds, true)]
    [InlineData(ExpertLoadWindow.ListedIds + 1, false)]
    public void ADecodeBatchIsKeptAsItsIds(int ids, bool listed)
    {
        const int experts = 300;
        var window = new LoadVarianceWindow(Capacity, new Lock());
        window.Reserve(experts);
        var batch = Enumerable.Range(0, ids).Select(i => i % 7).ToArray();
        var counts = new int[experts];
        foreach (var id in batch)
        {
            counts[id]++;
        }

        window.Add(new int[experts], ids, batch);

        Assert.Equal(RoutingMath.LoadVariance(listed ? counts : new int[experts], ids), window[0]);
    }

    /// <summary>
    /// A window defers only what fits its budget, ids counted: at the budget it takes its room, one count below it takes
    /// none and computes each batch as it comes, to the same variance.
    /// </summary>
    [Theory]
    [InlineData(ExpertLoadWindow.ListedIds, 0)]
    [InlineData(64, ExpertLoadWindow.ListedIds + 1)]
    public void AWindowDefersWithinItsBudgetAlone(int experts, int idInts)
    {
        var needed = Capacity * (experts + idInts);
        var within = new LoadVarianceWindow(Capacity, new Lock(), maxDeferredCounts: needed);
        var past = new LoadVarianceWindow(Capacity, new Lock(), maxDeferredCounts: needed - 1);

        Assert.InRange(Allocated(() => within.Reserve(experts)), (long)needed * sizeof(int), ((long)needed * sizeof(int)) + 1_024);
        Assert.Equal(0, Allocated(() => past.Reserve(experts)));

        var counts = Enumerable.Range(0, experts).Select(e => e % 5).ToArray();
        within.Add(counts, counts.Sum());
        past.Add(counts, counts.Sum());
        Assert.Equal(RoutingMath.LoadVariance(counts, counts.Sum()), within[0]);
        Assert.Equal(within[0], past[0]);
    }

    /// <summary>
    /// A batch wider than the room reserved (past the budget) is computed as it is added, after the batches pending
    /// before it, each of which keeps its own variance.
    /// </summary>
    [Fact]
    public void ABatchWiderThanTheRoomIsComputedAfterThoseBeforeIt()
    {
        var window = new LoadVarianceWindow(Capacity, new Lock());
        window.Reserve(4);
        int[][] batches = [[4, 0, 0, 0], [1, 1, 1, 1, 4, 0, 0, 0], [0, 2, 0, 2]];
        foreach (var counts in batches)
        {
            window.Add(counts, counts.Sum());
        }

        Assert.Equal(batches.Select(counts => RoutingMath.LoadVariance(counts, counts.Sum())), window);
    }

    [Fact]
    public async Task AReadWithNothingPendingTakesNoLock()
    {
        var cancellation = TestContext.Current.CancellationToken;
        var gate = new Lock();
        var window = new LoadVarianceWindow(Capacity, gate);
        window.Reserve(2);
        window.Add([1, 3], 4);
        window.Add([2, 2], 4);
        Assert.Equal(1f, window[0]);

        using var held = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var record = new Thread(() =>
        {
            lock (gate)
            {
                held.Set();
                release.Wait();
            }
        });
        record.Start();
        held.Wait(cancellation);
        try
        {
            // A trend read is unlocked by design: it must not wait for a record on another thread.
            var read = Task.Run(
                () =>
                {
                    window.GetTail(2, out var first, out _);
                    return (window[1], first.ToArray());
                },
                cancellation);
            var answered = await Task.WhenAny(read, Task.Delay(Patience.GoAhead, cancellation)) == read;
            Assert.True(answered, "a read with nothing pending waited for the gate");
            var (second, tail) = await read;
            Assert.Equal(0f, second);
            Assert.Equal([1f, 0f], tail);
        }
        finally
        {
            release.Set();
            record.Join();
        }
    }

    /// <summary>
    /// Each slot holds its variance, its batch's length and sum; up to 32 experts a copy of its histogram too, above
    /// that its ids as well (33 ints).
    /// </summary>
    [Theory]
    [InlineData(ExpertLoadWindow.ListedIds, 0)]
    [InlineData(ExpertLoadWindow.ListedIds + 1, ExpertLoadWindow.ListedIds + 1)]
    public void AWindowOfCopiesTakesEachSlotsCopyAndIdsOnlyAboveTheListedIds(int experts, int idInts)
    {
        var allocated = Allocated(() => new LoadVarianceWindow(Capacity, new Lock()).Reserve(experts));

        var needed = Capacity * (SlotBytes + (long)(experts + idInts) * sizeof(int));
        Assert.InRange(allocated, needed, needed + 1_024);
    }

    /// <summary>A model's layer keeps its batches in the model's window: a slot holds the batch's key there, and one row counts a variance.</summary>
    [Fact]
    public void AWindowOfCountsKeptElsewhereTakesAKeyASlotAndOneRow()
    {
        const int experts = 1_024;
        var kept = new KeptBatches(Capacity, experts);

        var allocated = Allocated(() => new LoadVarianceWindow(Capacity, new Lock(), kept).Reserve(experts));

        var needed = Capacity * (SlotBytes + sizeof(int)) + experts * sizeof(int);
        Assert.InRange(allocated, needed, needed + 1_024);
    }

    private static long Allocated(Action action)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        action();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    /// <summary>A ring of the newest batches' counts, as a model's window keeps them, counting the copies asked of it.</summary>
    private sealed class KeptBatches(int batches, int experts) : IRecentBatchCounts
    {
        private readonly int[] _rows = new int[batches * experts];

        public int Batches => batches;

        public int NextKey { get; private set; }

        public int Copies { get; private set; }

        public void Keep(int[] counts)
        {
            counts.CopyTo(_rows.AsSpan(NextKey * experts));
            NextKey = (NextKey + 1) % batches;
        }

        public void CopyCounts(int key, Span<int> counts)
        {
            Copies++;
            _rows.AsSpan(key * experts, experts).CopyTo(counts);
        }
    }
}
