using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// A model's window load (<c>replay --window-load</c>) as the load matrix <c>plan</c> reads:
/// <c>[layers, experts]</c> int64, as <c>.npy</c> (what <c>np.load</c> and vLLM's rebalancer take) or
/// as a JSON array of arrays, by the name's extension. Written atomically.
/// </summary>
internal static class WindowLoadFile
{
    /// <summary>Why <paramref name="path"/>'s name says no format written here, or null.</summary>
    public static string? FormatProblem(string path) => IsNpy(path) || IsJson(path)
        ? null
        : "the window load is written as NumPy (.npy) or JSON (.json); give a name ending in one of those.";

    /// <param name="path">The file, ending in .npy or .json.</param>
    /// <param name="load">Row-major <c>[layers, experts]</c>, as <see cref="ModelRoutingStats.WindowLoad()"/>.</param>
    /// <param name="layers">Rows.</param>
    /// <param name="experts">Columns.</param>
    public static void Save(string path, ulong[] load, int layers, int experts) =>
        OutputPath.WriteAtomically(path, stream =>
        {
            if (IsNpy(path))
            {
                WriteNpy(stream, load, layers, experts);
            }
            else
            {
                WriteJson(stream, load, layers, experts);
            }
        });

    private static bool IsNpy(string path) => Path.GetExtension(path).Equals(".npy", StringComparison.OrdinalIgnoreCase);

    private static bool IsJson(string path) => Path.GetExtension(path).Equals(".json", StringComparison.OrdinalIgnoreCase);

    /// <summary>Format version 1.0, as <c>np.save</c> writes it: the header padded with spaces so the data starts 64-byte aligned.</summary>
    private static void WriteNpy(Stream stream, ulong[] load, int layers, int experts)
    {
        var header = string.Create(CultureInfo.InvariantCulture, $"{{'descr': '<i8', 'fortran_order': False, 'shape': ({layers}, {experts}), }}");
        const int preamble = 10;
        header += new string(' ', (64 - ((preamble + header.Length + 1) % 64)) % 64) + "\n";
        stream.Write([0x93, .. "NUMPY"u8, 1, 0]);
        Span<byte> word = stackalloc byte[sizeof(long)];
        BinaryPrimitives.WriteUInt16LittleEndian(word, (ushort)header.Length);
        stream.Write(word[..sizeof(ushort)]);
        stream.Write(Encoding.ASCII.GetBytes(header));
        foreach (var value in load)
        {
            // A window's slots are at most Window x tokens x k, far below 2^63.
            BinaryPrimitives.WriteInt64LittleEndian(word, checked((long)value));
            stream.Write(word);
        }
    }

    private static void WriteJson(Stream stream, ulong[] load, int layers, int experts)
    {
        using var writer = new Utf8JsonWriter(stream);
        writer.WriteStartArray();
        for (var layer = 0; layer < layers; layer++)
        {
            writer.WriteStartArray();
            foreach (var value in load.AsSpan(layer * experts, experts))
            {
                writer.WriteNumberValue(value);
            }

            writer.WriteEndArray();
        }

        writer.WriteEndArray();
    }
}
