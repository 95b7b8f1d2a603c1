using Microsoft.Extensions.Logging;

namespace MoeGpuStats.Cli;

internal static class Logging
{
    /// <summary>Console logging; with <c>--json</c> everything goes to standard error so standard output holds the JSON alone.</summary>
    public static ILoggerFactory Create(bool json) => LoggerFactory.Create(builder => builder
        .AddSimpleConsole(options => options.SingleLine = true)
        .AddConsole(options => options.LogToStandardErrorThreshold = json ? LogLevel.Trace : LogLevel.None));
}
