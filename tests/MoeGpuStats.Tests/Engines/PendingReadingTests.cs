using ILGPU.Runtime;
using MoeGpuStats.Device;
using MoeGpuStats.Engines;

namespace MoeGpuStats.Tests.Engines;

/// <summary>
/// A pending reading's poll never waits: while another thread holds the reading to take its results (on a GPU, a
/// wait for the copy), <see cref="PendingReading.IsCompleted"/> says false at once, and true once they are taken.
/// </summary>
public sealed class PendingReadingTests
{
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
