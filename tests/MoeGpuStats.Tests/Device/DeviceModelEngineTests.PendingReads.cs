
namespace MoeGpuStats.Tests.Device;

/// <summary>
/// A read begun without waiting, where its copy back is made at its begin (ILGPU's CPU accelerator, OpenCL): that copy
/// waits with the model's lock released, as a blocking read's does; and its results refresh the host's count of steps
/// (ModelDeviceArrays.Steps: "the device's at the model's last read"), as a blocking read's do. Reads dropped without a
/// dispose are let go by the model's next read once their copies have arrived, their results still readable.
/// </summary>
public sealed partial class DeviceModelEngineTests
{
    [Fact]
    public async Task AStepRecordedWhileABegunReadCopiesDoesNotWaitForTheCopy()
    {
        var (engine, device, managed, step) = HeldModels("cpu");
        using (device)
        using (managed)
        {
            var expected = managed.Summary();
            using var hold = new HeldCopy(engine.Reader);
            var beginning = Task.Run(() => device.BeginRead(), HeldCopy.Cancellation);
            hold.WaitUntilHeld();

            var recording = Task.Run(() => device.RecordStep(step, HeldTokens, HeldTopK), HeldCopy.Cancellation);
            var recordedMeanwhile = await HeldCopy.Within(recording, Patience.GoAhead);
            hold.Release();

            using var read = await beginning;
            Assert.True(recordedMeanwhile, "a step recorded while BeginRead copied back (OpenCL's wait) waited for the copy");
            Assert.Equal(expected, read.Summary);
            await recording;
            Assert.Equal(4UL, device.DeviceArrays().Steps);
        }
    }

    [Fact]
    public void APendingReadsResultsRefreshTheDeviceArraysCount()
    {
        using var replayed = new UncountedReplays();
        var model = replayed.Model;
        replayed.Replay();
        replayed.Replay();

        using (var early = model.BeginRead())
        {
            Assert.Equal(2UL, early.Summary.Steps);   // the device's count, read without waiting
        }

        Assert.Equal(2UL, model.DeviceArrays().Steps);

        // Taken in the other order than begun: on this accelerator the newer BeginRead takes the older read's results
        // first (its copy arrived at its begin), so the count is the newer's either way; a read taken after a newer count
        // is APendingReadTakenAfterABlockingReadLeavesTheNewerCount.
        using var older = model.BeginRead();
        replayed.Replay();
        using var newer = model.BeginRead();
        Assert.Equal(3UL, newer.Summary.Steps);
        Assert.Equal(2UL, older.Summary.Steps);
        Assert.Equal(3UL, model.DeviceArrays().Steps);
    }

    /// <summary>
    /// A read begun without waiting and taken after a later blocking read has counted the device's steps: its older count
    /// does not take the host's count back. No BeginRead comes between them, which would take the older reading's
    /// results first (its copy arrived at its begin on ILGPU's CPU accelerator).
    /// </summary>
    [Fact]
    public void APendingReadTakenAfterABlockingReadLeavesTheNewerCount()
    {
        using var replayed = new UncountedReplays();
        var model = replayed.Model;
        replayed.Replay();
        replayed.Replay();

        using var older = model.BeginRead();
        replayed.Replay();   // the host does not count it: only a read does
        Assert.Equal(3UL, model.Summary().Steps);
        Assert.Equal(3UL, model.DeviceArrays().Steps);

        Assert.Equal(2UL, older.Summary.Steps);
        Assert.Equal(3UL, model.DeviceArrays().Steps);
    }

    [Fact]
    public void ReadsDroppedWithoutADisposeAreLetGoOnceTheirCopiesArrive()
    {
        var (engine, device, managed, step) = HeldModels("cpu");
        using (device)
        using (managed)
        {
            var first = device.BeginRead();
            for (var read = 0; read < 100; read++)
            {
                device.BeginRead();
            }

            Assert.Equal(1, engine.HeldReadings);
            Assert.Equal(managed.Summary(), first.Summary);
            device.RecordStep(step, HeldTokens, HeldTopK);
            managed.RecordStep(step, HeldTokens, HeldTopK);
            using var last = device.BeginRead();
            Assert.Equal(managed.Summary(), last.Summary);
        }
    }
}
