using System.Buffers.Binary;
using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using MoeGpuStats.Placement;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Cli.Commands;

/// <summary><c>plan LOAD</c>: an expert replication and placement by DeepSeek's EPLB, with its balancedness.</summary>
internal static class PlanCommand
{
    /// <summary>A bound on slots per layer far above deployments (DeepSeek-V3 prefills on 288), which keeps the padded log2phy printable.</summary>
    public const int MaxReplicas = 65_536;

    public static Command Create(CliConsole console)
    {
        var file = new Argument<FileInfo>("LOAD")
        {
            Description = "Expert loads [layers, experts]: a .npy (int32 or int64, 2-D, or 1-D for one layer), a JSON array of arrays of whole numbers, or a snapshot saved with --save (one layer: its tokens per expert).",
        };
        var replicas = SharedOptions.WholeNumber(
            new Option<int>("--replicas") { Description = "Physical expert slots per layer (R): at least the experts, a multiple of --gpus.", Required = true }, 1, MaxReplicas, "the physical experts per layer");
        var groups = SharedOptions.WholeNumber(
            new Option<int>("--groups") { Description = "Expert groups (G), dividing the experts; 1 when the model has none.", DefaultValueFactory = _ => 1 }, 1, MaxReplicas, "the number of expert groups");
        var nodes = SharedOptions.WholeNumber(
            new Option<int>("--nodes") { Description = "Server nodes (N), dividing --gpus. Hierarchical placement when N divides G, global otherwise.", DefaultValueFactory = _ => 1 }, 1, MaxReplicas, "the number of nodes");
        var gpus = SharedOptions.WholeNumber(
            new Option<int>("--gpus") { Description = "GPUs in all (P), dividing --replicas.", Required = true }, 1, MaxReplicas, "the number of GPUs");
        var json = new Option<bool>("--json")
        {
            Description = "Print only the plan as JSON on standard output: per layer physical_to_logical (length R), logical_to_physical (padded with -1), replica_counts, and the balancedness before and after.",
        };
        var command = new Command(
            "plan",
            "Replicate the hottest experts and place the replicas on GPUs with DeepSeek's EPLB (hierarchical when --nodes divides --groups, global otherwise), and print each layer's balancedness across GPUs before and after.")
        {
            file, replicas, groups, nodes, gpus, json,
        };
        command.SetAction(parse =>
        {
            var (r, g, n, p) = (parse.GetValue(replicas), parse.GetValue(groups), parse.GetValue(nodes), parse.GetValue(gpus));
            if (r % p != 0)
            {
                console.Error.WriteLine($"--replicas {r}: {r:N0} slots do not divide among --gpus {p} GPUs; give a multiple of {p:N0}.");
                return ExitCodes.Usage;
            }

            if (p % n != 0)
            {
                console.Error.WriteLine($"--nodes {n}: {n:N0} nodes do not divide --gpus {p}; give a divisor of {p:N0}.");
                return ExitCodes.Usage;
            }

            var path = parse.GetValue(file)!;
            if (!LoadMatrix.TryRead(console, path, out var loads))
            {
                return ExitCodes.BadInput;
            }

            var (layers, experts) = (loads.GetLength(0), loads.GetLength(1));
            if (r < experts)
            {
                console.Error.WriteLine($"--replicas {r}: {path} has {experts:N0} experts and each needs a slot; give at least {experts:N0} (a multiple of --gpus {p}).");
                return ExitCodes.Usage;
            }

            if (experts % g != 0)
            {
                console.Error.WriteLine($"--groups {g}: {g:N0} groups do not divide the {experts:N0} experts of {path}; give a divisor of {experts:N0} (1 when the model has no groups).");
                return ExitCodes.Usage;
            }

            if ((long)layers * r > Array.MaxLength)
            {
                console.Error.WriteLine($"--replicas {r}: {layers:N0} layers of {r:N0} slots are more than one plan holds ({Array.MaxLength:N0}).");
                return ExitCodes.Usage;
            }

            var plan = ExpertPlacement.Rebalance(loads, r, g, n, p);
            var before = ExpertPlacement.IdentityBalancedness(loads, p);
            var after = ExpertPlacement.Balancedness(loads, plan);
            if (parse.GetValue(json))
            {
                WriteJson(console.Out, plan, before, after);
            }
            else
            {
                Print(console.Out, path.ToString(), plan, before, after);
            }

            return ExitCodes.Ok;
        });
        return command;
    }

