using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using static MoeGpuStats.Kernels.RoutingStateLayout;
using static System.FormattableString;

namespace MoeGpuStats.Kernels;

/// <summary>
/// Launches one record: the histogram of <paramref name="ids"/> into the batch buffer of
/// <paramref name="arguments"/>, and the fold of the <paramref name="pending"/> record (counted
/// by an earlier launch) into the running state, in one kernel launch. Launches nothing when there
/// is neither.
/// </summary>
/// <param name="stream">The stream the record is ordered on; the call does not wait for it.</param>
/// <param name="ids">Top-k expert ids (any length; empty when the histogram was uploaded instead).</param>
/// <param name="state">The routing state.</param>
/// <param name="arguments">The batch's host-known scalars and the buffer its ids are counted into (<see cref="RecordArguments.Buffer"/> −1: none).</param>
/// <param name="pending">The record to fold as an earlier launch returned it (<see cref="RecordArguments.Buffer"/> −1: none).</param>
/// <returns><paramref name="arguments"/> with the <see cref="RecordArguments.Copies"/> its groups counted into: the next launch's <paramref name="pending"/>.</returns>
internal delegate RecordArguments RoutingRecordLauncher(AcceleratorStream stream, ArrayView<int> ids, RoutingStateViews state, RecordArguments arguments, RecordArguments pending);

/// <summary>The record kernel's launchers: loaded once per accelerator, each checks its arguments and sizes the grid.</summary>
internal static partial class RoutingRecordKernel
{
    /// <summary>Loads the kernel once on <paramref name="accelerator"/>, tuned by <see cref="RecordKernelPolicy.For"/>, and returns its launcher.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    /// <remarks>
    /// The launcher throws <see cref="ArgumentOutOfRangeException"/> for a batch buffer other than −1, 0 or 1,
    /// an expert count outside 1 to <see cref="MaxExperts"/>, a negative <see cref="RecordArguments.TopK"/>
    /// or <see cref="RecordArguments.Tokens"/>, a <see cref="RecordArguments.TopK"/> below 1 for a record of
    /// ids, or a pending record's copies outside what its buffer holds, and <see cref="ArgumentException"/>
    /// for state views too short for them, before anything is enqueued.
    /// </remarks>
    public static RoutingRecordLauncher Create(Accelerator accelerator) => Create(accelerator, RecordKernelPolicy.For(accelerator));

    /// <summary>Loads the kernel once on <paramref name="accelerator"/>, tuned by <paramref name="policy"/>, and returns its launcher.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> or <paramref name="policy"/> is null.</exception>
    /// <exception cref="NotSupportedException">The accelerator cannot run the policy's counting (<see cref="Supports"/> says why).</exception>
    internal static RoutingRecordLauncher Create(Accelerator accelerator, RecordKernelPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentNullException.ThrowIfNull(policy);
        if (!Supports(accelerator, policy.Counting, out var reason))
        {
            throw new NotSupportedException(reason);
        }

        return policy.Counting == HistogramCounting.QuadLoadRuns
            ? Create<QuadLoadRunCounting>(accelerator, policy)
            : Create<ThreadRunCounting>(accelerator, policy);
    }

    /// <summary>
    /// The launcher of the kernel with <typeparamref name="TCounting"/> in place of the policy's
    /// counting, loaded once: the device check also times countings that are not a <see cref="HistogramCounting"/>.
    /// </summary>
    internal static RoutingRecordLauncher Create<TCounting>(Accelerator accelerator, RecordKernelPolicy policy)
        where TCounting : struct, IHistogramCounting
    {
        var kernel = Load<TCounting>(accelerator);
        var grid = CountingGrid.For(accelerator, kernel.GetKernel(), policy);
        var gate = new LaunchGate(accelerator);
        return (stream, ids, state, arguments, pending) =>
        {
            CheckLaunch(state, arguments, nameof(arguments));
            CheckLaunch(state, pending, nameof(pending));
            if (pending.Buffer >= 0 && (pending.Copies < 1 || pending.Copies > CopiesHeld(pending.Experts)))
            {
                throw new ArgumentOutOfRangeException(
                    nameof(pending), Invariant($"pending.Copies is {pending.Copies}; give 1 to {MaxCopies} and at most {BufferLength} / pending.Experts: the copies its launch returned."));
            }

            // The folding group takes a place in the one wave. A histogram uploaded into the buffer
            // (no ids) is one copy.
            var folding = pending.Buffer >= 0 ? 1 : 0;
            var counting = arguments.Buffer >= 0 && ids.Length > 0 ? grid.Groups(ids.Length, arguments.Experts, folding) : 0;
            if (counting > 0 && arguments.TopK < 1)
            {
                // The padding check divides positions by k.
                throw new ArgumentOutOfRangeException(nameof(arguments), Invariant($"arguments.TopK is {arguments.TopK}; a record of ids takes at least 1."));
            }

            arguments.Copies = counting > 0 ? grid.Copies(counting, arguments.Experts) : 1;
            arguments.AlignedStart = counting > 0 ? IdAlignment.AlignedStart(accelerator, ids) : 0;
            if (counting + folding > 0)
            {
                using var held = gate.Enter();
                kernel(stream, new KernelConfig(counting + folding, grid.GroupSize), ids, state, arguments, pending);
            }

            return arguments;
        };
    }

    /// <summary>The kernel with <typeparamref name="TCounting"/>; on CUDA with launch bounds that keep every group of a full multiprocessor resident.</summary>
    private static Action<AcceleratorStream, KernelConfig, ArrayView<int>, RoutingStateViews, RecordArguments, RecordArguments> Load<TCounting>(Accelerator accelerator)
        where TCounting : struct, IHistogramCounting =>
        CudaLaunchBounds.AppliesTo(accelerator) && accelerator is CudaAccelerator cuda
            ? CudaLaunchBounds.Load(cuda, KernelPtx.RecordKernel<TCounting>(), GroupSize(accelerator))
                .CreateLauncherDelegate<Action<AcceleratorStream, KernelConfig, ArrayView<int>, RoutingStateViews, RecordArguments, RecordArguments>>()
            : accelerator.LoadKernel<ArrayView<int>, RoutingStateViews, RecordArguments, RecordArguments>(Kernel<TCounting>);
}
