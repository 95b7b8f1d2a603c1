using MoeGpuStats.Interop;

namespace MoeGpuStats.Native;

/// <summary>
/// One C handle of a model read begun without waiting (<c>moegs_model_read_begin</c>): the pending read and
/// the entries its balance counts (experts, or ranks under a placement). It outlives its model: the model's
/// destroy completes it.
/// </summary>
internal sealed class NativeModelRead(PendingModelRead read, int layers, int experts, int entries) : INativeHandle
{
    public PendingModelRead Read => read;

    /// <summary>Layers and experts of the model read: the window load's shape.</summary>
    public (int Layers, int Experts) Shape => (layers, experts);

    /// <summary>Experts, or the ranks counted under the placement the read was begun with.</summary>
    public int Entries => entries;

    /// <summary>The lock of a finish, which may wait for the copy, and of a destroy.</summary>
    public Lock Gate { get; } = new();

    /// <remarks>The lock of a poll (<c>moegs_model_read_ready</c>), which must not wait behind a finish: the read serializes itself.</remarks>
    public Lock ReadGate { get; } = new();

    public bool Disposed { get; private set; }

    /// <remarks>The read pushes its CUDA context for its own driver calls.</remarks>
    public CudaContextScope EnterDevice() => default;

    public void Dispose()
    {
        Disposed = true;
        read.Dispose();
    }
}
