using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Tests.Kernels;

/// <summary>IdAlignment: where a view's 128-bit loads can start.</summary>
public sealed class IdAlignmentTests
{
    /// <summary>The aligned start is the first id whose address is a multiple of 16 bytes, or the length where no id's is.</summary>
    [Fact]
    public void TheAlignedStartIsTheFirstIdOnASixteenByteBoundary()
    {
        var device = TestAccelerators.Require("cpu");
        using var buffer = device.Allocate1D<int>(64);
        foreach (var start in Enumerable.Range(0, 8))
        {
            foreach (var length in new[] { 0, 1, 2, 3, 4, 10 })
            {
                ArrayView<int> view = buffer.View.SubView(start, length);
                var aligned = IdAlignment.AlignedStart(device, view);
                var address = view.LoadEffectiveAddressAsPtr().ToInt64();
                Assert.InRange(aligned, 0, Math.Min(3, length));
                Assert.All(Enumerable.Range(0, aligned), id => Assert.NotEqual(0, (address + id * sizeof(int)) % 16));
                Assert.True(aligned == length || (address + aligned * sizeof(int)) % 16 == 0, $"{length} ids from {start}: start {aligned}");
            }
        }
    }
}
