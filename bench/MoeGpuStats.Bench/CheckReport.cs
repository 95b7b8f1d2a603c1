using System.Text.Json;
using ILGPU.Runtime;

namespace MoeGpuStats.Bench;

/// <summary>
/// What one check (<c>--device-check</c>, <c>--model-check</c>) measured, for people and for scripts:
/// each table prints as markdown into the log, row by row as it is measured, and with <c>--json FILE</c>
/// the same rows, numbers as numbers, go into one JSON document, which scripts/targets.py reads
/// instead of the log:
/// <code>
/// {"check": "device-check", "device": "NVIDIA H200", "accelerator_type": "Cuda", "complete": true,
///  "run": {"experts": 256, "empty_launch_us": 4.8, ...},
///  "tables": {"record": [{"ids": 32768, "record_us": 7.7, "copy_gbs": 42.3, ..., "checksum": 2812849}, ...], ...}}
/// </code>
/// A row's keys are its record's property names in snake_case (<c>RecordUs</c>: <c>record_us</c>);
/// times are in µs (<c>_us</c>) or ms (<c>_ms</c>), rates in GB/s (<c>_gbs</c>), ratios plain
/// (<c>read_per_copy</c> 0.8 where the log prints 80 %), checksums integers.
/// docs/performance.md lists the tables and their keys.
/// </summary>
internal sealed class CheckReport
{
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
    };

    private readonly string? path;
    private readonly Document document;

    /// <param name="check">The check's name in the document (<c>device-check</c>, <c>model-check</c>).</param>
    /// <param name="accelerator">The accelerator the check runs on, named in the document.</param>
    /// <param name="path">The JSON file, or null to print only.</param>
    public CheckReport(string check, Accelerator accelerator, string? path)
    {
        this.path = path;
        document = new Document(check, accelerator.Name, accelerator.AcceleratorType.ToString());
    }

    /// <summary>A fact of the run outside the tables (a setting, the empty launch's time), under <c>run</c>.</summary>
    public void Set(string key, object value)
    {
        document.Run[key] = value;
        Save();
    }

    /// <summary>Prints the table's header and returns it, to print and keep its rows.</summary>
    /// <param name="key">The table's key under <c>tables</c>.</param>
    /// <param name="columns">The table's columns, in order: a heading and a row's value each.</param>
    public ResultTable<TRow> Table<TRow>(string key, params IReadOnlyList<Column<TRow>> columns)
    {
        var rows = new List<TRow>();
        document.Tables[key] = rows;
        return new ResultTable<TRow>(this, rows, columns);
    }

    /// <summary>Marks the document complete: a check stopped early (a timeout, a failed kernel) leaves <c>complete</c> false and the rows it measured.</summary>
    public void Complete()
    {
        document.Complete = true;
        Save();
    }

    /// <summary>
    /// Writes the whole document after each row, so that a check killed by the device script's timeout
    /// leaves what it measured, as its log does; through a temporary file, so that a kill during the
    /// write leaves the previous document, never half of one.
    /// </summary>
    internal void Save()
    {
        if (path is null)
        {
            return;
        }

        var temporary = path + ".tmp";
        File.WriteAllText(temporary, JsonSerializer.Serialize(document, Json));
        File.Move(temporary, path, overwrite: true);
    }

    private sealed record Document(string Check, string Device, string AcceleratorType)
    {
        public bool Complete { get; set; }

        public Dictionary<string, object> Run { get; } = [];

        /// <summary>Each a list of one table's rows, serialized as their runtime type.</summary>
        public Dictionary<string, object> Tables { get; } = [];
    }
}

/// <summary>A column of a printed table: its header cell, and its cell in a row.</summary>
internal readonly record struct Column<TRow>(string Header, Func<TRow, string> Cell);

/// <summary>One table of a <see cref="CheckReport"/>: each row printed as a markdown row when added, and kept for the JSON document.</summary>
internal sealed class ResultTable<TRow>
{
    private readonly CheckReport report;
    private readonly List<TRow> rows;
    private readonly IReadOnlyList<Column<TRow>> columns;

    public ResultTable(CheckReport report, List<TRow> rows, IReadOnlyList<Column<TRow>> columns)
    {
        this.report = report;
        this.rows = rows;
        this.columns = columns;
        Console.WriteLine($"| {string.Join(" | ", columns.Select(c => c.Header))} |");
        Console.WriteLine($"|{string.Concat(columns.Select(_ => " --- |"))}");
    }

    public void Add(TRow row)
    {
        Console.WriteLine($"| {string.Join(" | ", columns.Select(c => c.Cell(row)))} |");
        rows.Add(row);
        report.Save();
    }
}
