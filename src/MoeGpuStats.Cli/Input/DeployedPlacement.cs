using System.Buffers.Text;
using System.Text.Json;
using MoeGpuStats.Placement;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// The placement that serves now (<c>plan --current</c>): per layer, the logical expert in each slot. Read
/// from the JSON <c>plan --json</c> writes (its <c>physical_to_logical</c>, and its <c>gpus</c>), or from a
/// bare <c>[layers][slots]</c> array such as vLLM's <c>physical_to_logical_map</c> dumped with <c>.tolist()</c>.
/// </summary>
/// <param name="PhysicalToLogical">Per layer, each slot's expert; checked against the loads by <see cref="ExpertPlacement.Balancedness(long[,], IReadOnlyList{int[]}, int)"/>.</param>
/// <param name="Gpus">The plan's GPUs where the file says; null for a bare array.</param>
internal sealed record DeployedPlacement(int[][] PhysicalToLogical, int? Gpus)
{
    /// <summary>A placement file is read whole; plan --json writes at most PlanCommand.MaxJsonEntries padded entries, under 1 GiB.</summary>
    private const int MaxBytes = 1 << 30;

    /// <summary>Reads <paramref name="path"/>; on failure writes one line naming the file and returns false.</summary>
    public static bool TryRead(CliConsole console, FileInfo path, out DeployedPlacement placement) =>
        InputFile.TryRead(console, path, "a placement (plan --json output, or a [layers][slots] JSON array)", Read, out placement, "--current");

    /// <exception cref="InvalidDataException">The file is not a placement; the message names it and the field.</exception>
    internal static DeployedPlacement Read(string path)
    {
        var bytes = InputFile.ReadWhole(path, MaxBytes, size => new InvalidDataException($"{path}: {size}; a placement file is read whole, up to {MaxBytes:N0}."));
        var json = Serialization.RoutingStatsFile.WithoutByteOrderMark(bytes).Span;
        try
        {
            // Checked whole first, so that a file broken anywhere is "not JSON" before any field is judged.
            var check = new Utf8JsonReader(json);
            while (check.Read())
            {
            }

            return Parse(json, path);
        }
        catch (JsonException exception)
        {
            throw new InvalidDataException($"{path}: not JSON ({ErrorText.Clause(exception)}); give the output of plan --json, or a [layers][slots] array.");
        }
    }

    /// <summary>
    /// The placement in <paramref name="json"/>, read token by token: the slots go straight into arrays of
    /// int, and the rest of plan's output (its padded logical_to_physical, up to 2^26 entries) is skipped, not
    /// kept as a document's 12 bytes a value.
    /// </summary>
    private static DeployedPlacement Parse(ReadOnlySpan<byte> json, string path)
    {
        var reader = new Utf8JsonReader(json);
        reader.Read();
        int? gpus = null;
        if (reader.TokenType == JsonTokenType.StartObject)
        {
            var (rows, given) = Fields(ref reader, json, path);
            gpus = given;
            json = json[rows];
            reader = new Utf8JsonReader(json);
            reader.Read();
        }

        var layers = new List<int[]>();
        if (reader.TokenType == JsonTokenType.StartArray)
        {
            var slots = new List<int>();
            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                if (reader.TokenType != JsonTokenType.StartArray)
                {
                    throw new InvalidDataException($"{path}: layer {layers.Count} of physical_to_logical is {JsonText.KindPhrase(reader.TokenType)}, not an array of slots.");
                }

                if (layers.Count == ModelRoutingStatsOptions.MaxLayers)
                {
                    throw new InvalidDataException($"{path}: physical_to_logical has more than {Counted.Of(ModelRoutingStatsOptions.MaxLayers, "layer")}, the most a model has.");
                }

                slots.Clear();
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    if (slots.Count == ExpertPlacement.MaxPhysicalExperts)
                    {
                        throw new InvalidDataException($"{path}: layer {layers.Count} of physical_to_logical has more than {Counted.Of(ExpertPlacement.MaxPhysicalExperts, "slot")}, the most a plan places.");
                    }

                    slots.Add(reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var id)
                        ? id
                        : throw new InvalidDataException($"{path}: layer {layers.Count}, slot {slots.Count} is {JsonText.RawValue(ref reader, json)}; a slot holds an expert's index."));
                }

                layers.Add([.. slots]);
            }
        }

        return layers.Count > 0
            ? new DeployedPlacement([.. layers], gpus)
            : throw new InvalidDataException($"{path}: physical_to_logical must be a non-empty array of one array of slots per layer.");
    }

    /// <summary>Where plan's output (<paramref name="json"/>) holds physical_to_logical, and its gpus; the reader is at the object's start.</summary>
    private static (Range Rows, int? Gpus) Fields(ref Utf8JsonReader reader, ReadOnlySpan<byte> json, string path)
    {
        Range? rows = null, gpus = null;
        var snapshot = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            snapshot |= NameIs(ref reader, "window_load") || NameIs(ref reader, "expert_token_counts");
            var (isRows, isGpus) = (NameIs(ref reader, "physical_to_logical"), NameIs(ref reader, "gpus"));
            if ((isRows && rows is not null) || (isGpus && gpus is not null))
            {
                // A reader would take one of the two silently, and which one is the writer's guess.
                throw new InvalidDataException($"{path}: {(isRows ? "physical_to_logical" : "gpus")} is given twice; plan --json gives each field once.");
            }

            reader.Read();
            var start = (int)reader.TokenStartIndex;
            reader.Skip();
            var value = start..(int)reader.BytesConsumed;
            rows = isRows ? value : rows;
            gpus = isGpus ? value : gpus;
        }

        if (snapshot)
        {
            throw new InvalidDataException($"{path}: a snapshot of routing statistics, not a placement; give the output of plan --json, or a [layers][slots] array (the snapshot is the LOAD).");
        }

        if (rows is not { } found)
        {
            throw new InvalidDataException($"{path}: a JSON object without physical_to_logical; give the output of plan --json, or a [layers][slots] array.");
        }

        if (gpus is not { } given)
        {
            return (found, null);
        }

        var text = json[given];
        return Utf8Parser.TryParse(text, out int count, out var used) && used == text.Length && count >= 1
            ? (found, count)
            : throw new InvalidDataException($"{path}: gpus is {JsonText.Printable(text)}; a placement's GPUs are a whole number from 1 to 2,147,483,647.");
    }

    /// <summary>Whether the reader's field name is <paramref name="name"/>; one that escapes half a surrogate pair (no text) is none of plan's fields.</summary>
    private static bool NameIs(ref Utf8JsonReader reader, string name)
    {
        try
        {
            return reader.ValueTextEquals(name);
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }
}
