using ILGPU;
using ILGPU.Runtime;

namespace MoeGpuStats.Kernels;

/// <summary>
/// Where a view of ids reaches a 16-byte boundary, found on the host: ILGPU 1.5.3 gives a kernel no
/// address (<c>LoadEffectiveAddressAsPtr</c> is host-only) and its <c>AlignTo</c> emits PTX that
/// ptxas rejects.
/// </summary>
internal static class IdAlignment
{
    /// <summary>The index of the first id of <paramref name="ids"/> on a 16-byte boundary, 0 to 3, at most the length.</summary>
    public static int AlignedStart(Accelerator accelerator, ArrayView<int> ids)
    {
        // OpenCL passes a kernel the buffer and the view's index, not an address; its buffers start
        // at CL_DEVICE_MEM_BASE_ADDR_ALIGN (128 bytes or more), so the index decides there.
        var offset = accelerator.AcceleratorType == AcceleratorType.OpenCL ? IndexInBytes(ids) : ids.LoadEffectiveAddressAsPtr().ToInt64();
        return (int)Math.Min((16 - offset % 16) % 16 / sizeof(int), ids.Length);
    }

    /// <summary>The view's offset into its buffer, read through the interface without boxing the view.</summary>
    private static long IndexInBytes<TView>(TView view)
        where TView : IContiguousArrayView => view.IndexInBytes;
}
