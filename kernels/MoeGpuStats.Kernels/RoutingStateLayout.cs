namespace MoeGpuStats.Kernels;

/// <summary>
/// Where each count of the routing state lies in its device buffers (<see cref="RoutingStateViews"/>):
/// their sizes, and the indices the host and the launcher compute (a batch buffer's start, the
/// copies it holds, the buffer after another).
/// </summary>
/// <remarks>
/// The batch histogram is shaped <c>[buffer, copy, expert]</c>: <see cref="BatchBuffers"/> buffers of
/// <see cref="BufferLength"/> counts, each holding <see cref="RecordArguments.Copies"/> histograms of
/// E counts one after another: copy c of buffer b starts at <c>b * BufferLength + c * E</c>. The
/// per-expert arrays are <c>[expert]</c>, the variance ring <c>[ring position]</c>, the entry after
/// the head at <c>head + i</c> less <see cref="VarianceWindow"/> once it passes the end. A model's
/// state (<see cref="Model.ModelStateViews"/>) puts the layer first in each, and its <c>Layer</c> cuts out one layer's views.
/// The record kernel spells its indices inline with these constants: through a helper method,
/// ILGPU ordered the fold's code differently, and the PTX the project measured would change
/// (tests/MoeGpuStats.Tests/Kernels/Golden).
/// </remarks>
internal static class RoutingStateLayout
{
    /// <summary>The most experts a state can hold (16 KiB of shared bins per record group).</summary>
    public const int MaxExperts = 4096;

    /// <summary>
    /// The most a state's counts hold, 2^63 − 1, as a snapshot writes them. The slots of capacity, the one count a
    /// real run can drive this far (experts × slots per expert, up to 2^43 a batch on a device), stop here.
    /// </summary>
    public const ulong MaxCount = long.MaxValue;

    /// <summary>Length of the variance ring, as the seed's history window.</summary>
    public const int VarianceWindow = 1000;

    /// <summary>Batch buffers: the record being counted and the one being folded, used in turn.</summary>
    public const int BatchBuffers = 2;

    /// <summary>The most copies of a buffer's histogram that counting groups spread their flushes over.</summary>
    public const int MaxCopies = 16;

    /// <summary>
    /// The counts a batch buffer holds: <see cref="MaxCopies"/> copies of the histogram up to 256
    /// experts, fewer above (<see cref="CopiesHeld"/>: 4 at 1,024, one at <see cref="MaxExperts"/>).
    /// </summary>
    /// <remarks>
    /// Buffers of 16,384 counts (16 copies at 1,024 experts, 4 at 4,096) were slower on an H100 at
    /// 16 Mi ids: 41.4 against 32.1 µs at 1,024 experts, 85.5 against 77.4 µs at 4,096
    /// (docs/decisions/privatized-flush-copies.md).
    /// </remarks>
    public const int BufferLength = MaxExperts;

    /// <summary>The batch histogram's length: every buffer.</summary>
    public const int BatchHistogramLength = BatchBuffers * BufferLength;

    /// <summary>The index of <paramref name="buffer"/>'s first count.</summary>
    public static int BufferStart(int buffer) => buffer * BufferLength;

    /// <summary>The copies of a histogram of <paramref name="experts"/> experts that a buffer holds, at most <see cref="MaxCopies"/>.</summary>
    public static int CopiesHeld(int experts) => Math.Min(MaxCopies, BufferLength / experts);

    /// <summary>The buffer after <paramref name="buffer"/>; buffer 0 after none (−1).</summary>
    public static int NextBuffer(int buffer) => (buffer + 1) % BatchBuffers;
}
