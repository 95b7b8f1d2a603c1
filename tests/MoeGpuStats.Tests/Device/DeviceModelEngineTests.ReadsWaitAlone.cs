using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// A read of a device model waits for its copy back with the model's lock released: a step recorded (or a
/// reset made) on another thread meanwhile goes ahead at once, lands after the reading, and the host's count
/// of steps stays right. The tests hold a read at its copy (<see cref="DeviceStateReader.BeforeCopy"/>), where
/// a GPU's read waits for the queued work.
/// </summary>
public sealed partial class DeviceModelEngineTests
{
    private const int HeldLayers = 3, HeldExperts = 8, HeldTokens = 5, HeldTopK = 2;

    private static readonly string[] HeldReadNames = ["Summary()", "Summary(ranks)", "Summary(2)", "WindowLoad()", "WindowLoad(1)", "metrics reading", "Layer(1).ExpertTokenCounts", "Layer(1).UtilizationCv()", "Layer(1).Snapshot()", "JSON", "Snapshot()"];

    /// <summary>Each read on each accelerator kind: on a GPU the copy back runs on the reading thread while another launches on the same stream.</summary>
    public static TheoryData<string, string> HeldReads => TestAccelerators.KindsBy(HeldReadNames);

    [Theory]
    [MemberData(nameof(HeldReads))]
    public async Task AStepRecordedWhileAReadWaitsForItsCopyDoesNotWaitForTheRead(string kind, string name)
    {
        var (engine, device, managed, step) = HeldModels(kind);
        using (device)
        using (managed)
        {
            var read = HeldRead(name);
            var expected = Json(read(managed));
            using var hold = new HeldCopy(engine.Reader);
            var reading = Task.Run(() => read(device), HeldCopy.Cancellation);
            hold.WaitUntilHeld();

            var recording = Task.Run(() => device.RecordStep(step, HeldTokens, HeldTopK), HeldCopy.Cancellation);
            var recordedMeanwhile = await HeldCopy.Within(recording, Patience.GoAhead);
            hold.Release();

            Assert.True(recordedMeanwhile, $"{name}: a step recorded while the read waited for its copy waited for the read");
            Assert.Equal(expected, Json(await reading));
            managed.RecordStep(step, HeldTokens, HeldTopK);
            Assert.Equal(Json(read(managed)), Json(read(device)));
            Assert.Equal(4UL, device.DeviceArrays().Steps);
        }
    }

    [Theory]
    [InlineData(false, 5UL)]
    [InlineData(true, 1UL)]
    public async Task TheHostsCountOfStepsFollowsWhatCameWhileAReadWaited(bool resetMeanwhile, ulong steps)
    {
        var (engine, device, managed, step) = HeldModels("cpu");
        using (device)
        using (managed)
        {
            using var hold = new HeldCopy(engine.Reader);
            var reading = Task.Run(() => device.Summary(), HeldCopy.Cancellation);
            hold.WaitUntilHeld();
            if (resetMeanwhile)
            {
                device.Reset();
            }
            else
            {
                device.RecordStep(step, HeldTokens, HeldTopK);
            }

            device.RecordStep(step, HeldTokens, HeldTopK);
            hold.Release();

            Assert.Equal(3UL, (await reading).Steps);
            Assert.Equal(steps, device.DeviceArrays().Steps);
            Assert.Equal(steps, device.Summary().Steps);
        }
    }

    [Fact]
    public async Task ADisposeWaitsForAReadWaitingForItsCopy()
    {
        var (engine, device, managed, _) = HeldModels("cpu");
        using (managed)
        {
            var expected = managed.WindowLoad();
            using var hold = new HeldCopy(engine.Reader);
            var reading = Task.Run(() => device.WindowLoad(), HeldCopy.Cancellation);
            hold.WaitUntilHeld();
            var disposing = Task.Run(device.Dispose, HeldCopy.Cancellation);
            var disposedMeanwhile = await HeldCopy.Within(disposing, TimeSpan.FromMilliseconds(500));
            hold.Release();

            Assert.False(disposedMeanwhile, "the model was disposed under a read waiting for its copy");
            Assert.Equal(expected, await reading);
            Assert.True(await HeldCopy.Within(disposing, Patience.GoAhead));
            Assert.Throws<ObjectDisposedException>(() => device.WindowLoad());
        }
    }

