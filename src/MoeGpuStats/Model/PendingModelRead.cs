using MoeGpuStats.Engines;

namespace MoeGpuStats;

/// <summary>
/// A read of a model's summary and window load, begun without waiting (<see cref="ModelRoutingStats.BeginRead"/>):
/// poll <see cref="IsCompleted"/> between steps, then take <see cref="Summary"/> and <see cref="WindowLoad"/>,
/// so that a server's loop never waits for the device, as vLLM users ask of its counters' readback.
/// </summary>
/// <remarks>
/// The reading is of the steps recorded before <see cref="ModelRoutingStats.BeginRead"/>: on a device it is
/// computed and copied back behind them on the model's stream, and steps recorded after it do not change it.
/// On CUDA the copy lands in page-locked host memory (from a pool the model's reads reuse) that this object holds
/// until its results are taken or it is disposed. ILGPU gives no event to poll on OpenCL, where <see cref="ModelRoutingStats.BeginRead"/> waits for the
/// copy; on ILGPU's CPU accelerator and the managed engine the reading is complete when it returns. Disposing
/// the model completes its pending reads (its stream has finished), whose results stay readable. Thread-safe.
/// </remarks>
public sealed class PendingModelRead : IDisposable
{
    private readonly PendingReading _reading;
    private readonly int _entries;

    internal PendingModelRead(PendingReading reading, int entries) => (_reading, _entries) = (reading, entries);

    internal PendingReading Reading => _reading;

    /// <summary>
    /// Whether the reading has reached the host, so that <see cref="Summary"/> and <see cref="WindowLoad"/> return without
    /// waiting. Never waits: while another thread is taking the results (or disposing the read), it says false for now.
    /// </summary>
    /// <exception cref="ObjectDisposedException">This read was disposed before its results were taken (once taken, they stay), or the model's accelerator before the copy was seen to end.</exception>
    public bool IsCompleted => _reading.IsCompleted;

    /// <summary>The model's balance, as <see cref="ModelRoutingStats.Summary(int, IReadOnlyList{int})"/> gives it for the same arguments; waits on the host while <see cref="IsCompleted"/> is false.</summary>
    /// <exception cref="ObjectDisposedException">As <see cref="IsCompleted"/>.</exception>
    public ModelRoutingSummary Summary => ModelRoutingStats.Summarize(_reading.Result(), _entries);

    /// <summary>
    /// Each expert's slots over the whole window, row-major <c>[layers, experts]</c>, as <see cref="ModelRoutingStats.WindowLoad()"/>
    /// gives it, of the same steps as <see cref="Summary"/> (a new array on each get); waits on the host while <see cref="IsCompleted"/> is false.
    /// </summary>
    /// <exception cref="ObjectDisposedException">As <see cref="IsCompleted"/>.</exception>
    public ulong[] WindowLoad => [.. _reading.Result().WindowLoad!];

    /// <summary>Waits on the host until the reading has arrived.</summary>
    /// <exception cref="ObjectDisposedException">As <see cref="IsCompleted"/>.</exception>
    public void Wait() => _reading.Result();

    /// <summary>Frees the host memory the copy lands in, waiting first for a copy still on its way; results already taken stay readable.</summary>
    public void Dispose() => _reading.Dispose();
}
