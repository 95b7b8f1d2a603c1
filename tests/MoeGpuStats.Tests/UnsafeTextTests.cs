using System.Text;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Native;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Tests;

/// <summary>What a terminal acts on, escaped one way wherever a message echoes a caller's or a file's text.</summary>
public sealed class UnsafeTextTests
{
    [Theory]
    [InlineData("plain text", "plain text")]
    [InlineData("a\r\tb\u001b[31m\n", @"a\r\tb\u001b[31m\n")]
    [InlineData("\0x\u007f", @"\u0000x\u007f")]
    [InlineData("a\u009bb\u202ec\u2066d\u2028e\u2029", @"a\u009bb\u202ec\u2066d\u2028e\u2029")]
    [InlineData("naïve \U0001F600 \u05d0\u200f", "naïve \U0001F600 \u05d0\u200f")]
    public void EachUnsafeCharacterIsWrittenAsAStringEscapesIt(string text, string shown) =>
        Assert.Equal(shown, UnsafeText.Escaped(text));

    /// <summary>Every character in UTF-16: an unsafe one is escaped to six ASCII characters (or its two-letter escape), any other kept.</summary>
    [Fact]
    public void EveryCharacterIsKeptOrEscapedToPrintableAscii()
    {
        for (var c = char.MinValue; c < char.MaxValue; c++)
        {
            var shown = UnsafeText.Escaped(c.ToString());
            if (!UnsafeText.IsUnsafe(c))
            {
                Assert.Equal(c.ToString(), shown);
                continue;
            }

            Assert.Equal(c is '\n' or '\r' or '\t' ? 2 : 6, shown.Length);
            Assert.All(shown, s => Assert.True(char.IsAsciiLetterOrDigit(s) || s == '\\', $"U+{(int)c:X4} shown as {shown}"));
            Assert.Equal(shown, UnsafeText.Escaped(shown));
        }
    }

    /// <summary>
    /// The kind: the command line's errors, the C API's echo of a caller's text, a JSON value in a snapshot's message and
    /// a .npy header's text show the same characters alike, not four ways ('?', <c>\x1b</c>, <c>\u001b</c>).
    /// </summary>
    [Fact]
    public void EveryMessageEscapesAlike()
    {
        const string Text = "a\u009bb\u202ec\u2066d";
        var shown = UnsafeText.Escaped(Text);

        Assert.Equal(shown, ErrorText.Of(new IOException(Text)));
        Assert.Equal(shown, NativeChecks.Escaped(Text));
        Assert.Equal(shown, NpyHeader.Printable(Text));
        Assert.Equal(shown, JsonText.Printable(Encoding.UTF8.GetBytes(Text)));
        Assert.Equal($"\"{shown}\"", JsonShown.Text(Encoding.UTF8.GetBytes($"\"{Text}\"")));

        const string Controls = "x\n\u001b[0m\ty";
        Assert.Equal(@"x\n\u001b[0m\ty", ErrorText.Of(new InvalidDataException(Controls)));
        Assert.Equal(@"x\n\u001b[0m\ty", NativeChecks.Escaped(Controls));
        Assert.Equal(@"x\n\u001b[0m\ty", NpyHeader.Printable(Controls));
    }
}
