using System.Text.Json;
using MoeGpuStats.Engines;

namespace MoeGpuStats.Tests.Model;

// The window load written into a caller's buffer (ModelRoutingStats.WindowLoad(Span<ulong>) and
// WindowLoad(int, Span<ulong>)): the values the array overloads return, on every engine, whatever the
// buffer held; the values past Layers × Experts untouched; refused with nothing written.
public sealed partial class ModelRoutingStatsTests
{
    private const ulong Untouched = 0xDEAD_BEEF_0BAD_F00D;

    [Theory]
    [MemberData(nameof(Engines))]
    public void TheLoadWrittenIntoABufferIsTheLoadReturned(string engine)
    {
        using var model = Create(engine, RecentOptions);
        var entries = RecentOptions.Layers * RecentOptions.Experts;
        var steps = ModelSteps.Random(RecentOptions.Layers, RecentOptions.Experts, topK: 2, count: 40, seed: 47);
        var recorded = new List<ModelSteps.Step>();

        // Read after every step for 17 steps, then after gaps of up to three windows: on the managed engine a
        // read that late sums the ring afresh, and the steps before it write their rows alone.
        var readAfter = new HashSet<int>(Enumerable.Range(0, 17).Concat([20, 38, 39]));
        for (var i = 0; i < steps.Count; i++)
        {
            Record(model, steps[i]);
            recorded.Add(steps[i]);
            if (!readAfter.Contains(i))
            {
                continue;
            }

            foreach (var recent in new int?[] { null, 1, 2, 5, RecentOptions.Window })
            {
                var when = $"{recent?.ToString() ?? "the window"} after {recorded.Count} steps";
                var buffer = new ulong[entries + 3];
                Array.Fill(buffer, Untouched);
                if (recent is { } newest)
                {
                    model.WindowLoad(newest, buffer);
                }
                else
                {
                    model.WindowLoad(buffer);
                }

                var expected = ModelSteps.WindowLoad(RecentOptions with { Window = recent ?? RecentOptions.Window }, recorded);
                Assert.True(expected.SequenceEqual(buffer[..entries]), when);
                Assert.True(buffer[entries..].All(value => value == Untouched), when);
                Assert.Equal(recent is { } r ? model.WindowLoad(r) : model.WindowLoad(), buffer[..entries]);
            }
        }
    }

    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void ABufferTooShortForTheLoadIsRefusedWithNothingWritten(string engine)
    {
        using var model = Create(engine, RecentOptions);
        RecordRandomSteps(model, count: 8, seed: 53);

        var before = model.WindowLoad();
        var buffer = new ulong[(RecentOptions.Layers * RecentOptions.Experts) - 1];
        Array.Fill(buffer, Untouched);

        var error = Assert.Throws<ArgumentException>(() => model.WindowLoad(buffer));
        Assert.Equal("destination", error.ParamName);
        Assert.Equal("destination holds 47 values; the window load needs Layers * Experts = 3 * 16 = 48. (Parameter 'destination')", error.Message);
        error = Assert.Throws<ArgumentException>(() => model.WindowLoad(2, []));
        Assert.StartsWith("destination holds 0 values; the window load needs", error.Message);

        // recentSteps is checked first: a bad count with a good buffer names the count and writes nothing.
        var whole = new ulong[RecentOptions.Layers * RecentOptions.Experts];
        Array.Fill(whole, Untouched);
        var outOfRange = Assert.Throws<ArgumentOutOfRangeException>(() => model.WindowLoad(RecentOptions.Window + 1, whole));
        Assert.Equal("recentSteps", outOfRange.ParamName);

        Assert.All(buffer, value => Assert.Equal(Untouched, value));
        Assert.All(whole, value => Assert.Equal(Untouched, value));
        Assert.Equal(before, model.WindowLoad());
        Assert.Equal(8UL, model.Summary().Steps);
    }

    [Fact]
    public void AModelWithoutItsRingWritesNothingWhenRefusingFewerSteps()
    {
        using var model = new ModelRoutingStats(RecentOptions);
        RecordRandomSteps(model, count: 4, seed: 59);

        using var read = JsonSerializer.Deserialize<ModelRoutingStats>(JsonSerializer.Serialize(model))!;
        var buffer = new ulong[RecentOptions.Layers * RecentOptions.Experts];
        Array.Fill(buffer, Untouched);

        Assert.Throws<InvalidOperationException>(() => read.WindowLoad(3, buffer));
        Assert.All(buffer, value => Assert.Equal(Untouched, value));
        read.WindowLoad(4, buffer);
        Assert.Equal(model.WindowLoad(), buffer);
    }

    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void ADisposedModelRefusesTheBuffer(string engine)
    {
        var model = Create(engine, RecentOptions);
        model.Dispose();
        var buffer = new ulong[RecentOptions.Layers * RecentOptions.Experts];

        Assert.Throws<ObjectDisposedException>(() => model.WindowLoad(buffer));
        Assert.Throws<ObjectDisposedException>(() => model.WindowLoad(1, buffer));
    }

