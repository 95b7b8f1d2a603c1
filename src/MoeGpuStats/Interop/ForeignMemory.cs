using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using static System.FormattableString;

namespace MoeGpuStats.Interop;

/// <summary>
/// A view over memory that another runtime owns (PyTorch, ONNX Runtime, TensorRT, plain CUDA):
/// the engine reads it in place and never frees it. Dispose the wrapper when the memory may go;
/// disposing frees nothing but the wrapper.
/// </summary>
public sealed class ForeignView<T> : IDisposable
    where T : unmanaged
{
    private readonly MemoryBuffer _wrapper;

    internal ForeignView(MemoryBuffer wrapper, long length)
    {
        _wrapper = wrapper;
        View = wrapper.AsArrayView<T>(0, length);
    }

    /// <summary>The memory as an ILGPU view on the accelerator it was wrapped for.</summary>
    public ArrayView<T> View { get; }

    /// <summary>Releases the wrapper (not the memory).</summary>
    public void Dispose() => _wrapper.Dispose();
}

/// <summary>Wraps memory that MoeGpuStats did not allocate, without copying it.</summary>
public static class ForeignMemory
{
    /// <summary>
    /// Wraps <paramref name="length"/> elements at <paramref name="pointer"/>: a CUDA device pointer
    /// (<c>CUdeviceptr</c>, e.g. <c>tensor.data_ptr()</c>) on a CUDA accelerator, an OpenCL <c>cl_mem</c>
    /// on an OpenCL accelerator, or host memory on ILGPU's CPU accelerator.
    /// </summary>
    /// <remarks>
    /// On CUDA the pointer is checked with <c>cuPointerGetAttribute</c>: it must be device memory
    /// (not host memory; managed memory counts as device memory) on this accelerator's GPU. A buffer
    /// allocated in the CUDA primary context (PyTorch's) is readable from ILGPU's context on the same
    /// GPU (verified on an H200 and an H100, 2026-11-26: docs/measurements/2026-11-26-*/interop.log). <paramref name="length"/> is taken as given, not checked against the
    /// allocation: a length past it makes every read of the view read past it. CUDA's allocation range
    /// (<c>cuMemGetAddressRange</c>) is one physical segment of virtual-memory allocations (PyTorch's
    /// expandable segments), so a check against it would refuse tensors that span several.
    /// </remarks>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    /// <exception cref="ArgumentException">The pointer is null, or (CUDA) not device memory of this GPU.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative.</exception>
    /// <exception cref="NotSupportedException">The accelerator is of another kind.</exception>
    /// <exception cref="InvalidOperationException">(CUDA) The driver failed to say which GPU the memory is on; the message names its error.</exception>
    public static ForeignView<T> Wrap<T>(Accelerator accelerator, IntPtr pointer, long length)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        OutOfRange.ThrowIfNegative(length);
        if (pointer == IntPtr.Zero)
        {
            throw new ArgumentException("pointer is 0 (null); give the address of the memory to wrap: a CUDA device pointer (tensor.data_ptr()), a cl_mem, or host memory on the CPU accelerator.", nameof(pointer));
        }

        var elementSize = Unsafe.SizeOf<T>();
        MemoryBuffer wrapper = accelerator switch
        {
            CPUAccelerator => CPUMemoryBuffer.Create(accelerator, pointer, length, elementSize),
            CudaAccelerator cuda => CudaForeignBuffer.Create(cuda, pointer, length, elementSize),
            CLAccelerator cl => new CLForeignBuffer(cl, pointer, length, elementSize),
            _ => throw new NotSupportedException(Invariant($"Foreign memory on a {accelerator.AcceleratorType} accelerator is not supported.")),
        };
        return new ForeignView<T>(wrapper, length);
    }
}

/// <summary>A CUDA device allocation owned elsewhere: copies and fills go through ILGPU's CUDA helpers; nothing is freed.</summary>
internal sealed class CudaForeignBuffer : MemoryBuffer
{
    private CudaForeignBuffer(CudaAccelerator accelerator, IntPtr pointer, long length, int elementSize)
        : base(accelerator, length, elementSize) => NativePtr = pointer;

    public static CudaForeignBuffer Create(CudaAccelerator accelerator, IntPtr pointer, long length, int elementSize)
    {
        CudaDriver.CheckDevicePointer(pointer, accelerator.DeviceId, nameof(pointer));
        return new CudaForeignBuffer(accelerator, pointer, length, elementSize);
    }

    protected override void MemSet(AcceleratorStream stream, byte value, in ArrayView<byte> targetView) =>
        CudaMemoryBuffer.CudaMemSet((CudaStream)stream, value, targetView);

    protected override void CopyFrom(AcceleratorStream stream, in ArrayView<byte> sourceView, in ArrayView<byte> targetView) =>
        CudaMemoryBuffer.CudaCopy((CudaStream)stream, sourceView, targetView);

    protected override void CopyTo(AcceleratorStream stream, in ArrayView<byte> sourceView, in ArrayView<byte> targetView) =>
        CudaMemoryBuffer.CudaCopy((CudaStream)stream, sourceView, targetView);

    protected override void DisposeAcceleratorObject(bool disposing) => NativePtr = IntPtr.Zero;
}

/// <summary>An OpenCL <c>cl_mem</c> owned elsewhere; nothing is released.</summary>
internal sealed class CLForeignBuffer : MemoryBuffer
{
    public CLForeignBuffer(CLAccelerator accelerator, IntPtr memory, long length, int elementSize)
        : base(accelerator, length, elementSize) => NativePtr = memory;

    protected override void MemSet(AcceleratorStream stream, byte value, in ArrayView<byte> targetView) =>
        CLMemoryBuffer.CLMemSet((CLStream)stream, value, targetView);

    protected override void CopyFrom(AcceleratorStream stream, in ArrayView<byte> sourceView, in ArrayView<byte> targetView) =>
        CLMemoryBuffer.CLCopy((CLStream)stream, sourceView, targetView);

    protected override void CopyTo(AcceleratorStream stream, in ArrayView<byte> sourceView, in ArrayView<byte> targetView) =>
        CLMemoryBuffer.CLCopy((CLStream)stream, sourceView, targetView);

    protected override void DisposeAcceleratorObject(bool disposing) => NativePtr = IntPtr.Zero;
}
