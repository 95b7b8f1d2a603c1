using System.Text;
using System.Text.Json;

namespace MoeGpuStats.Cli.Output;

/// <summary>A JSON writer whose output goes on to a <see cref="TextWriter"/> each time it is drained.</summary>
internal sealed class JsonOut : IDisposable
{
    private readonly TextWriter _output;
    private readonly MemoryStream _buffer = new();

    public JsonOut(TextWriter output)
    {
        _output = output;
        Writer = new Utf8JsonWriter(_buffer);
    }

    public Utf8JsonWriter Writer { get; }

    // What a drain of a long output's pieces waits for: standard output writes through at each write, a system call,
    // and a plan's logical_to_physical has up to 67 million entries, too many for a write each.
    private const int Chunk = 1 << 20;

    /// <summary>Passes on what was written so far once it holds <see cref="Chunk"/> bytes or more (<see cref="Drain"/>).</summary>
    public void DrainWhenFull()
    {
        if (Writer.BytesPending + _buffer.Length >= Chunk)
        {
            Drain();
        }
    }

    /// <summary>Passes on what was written so far; everything written is ASCII, so no character is split.</summary>
    public void Drain()
    {
        Writer.Flush();
        _output.Write(Encoding.UTF8.GetString(_buffer.GetBuffer(), 0, (int)_buffer.Length));
        _buffer.SetLength(0);
        _buffer.Position = 0;
    }

    public void Dispose()
    {
        Writer.Dispose();
        _buffer.Dispose();
    }
}
