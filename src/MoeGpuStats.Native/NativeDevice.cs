using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Device;
using MoeGpuStats.Interop;

namespace MoeGpuStats.Native;

/// <summary>The ILGPU context and accelerator a C handle opened for itself (the aggregator's and the model's).</summary>
internal sealed class NativeDevice : IDisposable
{
    private readonly Context _context;

    private NativeDevice(Context context, Accelerator accelerator)
    {
        _context = context;
        Accelerator = accelerator;
    }

    public Accelerator Accelerator { get; }

    /// <summary>
    /// Opens the accelerator the C caller named and builds the handle's engine on it with
    /// <paramref name="build"/>. Null (and <paramref name="built"/> default) for the managed engine:
    /// "managed", or "auto" where no accelerator of <paramref name="best"/> is present (the library's rule and order, AcceleratorSelection). "auto" follows
    /// <c>MOEGS_ACCELERATOR</c> where it is set, as <see cref="RoutingStats.Create"/> does, so an
    /// operator can move a server onto another engine without a change to its code. When
    /// <paramref name="build"/> throws, the accelerator is freed again; it must free what it made itself.
    /// </summary>
    /// <exception cref="NativeArgumentException">"auto" and a <c>MOEGS_ACCELERATOR</c> that names no engine.</exception>
    /// <exception cref="NoDeviceException">The named accelerator is not present.</exception>
    public static NativeDevice? Open<T>(string accelerator, Func<Accelerator, T> build, out T? built, AcceleratorType[]? best = null)
    {
        built = default;
        var choice = accelerator is "auto" ? AutoChoice() : accelerator;

        // The checks refused every unknown name before (CheckAutoChoice "auto"'s); this one guards against a variable
        // changed by another thread in between.
        var order = AcceleratorSelection.Order(choice, best) ?? throw UnknownAutoChoice();
        if (order.Length == 0)
        {
            return null;
        }

        var context = Context.Create(builder => builder.Default());
        var device = order.Select(type => context.Devices.FirstOrDefault(d => d.AcceleratorType == type)).FirstOrDefault(d => d is not null);
        if (device is null)
        {
            context.Dispose();
            return choice.Length == 0 ? null
                : throw new NoDeviceException(accelerator is "auto"
                    ? $"no {choice} accelerator on this machine ({RoutingStats.AcceleratorVariable} = {choice}, which \"auto\" follows)."
                    : $"no {choice} accelerator on this machine.");
        }

        var caller = device.AcceleratorType == AcceleratorType.Cuda ? CudaContextScope.CurrentContext() : IntPtr.Zero;
        var opened = device.CreateAccelerator(context);
        try
        {
            built = build(opened);
            return new NativeDevice(context, opened);
        }
        catch
        {
            opened.Dispose();
            context.Dispose();
            throw;
        }
        finally
        {
            // Creating a CUDA accelerator pushed ILGPU's context onto this thread: give the caller's back.
            CudaContextScope.RestoreAfterCreate(opened, caller);
        }
    }

    /// <summary>
    /// Refuses "auto" where <c>MOEGS_ACCELERATOR</c> names no engine: checked before the other arguments, as the
    /// limits of some (the experts) depend on the engine it names.
    /// </summary>
    /// <exception cref="NativeArgumentException">"auto" and a <c>MOEGS_ACCELERATOR</c> that names no engine.</exception>
    public static void CheckAutoChoice(string accelerator)
    {
        if (accelerator is "auto" && AcceleratorSelection.Order(AutoChoice()) is null)
        {
            throw UnknownAutoChoice();
        }
    }

    private static NativeArgumentException UnknownAutoChoice() => new(
        $"{RoutingStats.AcceleratorVariable} = \"{NativeChecks.Escaped(AutoVariable()!)}\", which \"auto\" follows: must be one of {string.Join(", ", AcceleratorSelection.Names)}, or unset for the best accelerator present.");

    /// <summary><c>MOEGS_ACCELERATOR</c> as set, without surrounding blanks; null when unset.</summary>
    private static string? AutoVariable() => Environment.GetEnvironmentVariable(RoutingStats.AcceleratorVariable)?.Trim();

