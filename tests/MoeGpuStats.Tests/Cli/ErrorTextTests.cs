using MoeGpuStats.Cli;

namespace MoeGpuStats.Tests.Cli;

/// <summary>ErrorText: the library's messages as <c>moegs</c> prints them.</summary>
public sealed class ErrorTextTests
{
    [Fact]
    public void LibraryMessagesLoseTheirParameterNames()
    {
        Assert.Equal("The snapshots differ.", ErrorText.Of(new ArgumentException("The snapshots differ.", "parts")));
        Assert.Equal("Too many.", ErrorText.Of(new ArgumentOutOfRangeException("tokens", 7, "Too many.")));
        Assert.Equal("Plain.", ErrorText.Of(new InvalidOperationException("Plain.")));
    }
}
