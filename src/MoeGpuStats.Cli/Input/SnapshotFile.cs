using System.Text.Json;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Cli.Input;

/// <summary>A snapshot saved with --save (or the seed's serde), as report, merge and plan read it.</summary>
internal static class SnapshotFile
{
    /// <summary>Reads <paramref name="path"/>; any way the file is malformed is an <see cref="InvalidDataException"/> naming it.</summary>
    public static RoutingStats Load(string path)
    {
        try
        {
            return RoutingStatsFile.Load(path);
        }
        catch (Exception exception) when (exception is JsonException or ArgumentException or OverflowException)
        {
            throw new InvalidDataException($"{path}: not a routing statistics snapshot ({ErrorText.Of(exception)}).", exception);
        }
    }
}
