using ILGPU;
using ILGPU.Runtime;

namespace MoeGpuStats;

/// <summary>
/// A model's per-expert counters where its device engine keeps them, without a copy, as
/// <see cref="ModelRoutingStats.DeviceArrays"/> returns them: for a job that reduces them across
/// GPUs with its own collective (an NCCL all-reduce), or reads them in its own kernels.
/// </summary>
/// <remarks>
/// <para>
/// Both arrays are <c>[Layers, Experts]</c> row-major 64-bit counts of token-expert slots (a slot
/// is one id in <c>[0, Experts)</c>; −1 and invalid ids are in neither), contiguous, in the memory
/// of the model's accelerator: device memory on CUDA, host memory on ILGPU's CPU accelerator.
/// </para>
/// <para>
/// The views are the model's own state. Their addresses stay the same until the model is
/// disposed; their contents are the steps recorded before <see cref="ModelRoutingStats.DeviceArrays"/>
/// (the pending step folded by a launch enqueued on <see cref="Stream"/>), and stay so until the next
/// <see cref="ModelRoutingStats.RecordStep(ArrayView{int}, int, int, long, ArrayView{int}, ArrayView{float}, ArrayView{float}, long)"/>
/// or <see cref="ModelRoutingStats.Reset"/>: later steps fold into the same memory. Work enqueued on
/// <see cref="Stream"/> after the call sees the folded counts; work on another stream must be ordered
/// after it (on CUDA a device-side wait, e.g. an event recorded on <see cref="Stream"/>; on the host,
/// <c>Stream.Synchronize()</c>). A reader must finish before the next step or reset reaches the
/// memory. Writing to the views changes the statistics: an in-place all-reduce would add the other
/// ranks' counts into this model's state, so reduce a copy.
/// </para>
/// </remarks>
public sealed class ModelDeviceArrays
{
    internal ModelDeviceArrays(ArrayView<ulong> tokenCounts, ArrayView<ulong> windowLoad, AcceleratorStream stream, int layers, int experts, ulong steps, int windowSteps)
    {
        TokenCounts = tokenCounts;
        WindowLoad = windowLoad;
        Stream = stream;
        Layers = layers;
        Experts = experts;
        Steps = steps;
        WindowSteps = windowSteps;
    }

    /// <summary>Each expert's slots since the start (or the last reset), <c>[Layers, Experts]</c>: every layer's <see cref="RoutingStats.ExpertTokenCounts"/>, one after the other.</summary>
    public ArrayView<ulong> TokenCounts { get; }

    /// <summary>Each expert's slots over the last <see cref="WindowSteps"/> steps, <c>[Layers, Experts]</c>: what <see cref="ModelRoutingStats.WindowLoad()"/> copies out.</summary>
    public ArrayView<ulong> WindowLoad { get; }

    /// <summary>The model's stream, on which the fold was enqueued and every later step and read is ordered.</summary>
    public AcceleratorStream Stream { get; }

    /// <summary>Rows of each array: the model's MoE layers.</summary>
    public int Layers { get; }

    /// <summary>Columns of each array: experts per layer.</summary>
    public int Experts { get; }

    /// <summary>
    /// The steps the arrays hold, as the host counts them without waiting: the device's count at the
    /// model's latest read whose results the host has (a summary, a window load, a snapshot, a layer's read;
    /// a pending read once its results are taken, never over a later one) plus the
    /// <see cref="ModelRoutingStats.RecordStep(ArrayView{int}, int, int, long, ArrayView{int}, ArrayView{float}, ArrayView{float}, long)"/>
    /// calls since that read was staged. A CUDA graph's replays since that read are in the arrays but not in this count (and
    /// a capture of <c>RecordStep</c> is such a call), and a call whose step the device left out
    /// (<see cref="ModelRoutingStatsOptions.SkipEmptySteps"/>) is in it until the next read; <see cref="ModelRoutingSummary.Steps"/> reads the device's.
    /// </summary>
    public ulong Steps { get; }

    /// <summary>Of <see cref="Steps"/>, those in the window (at most the model's window).</summary>
    public int WindowSteps { get; }
}
