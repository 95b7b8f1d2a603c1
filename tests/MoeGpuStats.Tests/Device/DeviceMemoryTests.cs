using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>DeviceMemory: an allocation the device cannot hold says how much was asked for.</summary>
[UseCulture("sv-SE")]
public sealed class DeviceMemoryTests
{
    [Fact]
    public void AnImpossibleAllocationSaysHowMuchWasAskedFor()
    {
        var device = TestAccelerators.Require("cpu");
        var error = Assert.Throws<InsufficientMemoryException>(() => DeviceMemory.Allocate<ulong>(device, 1L << 50, "a test"));
        Assert.Contains("9,007,199,254,740,992 bytes", error.Message);
        Assert.Contains("a test", error.Message);
        // In words every caller shares: the values' size, not .NET's name of their type (UInt64), which the C API passes on.
        Assert.Contains("(1,125,899,906,842,624 values of 8 bytes)", error.Message);
    }
}
