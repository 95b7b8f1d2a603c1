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
        catch (Exception exception) when (exception is IOException or System.Net.Sockets.SocketException or ArgumentException)
        {
            // A host other than the default may be the cause as well as the port: name both, and what a host may be.
            console.Error.WriteLine(host == "localhost"
                ? $"--metrics-port {given}: cannot serve metrics on {host}:{given} ({ErrorText.Clause(exception)})."
                : $"--metrics-host {host} --metrics-port {given}: cannot serve metrics there ({HostProblem(host) ?? ErrorText.Clause(exception)}); the host is localhost, this machine's name or address, or + for every interface.");
            return false;
        }

        console.Error.WriteLine($"metrics: {Url(host, given)}");
        return true;
    }

    /// <summary>
    /// Why <paramref name="host"/> cannot be listened on, where the name says it, in place of the server's words ("Cannot
    /// assign requested address"): a name that does not resolve, or one with an address of another machine; null otherwise.
    /// </summary>
    private static string? HostProblem(string host)
    {
        if (host == "+")
        {
            return null;
        }

        IPAddress[] addresses;
        if (IPAddress.TryParse(host.Trim('[', ']'), out var literal))
        {
            addresses = [literal];
        }
        else
        {
            try
            {
                addresses = Dns.GetHostAddresses(host);
            }
            catch (Exception exception) when (exception is System.Net.Sockets.SocketException or ArgumentException)
            {
                return $"{host} does not resolve: {ErrorText.Clause(exception)}";
            }
        }

        var other = addresses.FirstOrDefault(address => !address.Equals(IPAddress.Any) && !address.Equals(IPAddress.IPv6Any) && !IsThisMachines(address));
        return other is null ? null : other.ToString() == host.Trim('[', ']') ? $"{host} is not an address of this machine" : $"{host} is {other}, not an address of this machine";
    }

    /// <summary>The endpoint's address as a scraper gives it: an IPv6 address in brackets.</summary>
    private static string Url(string host, int port) =>
        IPAddress.TryParse(host, out var address) && address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
            ? $"http://[{address}]:{port}/metrics"
            : $"http://{host}:{port}/metrics";

    private static bool IsThisMachines(IPAddress address) =>
        IPAddress.IsLoopback(address)
        || System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces()
            .SelectMany(network => network.GetIPProperties().UnicastAddresses)
            .Any(unicast => unicast.Address.Equals(address));

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

        console.Error.WriteLine($"metrics: serving the final state at {Url(host, port)} until Ctrl-C or SIGTERM");
        while (!interrupt.Requested)
        {
            Thread.Sleep(100);
        }
    }
}
