using MoeGpuStats.Cli.Input;
using static MoeGpuStats.Tests.Support.NpyFile;

namespace MoeGpuStats.Tests.Cli.Input;

/// <summary><see cref="NpyIds"/>: reading steps, and the bounds and words around them.</summary>
public sealed partial class NpyIdsTests
{
    /// <summary>A step before the first or at the count is the caller's error, not a read past the data.</summary>
    [Fact]
    public void AStepOutsideTheFileIsAnArgumentError()
    {
        var path = _folder.WriteInt32("steps.npy", "2, 1, 2", [0, 1, 2, 3]);
        using var npy = NpyIds.Open(path, IdLayout.StepsTokensK);
        var step = new int[2];

        Assert.Throws<ArgumentOutOfRangeException>(() => npy.ReadStep(2, step));
        Assert.Throws<ArgumentOutOfRangeException>(() => npy.ReadStep(-1, step));
        Assert.Equal(1, npy.ReadStep(1, step));
        Assert.Equal([2, 3], step);
    }

    /// <summary>A file cut short after it was opened is named as changed, with the byte its step needed.</summary>
    [Fact]
    public void AFileCutShortDuringTheReplayIsNamedAsChanged()
    {
        var path = _folder.WriteInt32("cut.npy", "2, 1, 2", [0, 1, 2, 3]);
        using var npy = NpyIds.Open(path, IdLayout.StepsTokensK);
        var length = new FileInfo(path).Length;
        using (var file = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
        {
            file.SetLength(length - 1);
        }

        var error = Assert.Throws<InvalidDataException>(() => npy.ReadStep(1, new int[2]));
        Assert.Equal($"{path}: the file ended early (before byte {length:N0}); was it changed during the replay?", error.Message);
    }

    /// <summary>
    /// Ids at uint8's largest value are counted wherever they lie in a step read token by token into [layers, tokens,
    /// k]: each row's own, not the chunk's first.
    /// </summary>
    [Fact]
    public void UnsignedPaddingIsCountedInEveryRowOfAReorderedStep()
    {
        byte[] ids = [0, 1, 2, 3, 255, 255, 4, 255, 5, 6, 255, 7];
        var path = Write(Path.Combine(_folder.FullName, "padded.npy"), "|u1", "3, 2, 2", ids);
        using var npy = NpyIds.Open(path, IdLayout.Parse("tokens,layers,k"));

        var step = new int[12];
        npy.ReadStep(0, step);

        Assert.Equal([0, 1, 255, 255, 5, 6, 2, 3, 4, 255, 255, 7], step);
        Assert.Equal(4, npy.UnsignedMaxIds);
    }

    /// <summary>The words on unsigned padding: one id in the singular, none without a warning, and a largest id of 0 is no padding.</summary>
    [Fact]
    public void UnsignedPaddingIsToldInTheRightNumber()
    {
        Assert.Null(NpyIds.UnsignedPaddingWarning(0, "uint8", "255"));
        Assert.Equal(
            "warning: 1 id replayed is 255, the largest uint8, which -1 padding becomes when saved as uint8: if it is padding, save the ids in a signed type (int8 to int64); here it counts as that expert's, or as invalid past --experts.",
            NpyIds.UnsignedPaddingWarning(1, "uint8", "255"));
        Assert.StartsWith("warning: 2 ids replayed are 255, the largest uint8, which -1 padding becomes when saved as uint8: if they are padding", NpyIds.UnsignedPaddingWarning(2, "uint8", "255"));

        Assert.Null(NpyIds.UnsignedPaddingText("uint8", "255", 0));
        Assert.Null(NpyIds.UnsignedPaddingText("int8", null, -1));
        Assert.Equal("the largest uint8, which -1 padding becomes when saved as uint8", NpyIds.UnsignedPaddingText("uint8", "255", 255));
        Assert.Equal("the largest uint16, which -1 padding becomes when saved as uint16", NpyIds.UnsignedPaddingText("uint16", "65,535", -1));
    }

    /// <summary>Steps are counted in an int: 2^31 − 1 are read, 2^31 refused; -1 is as negative as any dimension; a 1-D shape is written as Python writes it.</summary>
    [Fact]
    public void TheBoundsOfAShapeAreExact()
    {
        const long Offset = 128;
        Assert.Equal(int.MaxValue, NpyIds.Validate("f.npy", [int.MaxValue, 1, 1], IdLayout.StepsTokensK, 1, Offset, Offset + int.MaxValue).Steps);
        var steps = Assert.Throws<InvalidDataException>(() => NpyIds.Validate("f.npy", [1L << 31, 1, 1], IdLayout.StepsTokensK, 1, Offset, Offset + (1L << 31)));
        Assert.Equal("f.npy: shape (2147483648, 1, 1) has 2,147,483,648 steps; replay reads at most 2,147,483,647.", steps.Message);

        Assert.Equal("f.npy: shape (-1, 4, 2): dimension -1 is negative.", Assert.Throws<InvalidDataException>(() => NpyIds.Validate("f.npy", [-1, 4, 2], IdLayout.StepsTokensK, 4, Offset, 1 << 20)).Message);
        Assert.StartsWith("f.npy: shape (4,) has 1 dimension;", Assert.Throws<InvalidDataException>(() => NpyIds.Validate("f.npy", [4], IdLayout.StepsTokensK, 4, Offset, 1 << 20)).Message);
    }
}
