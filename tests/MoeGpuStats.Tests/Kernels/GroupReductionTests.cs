using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Tests.Kernels;

/// <summary>The record kernel's group sum (GroupReduction), at group sizes a power of two and not.</summary>
public sealed class GroupReductionTests
{
    [Theory]
    [MemberData(nameof(TestAccelerators.Kinds), MemberType = typeof(TestAccelerators))]
    public void EveryThreadGetsTheSumOfTheGroup(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        var kernel = device.LoadKernel<ArrayView<long>, ArrayView<long>>(SumKernel);
        foreach (var groupSize in new[] { 1, 2, 3, 6, 7, 16, 100, 256 }.Where(n => n <= device.MaxNumThreadsPerGroup))
        {
            const int groups = 3;
            var values = Enumerable.Range(0, groups * groupSize).Select(i => (long)i * i + (1L << 33)).ToArray();
            using var input = device.Allocate1D(values);
            using var output = device.Allocate1D<long>(values.Length);
            kernel(device.DefaultStream, new KernelConfig(groups, groupSize), input.View, output.View);

            var expected = values.Chunk(groupSize).SelectMany(group => Enumerable.Repeat(group.Sum(), groupSize));
            Assert.Equal(expected, output.GetAsArray1D());
        }
    }

    private static void SumKernel(ArrayView<long> values, ArrayView<long> sums)
    {
        var partials = SharedMemory.Allocate<long>(RoutingRecordKernel.PreferredGroupSize);
        var index = Grid.GlobalIndex.X;
        sums[index] = GroupReduction.Sum(values[index], partials);
    }
}
