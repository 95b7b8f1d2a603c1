namespace MoeGpuStats.Tests.Support;

/// <summary>
/// Prometheus's own programs for the monitoring tests: promtool, and the server beside it (both from
/// <c>bash scripts/promtool.sh</c>, which <c>.ci/run</c> runs), found through <c>MOEGS_PROMTOOL</c> or PATH.
/// </summary>
internal static class PrometheusTools
{
    public const string Missing = "No promtool here: set MOEGS_PROMTOOL (bash scripts/promtool.sh fetches it and the server) or install Prometheus.";

    public static string? Promtool =>
        new[] { Environment.GetEnvironmentVariable("MOEGS_PROMTOOL"), ExternalProgram.FindOnPath("promtool") }
            .FirstOrDefault(path => !string.IsNullOrEmpty(path) && File.Exists(path));

    /// <summary>The Prometheus server in promtool's folder, else on PATH; null where there is none.</summary>
    public static string? Server =>
        new[] { Promtool is { } promtool ? Path.Combine(Path.GetDirectoryName(promtool)!, "prometheus") : null, ExternalProgram.FindOnPath("prometheus") }
            .FirstOrDefault(path => !string.IsNullOrEmpty(path) && File.Exists(path));
}
