using MoeGpuStats.Serialization;

namespace MoeGpuStats.Tests.Serialization;

/// <summary>A stream read whole up to a bound: refused by its length before reading, and by what it gives while reading.</summary>
public sealed class BoundedReadTests
{
    private const int Most = 200_000;

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(Most)]
    public void AStreamUpToTheBoundIsReadWhole(int bytes)
    {
        var data = Enumerable.Range(0, bytes).Select(i => (byte)(i * 7)).ToArray();

        Assert.Equal(data, BoundedRead.All(new MemoryStream(data), Most, Refused).ToArray());
        Assert.Equal(data, BoundedRead.All(new Unseekable(data), Most, Refused).ToArray());
    }

    [Fact]
    public void AStreamPastTheBoundIsRefusedByItsLengthBeforeAnyRead()
    {
        var stream = new CountingStream(new byte[Most + 1], reportedLength: Most + 1);

        var refused = Assert.Throws<InvalidDataException>(() => BoundedRead.All(stream, Most, Refused));

        Assert.Equal("200,001 bytes", refused.Message);
        Assert.Equal(0, stream.BytesRead);
    }

    /// <summary>A file that grew after its length was asked, and a pipe that has none: refused once the bytes pass the bound, not read to their end.</summary>
    [Fact]
    public void AStreamWhoseLengthUnderstatesOrIsUnknownIsRefusedOnceItsBytesPassTheBound()
    {
        var grown = new CountingStream(new byte[4 * Most], reportedLength: 10);
        Assert.Equal("more than 200,000 bytes", Assert.Throws<InvalidDataException>(() => BoundedRead.All(grown, Most, Refused)).Message);
        Assert.InRange(grown.BytesRead, Most + 1, Most + 81920);

        Assert.Equal("more than 200,000 bytes", Assert.Throws<InvalidDataException>(() => BoundedRead.All(new Unseekable(new byte[Most + 1]), Most, Refused)).Message);
    }

    [Fact]
    public void ABoundNoArrayHoldsIsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => BoundedRead.All(new MemoryStream(), -1, Refused));
        Assert.Throws<ArgumentOutOfRangeException>(() => BoundedRead.All(new MemoryStream(), (long)Array.MaxLength + 1, Refused));
    }

    private static InvalidDataException Refused(string size) => new(size);

    /// <summary>A stream that says it has <c>reportedLength</c> bytes, whatever it holds, and counts what is read of it.</summary>
    private sealed class CountingStream(byte[] data, long reportedLength) : MemoryStream(data)
    {
        public long BytesRead { get; private set; }

        public override long Length => reportedLength;

        public override int Read(Span<byte> buffer)
        {
            var read = base.Read(buffer);
            BytesRead += read;
            return read;
        }
    }

    /// <summary>A pipe: no length, no seeking.</summary>
    private sealed class Unseekable(byte[] data) : MemoryStream(data)
    {
        public override bool CanSeek => false;

        public override long Length => throw new NotSupportedException();
    }
}
