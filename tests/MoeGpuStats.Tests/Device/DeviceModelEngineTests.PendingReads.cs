using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Device;

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
        var accelerator = TestAccelerators.Require("cpu");
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 8, Window = 4 };
        const int rows = 4, topK = 2, stride = rows * topK;
        var engine = new DeviceModelEngine(accelerator, options);
        using var model = new ModelRoutingStats(engine);
        using var ids = accelerator.Allocate1D<int>(options.Layers * stride);
        ids.View.CopyFromCPU(new int[options.Layers * stride]);
        var captured = engine.StepArguments(rows, topK, stride, topK);
        engine.Replay<int>(ids.View, captured, default);
        engine.Replay<int>(ids.View, captured, default);

        using (var early = model.BeginRead())
        {
            Assert.Equal(2UL, early.Summary.Steps);   // the device's count, read without waiting
        }

        Assert.Equal(2UL, model.DeviceArrays().Steps);

        // Taken in the other order than begun: on this accelerator the newer BeginRead takes the older read's results
        // first (its copy arrived at its begin), so the count is the newer's either way; a read taken after a newer count
        // is APendingReadTakenAfterABlockingReadLeavesTheNewerCount.
        using var older = model.BeginRead();
        engine.Replay<int>(ids.View, captured, default);
        using var newer = model.BeginRead();
        Assert.Equal(3UL, newer.Summary.Steps);
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
