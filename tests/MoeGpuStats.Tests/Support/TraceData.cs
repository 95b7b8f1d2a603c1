using System.Text.Json;

namespace MoeGpuStats.Tests.Support;

/// <summary>
/// The committed traces of Cli/TestData (make_traces.py wrote them with NumPy) as the test binaries carry
/// them (cli-traces/), and the ids make_traces.py saved beside them.
/// </summary>
internal static class TraceData
{
    internal static string Data(string name) => Path.Combine(AppContext.BaseDirectory, "cli-traces", name);

    /// <summary>The ids of a trace, [steps][layers][tokens][k], as make_traces.py saved them.</summary>
    internal static int[][][][] Steps(string name)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Data(name)));
        return json.RootElement.GetProperty("steps").Deserialize<int[][][][]>()!;
    }
}
