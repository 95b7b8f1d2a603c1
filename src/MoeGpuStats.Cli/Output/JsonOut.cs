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