    /// <summary>
    /// The managed engine writes the load into the buffer without allocating, whether the window keeps its running sum
    /// (read every step) or sums its ring afresh (read after three windows of steps), where the array overload allocates
    /// the array every read.
    /// </summary>
    [Fact]
    public void TheManagedEngineWritesTheLoadWithoutAllocating()
    {
        var options = new ModelRoutingStatsOptions { Layers = 58, Experts = 256, Window = 20 };
        var engine = new ManagedModelEngine(options);
        using var model = new ModelRoutingStats(engine);
        var steps = ModelSteps.Random(options.Layers, options.Experts, topK: 8, count: 8, seed: 61);
        var buffer = new ulong[options.Layers * options.Experts];

        long Allocated(Action read)
        {
            // A round may see the runtime's tiered recompilation land, as RecordRouting's test says: up to five.
            long allocated = -1;
            for (var round = 0; round < 5 && allocated != 0; round++)
            {
                var before = GC.GetAllocatedBytesForCurrentThread();
                read();
                allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            }

            return allocated;
        }

        var step = 0;
        void RecordSteps(int count)
        {
            for (var i = 0; i < count; i++, step++)
            {
                Record(model, steps[step % steps.Count]);
            }
        }

        RecordSteps(25);
        Assert.Equal(0, Allocated(() => model.WindowLoad(buffer)));
        Assert.Equal(0, Allocated(() => model.WindowLoad(5, buffer)));
        Assert.Equal(model.WindowLoad(5), buffer);

        // A read three windows of steps after the one before leaves the steps after it writing their rows alone, and
        // the read after as many steps more sums the ring afresh.
        RecordSteps(3 * options.Window);
        model.WindowLoad(buffer);
        Assert.False(engine.WindowKeepsSum);
        RecordSteps(3 * options.Window);
        Assert.Equal(0, Allocated(() => model.WindowLoad(buffer)));
        Assert.Equal(model.WindowLoad(), buffer);
        Assert.True(Allocated(() => model.WindowLoad()) >= buffer.Length * sizeof(ulong));
    }

    /// <summary>
    /// A device engine copies the load back through bytes rented from the shared array pool, not a new array each read (the
    /// array alone is the load's size, a large-object allocation at 58 × 256). What a read still allocates is its
    /// launch's and copy's own (ILGPU's CPU accelerator allocates some for each launch it emulates).
    /// </summary>
    [Theory]
    [InlineData("cpu")]
    [InlineData("opencl")]
    public void ADeviceEngineReadsTheLoadIntoABufferWithoutAnArrayOfItsSize(string engine)
    {
        var options = new ModelRoutingStatsOptions { Layers = 16, Experts = 1024, Window = 4 };
        using var model = Create(engine, options);
        foreach (var step in ModelSteps.Random(options.Layers, options.Experts, topK: 2, count: 3, seed: 67))
        {
            Record(model, step);
        }

        var buffer = new ulong[options.Layers * options.Experts];
        model.WindowLoad(buffer);
        var before = GC.GetAllocatedBytesForCurrentThread();
        model.WindowLoad(buffer);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(allocated < buffer.Length * sizeof(ulong) / 2, $"{allocated:N0} bytes allocated by a read of a {buffer.Length * sizeof(ulong):N0}-byte load");
        Assert.Equal(model.WindowLoad(), buffer);
    }

    /// <summary>Reads into buffers of their own from two threads at once, while a third records: each read is a whole step's load.</summary>
    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void ReadsIntoBuffersFromTwoThreadsEachSeeWholeSteps(string engine)
    {
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 8, Window = 1_000 };
        using var model = Create(engine, options);
        const int steps = 40;
        var ids = new int[options.Layers * 4];
        var recorder = new Thread(() =>
        {
            for (var step = 0; step < steps; step++)
            {
                model.RecordStep(ids, tokens: 4, topK: 1);
            }
        });
        var torn = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var readers = Enumerable.Range(0, 2).Select(_ => new Thread(() =>
        {
            var buffer = new ulong[options.Layers * options.Experts];
            for (var read = 0; read < 20; read++)
            {
                model.WindowLoad(buffer);
                // Every step puts 4 slots on expert 0 of each layer: a read between steps sees both layers alike, a multiple of 4.
                if (buffer[0] != buffer[options.Experts] || buffer[0] % 4 != 0)
                {
                    torn.Enqueue($"layer 0 read {buffer[0]}, layer 1 {buffer[options.Experts]}");
                }
            }
        })).ToArray();

        recorder.Start();
        foreach (var reader in readers)
        {
            reader.Start();
        }

        recorder.Join();
        foreach (var reader in readers)
        {
            reader.Join();
        }

        Assert.Empty(torn);
        Assert.Equal(4UL * steps, model.WindowLoad()[0]);
    }
}
