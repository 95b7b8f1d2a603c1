using MoeGpuStats.Collections;
using MoeGpuStats.Engines;

namespace MoeGpuStats.Tests.Collections;

/// <summary>The window's load is the sum of its last steps, whichever way each ring row was written and evicted.</summary>
public sealed class ExpertLoadWindowTests
{
    [Theory]
    [InlineData(3, 40, 4)]
    [InlineData(2, 8, 1)]
    [InlineData(1, 300, 7)]
    public void TheLoadIsTheSumOfTheLastSteps(int layers, int experts, int window)
    {
        var random = new Random(layers * experts + window);
        var loads = new ExpertLoadWindow(layers, experts, window);
        var kinds = new HashSet<int>();
        var steps = new List<int[][]>();
        var listedRepeats = 0;
        for (var step = 0; step < 40; step++)
        {
            // Sparse steps (at most 32 ids: listed, some naming an expert twice) and whole rows, some with counts
            // beyond 16 bits (an expert given 300 or 70,000 ids), in any order, with padding and invalid ids.
            var ids = Enumerable.Range(0, layers).Select(_ => Step(random, experts, kinds)).ToArray();
            listedRepeats += ids.Count(layer => layer.Length <= ExpertLoadWindow.ListedIds && layer.Where(id => id >= 0 && id < experts).GroupBy(id => id).Any(group => group.Count() > 1));
            for (var l = 0; l < layers; l++)
            {
                loads.Add(l, ids[l], Histogram(ids[l], experts));
            }

            loads.Advance();
            steps.Add(ids);
            var expected = new ulong[layers * experts];
            foreach (var kept in steps.Skip(Math.Max(0, steps.Count - window)))
            {
                for (var l = 0; l < layers; l++)
                {
                    foreach (var id in kept[l].Where(id => id >= 0 && id < experts))
                    {
                        expected[l * experts + id]++;
                    }
                }
            }

            Assert.Equal(expected, loads.Load.ToArray());
            var ring = loads.ToRing(Math.Min(window, steps.Count))!;
            for (var age = 0; age < Math.Min(window, steps.Count); age++)
            {
                var position = (loads.Position - 1 - age + window) % window;
                for (var l = 0; l < layers; l++)
                {
                    var row = ring.AsSpan((position * layers + l) * experts, experts).ToArray();
                    Assert.Equal(Histogram(steps[^(age + 1)][l], experts).Select(count => (uint)count), row);

                    // What a layer's variance history reads, keyed by the position the step was added at.
                    var counts = Enumerable.Repeat(-7, experts).ToArray();
                    loads.Layer(l).CopyCounts(position, counts);
                    Assert.Equal(Histogram(steps[^(age + 1)][l], experts), counts);
                }
            }
        }

        Assert.Equal(4, kinds.Count);
        Assert.True(listedRepeats > 0, "no listed step named an expert twice");
    }

    /// <summary>
    /// A listed step evicting a listed step, the longer of the two either one, with ids outside the experts among the
    /// first (their entries are not listed, so the list is written behind where it is read).
    /// </summary>
    [Fact]
    public void AListedStepReplacesAListedStepOfAnyLength()
    {
        const int experts = 64;
        var loads = new ExpertLoadWindow(layers: 1, experts, window: 1);
        int[][] steps =
        [
            [5, 5, 7, 63, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            [-1, 64, 9, -1, 9, 12],
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32],
            [-1, -1, -1, 40, -2, 41, 99, 40],
            [],
            [3],
        ];
        foreach (var ids in steps)
        {
            Assert.True(loads.Lists(ids.Length));
            loads.Add(0, ids, Histogram(ids, experts));
            loads.Advance();
            Assert.Equal(Histogram(ids, experts).Select(count => (ulong)count), loads.Load.ToArray());
        }
    }

