using MoeGpuStats.Kernels;

namespace MoeGpuStats.Tests.Kernels;

/// <summary>
/// The record kernel's grid rule on an H100's shape (132 multiprocessors holding 8 groups of 256
/// threads each): groups and flush copies by batch size and expert count.
/// </summary>
public sealed class CountingGridTests
{
    private const int Multiprocessors = 132;
    private const int Wave = Multiprocessors * 8;

    private static CountingGrid Grid(int idsPerBin) =>
        new(new RecordKernelPolicy { IdsPerBin = idsPerBin }, groupSize: 256, Multiprocessors, Wave);

    [Theory]
    [InlineData(1 << 15, 256, 32)]              // a small batch: a group per 4 ids per thread, fewer than the multiprocessors
    [InlineData(1 << 20, 256, 256)]             // 16 ids per thread
    [InlineData(1 << 24, 256, Wave - 1)]        // 16 ids per thread would take 4,096 groups: one wave, less the folding group
    [InlineData(1 << 24, 1024, 1024)]           // 16 ids per expert: 16,384 ids a group
    [InlineData(1 << 24, 4096, 256)]            // 65,536 ids a group: 256 per thread
    [InlineData(1 << 20, 4096, Multiprocessors)] // 16 groups of 65,536 ids; a group per multiprocessor first
    [InlineData(1L << 27, 4096, Wave - 1)]      // 2,048 groups of 65,536 ids would not fit one wave
    public void LargeExpertCountsTakeMoreIdsPerGroup(long ids, int experts, int groups) =>
        Assert.Equal(groups, Grid(RecordKernelPolicy.DefaultIdsPerBin).Groups(ids, experts, reserved: 1));

    [Fact]
    public void NoIdsPerBinBoundIsTheRuleByIdsPerThreadAlone()
    {
        Assert.Equal(Wave, Grid(idsPerBin: 0).Groups(1 << 24, 4096, reserved: 0));
        Assert.Equal(Wave, Grid(RecordKernelPolicy.DefaultIdsPerBin).Groups(1 << 24, 256, reserved: 0));
    }

    [Theory]
    [InlineData(Wave, 256, RoutingStateLayout.MaxCopies)] // 16 copies of 256 counts fill a buffer
    [InlineData(Wave, 1024, 4)]
    [InlineData(Wave, 4096, 1)]
    [InlineData(100, 64, 1)]                            // fewer groups than one copy's share
    [InlineData(200, 64, 3)]
    public void CopiesAreOnePerGroupsPerCopyAtMostWhatABufferHolds(int groups, int experts, int copies) =>
        Assert.Equal(copies, Grid(RecordKernelPolicy.DefaultIdsPerBin).Copies(groups, experts));
}
