using System.Net;
using System.Net.Sockets;
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
        catch (Exception exception) when (exception is IOException or SocketException or ArgumentException)
        {
            // A host other than the default may be the cause as well as the port: name both, and what a host may be,
            // unless the port is the cause: taken by another program, or one this user may not listen on.
            var socket = SocketCause(exception);
            console.Error.WriteLine(host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || PortInUse(exception) || socket?.SocketErrorCode == SocketError.AccessDenied
                ? $"--metrics-port {given}: cannot serve metrics on {(host.Contains(':') && !host.StartsWith('[') ? $"[{host}]" : host)}:{given} ({Reason(exception, socket, given)})."
                : $"--metrics-host {host} --metrics-port {given}: cannot serve metrics there ({HostProblem(host) ?? Reason(exception, socket, given)}); {MetricsHost.Allowed}.");
            return false;
        }

        console.Error.WriteLine($"metrics: {MetricsHost.Parse(host).Described(given)}");
        return true;
    }

    /// <summary>
    /// The listener's words, with the socket's error where Kestrel's message leaves it out ("Failed to bind to address
    /// http://localhost:81", its two loopback addresses' errors kept inside), and what a port below 1024 needs where
    /// the system refused it.
    /// </summary>
    private static string Reason(Exception exception, SocketException? socket, int port)
    {
        var reason = ErrorText.Clause(exception);
        if (socket is not null && !reason.Contains(socket.Message, StringComparison.OrdinalIgnoreCase))
        {
            reason = $"{reason}: {ErrorText.Clause(socket)}";
        }

        return socket?.SocketErrorCode == SocketError.AccessDenied && port < 1024
            ? $"{reason}; a port below 1024 needs root or the CAP_NET_BIND_SERVICE capability: give 1024 or above"
            : reason;
    }

    /// <summary>The socket's error that made the listener fail, however Kestrel wrapped it, or null.</summary>
    private static SocketException? SocketCause(Exception exception) => Causes(exception).OfType<SocketException>().FirstOrDefault();

    /// <summary>Whether the listener failed because another program holds the port (Kestrel wraps the socket's error).</summary>
    private static bool PortInUse(Exception exception) =>
        Causes(exception).Any(cause => cause is Microsoft.AspNetCore.Connections.AddressInUseException or SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse });

    /// <summary><paramref name="exception"/> and the exceptions inside it, depth first (a localhost bind keeps its two addresses' errors in an AggregateException).</summary>
    private static IEnumerable<Exception> Causes(Exception exception) =>
        exception is AggregateException all
            ? all.InnerExceptions.SelectMany(Causes).Prepend(exception)
            : exception.InnerException is { } inner ? Causes(inner).Prepend(exception) : [exception];

    /// <summary>
    /// Why <paramref name="host"/> cannot be listened on, where the name says it, in place of the server's words ("Cannot
    /// assign requested address", "Invalid argument"): a name that does not resolve, an address of another machine, or
    /// a link-local address without its interface; null otherwise.
    /// </summary>
    private static string? HostProblem(string host)
    {
        var where = MetricsHost.Parse(host);
        if (host == "+")
        {
            return null;
        }

        IPAddress[] addresses;
        if (where.Address is { } literal)
        {
            if (literal.IsIPv6LinkLocal && literal.ScopeId == 0)
            {
                var owner = System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces()
                    .FirstOrDefault(network => network.GetIPProperties().UnicastAddresses.Any(unicast => new IPAddress(unicast.Address.GetAddressBytes()).Equals(literal)));
                return $"{host} is a link-local address, which needs its interface: {literal}%{owner?.Name ?? "INTERFACE"}";
            }

            addresses = [literal];
        }
        else if (host.All(c => char.IsAsciiDigit(c) || c == '.'))
        {
            // The resolver's "Name or service not known" would call an address mistyped by a digit a name.
            return $"{host} is not an IPv4 address: four numbers from 0 to 255, separated by dots";
        }
        else
        {
            try
            {
                addresses = Dns.GetHostAddresses(host);
            }
            catch (Exception exception) when (exception is SocketException or ArgumentException)
            {
                return $"{host} does not resolve: {ErrorText.Clause(exception)}";
            }
        }

        if (addresses.Length == 0)
        {
            return $"{host} resolves to no address";
        }

        var other = addresses.FirstOrDefault(address => !address.Equals(IPAddress.Any) && !address.Equals(IPAddress.IPv6Any) && !IsThisMachines(address));
        return other is null ? null : other.Equals(where.Address) ? $"{host} is not an address of this machine" : $"{host} is {other}, not an address of this machine";
    }

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

        console.Error.WriteLine($"metrics: serving the final state at {MetricsHost.Parse(host).Described(port)} until Ctrl-C or SIGTERM");
        while (!interrupt.Requested)
        {
            Thread.Sleep(100);
        }
    }
}
