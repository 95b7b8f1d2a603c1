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

    /// <summary>
    /// An OpenCL CPU device (PoCL) lends host memory as ILGPU's CPU accelerator does (it reports the host's memory as its
    /// own), and the state's zeroing touches it page by page: a buffer of more than the memory the process has left is
    /// refused before the driver sees it, naming the memory left. The buffer here is 1 GiB past what is left, which PoCL
    /// on the dev machine also refuses itself (with its own error) as beyond its largest allocation.
    /// </summary>
    [Fact]
    public void AnOpenClCpuDeviceRefusesMoreThanTheHostMemoryLeft()
    {
        var device = TestAccelerators.Require("opencl");
        Assert.SkipUnless(DeviceMemory.TakesHostMemory(device), $"The OpenCL device here ({device.Name}) is no CPU: its memory is its own.");
        var left = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes - Environment.WorkingSet;
        var bytes = left + (1L << 30);

        var error = Assert.Throws<InsufficientMemoryException>(() => DeviceMemory.Allocate<byte>(device, bytes, "a test"));
        Assert.Contains("this process has left of the host's memory", error.InnerException!.Message);
    }

    /// <summary>
    /// A model's state is checked in all before its first buffer (its buffers are zeroed after the last is made, so
    /// each buffer's own check would pass buffers that only together pass the memory left). No model the options allow
    /// passes this machine's memory (the largest takes about 9 GB), so the check is driven directly here.
    /// </summary>
    [Fact]
    public void AStateBeyondTheHostMemoryLeftIsRefusedInAll()
    {
        var device = TestAccelerators.Require("cpu");
        DeviceMemory.CheckHostMemory(device, 1L << 20, "a test");
        var left = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes - Environment.WorkingSet;

        var error = Assert.Throws<InsufficientMemoryException>(() => DeviceMemory.CheckHostMemory(device, left + (1L << 30), "a test"));
        Assert.Contains("for a test", error.Message);
        Assert.Contains("this process has left of the host's memory", error.InnerException!.Message);
    }
}
