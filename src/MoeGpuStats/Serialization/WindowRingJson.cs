using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using MoeGpuStats.Engines;
using static System.FormattableString;

namespace MoeGpuStats.Serialization;

/// <summary>
/// A model's window ring in a checkpoint (<see cref="RoutingStatsFile.Save(ModelRoutingStats, string, bool)"/>):
/// <c>"window_ring": {"position": P, "rows": [...]}</c>, where <c>position</c> is the ring row the next step writes and
/// each of <c>rows</c>, by ring position, is one step's counts <c>[layers, experts]</c> as little-endian uint32, in
/// base64: all <c>window</c> rows once the window has wrapped, before that the <c>window_steps</c> rows before
/// <c>position</c>. With it a model read back records on as the saved one would have.
/// </summary>
internal static class WindowRingJson
{
    /// <summary>The field's name.</summary>
    public const string Field = "window_ring";

    /// <summary>
    /// The most base64 bytes a checkpoint gives its ring: 512 MiB, half of <see cref="RoutingStatsFile.MaxFileBytes"/>,
    /// which leaves the rest of the largest model's snapshot room: about 100 million counts, 4 bytes each and 4/3 of
    /// that in base64 (DeepSeek-V3's 58 × 256 experts over 1,000 steps take 79 MB).
    /// </summary>
    public const long MostBase64Bytes = 512L << 20;

    /// <summary>The base64 bytes of a ring of <paramref name="rows"/> steps of <paramref name="layers"/> × <paramref name="experts"/> counts.</summary>
    public static long Base64Bytes(long rows, int layers, int experts) => rows * (((4L * layers * experts) + 2) / 3 * 4);

    /// <summary>Writes <paramref name="state"/>'s ring (exported with it) as the field.</summary>
    /// <exception cref="InvalidOperationException">The model holds its window's load but no ring; nothing is written.</exception>
    public static void Write(Utf8JsonWriter writer, ModelState state, int layers, int experts)
    {
        var ring = state.WindowRing ?? throw NoRing();
        var entries = layers * experts;
        var row = new byte[entries * sizeof(uint)];
        writer.WriteStartObject(Field);
        writer.WriteNumber("position", state.WindowPosition);
        writer.WriteStartArray("rows");
        for (long start = 0; start < ring.LongLength; start += entries)
        {
            var counts = ring.AsSpan((int)start, entries);
            for (var i = 0; i < counts.Length; i++)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(row.AsSpan(i * sizeof(uint)), counts[i]);
            }

            writer.WriteBase64StringValue(row);
        }

