namespace MoeGpuStats.Native;

/// <summary>Status codes of the C API (include/moegs.h).</summary>
internal static class NativeStatus
{
    public const int Ok = 0;
    public const int InvalidArgument = 1;
    public const int InvalidHandle = 2;
    public const int NoDevice = 3;
    public const int DeviceError = 4;
    public const int RuntimeError = 5;
    public const int IoError = 6;
}
