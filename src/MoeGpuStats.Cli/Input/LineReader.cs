namespace MoeGpuStats.Cli.Input;

/// <summary>
/// A text file's lines as bytes, each with its number and where it starts, read forward from any line
/// start: a JSON-lines trace is indexed in one pass, then each forward pass is read again from its
/// offset. The buffer grows to the longest line, at most <see cref="MaxLineBytes"/>.
/// </summary>
internal sealed class LineReader : IDisposable
{
    /// <summary>The longest line read: a prefill of 64 Ki tokens of top-8 ids as JSON takes about 3 MiB.</summary>
    public const int MaxLineBytes = 256 << 20;

    private readonly FileStream _file;
    private readonly string _path;
    private byte[] _buffer = new byte[1 << 16];
    private int _begin;
    private int _filled;
    private long _bufferStart;
    private long _end;
    private bool _ended;

    /// <exception cref="IOException">The file cannot be opened.</exception>
    /// <exception cref="UnauthorizedAccessException">The file may not be read.</exception>
    public LineReader(string path)
    {
        _path = path;
        _file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0);
        Seek(0, long.MaxValue, 1);
    }

    /// <summary>The number of the line last read, from 1.</summary>
    public long Number { get; private set; }

    /// <summary>Where the line last read starts.</summary>
    public long Start { get; private set; }

    /// <summary>Whether the line last read ends the file without a newline: the last line of a log, or one still being written.</summary>
    public bool Unterminated { get; private set; }

    /// <summary>Where the line after the one last read starts (past its newline).</summary>
    public long Next => _bufferStart + _begin;

    /// <summary>Reads from <paramref name="start"/>, a line's start, up to <paramref name="end"/>; the first line read is number <paramref name="number"/>.</summary>
    public void Seek(long start, long end, long number)
    {
        _file.Position = start;
        _bufferStart = start;
        _begin = _filled = 0;
        _end = end;
        _ended = false;
        Number = number - 1;
    }

    /// <summary>The next line, without its line ending (and without a UTF-8 byte order mark on line 1); false at the end.</summary>
    /// <exception cref="InvalidDataException">A line longer than <see cref="MaxLineBytes"/>.</exception>
    public bool TryRead(out ReadOnlySpan<byte> line)
    {
        while (true)
        {
            var unread = _buffer.AsSpan(_begin, _filled - _begin);
            var newline = unread.IndexOf((byte)'\n');
            if (newline >= 0 || (_ended && !unread.IsEmpty))
            {
                var length = newline >= 0 ? newline : unread.Length;
                line = unread[..length];
                Start = Next;
                Unterminated = newline < 0;
                _begin += newline >= 0 ? length + 1 : length;
                Number++;
                line = line is [.., (byte)'\r'] ? line[..^1] : line;
                line = Start == 0 && line.StartsWith("\uFEFF"u8) ? line[3..] : line;
                return true;
            }

            if (_ended)
            {
                line = default;
                return false;
            }

            Fill();
        }
    }

    public void Dispose() => _file.Dispose();

    /// <summary>Moves the unread bytes to the front, grows the buffer if a line fills it, and reads more.</summary>
    private void Fill()
    {
        if (_begin > 0)
        {
            _buffer.AsSpan(_begin, _filled - _begin).CopyTo(_buffer);
            _bufferStart += _begin;
            _filled -= _begin;
            _begin = 0;
        }

        if (_filled == _buffer.Length)
        {
            if (_buffer.Length > MaxLineBytes)
            {
                throw new InvalidDataException($"{_path}:{Number + 1}: a line longer than {MaxLineBytes >> 20} MiB; split the forward pass into lines of fewer tokens.");
            }

            Array.Resize(ref _buffer, (int)Math.Min(_buffer.Length * 2L, MaxLineBytes + 1L));
        }

        var wanted = (int)Math.Min(_buffer.Length - _filled, _end - (_bufferStart + _filled));
        var read = wanted > 0 ? _file.Read(_buffer, _filled, wanted) : 0;
        _ended = read == 0;
        _filled += read;
    }
}