        writer.WriteEndArray();
        writer.WriteEndObject();
    }

    /// <summary>The refusal of a checkpoint of a model that has no ring to write.</summary>
    public static InvalidOperationException NoRing() => new(
        "This model's window keeps its load but not its ring of steps (a model read from JSON other than a checkpoint, or a merge or snapshot of one): there are no steps to checkpoint; save it without the ring, or checkpoint the model that recorded it.");

    /// <summary>
    /// Reads the field of <paramref name="root"/>, where present, into <paramref name="state"/> (whose window load and
    /// steps are read), refusing a ring whose shape or sums no run leaves: a field given twice, rows other than the
    /// window holds, a position other than a row of the window (before the window wraps, <c>window_steps</c>), a row
    /// not of <c>layers × experts</c> counts, a layer's row of more ids than a step records (2^31 − 1, a merge's parts
    /// each), rows whose sums are not the window's load, or (but for a merge) rows out of the order of the layers'
    /// variance histories.
    /// </summary>
    public static void Read(JsonElement root, ModelState state, ModelRoutingStatsOptions options, int mergedParts)
    {
        if (!root.TryGetProperty(Field, out var field))
        {
            return;
        }

        if (field.ValueKind != JsonValueKind.Object || !field.TryGetProperty("position", out var positionElement)
            || !field.TryGetProperty("rows", out var rowsElement) || rowsElement.ValueKind != JsonValueKind.Array)
        {
            throw new JsonException("window_ring must be an object of position (the row the next step writes) and rows (an array of base64 strings).");
        }

        SnapshotFields.RefuseRepeated(field, Field + ".");

        var wrapped = state.WindowSteps == options.Window;
        var rowCount = wrapped ? options.Window : state.WindowSteps;
        var position = -1;
        if (positionElement.ValueKind != JsonValueKind.Number || !positionElement.TryGetInt32(out position)
            || position < 0 || position >= options.Window || (!wrapped && position != state.WindowSteps))
        {
            throw new JsonException(wrapped
                ? Invariant($"window_ring.position is {JsonShown.Value(positionElement)}; it is a whole number, a row of the window, 0 to {options.Window - 1:N0}.")
                : Invariant($"window_ring.position is {JsonShown.Value(positionElement)}; before the window wraps the next step writes row window_steps = {state.WindowSteps:N0}."));
        }

        if (rowsElement.GetArrayLength() != rowCount)
        {
            throw new JsonException(Invariant($"window_ring.rows holds {Plural.Of(rowsElement.GetArrayLength(), "row")}; the window holds {Plural.Of(rowCount, "step")} (window = {options.Window:N0}, window_steps = {state.WindowSteps:N0})."));
        }

        var (layers, experts) = (options.Layers, options.Experts);
        var entries = layers * experts;

        // Every row's text is at least as long as a row's base64 before the ring is allocated: a file of short rows must
        // not cost the memory of the rows it does not hold (escapes only lengthen a text, so the bound holds for them).
        var base64Length = Base64Bytes(1, layers, experts);
        var r = 0;
        foreach (var element in rowsElement.EnumerateArray())
        {
            if (element.ValueKind != JsonValueKind.String || JsonMarshal.GetRawUtf8Value(element).Length < base64Length)
            {
                throw RowRefusal(r, entries);
            }

            r++;
        }

        var ring = new uint[(long)rowCount * entries];
        var sums = new ulong[entries];
        var mostPerLayer = (ulong)mergedParts * int.MaxValue;
        r = 0;
        foreach (var element in rowsElement.EnumerateArray())
        {
            var bytes = RowBytes(element, r, entries);
            var counts = ring.AsSpan(r * entries, entries);
            for (var l = 0; l < layers; l++)
            {
                ulong layerIds = 0;
                for (var e = 0; e < experts; e++)
                {
                    var i = (l * experts) + e;
                    counts[i] = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(i * sizeof(uint)));
                    layerIds += counts[i];
                    sums[i] += counts[i];
                }

                if (layerIds > mostPerLayer)
                {
                    throw new JsonException(Invariant($"window_ring.rows[{r}] counts {layerIds:N0} ids for layer {l}; a step records at most {mostPerLayer:N0} ids a layer (tokens × k{(mergedParts > 1 ? ", in each merged part" : "")})."));
                }
            }

            r++;
        }

        for (var i = 0; i < entries; i++)
        {
            if (sums[i] != state.WindowLoad[i])
            {
                throw new JsonException(Invariant($"window_ring.rows sum to {sums[i]:N0} for layer {i / experts}, expert {i % experts}, but window_load[{i / experts}][{i % experts}] is {state.WindowLoad[i]:N0}; the window's load is the sum of its steps."));
            }
        }

        if (mergedParts == 1)
        {
            CheckOrder(state, ring, rowCount, position, layers, experts);
        }

        state.WindowRing = ring;
        state.WindowPosition = position;
    }

    /// <summary>
    /// Refuses rows out of the order of their steps: each layer's newest variances (<c>load_variance_history</c>) are
    /// those of its rows' counts, newest first from the row before <paramref name="position"/>, to the bit on every
    /// engine. A merge's variances are not its summed rows', so a merge's rows are not checked.
    /// </summary>
    private static void CheckOrder(ModelState state, uint[] ring, int rowCount, int position, int layers, int experts)
    {
        var counts = new int[experts];
        for (var l = 0; l < layers; l++)
        {
            var history = state.Layers[l].LoadVarianceHistory;
            for (var i = 0; i < Math.Min(rowCount, history.Length); i++)
            {
                var row = (((position - 1 - i) % rowCount) + rowCount) % rowCount;
                long sum = 0;
                for (var e = 0; e < experts; e++)
                {
                    counts[e] = (int)ring[(((long)row * layers) + l) * experts + e];
                    sum += counts[e];
                }

                var variance = RoutingMath.LoadVariance(counts, sum);
                var entry = history.Length - 1 - i;
                if (BitConverter.SingleToInt32Bits(variance) != BitConverter.SingleToInt32Bits(history[entry]))
                {
                    throw new JsonException(
                        Invariant($"window_ring.rows[{row}] gives layer {l} a load variance of {variance:R} but layers[{l}].load_variance_history[{entry}], its step's, is {history[entry]:R}; each row holds the step whose variance the history keeps, the newest before position (rows out of order, or edited)."));
                }
            }
        }
    }

    /// <summary>Row <paramref name="r"/>'s bytes, refused unless base64 of <paramref name="entries"/> uint32 counts.</summary>
    private static byte[] RowBytes(JsonElement element, int r, int entries) =>
        element.TryGetBytesFromBase64(out var bytes) && bytes.Length == entries * sizeof(uint) ? bytes : throw RowRefusal(r, entries);

    private static JsonException RowRefusal(int r, int entries) =>
        new(Invariant($"window_ring.rows[{r}] must be base64 of {entries:N0} little-endian uint32 counts (layers × experts)."));
}
