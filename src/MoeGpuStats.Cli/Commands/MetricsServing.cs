using System.Net;
using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Cli.Commands;

/// <summary>The metrics endpoint of a recording command (<c>--metrics-port</c>, <c>--metrics-host</c>, <c>--serve-after</c>), the same for one layer and for a model.</summary>
internal static class MetricsServing
{
    /// <summary>
    /// Starts the endpoint <paramref name="start"/> makes on <paramref name="port"/>, when one was given,
    /// and says where it serves; false, after one line naming the option, when it cannot serve there.
    /// </summary>
    public static bool TryStart(CliConsole console, int? port, string host, Func<int, MetricsEndpoint> start, out MetricsEndpoint? endpoint)
    {
        endpoint = null;
        if (port is not { } given)
        {
            return true;
        }

        try
        {
            endpoint = start(given);
        }
        catch (Exception exception) when (exception is HttpListenerException or ArgumentException)
        {
            // A host other than the default may be the cause as well as the port: name both, and what a host may be.
            console.Error.WriteLine(host == "localhost"
                ? $"--metrics-port {given}: cannot serve metrics on {host}:{given} ({ErrorText.Of(exception)})."
                : $"--metrics-host {host} --metrics-port {given}: cannot serve metrics there ({HostProblem(host) ?? ErrorText.Of(exception)}); the host is localhost, this machine's name or IPv4 address, or + for every interface (no IPv6 address).");
            return false;
        }

        console.Error.WriteLine($"metrics: http://{host}:{given}/metrics");
        return true;
    }

    /// <summary>
    /// Why <paramref name="host"/> cannot be listened on, where the name says it, in place of the listener's "The request
    /// is not supported": a name that does not resolve, or one that names another machine; null otherwise.
    /// </summary>
    private static string? HostProblem(string host)
    {
        IPAddress[] addresses;
        try
        {
            addresses = Dns.GetHostAddresses(host);
        }
        catch (Exception exception) when (exception is System.Net.Sockets.SocketException or ArgumentException)
        {
            return $"{host} does not resolve: {ErrorText.Of(exception)}";
        }

        var own = System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces()
            .SelectMany(network => network.GetIPProperties().UnicastAddresses)
            .Select(unicast => unicast.Address)
            .ToHashSet();
        return addresses.Any(address => IPAddress.IsLoopback(address) || own.Contains(address))
            ? null
            : IPAddress.TryParse(host, out _) ? $"{host} is not an address of this machine"
            : $"{host} is {string.Join(", ", addresses.Select(address => address.ToString()))}, not an address of this machine";
    }

    /// <summary>Keeps the endpoint serving the final state, until Ctrl-C or SIGTERM (<c>--serve-after</c>).</summary>
    public static void ServeUntilInterrupted(CliConsole console, string host, int port)
    {
        var interrupt = console.Interrupt;
        interrupt.Serving();
        if (interrupt.Requested)
        {
            // Stopped while it finished: the operator asked for the end, not for serving.
            return;
        }

        console.Error.WriteLine($"metrics: serving the final state at http://{host}:{port}/metrics until Ctrl-C or SIGTERM");
        while (!interrupt.Requested)
        {
            Thread.Sleep(100);
        }
    }
}