    /// <summary>What "auto" asks for: <c>MOEGS_ACCELERATOR</c> in lower case, or empty (unset or blank) for the best present.</summary>
    public static string AutoChoice() => AutoVariable()?.ToLowerInvariant() ?? "";

    /// <summary>
    /// With a CUDA bridge, enqueues on the engine's stream a wait for the producer's work so far and
    /// returns true: the caller then signals the producer's stream after its record. The bridge runs in
    /// the caller's context, where a NULL stream is the caller's default stream; without a current
    /// context, NULL orders nothing.
    /// </summary>
    /// <exception cref="NativeArgumentException">The stream is not a CUstream of the caller's context.</exception>
    public static bool WaitForProducer(CudaStreamBridge? bridge, IntPtr stream)
    {
        if (bridge is null || (stream == IntPtr.Zero && CudaContextScope.CurrentContext() == IntPtr.Zero))
        {
            return false;
        }

        try
        {
            bridge.WaitForProducer(stream);
        }
        catch (ArgumentException exception)
        {
            throw new NativeArgumentException($"stream: {ErrorText.Of(exception)} Allowed: a CUstream of the calling thread's current context, or NULL.");
        }

        return true;
    }

    /// <summary>
    /// On "opencl", waits until <paramref name="stream"/> has run the record just enqueued. The caller's cl_mem is
    /// read on the engine's own command queue, which nothing the caller holds can order against: once the record
    /// returns, the caller may write the next step into the same buffer. CUDA orders through the bridge instead.
    /// </summary>
    public static void WaitUntilCallersMemoryIsRead(string kind, AcceleratorStream? stream)
    {
        if (kind == "opencl")
        {
            stream!.Synchronize();
        }
    }

    /// <summary>ILGPU's CUDA context current until the scope ends, then the caller's again (see <see cref="CudaContextScope"/>).</summary>
    public CudaContextScope Enter() => CudaContextScope.Enter(Accelerator);

    public void Dispose() => Disposal.All(Accelerator, _context);
}

/// <summary>
/// The wrapper of the caller's buffer that one pointer argument was last given: servers record from
/// the same buffers every step, so a step reuses its wrappers and allocates nothing.
/// </summary>
internal sealed class ForeignCache<T>(NativeDevice device, string kind, string name) : IDisposable
    where T : unmanaged
{
    private ForeignView<T>? _view;
    private (IntPtr Pointer, long Length) _buffer;

    /// <exception cref="NativeArgumentException">The pointer is not memory this accelerator reads; the message names the C argument.</exception>
    public ArrayView<T> Wrap(IntPtr pointer, long length)
    {
        if (_view is null || _buffer != (pointer, length))
        {
            ForeignView<T> view;
            try
            {
                using (device.Enter())
                {
                    view = ForeignMemory.Wrap<T>(device.Accelerator, pointer, length);
                }
            }
            catch (ArgumentException exception)
            {
                var allowed = kind switch
                {
                    "cuda" => "device memory of the handle's GPU",
                    "opencl" => "a cl_mem of the handle's context",
                    _ => "host memory",
                };
                throw new NativeArgumentException($"{name}: {ErrorText.Of(exception)} Allowed on {kind}: {allowed}.");
            }

            _view?.Dispose();
            _view = view;
            _buffer = (pointer, length);
        }

        return _view.View;
    }

    public void Dispose() => _view?.Dispose();
}

/// <summary>What the C API's entry points need of a handle (an aggregator's, a model's): serialized calls, and its CUDA context.</summary>
internal interface INativeHandle : IDisposable
{
    /// <summary>The lock a call holds on the handle: records, resets, and whatever touches the handle's own caches.</summary>
    Lock Gate { get; }

    /// <summary>
    /// The lock a read that needs only the statistics' own locks holds instead of <see cref="Gate"/>, and a destroy
    /// before it: a read waiting on the device does not hold up a record. <see cref="Gate"/> itself where reads wait under it anyway.
    /// </summary>
    Lock ReadGate { get; }

    /// <summary>Freed by a destroy (under <see cref="Gate"/>): a call that found the handle before it was removed must not run on it.</summary>
    bool Disposed { get; }

    /// <summary>ILGPU's CUDA context current until the scope ends, then the caller's again; nothing off CUDA.</summary>
    CudaContextScope EnterDevice();
}