    /// <summary>
    /// A read (a window load) that waits for the reads' lock while another waits for its copy is staged, and counts the host's
    /// steps, once it has the lock: a step recorded while it waited is in its reading, and in the host's count once.
    /// </summary>
    [Fact]
    public async Task AReadWaitingBehindAnotherCountsAStepRecordedMeanwhileOnce()
    {
        var (engine, device, managed, step) = HeldModels("cpu");
        using (device)
        using (managed)
        {
            using var hold = new HeldCopy(engine.Reader);
            var first = Task.Run(() => device.Summary(), HeldCopy.Cancellation);
            hold.WaitUntilHeld();
            IReadOnlyList<ulong>? second = null;
            Exception? failed = null;
            var waiting = new Thread(() => failed = Record.Exception(() => second = device.WindowLoad()));
            waiting.Start();

            // The second read waits for the reads' lock, which the first holds until its copy is made.
            Assert.True(SpinWait.SpinUntil(() => waiting.ThreadState.HasFlag(ThreadState.WaitSleepJoin), Patience.GoAhead));
            device.RecordStep(step, HeldTokens, HeldTopK);
            managed.RecordStep(step, HeldTokens, HeldTopK);
            hold.Release();
            waiting.Join();

            Assert.Null(failed);
            Assert.Equal(3UL, (await first).Steps);
            Assert.Equal(managed.WindowLoad(), second);
            Assert.Equal(4UL, device.DeviceArrays().Steps);
        }
    }

    /// <summary>A device model on <paramref name="kind"/> and a managed one, each with the same three steps, and a fourth step's ids.</summary>
    private static (DeviceModelEngine Engine, ModelRoutingStats Device, ModelRoutingStats Managed, int[] Step) HeldModels(string kind)
    {
        var options = new ModelRoutingStatsOptions { Layers = HeldLayers, Experts = HeldExperts, Window = 3, UtilizationDecay = 0.5f };
        var engine = new DeviceModelEngine(TestAccelerators.Require(kind), options);
        var device = new ModelRoutingStats(engine);
        var managed = new ModelRoutingStats(options);
        var random = new Random(17);
        int[] Ids() => [.. Enumerable.Range(0, HeldLayers * HeldTokens * HeldTopK).Select(_ => random.Next(-1, HeldExperts))];
        for (var s = 0; s < 3; s++)
        {
            var ids = Ids();
            device.RecordStep(ids, HeldTokens, HeldTopK);
            managed.RecordStep(ids, HeldTokens, HeldTopK);
        }

        // All to expert 0: the step moves every figure the reads return.
        return (engine, device, managed, new int[HeldLayers * HeldTokens * HeldTopK]);
    }

    private static Func<ModelRoutingStats, object> HeldRead(string name) => name switch
    {
        "Summary()" => m => m.Summary(),
        "Summary(ranks)" => m => m.Summary([0, 0, 1, 1, 2, 2, 3, 3]),
        "Summary(2)" => m => m.Summary(recentSteps: 2),
        "WindowLoad()" => m => m.WindowLoad(),
        "WindowLoad(1)" => m => m.WindowLoad(recentSteps: 1),
        "metrics reading" => m =>
        {
            var reading = m.Read(new() { RecentSteps = 3, AlsoRecentSteps = 1, Totals = true, WindowLoad = true, TokenCounts = true });
            return new
            {
                Summary = ModelRoutingStats.Summarize(reading, HeldExperts),
                Recent = ModelRoutingStats.SummarizeRecent(reading, HeldExperts),
                reading.Totals,
                reading.WindowLoad,
                reading.TokenCounts,
            };
        },
        "Layer(1).ExpertTokenCounts" => m => m.Layer(1).ExpertTokenCounts,
        "Layer(1).UtilizationCv()" => m => m.Layer(1).UtilizationCv(),
        "Layer(1).Snapshot()" => m => ModelSteps.Fingerprint(m.Layer(1).Snapshot()),
        "JSON" => m => Json(m),
        "Snapshot()" => m =>
        {
            using var snapshot = m.Snapshot();
            return new { Model = Json(snapshot), Recent = snapshot.WindowLoad(recentSteps: 2) };
        },
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, null),
    };
}
