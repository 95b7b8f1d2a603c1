using System.IO.Compression;
using System.IO.Hashing;
using Microsoft.Win32.SafeHandles;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// Where the bytes of one .npy array come from: a file, or a member of an .npz archive. Readers ask
/// for them in increasing positions (header, then steps in order), which a compressed member needs.
/// </summary>
internal abstract class NpyBytes : IDisposable
{
    /// <summary>The array's length in bytes, as the file system or the archive's directory says.</summary>
    public abstract long Length { get; }

    /// <summary>Reads from <paramref name="position"/> until <paramref name="destination"/> is full or the bytes end; returns the bytes read.</summary>
    /// <exception cref="InvalidDataException">A corrupt archive member; the message names it.</exception>
    public abstract int Read(Span<byte> destination, long position);

    /// <summary>Why the bytes ended before <paramref name="position"/>, in one line naming the file.</summary>
    public abstract string EndedEarly(long position);

    public abstract void Dispose();
}

/// <summary>A .npy file, read at any offset.</summary>
internal sealed class NpyFileBytes(SafeFileHandle file, string path) : NpyBytes
{
    public override long Length { get; } = RandomAccess.GetLength(file);

    public override int Read(Span<byte> destination, long position) => NpyHeader.ReadFully(file, destination, position);

    public override string EndedEarly(long position) =>
        $"{path}: the file ended early (before byte {position:N0}); was it changed during the replay?";

    public override void Dispose() => file.Dispose();
}

/// <summary>
/// A member of an .npz archive, stored or deflated: its stream goes forward only, so a read behind
/// the stream's position opens the member again, and one ahead of it skips. <see cref="Close"/> ends
/// the stream (a deflated one holds a decoder's state) until the next read. The bytes are checked
/// against the CRC-32 the archive keeps for the member when a read reaches the member's end (a zip
/// reader does not check it: a flipped byte in a stored member would otherwise change an id silently).
/// </summary>
internal sealed class NpzMemberBytes(ZipArchiveEntry entry, string name) : NpyBytes
{
    // Where skipped bytes go: never read, so replays on several threads (the tests) may share it.
    private static readonly byte[] Skipped = new byte[1 << 16];
    private readonly Crc32 _crc = new();
    private Stream? _stream;
    private long _position;

    public override long Length => entry.Length;

    public override int Read(Span<byte> destination, long position)
    {
        var read = ReadStream(destination, position);
        if (_position == entry.Length && _crc.GetCurrentHashAsUInt32() is var crc && crc != entry.Crc32)
        {
            throw new InvalidDataException(
                $"{name}: the member's bytes have CRC-32 {crc:x8}, the archive says {entry.Crc32:x8}: the archive is corrupt.");
        }

        return read;
    }

    public override string EndedEarly(long position) =>
        $"{name}: the member ended before byte {position:N0}, which its header needs: the archive is truncated or corrupt.";

    /// <summary>
    /// Reads the whole member, for the reason a member that could not be read as a .npy array failed: the
    /// corruption its CRC-32 (or its deflate stream) shows, as a message; null where the bytes are intact.
    /// A flipped byte in deflated data inflates to other bytes, which would otherwise read as a garbled header.
    /// </summary>
    public static string? Corruption(ZipArchiveEntry entry, string name)
    {
        using var bytes = new NpzMemberBytes(entry, name);
        var buffer = new byte[1 << 16];
        try
        {
            for (long position = 0; position < entry.Length; position += buffer.Length)
            {
                var wanted = (int)Math.Min(buffer.Length, entry.Length - position);
                if (bytes.Read(buffer.AsSpan(0, wanted), position) is var read && read < wanted)
                {
                    return bytes.EndedEarly(position + read + 1);
                }
            }
        }
        catch (InvalidDataException exception)
        {
            return exception.Message;
        }

        return null;
    }

    public void Close()
    {
        _stream?.Dispose();
        _stream = null;
    }

    public override void Dispose() => Close();

    private int ReadStream(Span<byte> destination, long position)
    {
        try
        {
            if (_stream is null || position < _position)
            {
                Close();
                _stream = entry.Open();
                _position = 0;
                _crc.Reset();
            }

            while (_position < position && _stream.Read(Skipped.AsSpan(0, (int)Math.Min(Skipped.Length, position - _position))) is var skipped and > 0)
            {
                Advance(Skipped.AsSpan(0, skipped));
            }

            if (_position < position)
            {
                return 0;
            }

            var read = _stream.ReadAtLeast(destination, destination.Length, throwOnEndOfStream: false);
            Advance(destination[..read]);
            return read;
        }
        catch (InvalidDataException exception)
        {
            // A broken deflate stream, a corrupt local header or an unsupported compression method:
            // .NET may call a corrupt deflate stream an unsupported method, so the line says both.
            throw new InvalidDataException($"{name}: cannot read the member: the archive is corrupt, or compressed otherwise than np.savez does ({ErrorText.Clause(exception)}).", exception);
        }
    }

    private void Advance(ReadOnlySpan<byte> bytes)
    {
        _crc.Append(bytes);
        _position += bytes.Length;
    }
}
