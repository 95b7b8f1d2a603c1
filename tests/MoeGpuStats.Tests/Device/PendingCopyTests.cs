using ILGPU.Runtime;
using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// A pending copy off CUDA (ILGPU's CPU accelerator): it copies exactly as many bytes as the host memory taken for it, so
/// a source of another length is refused before anything is copied; it has not arrived until its copy at the begin is
/// made, which is made once, whatever the source holds later.
/// </summary>
public sealed class PendingCopyTests
{
    [Theory]
    [InlineData(7)]
    [InlineData(9)]
    public void ASourceOfAnotherLengthThanTheMemoryTakenIsRefused(int length)
    {
        var accelerator = TestAccelerators.Require("cpu");
        using var pool = new PageLockedPool(accelerator);
        using var source = accelerator.Allocate1D<byte>(length);
        var reader = new DeviceStateReader(accelerator.DefaultStream);
        using var copy = new PendingCopy(accelerator, 8, pool);

        var error = Assert.Throws<InvalidOperationException>(() => copy.Start(reader, source.View));

        Assert.Equal($"A copy of {length} bytes into host memory allocated for 8.", error.Message);
        Assert.Equal(0, reader.Copies);
    }

    [Fact]
    public void TheCopyAtTheBeginIsMadeOnceAndOnlyThenHasArrived()
    {
        var accelerator = TestAccelerators.Require("cpu");
        using var pool = new PageLockedPool(accelerator);
        byte[] first = [1, 2, 3, 4, 5, 6, 7, 8];
        using var source = accelerator.Allocate1D(first);
        var reader = new DeviceStateReader(accelerator.DefaultStream);
        using var copy = new PendingCopy(accelerator, first.Length, pool);

        copy.Start(reader, source.View);
        Assert.False(copy.IsCompleted);
        copy.CopyAtBegin(reader, source.View);
        Assert.True(copy.IsCompleted);

        source.View.CopyFromCPU(accelerator.DefaultStream, new byte[] { 9, 9, 9, 9, 9, 9, 9, 9 });
        copy.CopyAtBegin(reader, source.View);

        Assert.Equal(1, reader.Copies);
        Assert.Equal(first, copy.Wait());
    }

    /// <summary>
    /// A disposed copy refuses its copy at the begin, making none where it had not made it, and its wait, whether or not
    /// its bytes had arrived: the memory they were copied into may be another copy's by then.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ADisposedCopyRefusesItsCopyAtTheBeginAndItsWait(bool copiedFirst)
    {
        var accelerator = TestAccelerators.Require("cpu");
        using var pool = new PageLockedPool(accelerator);
        using var source = accelerator.Allocate1D<byte>([1, 2, 3, 4, 5, 6, 7, 8]);
        var reader = new DeviceStateReader(accelerator.DefaultStream);
        var copy = new PendingCopy(accelerator, 8, pool);
        copy.Start(reader, source.View);
        if (copiedFirst)
        {
            copy.CopyAtBegin(reader, source.View);
        }

        copy.Dispose();

        Assert.Equal($"This {nameof(PendingModelRead)} was disposed.", Assert.Throws<ObjectDisposedException>(() => copy.CopyAtBegin(reader, source.View)).Message);
        Assert.Equal(copiedFirst ? 1 : 0, reader.Copies);
        Assert.Equal($"This {nameof(PendingModelRead)} was disposed.", Assert.Throws<ObjectDisposedException>(copy.Wait).Message);
        Assert.Throws<ObjectDisposedException>(() => copy.IsCompleted);
    }
}
