using ILGPU;
using ILGPU.Runtime;
using Microsoft.Extensions.Logging;
using MoeGpuStats.Kernels;
using static System.FormattableString;

namespace MoeGpuStats.Device;

/// <summary>
/// Routing statistics kept in the memory of one ILGPU accelerator and updated there. Recording
/// from top-k ids in device memory enqueues one kernel launch on <see cref="Stream"/> and returns without
/// waiting; a record from host memory (ids or a decision) first copies them to the device and waits for the
/// copy. Reads synchronize, once each, and copy back only what they return.
/// </summary>
/// <remarks>
/// A record from top-k ids costs one launch: its groups histogram their shares of the ids in shared
/// memory while one more group folds the previous record into the state (the seed's arithmetic,
/// including the load variance summed in expert order). So the last record stays pending until
/// the next record or read: a read first folds it (one more small launch), then runs. A query
/// costs one launch of one group and one copy of its 36-byte result with the state block. Calls
/// enqueue their work under one lock, so one instance may be shared between threads; a read then
/// waits for its copy back under a lock of the reads' own, so a record on another thread does not
/// wait for the queue ahead of the copy (at most for the copy's transfer). At most
/// <see cref="RoutingStatsOptions.MaxDeviceExperts"/> experts.
/// </remarks>
public sealed partial class DeviceRoutingStats : IDisposable
{
    private readonly Lock _lock = new();
    private readonly Lock _readGate = new();
    private readonly RoutingStatsOptions _options;
    private readonly bool _ownsStream;
    private readonly RoutingRecordLauncher _record;
    private readonly UtilizationQueryLauncher _query;
    private readonly MemoryBuffer1D<RoutingStateBlock, Stride1D.Dense> _state;
    private readonly MemoryBuffer1D<ulong, Stride1D.Dense> _batchHistogram;
    private readonly MemoryBuffer1D<ulong, Stride1D.Dense> _batchInvalid;
    private readonly MemoryBuffer1D<ulong, Stride1D.Dense> _batchPaddedTokens;
    private readonly MemoryBuffer1D<double, Stride1D.Dense> _utilizationSums;
    private readonly MemoryBuffer1D<ulong, Stride1D.Dense> _tokenCounts;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _utilization;
    private readonly MemoryBuffer1D<double, Stride1D.Dense> _decayedUtilization;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _varianceHistory;
    private readonly MemoryBuffer1D<UtilizationQueryResult, Stride1D.Dense> _queryResult;
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _readback;
    private readonly ulong[] _hostHistogram = new ulong[RoutingStatsOptions.MaxDeviceExperts];
    private readonly int[] _decisionCounts = new int[RoutingStatsOptions.MaxDeviceExperts];
    private readonly RoutingStateViews _views;
    private readonly DeviceStateReader _reader;
    private MemoryBuffer1D<int, Stride1D.Dense> _hostIds;
    private RecordArguments _pending = NoRecord;
    private int _experts;

    // The type a call after the dispose is refused in the name of: this one, or the RoutingStats that owned it and was
    // disposed (its caller never saw this type).
    private string? _disposedAs;

    /// <summary>Allocates the state on <paramref name="accelerator"/> and loads the kernels.</summary>
    /// <param name="accelerator">The accelerator that holds the state; the caller keeps ownership.</param>
    /// <param name="options">Expert count for top-k ids, capacity, decay; null for the defaults.</param>
    /// <param name="stream">The stream to order work on; null for a stream of its own.</param>
    /// <param name="logger">Where to warn that the record kernel runs without its launch bounds (<see cref="RecordKernelHasLaunchBounds"/>); null for no log.</param>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range, or <see cref="RoutingStatsOptions.Experts"/> exceeds the device limit.</exception>
    /// <exception cref="ArgumentException">The accelerator or the stream was disposed, or the stream belongs to another accelerator.</exception>
    /// <exception cref="InsufficientMemoryException">The device could not allocate the state; the message gives the size.</exception>
    public DeviceRoutingStats(Accelerator accelerator, RoutingStatsOptions? options = null, AcceleratorStream? stream = null, ILogger? logger = null)
        : this(accelerator, options, stream, RoutingRecordKernel.Create, logger)
    {
    }

