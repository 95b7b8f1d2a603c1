using System.Text;

namespace MoeGpuStats.Tests;

/// <summary>Text cut short for a message: as written up to the most shown, then a prefix and "...", never half a surrogate pair.</summary>
public sealed class ShortTextTests
{
    private static readonly Encoding StrictUtf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    [Theory]
    [InlineData("", 4, "")]
    [InlineData("abcd", 4, "abcd")]
    [InlineData("abcde", 4, "abcd...")]
    [InlineData("abc\U0001F600", 5, "abc\U0001F600")]
    [InlineData("abc\U0001F600", 4, "abc...")]
    [InlineData("abc\U0001F600x", 4, "abc...")]
    [InlineData("ab\U0001F600x", 4, "ab\U0001F600...")]
    public void TextIsCutAfterTheMostShownOrBeforeAPairItWouldPart(string text, int most, string shown) =>
        Assert.Equal(shown, ShortText.Of(text, most));

    /// <summary>Every cut of text mixing one- and two-unit characters is a prefix of whole characters that UTF-8 encodes, as long as it may be.</summary>
    [Fact]
    public void EveryCutIsWholeCharacters()
    {
        var random = new Random(7);
        var text = string.Concat(Enumerable.Range(0, 60).Select(_ => random.Next(3) == 0 ? "\U0001F600" : ((char)('a' + random.Next(26))).ToString()));
        for (var most = 2; most <= text.Length + 1; most++)
        {
            var shown = ShortText.Of(text, most);
            if (text.Length <= most)
            {
                Assert.Equal(text, shown);
                continue;
            }

            var kept = shown[..^3];
            Assert.Equal("...", shown[^3..]);
            Assert.StartsWith(kept, text, StringComparison.Ordinal);
            Assert.Equal(char.IsHighSurrogate(text[most - 1]) ? most - 1 : most, kept.Length);
            _ = StrictUtf8.GetBytes(kept);
        }
    }
}
