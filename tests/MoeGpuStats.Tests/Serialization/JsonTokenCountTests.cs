using System.Text.Json;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Tests.Serialization;

/// <summary>The count of a value's JSON tokens, bounded at 33,554,432 (2^25), that keeps a document of it small.</summary>
public sealed class JsonTokenCountTests
{
    /// <summary>The bound, as its own figure (2^25): <see cref="RoutingStatsFile.MaxJsonTokens"/> is the one under test.</summary>
    private const long Bound = 33_554_432;

    /// <summary>
    /// An array of <c>n</c> numbers is <c>n + 2</c> tokens (its start, the numbers, its end): 2^25 tokens are within the
    /// bound, one more is past it, whether the reader starts before the value or at its first token.
    /// </summary>
    [Theory]
    [InlineData(Bound - 2, false)]
    [InlineData(Bound - 1, true)]
    public void TheBoundIsOnTheTokensOfTheWholeValue(long numbers, bool exceeds)
    {
        var json = Zeros(numbers);

        Assert.Equal(exceeds, JsonTokenCount.ExceedsSnapshot(json));
        var reader = new Utf8JsonReader(json);
        Assert.True(reader.Read());
        Assert.Equal(exceeds, JsonTokenCount.ExceedsSnapshot(reader));
        Assert.Equal(JsonTokenType.StartArray, reader.TokenType);
    }

    /// <summary>
    /// Only the value the reader is at counts: a small object within a document of more tokens than the bound, as a
    /// converter's reader holds it, is within it; the tokens after its end are another value's.
    /// </summary>
    [Fact]
    public void TheTokensAfterTheValueDoNotCount()
    {
        var zeros = Zeros(Bound);
        var json = new byte[zeros.Length + 4];
        "[{},"u8.CopyTo(json);
        zeros.AsSpan(1).CopyTo(json.AsSpan(4));
        var reader = new Utf8JsonReader(json);
        Assert.True(reader.Read());
        Assert.True(reader.Read());
        Assert.Equal(JsonTokenType.StartObject, reader.TokenType);

        Assert.False(JsonTokenCount.ExceedsSnapshot(reader));
        Assert.True(JsonTokenCount.ExceedsSnapshot(json));
    }

    /// <summary><c>[0,0,…]</c> of <paramref name="numbers"/> zeros, as UTF-8.</summary>
    private static byte[] Zeros(long numbers)
    {
        var json = new byte[(2 * numbers) + 1];
        json.AsSpan().Fill((byte)',');
        for (var i = 1L; i < json.Length; i += 2)
        {
            json[i] = (byte)'0';
        }

        json[0] = (byte)'[';
        json[^1] = (byte)']';
        return json;
    }
}