    /// <summary>
    /// Over a thousand random steps (lists, whole rows, empty steps, ids outside the experts at any rate), with clears,
    /// restores from the ring and restores from the load alone between them, every read of the window equals a recount
    /// of the steps it holds: the load, the newest k steps for every k, the ring and each layer's rows. Reads come
    /// after every step for a while, then after gaps of up to five windows, so that a read finds no step, some or
    /// every step of the window not yet counted, and listed steps leave the window without ever having been counted.
    /// </summary>
    [Theory]
    [InlineData(1, 8, 1)]
    [InlineData(3, 33, 3)]
    [InlineData(1, 64, 2)]
    [InlineData(3, 300, 7)]
    [InlineData(2, 40, 1)]
    [InlineData(2, 5, 2)]
    public void EveryReadMatchesARecountThroughClearsAndRestores(int layers, int experts, int window)
    {
        var random = new Random(layers * 1_000 + experts * 10 + window);
        var loads = new ExpertLoadWindow(layers, experts, window);
        var steps = new List<int[][]>();
        var (readEvery, gaps) = (1, new HashSet<int>());
        for (var step = 0; step < 1_000; step++)
        {
            if (random.Next(40) == 0)
            {
                readEvery = random.Next(3) == 0 ? 1 : random.Next(1, (5 * window) + 2);
                gaps.Add(readEvery);
            }

            switch (random.Next(100))
            {
                case 0:
                    loads.Clear();
                    steps.Clear();
                    break;
                case 1:
                    loads = new ExpertLoadWindow(layers, experts, window, loads.Load.ToArray(), loads.ToRing(Math.Min(window, steps.Count)), loads.Position);
                    loads.EnsureWhole();
                    break;
                case 2:
                    loads = new ExpertLoadWindow(layers, experts, window, loads.Load.ToArray(), ring: null, position: loads.Position);
                    loads.Clear();
                    steps.Clear();
                    loads.EnsureWhole();
                    break;
            }

            var ids = Enumerable.Range(0, layers).Select(_ => MixedStep(random, experts)).ToArray();
            for (var l = 0; l < layers; l++)
            {
                // A listed step is read from its ids alone: a histogram of zeros beside them must not matter.
                var counts = loads.Lists(ids[l].Length) && random.Next(2) == 0 ? new int[experts] : Histogram(ids[l], experts);
                loads.Add(l, ids[l], counts);
            }

            loads.Advance();
            steps.Add(ids);
            if (step % readEvery == 0)
            {
                CheckAgainstRecount(loads, steps, layers, experts, window);
            }
        }

        Assert.Contains(gaps, gap => gap >= 2 * window);
    }

    /// <summary>
    /// Steps only write their rows until a read comes less than two windows of steps after the one before it, and again
    /// after a read that comes two windows or more later; a second read with no step between (a summary reads the load
    /// twice) changes nothing. The load is right in either way (the theory above).
    /// </summary>
    [Fact]
    public void TheGapBetweenReadsChoosesWhetherStepsKeepTheSum()
    {
        const int window = 4;
        var loads = new ExpertLoadWindow(layers: 2, experts: 40, window);
        void Steps(int count)
        {
            for (var step = 0; step < count; step++)
            {
                loads.Add(0, [1, 2], []);
                loads.Add(1, [3], []);
                loads.Advance();
            }
        }

        Assert.False(loads.KeepsSum);
        Steps((2 * window) + 1);
        Assert.Equal(1UL * window, loads.Load[2]);
        Assert.False(loads.KeepsSum);
        Steps((2 * window) - 1);
        Assert.Equal(1UL * window, loads.Load[40 + 3]);
        Assert.True(loads.KeepsSum);
        Assert.Equal(1UL * window, loads.Load[40 + 3]);
        Assert.True(loads.KeepsSum);
        Steps(2 * window);
        Assert.Equal(1UL * window, loads.Load[1]);
        Assert.False(loads.KeepsSum);
        Assert.Equal(1UL * window, loads.Load[1]);
        Assert.False(loads.KeepsSum);
        Steps(1);
        Assert.Equal(1UL * window, loads.Load[2]);
        Assert.True(loads.KeepsSum);
        loads.Clear();
        Assert.False(loads.KeepsSum);
    }

    /// <summary>
    /// A model's reads of fewer steps than the window holds sum the ring's newest rows and leave the window's sum and
    /// its choice alone: they neither sum the whole ring afresh nor count as a read of it. A read of the whole window
    /// does.
    /// </summary>
    [Fact]
    public void AModelsReadOfItsNewestStepsLeavesTheWindowsSumAlone()
    {
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 40, Window = 4 };
        var engine = new ManagedModelEngine(options);
        using var model = new ModelRoutingStats(engine);
        void Steps(int count)
        {
            for (var step = 0; step < count; step++)
            {
                model.RecordStep([1, 2, 3, 3], tokens: 2, topK: 1);
            }
        }

