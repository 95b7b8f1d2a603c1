using MoeGpuStats.Serialization;

namespace MoeGpuStats.Tests.Serialization;

/// <summary>The compressors a refused file's first bytes name, and none for text or arrays.</summary>
public sealed class CompressedDataTests
{
    [Theory]
    [InlineData(new byte[] { 0x1F, 0x8B, 0x08, 0x00 }, " (it is gzip-compressed: decompress it first)")]
    [InlineData(new byte[] { 0x28, 0xB5, 0x2F, 0xFD, 0x20 }, " (it is zstd-compressed: decompress it first)")]
    [InlineData(new byte[] { 0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00 }, " (it is xz-compressed: decompress it first)")]
    [InlineData(new byte[] { 0x42, 0x5A, 0x68, 0x39 }, " (it is bzip2-compressed: decompress it first)")]
    [InlineData(new byte[] { 0x1F }, "")]
    [InlineData(new byte[] { 0x7B, 0x22 }, "")]
    [InlineData(new byte[] { 0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59 }, "")]
    [InlineData(new byte[] { 0x28, 0xB5, 0x2F, 0x00 }, "")]
    [InlineData(new byte[] { 0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x01 }, "")]
    [InlineData(new byte[] { 0x42, 0x5A, 0x30, 0x39 }, "")]
    public void TheFirstBytesNameTheCompression(byte[] start, string hint) => Assert.Equal(hint, CompressedData.Hint(start));
}
