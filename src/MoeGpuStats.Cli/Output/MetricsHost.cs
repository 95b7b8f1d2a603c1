using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// Where the metrics endpoint serves, as <c>--metrics-host</c> names it: <c>localhost</c> (the IPv4 and IPv6 loopback
/// addresses), <c>+</c> (every interface), one IPv4 or IPv6 address (IPv6 bare or in brackets; an IPv4-mapped one is
/// its IPv4 address), or a name of this machine (every address it resolves to).
/// </summary>
internal sealed class MetricsHost
{
    /// <summary>What a host may be, for the messages that refuse one.</summary>
    public const string Allowed = "give localhost, this machine's name or address (IPv4, or IPv6 bare or in brackets), or + for every interface";

    private readonly string _given;

    private MetricsHost(string given, IPAddress? address)
    {
        _given = given;
        Address = address;
    }

    /// <summary>The one address given, or null for <c>localhost</c>, <c>+</c> or a name.</summary>
    public IPAddress? Address { get; }

    private bool IsLocalhost => _given.Equals("localhost", StringComparison.OrdinalIgnoreCase);

    private bool IsEveryInterface => _given == "+";

    /// <summary>Reads <paramref name="host"/>.</summary>
    /// <exception cref="ArgumentException">It is none of the hosts above: empty, brackets that are not a pair around an IPv6 address, a port, or not a host name.</exception>
    public static MetricsHost Parse(string host) =>
        TryParse(host) ?? throw new ArgumentException($"{host}: {Allowed}.", nameof(host));

    /// <summary>Why <paramref name="host"/> is not a host (<see cref="Allowed"/>), or null where it is.</summary>
    public static string? Problem(string host) => TryParse(host) is null ? Allowed : null;

    private static MetricsHost? TryParse(string host)
    {
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || host == "+")
        {
            return new MetricsHost(host, null);
        }

        // IPAddress.TryParse also takes "[::1]:80" and "::1]": brackets only as a pair around an IPv6 address, no port.
        var bracketed = host.StartsWith('[') && host.EndsWith(']');
        var literal = bracketed ? host[1..^1] : host;
        if (!literal.Contains('[') && !literal.Contains(']') && IPAddress.TryParse(literal, out var address)
            && (!bracketed || address.AddressFamily == AddressFamily.InterNetworkV6))
        {
            return new MetricsHost(host, address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address);
        }

        return Uri.CheckHostName(host) == UriHostNameType.Dns ? new MetricsHost(host, null) : null;
    }

    /// <summary>
    /// The endpoint's address as a scraper gives it: an IPv6 address in brackets; for every address (<c>+</c>,
    /// <c>0.0.0.0</c>, <c>::</c>, which no scraper reads as a host), this machine's name.
    /// </summary>
    public string Url(int port) => Address switch
    {
        _ when EveryAddressOf is not null => $"http://{Dns.GetHostName()}:{port}/metrics",
        // A zone as given (%eth0, not the index .NET writes), escaped as RFC 6874 has it in a URL.
        { AddressFamily: AddressFamily.InterNetworkV6 } => $"http://[{_given.TrimStart('[').TrimEnd(']').Replace("%", "%25", StringComparison.Ordinal)}]:{port}/metrics",
        { } v4 => $"http://{v4}:{port}/metrics",
        null => $"http://{_given}:{port}/metrics",
    };

    /// <summary>The address as the command line reports it: <see cref="Url"/>, and where every address serves, that they do.</summary>
    public string Described(int port) => EveryAddressOf is { } family ? $"{Url(port)} (and every other {family}address of this machine)" : Url(port);

    /// <summary>
    /// Where the endpoint serves every address of the machine: "" for <c>+</c>, "IPv4 " for <c>0.0.0.0</c>, "IPv6 " for
    /// <c>::</c>; null where it serves the addresses named.
    /// </summary>
    private string? EveryAddressOf =>
        IsEveryInterface ? "" : IPAddress.Any.Equals(Address) ? "IPv4 " : IPAddress.IPv6Any.Equals(Address) ? "IPv6 " : null;

    /// <summary>Has <paramref name="kestrel"/> listen on <paramref name="port"/> of this host's addresses.</summary>
    /// <exception cref="SocketException">A name that does not resolve, or resolves to no address.</exception>
    public void Listen(KestrelServerOptions kestrel, int port)
    {
        if (IsLocalhost)
        {
            kestrel.ListenLocalhost(port);
        }
        else if (IsEveryInterface)
        {
            kestrel.ListenAnyIP(port);
        }
        else if (Address is { } address)
        {
            kestrel.Listen(address, port);
        }
        else
        {
            // Kestrel given no address would serve its default, localhost:5000.
            var addresses = Dns.GetHostAddresses(_given).Distinct().ToArray();
            if (addresses.Length == 0)
            {
                throw new SocketException((int)SocketError.HostNotFound);
            }

            foreach (var resolved in addresses)
            {
                kestrel.Listen(resolved, port);
            }
        }
    }

    /// <summary>
    /// Has <paramref name="sockets"/> bind <c>::</c> to IPv6 alone: Kestrel makes a socket on IPv6's unspecified address
    /// dual-stack, which serves every IPv4 address too, where <c>0.0.0.0</c> and <c>+</c> are the ways to ask for those.
    /// </summary>
    public void Bind(SocketTransportOptions sockets)
    {
        if (IPAddress.IPv6Any.Equals(Address))
        {
            sockets.CreateBoundListenSocket = BindIPv6Only;
        }
    }

    private static Socket BindIPv6Only(EndPoint endpoint)
    {
        var socket = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp) { DualMode = false };
        try
        {
            socket.Bind(endpoint);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public override string ToString() => _given;
}