        Steps(9);
        Assert.Equal(4UL, model.WindowLoad()[1]);
        Assert.False(engine.WindowKeepsSum);
        Steps(2);
        Assert.Equal(2, model.Summary(recentSteps: 2).WindowSteps);
        Assert.Equal(2UL, model.WindowLoad(recentSteps: 1)[40 + 3]);
        Assert.False(engine.WindowKeepsSum);
        Assert.Equal(4UL, model.WindowLoad()[2]);
        Assert.True(engine.WindowKeepsSum);
    }

    /// <summary>A layer's step of 0 to 120 ids, mostly listed lengths, with ids outside the experts at a rate of 0 to 100 %.</summary>
    private static int[] MixedStep(Random random, int experts)
    {
        int[] outside = [-1, -1, -2, int.MinValue, int.MaxValue, 65_535, 65_536, experts, experts + 1];
        var length = random.Next(10) switch
        {
            0 => 0,
            < 7 => random.Next(0, ExpertLoadWindow.ListedIds + 1),
            < 9 => ExpertLoadWindow.ListedIds,
            _ => random.Next(ExpertLoadWindow.ListedIds + 1, 120),
        };
        var outsideRate = random.Next(4) / 3.0;
        return Enumerable.Range(0, length)
            .Select(_ => random.NextDouble() < outsideRate ? outside[random.Next(outside.Length)] : random.Next(experts))
            .ToArray();
    }

    private static void CheckAgainstRecount(ExpertLoadWindow loads, List<int[][]> steps, int layers, int experts, int window)
    {
        var held = Math.Min(window, steps.Count);
        for (var newest = 1; newest <= held; newest++)
        {
            var expected = new ulong[layers * experts];
            foreach (var kept in steps.Skip(steps.Count - newest))
            {
                for (var l = 0; l < layers; l++)
                {
                    foreach (var id in kept[l].Where(id => id >= 0 && id < experts))
                    {
                        expected[l * experts + id]++;
                    }
                }
            }

            var sum = new ulong[layers * experts];
            loads.AddNewest(newest, sum);
            Assert.Equal(expected, sum);
            if (newest == held)
            {
                Assert.Equal(expected, loads.Load.ToArray());
            }
        }

        var ring = loads.ToRing(held)!;
        for (var age = 0; age < held; age++)
        {
            var position = (loads.Position - 1 - age + window) % window;
            for (var l = 0; l < layers; l++)
            {
                var histogram = Histogram(steps[^(age + 1)][l], experts);
                Assert.Equal(histogram.Select(count => (uint)count), ring.AsSpan((position * layers + l) * experts, experts).ToArray());
                var counts = Enumerable.Repeat(-7, experts).ToArray();
                loads.Layer(l).CopyCounts(position, counts);
                Assert.Equal(histogram, counts);
            }
        }
    }

    /// <summary>The size an allocation failure's message gives is what the steps' arrays take, beside the load's.</summary>
    [Theory]
    [InlineData(3, 40, 50)]
    [InlineData(5, 8, 20)]
    [InlineData(2, ExpertLoadWindow.ListedIds, 10)]
    [InlineData(2, ExpertLoadWindow.ListedIds + 1, 10)]
    public void StepBytesIsWhatTheStepsTake(int layers, int experts, int window)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        var loads = new ExpertLoadWindow(layers, experts, window);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        GC.KeepAlive(loads);

        var load = sizeof(ulong) * layers * experts;
        var steps = ExpertLoadWindow.StepBytes(layers, experts, window);
        Assert.InRange(allocated - load, steps, steps + 256);
    }

    /// <summary>
    /// A window restored with its whole ring takes that array over and allocates its lists alone: a model of 58 layers
    /// of 256 experts would otherwise hold its 59 MB ring twice while it restores. It then slides as the original.
    /// </summary>
    [Fact]
    public void AWholeRingIsTakenOverNotCopied()
    {
        const int layers = 2, experts = 300, window = 50;
        var random = new Random(5);
        var original = new ExpertLoadWindow(layers, experts, window);
        void Record(params ExpertLoadWindow[] loads)
        {
            var ids = Enumerable.Range(0, layers).Select(_ => MixedStep(random, experts)).ToArray();
            foreach (var each in loads)
            {
                for (var l = 0; l < layers; l++)
                {
                    each.Add(l, ids[l], Histogram(ids[l], experts));
                }

                each.Advance();
            }
        }

        for (var step = 0; step < window + 3; step++)
        {
            Record(original);
        }

        var ring = original.ToRing(window)!;
        var load = original.Load.ToArray();
        var before = GC.GetAllocatedBytesForCurrentThread();
        var restored = new ExpertLoadWindow(layers, experts, window, load, ring, original.Position);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        var lists = ExpertLoadWindow.StepBytes(layers, experts, window) - (ring.LongLength * sizeof(uint));
        Assert.InRange(allocated, lists, lists + 256);
        for (var step = 0; step < 4; step++)
        {
            Record(original, restored);
            Assert.Equal(original.Load.ToArray(), restored.Load.ToArray());
        }
    }

    [Fact]
    public void ARestoredWindowSlidesOnAndClears()
    {
        var loads = new ExpertLoadWindow(1, 4, 2, load: [3, 0, 1, 0], ring: [1, 0, 1, 0, 2, 0, 0, 0], position: 0);
        loads.Add(0, [1], [0, 1, 0, 0]);
        loads.Advance();
        Assert.Equal([2UL, 1, 0, 0], loads.Load.ToArray());
        loads.Clear();
        Assert.Equal([0UL, 0, 0, 0], loads.Load.ToArray());
        Assert.Equal(0, loads.Position);
    }

    /// <summary>
    /// A merge's ring sums the ranks' rows, so a count may pass 2^31 (up to 2^32 − 1): a whole step evicting it,
    /// in the vector loop and its scalar tail alike (17 experts), leaves the load exactly the new step's counts.
    /// </summary>
    [Fact]
    public void ARowOfCountsPast2To31SlidesOutExactly()
    {
        const int experts = 17;
        var merged = Enumerable.Range(0, experts).Select(e => uint.MaxValue - (uint)e).ToArray();
        var loads = new ExpertLoadWindow(1, experts, 1, load: merged.Select(count => (ulong)count).ToArray(), ring: merged, position: 0);
        var ids = Enumerable.Range(0, 40).Select(i => i % experts).ToArray();
        var counts = Histogram(ids, experts);

        loads.Add(0, ids, counts);
        loads.Advance();

        Assert.Equal(counts.Select(count => (ulong)count), loads.Load.ToArray());
    }

    /// <summary>
    /// A cleared window's ring holds only the steps since the clear, also in rows that held a whole step
    /// before it and a decode step (kept as a list) after: that ring, the rows of those steps alone, is what a
    /// model exports to a merge.
    /// </summary>
    [Fact]
    public void AClearedWindowsRingHoldsOnlyTheStepsSinceTheClear()
    {
        const int Experts = ExpertLoadWindow.ListedIds + 8;
        var loads = new ExpertLoadWindow(layers: 1, experts: Experts, window: 2);
        var dense = Enumerable.Repeat(2, 40).ToArray();
        for (var step = 0; step < 2; step++)
        {
            loads.Add(0, dense, Histogram(dense, Experts));
            loads.Advance();
        }

        loads.Clear();
        loads.Add(0, [1, 1], Histogram([1, 1], Experts));
        loads.Advance();

        var expected = new ulong[Experts];
        expected[1] = 2;
        Assert.Equal(expected, loads.Load.ToArray());
        Assert.Equal(expected.Select(count => (uint)count), loads.ToRing(1)!);
    }

    /// <summary>
    /// A window of 100,000 steps that holds 3 exports those 3 rows (a snapshot of a few steps of a long window
    /// copied the whole ring: 2.3 GB for 10 steps of 58 × 256 in 20,000), and restored from them it allocates no
    /// more until a step is added: then it takes its whole ring, keeps the 3 steps, and slides on.
    /// </summary>
    [Fact]
    public void AWindowOfAFewStepsExportsAndRestoresThoseStepsAlone()
    {
        const int Layers = 2, Experts = 64, Window = 100_000;
        var original = new ExpertLoadWindow(Layers, Experts, Window);
        var random = new Random(5);
        var kinds = new HashSet<int>();
        for (var step = 0; step < 3; step++)
        {
            for (var l = 0; l < Layers; l++)
            {
                var ids = Step(random, Experts, kinds);
                original.Add(l, ids, Histogram(ids, Experts));
            }

            original.Advance();
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        var ring = original.ToRing(3)!;
        var load = original.Load.ToArray();
        var restoring = GC.GetAllocatedBytesForCurrentThread();
        var restored = new ExpertLoadWindow(Layers, Experts, Window, load, ring, position: 3);
        var after = GC.GetAllocatedBytesForCurrentThread();
        var allocated = after - before;

        Assert.Equal(3 * Layers * Experts, ring.Length);
        Assert.True(allocated < 1 << 20, $"{allocated:N0} bytes to export and restore 3 steps");

        // The restored window takes the exported rows over, with a length for each of its 3 × 2 rows: less than the
        // rows' own bytes, nothing that grows with the rows times the experts.
        Assert.True(after - restoring < sizeof(uint) * ring.Length, $"{after - restoring:N0} bytes to restore 3 steps of {sizeof(uint) * ring.Length:N0} bytes");
        foreach (var steps in new[] { 1, 3 })
        {
            var (expected, actual) = (new ulong[Layers * Experts], new ulong[Layers * Experts]);
            original.AddNewest(steps, expected);
            restored.AddNewest(steps, actual);
            Assert.Equal(expected, actual);
        }

        restored.EnsureWhole();
        int[] next = [1, 1, 2];
        foreach (var window in new[] { original, restored })
        {
            window.Add(0, next, Histogram(next, Experts));
            window.Add(1, [], new int[Experts]);
            window.Advance();
        }

        Assert.Equal(original.Load.ToArray(), restored.Load.ToArray());
        Assert.Equal(original.ToRing(4), restored.ToRing(4));
    }

    /// <summary>
    /// A ring the runtime cannot allocate is refused as <see cref="InsufficientMemoryException"/> naming the bytes the
    /// steps take (<see cref="ExpertLoadWindow.StepBytes"/>), not swallowed: 32,769 steps of 65,534 experts are
    /// 2,147,483,646 counts, past <see cref="Array.MaxLength"/> and within an int, which the runtime refuses with an
    /// <see cref="OutOfMemoryException"/> without allocating them (the lists and lengths before it take 2 MB).
    /// </summary>
    [Fact]
    public void ARingThatCannotBeAllocatedIsRefusedWithItsSize()
    {
        const int Experts = 65_534, Window = 32_769;
        Assert.InRange((long)Experts * Window, Array.MaxLength + 1L, int.MaxValue);

        var error = Assert.Throws<InsufficientMemoryException>(() => new ExpertLoadWindow(layers: 1, Experts, Window));

        Assert.Contains(FormattableString.Invariant($"needs {ExpertLoadWindow.StepBytes(1, Experts, Window):N0} bytes"), error.Message);
    }

    /// <summary>
    /// A window restored from its load alone (a model read from JSON) allocates nothing per step, so a
    /// file that names a window of 2,000,000,000 steps costs no memory while it is read or cleared (it cost 16 GB);
    /// after a clear it takes its steps at its first step and slides.
    /// </summary>
    [Fact]
    public void AWindowRestoredFromItsLoadAloneAllocatesNoSteps()
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        var huge = new ExpertLoadWindow(layers: 1, experts: 1, window: 2_000_000_000, load: [5], ring: null);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(allocated < 1_000_000, $"{allocated:N0} bytes allocated for a window that cannot slide");
        Assert.False(huge.CanSlide);
        Assert.Equal([5UL], huge.Load.ToArray());

        // A clear leaves it empty and able to slide, its steps still unallocated until a step comes.
        before = GC.GetAllocatedBytesForCurrentThread();
        huge.Clear();
        allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 1_000_000, $"{allocated:N0} bytes allocated by a clear");
        Assert.True(huge.CanSlide);
        Assert.Equal([0UL], huge.Load.ToArray());
        Assert.Empty(huge.ToRing(0)!);

        var small = new ExpertLoadWindow(layers: 2, experts: 3, window: 2, load: [1, 0, 0, 0, 0, 2], ring: null);
        small.Clear();
        Assert.True(small.CanSlide);
        small.EnsureWhole();
        small.Add(0, [2], [0, 0, 1]);
        small.Add(1, [0], [1, 0, 0]);
        small.Advance();
        Assert.Equal([0UL, 0, 1, 1, 0, 0], small.Load.ToArray());
    }

    /// <summary>A layer's step of one of four kinds (noted in <paramref name="kinds"/>): listed, or a row whose largest count is below 200, 300 or 70,000.</summary>
    private static int[] Step(Random random, int experts, HashSet<int> kinds)
    {
        var kind = random.Next(4);
        kinds.Add(kind);
        var some = kind == 0 ? random.Next(0, 33) : random.Next(33, 200);
        var heavy = kind switch { 2 => 300, 3 => 70_000, _ => 0 };
        var ids = Enumerable.Range(0, some).Select(_ => random.Next(-2, experts + 2)).Concat(Enumerable.Repeat(random.Next(experts), heavy)).ToArray();
        random.Shuffle(ids);
        return ids;
    }

    private static int[] Histogram(int[] ids, int experts)
    {
        var counts = new int[experts];
        foreach (var id in ids.Where(id => id >= 0 && id < experts))
        {
            counts[id]++;
        }

        return counts;
    }
}
