using Microsoft.Extensions.Logging;

namespace MoeGpuStats.Device;

/// <summary>The device engine's log messages.</summary>
public sealed partial class DeviceRoutingStats
{
    private static partial class Log
    {
        /// <summary>The record kernel loads without its launch bounds: slower on CUDA, and otherwise silent.</summary>
        [LoggerMessage(
            2,
            LogLevel.Warning,
            "The record kernel on {Device} runs without its launch bounds (fewer groups per multiprocessor, slower records): this ILGPU lacks {Missing}. The project pins ILGPU 1.5.3.",
            EventName = "LaunchBoundsUnavailable")]
        public static partial void LaunchBoundsUnavailable(ILogger logger, string device, string missing);
    }
}
