namespace MoeGpuStats.Tests;

/// <summary>
/// <see cref="Disposal.All"/>: an owner's parts are all disposed where one throws (after a sticky CUDA error every free
/// fails), in order, and the first exception is the one the owner's dispose throws.
/// </summary>
public sealed class DisposalTests
{
    [Fact]
    public void EveryPartIsDisposedInOrderAndTheFirstFailureIsRethrown()
    {
        var disposed = new List<string>();
        var first = new InvalidOperationException("cuMemFree failed: an illegal memory access was encountered.");

        var thrown = Assert.Throws<InvalidOperationException>(() => Disposal.All(
            new Part("ids", disposed),
            new Part("stream", disposed, first),
            null,
            new Part("buffers", disposed, new InvalidOperationException("cuStreamDestroy failed.")),
            new Part("accelerator", disposed)));

        Assert.Same(first, thrown);
        Assert.Equal(["ids", "stream", "buffers", "accelerator"], disposed);
    }

    [Fact]
    public void PartsThatAllDisposeThrowNothing()
    {
        var disposed = new List<string>();
        Disposal.All(new Part("bridge", disposed), null, new Part("context", disposed));
        Assert.Equal(["bridge", "context"], disposed);
    }

    private sealed class Part(string name, List<string> disposed, Exception? failure = null) : IDisposable
    {
        public void Dispose()
        {
            disposed.Add(name);
            if (failure is not null)
            {
                throw failure;
            }
        }
    }
}
