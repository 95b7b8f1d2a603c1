using ILGPU.Runtime;
using MoeGpuStats.Device;
using MoeGpuStats.Engines;

namespace MoeGpuStats.Tests.Engines;

/// <summary>
/// A pending reading's poll never waits: while another thread holds the reading to take its results (on a GPU, a
/// wait for the copy), <see cref="PendingReading.IsCompleted"/> says false at once, and true once they are taken.
/// A reading says it is taken only once its copy's event and memory are released: a model's dispose, which frees the
/// accelerator after the readings it finds taken, must wait for a release still under way on another thread.
/// </summary>
public sealed class PendingReadingTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AReadingIsTakenOnlyOnceItsCopyIsReleased(bool takesResults)
    {
        var accelerator = TestAccelerators.Require("cpu");
        using var pool = new PageLockedPool(accelerator);
        using var source = accelerator.Allocate1D<byte>(8);
        var reader = new DeviceStateReader(accelerator.DefaultStream);
        var copy = new PendingCopy(accelerator, 8, pool);
        copy.Start(reader, source.View);
        copy.CopyAtBegin(reader, source.View);

        using var releasing = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var reading = new ModelReading(0, 0, [], [], null, 0, null, null, null);
        using var pending = new PendingReading(copy, _ => reading);
        pending.BeforeRelease = () =>
        {
            releasing.Set();
            release.Wait(TimeSpan.FromSeconds(20));
        };

        var ending = Task.Run(takesResults ? () => pending.Result() : pending.Dispose, HeldCopy.Cancellation);
        Assert.True(releasing.Wait(TimeSpan.FromSeconds(20), HeldCopy.Cancellation), "the copy was never released");
        var takenDuringRelease = pending.TakeIfArrived();
        var modelsDispose = Task.Run(pending.TryTakeResult, HeldCopy.Cancellation);
        var disposeWaited = !await HeldCopy.Within(modelsDispose, TimeSpan.FromMilliseconds(500));
        release.Set();
        await ending;
        await modelsDispose;

        Assert.False(takenDuringRelease, "the reading said it was taken while its copy was still being released");
        Assert.True(disposeWaited, "a model's dispose went on while a reading's copy was still being released");
        Assert.True(pending.TakeIfArrived());
    }

    [Fact]
    public async Task APollWhileAnotherThreadTakesTheResultsSaysNotYetAtOnce()
    {
        var accelerator = TestAccelerators.Require("cpu");
        using var pool = new PageLockedPool(accelerator);
        using var source = accelerator.Allocate1D<byte>(8);
        var reader = new DeviceStateReader(accelerator.DefaultStream);
        var copy = new PendingCopy(accelerator, 8, pool);
        copy.Start(reader, source.View);
        copy.CopyAtBegin(reader, source.View);

        using var taking = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var reading = new ModelReading(0, 0, [], [], null, 0, null, null, null);
        using var pending = new PendingReading(copy, _ =>
        {
            taking.Set();
            release.Wait(TimeSpan.FromSeconds(20));
            return reading;
        });
        Assert.True(pending.IsCompleted);

        var result = Task.Run(pending.Result, HeldCopy.Cancellation);
        Assert.True(taking.Wait(TimeSpan.FromSeconds(20), HeldCopy.Cancellation), "the results were never taken");
        var poll = Task.Run(() => pending.IsCompleted, HeldCopy.Cancellation);
        var answeredAtOnce = await HeldCopy.Within(poll, TimeSpan.FromSeconds(5));
        release.Set();

        Assert.True(answeredAtOnce, "a poll waited for another thread taking the results");
        Assert.False(await poll);
        Assert.Same(reading, await result);
        Assert.True(pending.IsCompleted);
    }
}