    private static void Print(TextWriter output, string path, PlacementPlan plan, double[]? before, double[] after)
    {
        var policy = plan.Policy == PlacementPolicy.Hierarchical
            ? "hierarchical: groups packed to nodes, experts replicated within nodes, replicas packed to GPUs"
            : $"global: {plan.Nodes:N0} nodes do not divide {plan.Groups:N0} groups, so experts are replicated over all GPUs";
        output.WriteLine($"plan {path}: {plan.Layers:N0} layers of {plan.LogicalExperts:N0} experts, {plan.PhysicalExperts:N0} slots per layer on {plan.Gpus:N0} GPUs ({plan.SlotsPerGpu:N0} each) in {plan.Nodes:N0} nodes, {plan.Groups:N0} groups");
        output.WriteLine($"policy: {policy} (DeepSeek EPLB)");
        output.WriteLine();
        output.WriteLine("balancedness across GPUs (mean GPU load / max GPU load; 1 is even):");
        output.WriteLine(before is null
            ? $"  before: n/a ({plan.Gpus:N0} GPUs do not divide {plan.LogicalExperts:N0} experts, so there is no placement without replicas to compare)"
            : $"  before: experts in order, {plan.LogicalExperts / plan.Gpus:N0} per GPU, no replicas");
        output.WriteLine("  after:  the plan, a replica carrying its expert's load divided by the expert's replica count");
        output.WriteLine($"  {"layer",5}  {"before",6}  {"after",6}");
        for (var layer = 0; layer < plan.Layers; layer++)
        {
            output.WriteLine($"  {layer,5}  {(before is null ? "n/a" : Figure(before[layer])),6}  {Figure(after[layer]),6}");
        }

        if (plan.Layers > 1)
        {
            output.WriteLine($"  {"min",5}  {(before is null ? "n/a" : Figure(before.Min())),6}  {Figure(after.Min()),6}");
            output.WriteLine($"  {"mean",5}  {(before is null ? "n/a" : Figure(before.Average())),6}  {Figure(after.Average()),6}");
        }

        output.WriteLine();
        output.WriteLine("placement: the logical expert in each slot, [one GPU], one node a line");
        var gpusPerNode = plan.Gpus / plan.Nodes;
        for (var layer = 0; layer < plan.Layers; layer++)
        {
            output.WriteLine($"  layer {layer}:");
            var phy2log = plan.PhysicalToLogical(layer);
            for (var node = 0; node < plan.Nodes; node++)
            {
                var line = new StringBuilder($"    node {node}:");
                for (var gpu = node * gpusPerNode; gpu < (node + 1) * gpusPerNode; gpu++)
                {
                    var slots = phy2log.Slice(gpu * plan.SlotsPerGpu, plan.SlotsPerGpu).ToArray();
                    line.Append(" [").AppendJoin(' ', slots).Append(']');
                }

                output.WriteLine(line);
            }

            var counts = plan.ReplicaCounts(layer);
            var replicated = new List<string>();
            for (var e = 0; e < counts.Length; e++)
            {
                if (counts[e] > 1)
                {
                    replicated.Add($"{e} x{counts[e]}");
                }
            }

            output.WriteLine($"    replicated: {(replicated.Count == 0 ? "none" : string.Join(", ", replicated))}");
        }
    }

    private static string Figure(double value) => value.ToString("0.000", CultureInfo.InvariantCulture);

