using MoeGpuStats.Device;

namespace MoeGpuStats.Engines;

/// <summary>
/// A reading of a model begun without waiting (<see cref="ModelRoutingEngine.BeginRead"/>): a device
/// engine's copy back still on its way, unstaged into a <see cref="ModelReading"/> when it has arrived, or
/// a reading taken at once (the managed engine's). Thread-safe.
/// </summary>
internal sealed class PendingReading : IDisposable
{
    private readonly Lock _lock = new();
    private readonly PendingCopy? _copy;
    private readonly Func<byte[], ModelReading>? _unstage;
    private readonly Action<ModelReading>? _arrived;

    // A reading taken at its begin (the managed engine's), handed out as the copied one is: by Result.
    private readonly ModelReading? _atBegin;
    private ModelReading? _reading;
    private bool _disposed;

    // Set once the results are taken or the reading disposed and the copy's event and memory released, read without
    // the lock: the lock is held across a wait for the device (Result, Dispose), which a model's BeginRead letting go
    // of taken readings must not wait behind. Set before the release, it would let a model's dispose free the
    // accelerator under a release still waiting on it.
    private volatile bool _taken;

    /// <summary>
    /// A reading whose bytes <paramref name="copy"/> brings back and <paramref name="unstage"/> reads; <paramref name="arrived"/>
    /// is told the reading once, on the thread that took it, with this reading's lock released.
    /// </summary>
    public PendingReading(PendingCopy copy, Func<byte[], ModelReading> unstage, Action<ModelReading>? arrived = null) =>
        (_copy, _unstage, _arrived) = (copy, unstage, arrived);

    private PendingReading(ModelReading reading) => (_atBegin, _taken) = (reading, true);

    /// <summary>A reading already taken.</summary>
    public static PendingReading Completed(ModelReading reading) => new(reading);

    /// <summary>
    /// Whether <see cref="Result"/> would return without waiting. Never waits: while another thread holds the
    /// reading (taking its results, which may wait for the copy, or disposing it) the answer is false, for now.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The reading was disposed before its results were taken, or its accelerator before the copy was seen to end.</exception>
    public bool IsCompleted
    {
        get
        {
            if (!_lock.TryEnter())
            {
                return false;
            }

            try
            {
                if (_reading is not null)
                {
                    return true;
                }

                ThrowIfDisposed();
                return _copy?.IsCompleted ?? true;
            }
            finally
            {
                _lock.Exit();
            }
        }
    }

    /// <summary>
    /// The reading, waiting for its copy back where it has not arrived; the copy's memory is freed once it is read.
    /// Once taken, the results stay, a dispose after it included.
    /// </summary>
    /// <exception cref="ObjectDisposedException">As <see cref="IsCompleted"/>.</exception>
    public ModelReading Result()
    {
        ModelReading reading;
        var first = false;
        lock (_lock)
        {
            if (_reading is null)
            {
                ThrowIfDisposed();
                if (_copy is null)
                {
                    _reading = _atBegin;
                }
                else
                {
                    _reading = _unstage!(_copy.Wait());
                    first = true;
                    Release();
                }
            }

            reading = _reading!;
        }

        if (first)
        {
            _arrived?.Invoke(reading);
        }

        return reading;
    }

    /// <summary>Throws where the reading was disposed before its results were taken, in the public type's words.</summary>
    private void ThrowIfDisposed()
    {
        if (_disposed)
        {
            throw Disposed.Error("This read was disposed before its results were taken: begin another with BeginRead.");
        }
    }

    /// <summary>
    /// Takes the results where the copy has reached the host and no other thread holds the reading, which frees the
    /// copy's memory; never waits for the device. Returns whether the results were taken (or the reading disposed)
    /// and the copy released, so that nothing of the device's is held: a model lets go of the reading then, and reads
    /// begun and dropped without a dispose hold their memory only while their copies are on their way.
    /// </summary>
    public bool TakeIfArrived()
    {
        TryTake(waits: false);
        return _taken;
    }

    /// <summary>
    /// Takes the results of a copy that has ended (a model's dispose, after its stream finished), so that
    /// they outlive the accelerator; a copy that failed is left to say so when the results are asked for.
    /// </summary>
    public void TryTakeResult() => TryTake(waits: true);

    private void TryTake(bool waits)
    {
        if (_taken)
        {
            return;
        }

        try
        {
            if (waits || IsCompleted)
            {
                Result();
            }
        }
        catch (Exception exception) when (exception is InvalidOperationException or ObjectDisposedException or ILGPU.Runtime.AcceleratorException)
        {
            // The pending read reports it: its results are asked for again then.
        }
    }

    /// <summary>Frees the copy's memory, after waiting for a copy still on its way (the device must not write freed memory).</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            Release();
        }
    }

    /// <summary>
    /// Runs before the copy's event and memory are released (on CUDA a wait for the copy, which a device fault fails):
    /// tests hold or fail a release there. Null in the library.
    /// </summary>
    internal Action? BeforeRelease { get; set; }

    /// <summary>Frees the copy's event and memory, then marks the reading taken. The caller holds the lock.</summary>
    private void Release()
    {
        try
        {
            BeforeRelease?.Invoke();
            _copy?.Dispose();
        }
        finally
        {
            _taken = true;
        }
    }
}
