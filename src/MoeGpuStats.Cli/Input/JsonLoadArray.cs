using System.Text.Json;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// A load matrix written as a JSON array: <c>[[l0e0, l0e1, ...], ...]</c> for <c>[layers, experts]</c>, or a flat
/// <c>[e0, e1, ...]</c> for one layer. Read token by token in two passes: the first measures the shape without keeping
/// anything, so that a shape no plan takes is refused before a matrix of its size is allocated; the second fills the
/// matrix. A document of the file would hold 12 bytes a value before either check.
/// </summary>
internal static class JsonLoadArray
{
    /// <summary>The loads in <paramref name="json"/>, JSON whose root is an array.</summary>
    /// <param name="json">The file's bytes.</param>
    /// <param name="path">The file, as the messages name it.</param>
    /// <param name="column">What a column counts, for the messages: "expert", or "slot" for a load per physical slot.</param>
    /// <param name="checkShape">Refuses a shape (layers, columns) no plan takes; called before the matrix is allocated.</param>
    /// <exception cref="JsonException">The file is not JSON.</exception>
    /// <exception cref="InvalidDataException">No loads, a ragged or mixed array, or a value that is not a whole number from 0 to 2^63 − 1; the message names <paramref name="path"/> and where.</exception>
    public static long[,] Read(ReadOnlySpan<byte> json, string path, string column, Action<long, long> checkShape)
    {
        var (layers, columns, oneLayer) = Shape(json, path, column, checkShape);
        var loads = new long[layers, columns];
        var reader = new Utf8JsonReader(json);
        reader.Read();
        for (var layer = 0; layer < layers; layer++)
        {
            if (!oneLayer)
            {
                reader.Read();
            }

            for (var e = 0; e < columns; e++)
            {
                reader.Read();
                if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out loads[layer, e]))
                {
                    // A whole number in float form (1.0, 1e3, as json.dump of a float tensor writes) is refused too,
                    // so the message says how to write one; an integer beyond long's range has no such form to blame.
                    var where = oneLayer ? $"load {e}" : $"row {layer}, load {e}";
                    var form = reader.TokenType == JsonTokenType.Number ? JsonText.FloatFormHint(reader.ValueSpan) : "";
                    throw new InvalidDataException($"{path}: {where} is {JsonText.RawValue(ref reader, json)}; loads are whole numbers from 0 to {long.MaxValue:N0}{form}.");
                }
            }

            if (!oneLayer)
            {
                reader.Read();
            }
        }

        return loads;
    }

    /// <summary>
    /// The matrix's shape, from a pass over the whole document that keeps no value: an array of arrays is
    /// <c>[rows, row 0's length]</c>, any other array one layer. Refused in this order: JSON broken anywhere
    /// (<see cref="JsonException"/>), no loads, a shape no plan takes (many rows are most likely a trace of ids, which
    /// that message names), a row that is not an array or not as long as row 0.
    /// </summary>
    private static (int Layers, int Columns, bool OneLayer) Shape(ReadOnlySpan<byte> json, string path, string column, Action<long, long> checkShape)
    {
        var reader = new Utf8JsonReader(json);
        reader.Read();
        long rows = 0, columns = 0;
        var oneLayer = false;
        var allEmptyRows = true;
        string? ragged = null;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            oneLayer |= rows == 0 && reader.TokenType != JsonTokenType.StartArray;
            if (oneLayer)
            {
                reader.Skip();
            }
            else if (reader.TokenType != JsonTokenType.StartArray)
            {
                allEmptyRows = false;
                ragged ??= $"{path}: row {rows} is {JsonText.KindPhrase(reader.TokenType)}, not an array of loads.";
                reader.Skip();
            }
            else
            {
                var length = Elements(ref reader);
                columns = rows == 0 ? length : columns;
                allEmptyRows &= length == 0;
                ragged ??= length != columns ? $"{path}: row {rows} has {Counted.Of(length, "load")}, row 0 has {columns:N0}; every layer has the same {column}s." : null;
            }

            rows++;
        }

        // Past the root's end: content after it is refused as not JSON, as a document would be.
        reader.Read();
        if (rows == 0 || (!oneLayer && allEmptyRows))
        {
            throw new InvalidDataException($"{path}: {(rows == 0 ? "an empty array" : Counted.Of(rows, "empty row"))}: no loads, nothing to place.");
        }

        (var layers, columns) = oneLayer ? (1L, rows) : (rows, columns);
        checkShape(layers, columns);
        return ragged is null ? ((int)layers, (int)columns, oneLayer) : throw new InvalidDataException(ragged);
    }

    /// <summary>Counts the values of the array the reader is at the start of, leaving the reader at its end.</summary>
    private static long Elements(ref Utf8JsonReader reader)
    {
        long count = 0;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            reader.Skip();
            count++;
        }

        return count;
    }
}