    /// <summary>As the public constructor, with the record kernel tuned by <paramref name="policy"/> (the device check sweeps policies).</summary>
    internal DeviceRoutingStats(Accelerator accelerator, RoutingStatsOptions? options, AcceleratorStream? stream, RecordKernelPolicy policy)
        : this(accelerator, options, stream, accelerator => RoutingRecordKernel.Create(accelerator, policy))
    {
    }

    /// <summary>As the public constructor, with the record kernel that <paramref name="createRecord"/> loads on the accelerator.</summary>
    internal DeviceRoutingStats(
        Accelerator accelerator, RoutingStatsOptions? options, AcceleratorStream? stream, Func<Accelerator, RoutingRecordLauncher> createRecord, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        DeviceMemory.CheckConstructorArguments(accelerator, stream);
        _options = options ?? new RoutingStatsOptions();
        _options.Validate();
        if (_options.Experts > RoutingStatsOptions.MaxDeviceExperts)
        {
            throw OutOfRange.Error(
                nameof(RoutingStatsOptions.Experts), _options.Experts, Invariant($"the device engine holds 1 to {RoutingStatsOptions.MaxDeviceExperts:N0}."));
        }

        // Loaded before anything is allocated, so a kernel the accelerator refuses leaks nothing.
        _record = createRecord(accelerator);
        _query = UtilizationQueryKernel.Create(accelerator);
        RecordKernelHasLaunchBounds = CudaLaunchBounds.AppliesTo(accelerator);
        if (accelerator.AcceleratorType == AcceleratorType.Cuda && !RecordKernelHasLaunchBounds && logger is not null)
        {
            Log.LaunchBoundsUnavailable(logger, accelerator.Name, CudaLaunchBounds.Missing);
        }

        Accelerator = accelerator;
        _ownsStream = stream is null;
        Stream = stream ?? accelerator.CreateStream();
        _reader = new DeviceStateReader(Stream);
        const int experts = RoutingStatsOptions.MaxDeviceExperts;
        try
        {
            _state = Allocate<RoutingStateBlock>(1);
            _batchHistogram = Allocate<ulong>(RoutingStateLayout.BatchHistogramLength);
            _batchInvalid = Allocate<ulong>(RoutingStateLayout.BatchBuffers);
            _batchPaddedTokens = Allocate<ulong>(RoutingStateLayout.BatchBuffers);
            _utilizationSums = Allocate<double>(experts);
            _tokenCounts = Allocate<ulong>(experts);
            _utilization = Allocate<float>(experts);
            _decayedUtilization = Allocate<double>(experts);
            _varianceHistory = Allocate<float>(RoutingStateLayout.VarianceWindow);
            _queryResult = Allocate<UtilizationQueryResult>(1);
            _readback = Allocate<byte>(DeviceStateReader.StateBytes(experts));
            _hostIds = Allocate<int>(1);
        }
        catch (InsufficientMemoryException)
        {
            // A device that is nearly full (a framework's caching allocator) can refuse a later
            // buffer; the earlier ones would otherwise stay allocated until a finalizer ran.
            FreeDeviceMemory();
            throw;
        }

        _views = new RoutingStateViews
        {
            State = _state.View,
            BatchHistogram = _batchHistogram.View,
            BatchInvalid = _batchInvalid.View,
            BatchPaddedTokens = _batchPaddedTokens.View,
            UtilizationSums = _utilizationSums.View,
            TokenCounts = _tokenCounts.View,
            Utilization = _utilization.View,
            DecayedUtilization = _decayedUtilization.View,
            VarianceHistory = _varianceHistory.View,
        };
        ClearDevice();
    }

