using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace MoeGpuStats.Tests.Support;

/// <summary>The Prometheus text format as a scraper parses it, and a free loopback port to serve it on.</summary>
internal static class PrometheusText
{
    /// <summary>The text format's <c># TYPE</c> lines (family to type) and samples (name with labels to value).</summary>
    internal static (Dictionary<string, string> Types, Dictionary<string, double> Samples) Parse(string text)
    {
        var types = new Dictionary<string, string>();
        var samples = new Dictionary<string, double>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                var parts = line.Split(' ');
                types.Add(parts[2], parts[3]);
            }
            else if (!line.StartsWith('#'))
            {
                var space = line.LastIndexOf(' ');
                samples.Add(line[..space], double.Parse(line[(space + 1)..], CultureInfo.InvariantCulture));
            }
        }

        return (types, samples);
    }

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
