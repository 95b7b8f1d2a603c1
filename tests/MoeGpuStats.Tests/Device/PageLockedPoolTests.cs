using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// The page-locked buffers a model's pending reads reuse on CUDA (<see cref="PageLockedPool"/>), checked with
/// ILGPU's CPU accelerator, whose page-locked arrays are pinned arrays: a buffer handed back is the next one
/// rented; no more than <see cref="PageLockedPool.Kept"/> are kept; one of another length, or one handed back
/// after the pool's dispose, is freed.
/// </summary>
public sealed class PageLockedPoolTests
{
    [Fact]
    public void ABufferHandedBackIsTheNextRentedAndExtraOnesAreFreed()
    {
        using var pool = new PageLockedPool(TestAccelerators.Require("cpu"));
        var rented = Enumerable.Range(0, PageLockedPool.Kept + 1).Select(_ => pool.Rent(64)).ToArray();
        Assert.All(rented, buffer => Assert.Equal(64, buffer.Length));
        Assert.Equal(rented.Length, rented.Distinct().Count());

        foreach (var buffer in rented)
        {
            pool.Return(buffer);
        }

        Assert.Equal(1, rented.Count(buffer => buffer.IsDisposed));
        var again = Enumerable.Range(0, PageLockedPool.Kept).Select(_ => pool.Rent(64)).ToArray();
        Assert.All(again, buffer => Assert.Contains(buffer, rented.Where(b => !b.IsDisposed)));
        Assert.DoesNotContain(pool.Rent(64), rented);
    }

    [Fact]
    public void ABufferOfAnotherLengthIsFreedOnTheWay()
    {
        using var pool = new PageLockedPool(TestAccelerators.Require("cpu"));
        var small = pool.Rent(32);
        pool.Return(small);
        var large = pool.Rent(96);

        Assert.Equal(96, large.Length);
        Assert.True(small.IsDisposed);
    }

    [Fact]
    public void AfterItsDisposeThePoolFreesWhatItHeldAndWhatComesBack()
    {
        var pool = new PageLockedPool(TestAccelerators.Require("cpu"));
        var (kept, outstanding) = (pool.Rent(16), pool.Rent(16));
        pool.Return(kept);
        pool.Dispose();
        pool.Return(outstanding);

        Assert.True(kept.IsDisposed);
        Assert.True(outstanding.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => pool.Rent(16));
    }
}