    private static void WriteJson(TextWriter output, PlacementPlan plan, double[]? before, double[] after)
    {
        // Written layer by layer: EPLB's padded log2phy has layers x E x (most replicas) entries, more than one buffer should hold.
        using var json = new JsonOut(output);
        var writer = json.Writer;
        writer.WriteStartObject();
        writer.WriteString("algorithm", "DeepSeek EPLB");
        writer.WriteString("policy", plan.Policy == PlacementPolicy.Hierarchical ? "hierarchical" : "global");
        writer.WriteNumber("layers", plan.Layers);
        writer.WriteNumber("logical_experts", plan.LogicalExperts);
        writer.WriteNumber("physical_experts", plan.PhysicalExperts);
        writer.WriteNumber("groups", plan.Groups);
        writer.WriteNumber("nodes", plan.Nodes);
        writer.WriteNumber("gpus", plan.Gpus);
        WriteRows(json, "physical_to_logical", plan, plan.PhysicalToLogical);
        writer.WriteStartArray("logical_to_physical");
        for (var layer = 0; layer < plan.Layers; layer++)
        {
            writer.WriteStartArray();
            for (var e = 0; e < plan.LogicalExperts; e++)
            {
                // EPLB's shape: one rectangular tensor, shorter lists padded with -1.
                writer.WriteStartArray();
                var replicas = plan.LogicalToPhysical(layer, e);
                for (var rank = 0; rank < plan.MaxReplicas; rank++)
                {
                    writer.WriteNumberValue(rank < replicas.Length ? replicas[rank] : -1);
                }

                writer.WriteEndArray();
                json.Drain();
            }

            writer.WriteEndArray();
        }

        writer.WriteEndArray();
        WriteRows(json, "replica_counts", plan, plan.ReplicaCounts);
        writer.WritePropertyName("balancedness_before");
        if (before is null)
        {
            writer.WriteNullValue();
        }
        else
        {
            writer.WriteStartArray();
            Array.ForEach(before, writer.WriteNumberValue);
            writer.WriteEndArray();
        }

        writer.WriteStartArray("balancedness_after");
        Array.ForEach(after, writer.WriteNumberValue);
        writer.WriteEndArray();
        writer.WriteEndObject();
        json.Drain();
        output.WriteLine();
    }

    private delegate ReadOnlySpan<int> LayerRow(int layer);

    private static void WriteRows(JsonOut json, string name, PlacementPlan plan, LayerRow row)
    {
        json.Writer.WriteStartArray(name);
        for (var layer = 0; layer < plan.Layers; layer++)
        {
            WriteArray(json.Writer, row(layer));
            json.Drain();
        }

        json.Writer.WriteEndArray();
    }

    private static void WriteArray(Utf8JsonWriter writer, ReadOnlySpan<int> values)
    {
        writer.WriteStartArray();
        foreach (var value in values)
        {
            writer.WriteNumberValue(value);
        }

        writer.WriteEndArray();
    }
}

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

/// <summary>
/// The load matrix <c>plan</c> reads, <c>[layers, experts]</c> of non-negative whole numbers, told apart by
/// content: the .npy magic, a JSON array (of arrays) of numbers, or a JSON snapshot object.
/// </summary>
/// <remarks>
/// As <see cref="Input.NpyIds"/> does, a .npy header's sizes are checked against the file's length, in
/// checked 64-bit arithmetic, before anything is allocated.
/// </remarks>
internal static partial class LoadMatrix
{
    /// <summary>Far more than any shape needs (NumPy writes 128 bytes or so), and a bound on what a header can make us read.</summary>
    private const int MaxHeaderBytes = 65_536;

    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>Reads <paramref name="path"/>; on failure writes one line naming the file and returns false.</summary>
    public static bool TryRead(CliConsole console, FileInfo path, out long[,] loads)
    {
        loads = null!;
        if (Directory.Exists(path.FullName))
        {
            console.Error.WriteLine($"{path}: is a folder; give a load file (.npy or .json).");
            return false;
        }

        try
        {
            loads = Read(path.ToString());
            return true;
        }
        catch (Exception exception) when (exception is FileNotFoundException or DirectoryNotFoundException)
        {
            console.Error.WriteLine($"{path}: no such file.");
        }
        catch (UnauthorizedAccessException)
        {
            console.Error.WriteLine($"{path}: no permission to read it.");
        }
        catch (InvalidDataException exception)
        {
            console.Error.WriteLine(ErrorText.Of(exception));
        }
        catch (IOException exception)
        {
            console.Error.WriteLine($"{path}: {ErrorText.Of(exception)}");
        }

        return false;
    }

    /// <exception cref="InvalidDataException">The file is not a load matrix; the message names it.</exception>
    internal static long[,] Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var loads = bytes.AsSpan().StartsWith(Magic) ? ReadNpy(bytes, path) : ReadJson(bytes, path);
        if (loads.GetLength(0) == 0 || loads.GetLength(1) == 0)
        {
            throw new InvalidDataException($"{path}: [{loads.GetLength(0)}, {loads.GetLength(1)}] loads: no layer or no expert to place.");
        }

