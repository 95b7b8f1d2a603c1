using System.Text.Json;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// The placement that serves now (<c>plan --current</c>): per layer, the logical expert in each slot. Read
/// from the JSON <c>plan --json</c> writes (its <c>physical_to_logical</c>, and its <c>gpus</c>), or from a
/// bare <c>[layers][slots]</c> array such as vLLM's <c>physical_to_logical_map</c> dumped with <c>.tolist()</c>.
/// </summary>
/// <param name="PhysicalToLogical">Per layer, each slot's expert; checked against the loads by <see cref="Placement.ExpertPlacement.Balancedness(long[,], IReadOnlyList{int[]}, int)"/>.</param>
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
        var length = new FileInfo(path).Length;
        if (length > MaxBytes)
        {
            throw new InvalidDataException($"{path}: {length:N0} bytes; a placement file is read whole, up to {MaxBytes:N0}.");
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException exception)
        {
            throw new InvalidDataException($"{path}: not JSON ({ErrorText.Of(exception)}); give the output of plan --json, or a [layers][slots] array.");
        }

        using (document)
        {
            var root = document.RootElement;
            int? gpus = null;
            if (root.ValueKind == JsonValueKind.Object)
            {
                if (root.TryGetProperty("window_load", out _) || root.TryGetProperty("expert_token_counts", out _))
                {
                    throw new InvalidDataException($"{path}: a snapshot of routing statistics, not a placement; give the output of plan --json, or a [layers][slots] array (the snapshot is the LOAD).");
                }

                if (!root.TryGetProperty("physical_to_logical", out var rows))
                {
                    throw new InvalidDataException($"{path}: a JSON object without physical_to_logical; give the output of plan --json, or a [layers][slots] array.");
                }

                if (root.TryGetProperty("gpus", out var given))
                {
                    gpus = given.TryGetInt32(out var count) && count >= 1
                        ? count
                        : throw new InvalidDataException($"{path}: gpus is {given.GetRawText()}; a placement's GPUs are a whole number, 1 or more.");
                }

                root = rows;
            }

            if (root.ValueKind != JsonValueKind.Array || root.GetArrayLength() == 0)
            {
                throw new InvalidDataException($"{path}: physical_to_logical must be a non-empty array of one array of slots per layer.");
            }

            var layers = new int[root.GetArrayLength()][];
            var layer = 0;
            foreach (var row in root.EnumerateArray())
            {
                if (row.ValueKind != JsonValueKind.Array)
                {
                    throw new InvalidDataException($"{path}: layer {layer} of physical_to_logical is {row.ValueKind}, not an array of slots.");
                }

                var slots = new int[row.GetArrayLength()];
                var slot = 0;
                foreach (var expert in row.EnumerateArray())
                {
                    slots[slot] = expert.ValueKind == JsonValueKind.Number && expert.TryGetInt32(out var id)
                        ? id
                        : throw new InvalidDataException($"{path}: layer {layer}, slot {slot} is {NpyHeader.Printable(expert.GetRawText())}; a slot holds an expert's index.");
                    slot++;
                }

                layers[layer++] = slots;
            }

            return new DeployedPlacement(layers, gpus);
        }
    }
}
