using System.Text;
using System.Text.Json;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Tests.Serialization;

/// <summary>How a message shows a value of the file: its kind, or its first 40 characters as written.</summary>
public sealed class JsonShownTests
{
    /// <summary>An array or an object by its kind and size, each by its own noun; a string, number or literal as written.</summary>
    [Theory]
    [InlineData("{\"a\":1,\"b\":[2,3]}", "an object of 2 fields")]
    [InlineData("{\"a\":1}", "an object of 1 field")]
    [InlineData("[1,[2,3],{}]", "an array of 3 values")]
    [InlineData("[0]", "an array of 1 value")]
    [InlineData("\"abc\"", "\"abc\"")]
    [InlineData("-1.5e3", "-1.5e3")]
    [InlineData("true", "true")]
    [InlineData("null", "null")]
    public void AValueIsShownByItsKindAndSizeOrAsWritten(string json, string shown)
    {
        using var document = JsonDocument.Parse(json);
        Assert.Equal(shown, JsonShown.Value(document.RootElement));
    }

    /// <summary>Each kind in its phrase: the structures and the types with an article, the literals bare and each its own.</summary>
    [Theory]
    [InlineData(JsonValueKind.Object, "an object")]
    [InlineData(JsonValueKind.Array, "an array")]
    [InlineData(JsonValueKind.String, "a string")]
    [InlineData(JsonValueKind.Number, "a number")]
    [InlineData(JsonValueKind.True, "true")]
    [InlineData(JsonValueKind.False, "false")]
    [InlineData(JsonValueKind.Null, "null")]
    public void EachKindHasItsPhrase(JsonValueKind kind, string phrase) => Assert.Equal(phrase, JsonShown.Kind(kind));

    /// <summary>
    /// Text of 40 characters is shown whole; one more, and the first 40 are shown with "...". Characters of 3 bytes are
    /// counted as characters, and a surrogate pair is never cut in half (the cut falls before it, 39 characters).
    /// </summary>
    [Theory]
    [InlineData(40, "a", 40, "")]
    [InlineData(41, "a", 40, "...")]
    [InlineData(41, "\u20ac", 40, "...")]
    [InlineData(50, "\u20ac", 40, "...")]
    public void TextIsShownToItsFirst40Characters(int count, string character, int shownCount, string ellipsis)
    {
        var text = string.Concat(Enumerable.Repeat(character, count));
        Assert.Equal(string.Concat(Enumerable.Repeat(character, shownCount)) + ellipsis, JsonShown.Text(Encoding.UTF8.GetBytes(text)));
    }

    /// <summary>A surrogate pair that the 40th character would split is left out whole: "n" and 19 pairs, 39 characters.</summary>
    [Fact]
    public void ASurrogatePairIsNeverCutInHalf()
    {
        const string Pair = "\U0001F600";
        var text = "n" + string.Concat(Enumerable.Repeat(Pair, 30));

        var shown = JsonShown.Text(Encoding.UTF8.GetBytes(text));

        Assert.Equal("n" + string.Concat(Enumerable.Repeat(Pair, 19)) + "...", shown);
        Assert.False(char.IsHighSurrogate(shown[^4]));
    }
}