        for (var layer = 0; layer < loads.GetLength(0); layer++)
        {
            for (var e = 0; e < loads.GetLength(1); e++)
            {
                if (loads[layer, e] < 0)
                {
                    throw new InvalidDataException($"{path}: the load of expert {e} in layer {layer} is {loads[layer, e]:N0}; loads are token counts, 0 or more.");
                }
            }
        }

        return loads;
    }

    private static long[,] ReadNpy(byte[] file, string path)
    {
        if (file.Length < 10)
        {
            throw new InvalidDataException($"{path}: truncated: the file ends inside the .npy preamble ({file.Length:N0} bytes).");
        }

        var major = file[6];
        long headerLength, offset;
        if (major == 1)
        {
            (headerLength, offset) = (BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(8)), 10);
        }
        else if (major is 2 or 3 && file.Length >= 12)
        {
            (headerLength, offset) = (BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(8)), 12);
        }
        else
        {
            throw new InvalidDataException(major is 2 or 3
                ? $"{path}: truncated: the file ends inside the .npy preamble ({file.Length:N0} bytes)."
                : $"{path}: .npy format version {major} is not supported (1, 2 or 3).");
        }

        if (headerLength > MaxHeaderBytes || offset + headerLength > file.Length)
        {
            throw new InvalidDataException($"{path}: the header claims {headerLength:N0} bytes, the file has {file.Length - offset:N0} after the preamble (and a shape needs a few hundred).");
        }

        var header = (major == 3 ? Encoding.UTF8 : Encoding.Latin1).GetString(file, (int)offset, (int)headerLength);
        var descr = DescrPattern().Match(header);
        var fortran = FortranPattern().Match(header);
        var shape = ShapePattern().Match(header);
        if (!descr.Success || !fortran.Success || !shape.Success)
        {
            throw new InvalidDataException($"{path}: unreadable .npy header (expected 'descr', 'fortran_order' and 'shape').");
        }

        var itemSize = descr.Groups[1].Value switch
        {
            "<i4" or "=i4" => 4,
            "<i8" or "=i8" => 8,
            var other => throw new InvalidDataException($"{path}: dtype '{Printable(other)}'; loads are little-endian int32 or int64 (np.int64)."),
        };
        var dims = shape.Groups[1].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var sizes = new long[dims.Length];
        for (var i = 0; i < dims.Length; i++)
        {
            if (!long.TryParse(dims[i].TrimEnd('L', 'l'), NumberStyles.None, CultureInfo.InvariantCulture, out sizes[i]))
            {
                throw new InvalidDataException($"{path}: shape ({Printable(shape.Groups[1].Value)}): '{Printable(dims[i])}' is not a size.");
            }
        }

        var (layers, experts) = sizes.Length switch
        {
            1 => (1L, sizes[0]),
            2 => (sizes[0], sizes[1]),
            _ => throw new InvalidDataException($"{path}: shape ({Printable(shape.Groups[1].Value)}) has {sizes.Length} dimensions; loads are [layers, experts], or [experts] for one layer."),
        };
        if (fortran.Groups[1].Value == "True" && layers > 1 && experts > 1)
        {
            throw new InvalidDataException($"{path}: Fortran-ordered array; save it in C order (np.ascontiguousarray).");
        }

        if (layers == 0 || experts == 0)
        {
            throw new InvalidDataException($"{path}: shape ({Printable(shape.Groups[1].Value)}) holds no loads; nothing to place.");
        }

        long needed;
        try
        {
            needed = checked(offset + headerLength + (layers * experts * itemSize));
        }
        catch (OverflowException)
        {
            throw new InvalidDataException($"{path}: shape ({Printable(shape.Groups[1].Value)}) claims more loads than any file holds (the file has {file.Length:N0} bytes).");
        }

        if (file.Length < needed)
        {
            throw new InvalidDataException($"{path}: truncated: shape ({Printable(shape.Groups[1].Value)}) needs {needed:N0} bytes, the file has {file.Length:N0}.");
        }

        var loads = new long[layers, experts];
        var data = file.AsSpan((int)(offset + headerLength));
        for (var layer = 0; layer < layers; layer++)
        {
            for (var e = 0; e < experts; e++)
            {
                var at = (int)(((layer * experts) + e) * itemSize);
                loads[layer, e] = itemSize == 4 ? BinaryPrimitives.ReadInt32LittleEndian(data[at..]) : BinaryPrimitives.ReadInt64LittleEndian(data[at..]);
            }
        }

        return loads;
    }

    private static long[,] ReadJson(byte[] file, string path)
    {
        JsonDocument document;
        try
        {
            // Editors on Windows may start UTF-8 with a byte order mark, which the JSON reader refuses.
            document = JsonDocument.Parse(file.AsMemory(file.AsSpan().StartsWith((byte[])[0xEF, 0xBB, 0xBF]) ? 3 : 0));
        }
        catch (JsonException exception)
        {
            throw new InvalidDataException($"{path}: neither a .npy file nor JSON ({ErrorText.Of(exception)}).");
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind == JsonValueKind.Object)
            {
                return FromSnapshot(path);
            }

            if (root.ValueKind != JsonValueKind.Array)
            {
                throw new InvalidDataException($"{path}: JSON {root.ValueKind.ToString().ToLowerInvariant()}; give an array of arrays of loads ([layers][experts]) or a snapshot saved with --save.");
            }

            var rows = root.EnumerateArray().ToArray();
            var oneLayer = rows.Length == 0 || rows[0].ValueKind != JsonValueKind.Array;
            var layerRows = oneLayer ? [root] : rows;
            var experts = layerRows[0].GetArrayLength();
            var loads = new long[layerRows.Length, experts];
            for (var layer = 0; layer < layerRows.Length; layer++)
            {
                if (layerRows[layer].ValueKind != JsonValueKind.Array)
                {
                    throw new InvalidDataException($"{path}: row {layer} is a {layerRows[layer].ValueKind.ToString().ToLowerInvariant()}, not an array of loads.");
                }

                if (layerRows[layer].GetArrayLength() != experts)
                {
                    throw new InvalidDataException($"{path}: row {layer} has {layerRows[layer].GetArrayLength():N0} loads, row 0 has {experts:N0}; every layer has the same experts.");
                }

                var e = 0;
                foreach (var value in layerRows[layer].EnumerateArray())
                {
                    if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out loads[layer, e]))
                    {
                        var where = oneLayer ? $"load {e}" : $"row {layer}, load {e}";
                        throw new InvalidDataException($"{path}: {where} is {Printable(value.GetRawText())}; loads are whole numbers from 0 to {long.MaxValue:N0}.");
                    }

                    e++;
                }
            }

            return loads;
        }
    }

    private static long[,] FromSnapshot(string path)
    {
        RoutingStats stats;
        try
        {
            stats = RoutingStatsFile.Load(path);
        }
        catch (Exception exception) when (exception is JsonException or ArgumentException or OverflowException)
        {
            throw new InvalidDataException($"{path}: not a routing statistics snapshot ({ErrorText.Of(exception)}).", exception);
        }

        using var owned = stats;
        var counts = stats.ExpertTokenCounts;
        var loads = new long[1, counts.Count];
        for (var e = 0; e < counts.Count; e++)
        {
            if (counts[e] > long.MaxValue)
            {
                throw new InvalidDataException($"{path}: expert {e} has {counts[e]:N0} tokens, more than a plan reads ({long.MaxValue:N0}).");
            }

            loads[0, e] = (long)counts[e];
        }

        return loads;
    }

    /// <summary>Text from the file cut to a short line with control characters as '?', so an error stays one line.</summary>
    private static string Printable(string text)
    {
        var trimmed = text.Trim();
        var shown = trimmed.Length > 60 ? trimmed[..60] + "..." : trimmed;
        return new string([.. shown.Select(c => char.IsControl(c) ? '?' : c)]);
    }

    [GeneratedRegex(@"['""]descr['""]\s*:\s*['""]([^'""]*)['""]")]
    private static partial Regex DescrPattern();

    [GeneratedRegex(@"['""]fortran_order['""]\s*:\s*(True|False)")]
    private static partial Regex FortranPattern();

    [GeneratedRegex(@"['""]shape['""]\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();
}
