using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace MoeGpuStats.Device;

/// <summary>Device allocation whose failure says what was asked for and why.</summary>
internal static class DeviceMemory
{
    public static MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(Accelerator accelerator, long length, string purpose)
        where T : unmanaged
    {
        try
        {
            return accelerator.Allocate1D<T>(length);
        }
        catch (Exception exception) when (exception is OutOfMemoryException or AcceleratorException or ArgumentOutOfRangeException or OverflowException)
        {
            var bytes = length * Unsafe.SizeOf<T>();
            throw new InsufficientMemoryException(
                $"Could not allocate {bytes:N0} bytes ({length:N0} x {typeof(T).Name}) on '{accelerator.Name}' for {purpose}.",
                exception);
        }
    }
}