    /// <summary>The accelerator that holds the state.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>The stream every record and read is ordered on.</summary>
    public AcceleratorStream Stream { get; }

    /// <summary>The options this engine was made with.</summary>
    public RoutingStatsOptions Options => _options;

    /// <summary>The expert count of the state (0 before the first record); known on the host, no synchronization.</summary>
    public int ExpertCount => _experts;

    /// <summary>
    /// Whether the record kernel runs with its launch bounds: on CUDA, groups of 256 threads of
    /// which eight fit on a multiprocessor (32 registers per thread on sm_90). False on CUDA only
    /// where this ILGPU lacks the internals that loading them needs; the kernel then runs as ILGPU
    /// compiles it (on sm_90, 6 groups per multiprocessor instead of 8), and the constructor logs the
    /// warning <c>LaunchBoundsUnavailable</c>. False on other accelerators, which take none.
    /// </summary>
    public bool RecordKernelHasLaunchBounds { get; }

    /// <summary>The lock every record, reset and read's enqueueing holds; tests hold it to order a call on another thread after their own.</summary>
    internal Lock Gate => _lock;

    /// <summary>Clears the state on the device (enqueued; no wait).</summary>
    public void Reset()
    {
        lock (_lock)
        {
            ThrowIfUnusable();
            ClearDevice();
            _pending = NoRecord;
            _experts = 0;
        }
    }

    /// <summary>Why these statistics cannot be used (disposed, or their accelerator or stream), or null where they can.</summary>
    internal ObjectDisposedException? Gone() => Disposed.Of(ThrowIfUnusable);

    /// <summary>Waits for the enqueued work and frees the device memory (and the stream, when it made it).</summary>
    public void Dispose() => DisposeFor(nameof(DeviceRoutingStats));

    /// <summary>
    /// As <see cref="Dispose()"/>, for the object named <paramref name="holder"/> that owns these statistics: a call that
    /// passed its holder's check just before the dispose is refused in the holder's name, as a later call is.
    /// </summary>
    internal void DisposeFor(string holder)
    {
        // The reads' lock first, as a read takes them: a read waiting for its copy finishes before the memory goes.
        lock (_readGate)
        lock (_lock)
        {
            if (_disposedAs is not null)
            {
                return;
            }

            _disposedAs = holder;
            try
            {
                DeviceMemory.FinishUnlessGone(Accelerator, Stream);
            }
            finally
            {
                // A wait that fails (a sticky CUDA error) must not keep the memory: the statistics are gone either way.
                FreeDeviceMemory();
            }
        }
    }

    /// <summary>Frees the buffers allocated so far and the stream, when this engine made it.</summary>
    private void FreeDeviceMemory()
    {
        Disposal.All(
            _state, _batchHistogram, _batchInvalid, _batchPaddedTokens, _utilizationSums, _tokenCounts, _utilization, _decayedUtilization,
            _varianceHistory, _queryResult, _readback, _hostIds, _ownsStream ? Stream : null);
    }

    /// <summary>Throws if this engine, its accelerator or its stream was disposed: work enqueued after that would touch freed memory.</summary>
    internal void ThrowIfUnusable()
    {
        Disposed.ThrowIf(_disposedAs is not null, _disposedAs!);
        DeviceMemory.ThrowIfGone(Accelerator, Stream);
    }

    private void ClearDevice()
    {
        _state.View.MemSetToZero(Stream);
        _batchHistogram.View.MemSetToZero(Stream);
        _batchInvalid.View.MemSetToZero(Stream);
        _batchPaddedTokens.View.MemSetToZero(Stream);
        _utilizationSums.View.MemSetToZero(Stream);
        _tokenCounts.View.MemSetToZero(Stream);
        _utilization.View.MemSetToZero(Stream);
        _decayedUtilization.View.MemSetToZero(Stream);
        _varianceHistory.View.MemSetToZero(Stream);
    }

    private MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(long length)
        where T : unmanaged => DeviceMemory.Allocate<T>(Accelerator, length, "the routing state");
}
