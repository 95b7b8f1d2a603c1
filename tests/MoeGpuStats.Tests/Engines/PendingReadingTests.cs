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
        using var pool = new PageLockedPool(TestAccelerators.Require("cpu"));
        var copy = ArrivedCopy(pool);

        using var releasing = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        using var pending = new PendingReading(copy, _ => Reading);
        pending.BeforeRelease = () =>
        {
            releasing.Set();
            release.Wait(Patience.Hold);
        };

        var ending = Task.Run(takesResults ? () => pending.Result() : pending.Dispose, HeldCopy.Cancellation);
        Assert.True(releasing.Wait(Patience.GoAhead, HeldCopy.Cancellation), "the copy was never released");
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
        using var pool = new PageLockedPool(TestAccelerators.Require("cpu"));
        var copy = ArrivedCopy(pool);

        using var taking = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        using var pending = new PendingReading(copy, _ =>
        {
            taking.Set();
            release.Wait(Patience.Hold);
            return Reading;
        });
        Assert.True(pending.IsCompleted);

        var result = Task.Run(pending.Result, HeldCopy.Cancellation);
        Assert.True(taking.Wait(Patience.GoAhead, HeldCopy.Cancellation), "the results were never taken");
        var poll = Task.Run(() => pending.IsCompleted, HeldCopy.Cancellation);
        var answeredAtOnce = await HeldCopy.Within(poll, Patience.GoAhead);
        release.Set();

        Assert.True(answeredAtOnce, "a poll waited for another thread taking the results");
        Assert.False(await poll);
        Assert.Same(Reading, await result);
        Assert.True(pending.IsCompleted);
    }

    /// <summary>
    /// The copy is unstaged once and the arrival told once, on the first take: a second take returns the same reading,
    /// a dispose after it leaves the reading readable, and the reading stays let go of.
    /// </summary>
    [Fact]
    public void TheResultsAreUnstagedAndTheirArrivalToldOnceHoweverOftenTaken()
    {
        using var pool = new PageLockedPool(TestAccelerators.Require("cpu"));
        var (unstaged, told) = (0, 0);
        ModelReading? arrived = null;
        using var pending = new PendingReading(ArrivedCopy(pool), _ =>
        {
            unstaged++;
            return new ModelReading(0, 0, [], [], null, 0, null, null, null);
        }, reading =>
        {
            told++;
            arrived = reading;
        });

        var first = pending.Result();
        var second = pending.Result();
        pending.Dispose();

        Assert.Same(first, second);
        Assert.Same(first, arrived);
        Assert.Same(first, pending.Result());
        Assert.Equal((1, 1), (unstaged, told));
        Assert.True(pending.IsCompleted);
        Assert.True(pending.TakeIfArrived());
    }

    /// <summary>
    /// A reading disposed before its results were taken releases its copy at once, so that its model lets go of it,
    /// and says it was disposed when asked for its results.
    /// </summary>
    [Fact]
    public void AReadingDisposedUnreadReleasesItsCopyAndSaysSo()
    {
        using var pool = new PageLockedPool(TestAccelerators.Require("cpu"));
        var unstaged = 0;
        var pending = new PendingReading(ArrivedCopy(pool), _ =>
        {
            unstaged++;
            return Reading;
        });

        pending.Dispose();

        Assert.True(pending.TakeIfArrived(), "a reading disposed unread still held its copy");
        Assert.Throws<ObjectDisposedException>(() => pending.IsCompleted);
        Assert.Throws<ObjectDisposedException>(pending.Result);
        Assert.Equal(0, unstaged);
    }

    private static readonly ModelReading Reading = new(0, 0, [], [], null, 0, null, null, null);

    /// <summary>
    /// A copy of 8 device bytes on ILGPU's CPU accelerator, which makes it at its begin: it has arrived (and
    /// <paramref name="pool"/> lends it no page-locked memory there).
    /// </summary>
    private static PendingCopy ArrivedCopy(PageLockedPool pool)
    {
        var accelerator = TestAccelerators.Require("cpu");
        using var source = accelerator.Allocate1D<byte>(8);
        var reader = new DeviceStateReader(accelerator.DefaultStream);
        var copy = new PendingCopy(accelerator, 8, pool);
        copy.Start(reader, source.View);
        copy.CopyAtBegin(reader, source.View);
        return copy;
    }
}
