using System.Net.Sockets;
using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Commands;
using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Commands;

/// <summary>
/// <see cref="MetricsServing.TryStart"/> called directly, with endpoints that fail as a listener fails: the line that
/// names the option, the port alone where the host is fine, the host's own problem where its name says one.
/// </summary>
public sealed class MetricsServingTests
{
    private const string Allowed = "give localhost, this machine's name or address (IPv4, or IPv6 bare or in brackets), or + for every interface.";

    [Fact]
    public void WithoutAPortNothingStarts()
    {
        var (started, error) = Start("localhost", _ => throw new InvalidOperationException("started"), port: null);

        Assert.True(started);
        Assert.Empty(error);
    }

    /// <summary>The endpoint started says where it serves, in one line.</summary>
    [Fact]
    public void AStartedEndpointSaysWhereItServes()
    {
        using var stats = new RoutingStats();
        var port = PrometheusText.FreePort();
        var (started, error) = Start("127.0.0.1", given => MetricsEndpoint.Start(stats, "127.0.0.1", given), port);

        Assert.True(started);
        Assert.Equal($"metrics: http://127.0.0.1:{port}/metrics", error);
    }

    /// <summary>
    /// On the default host, or where another program holds the port, the port alone is named, whatever the listener's
    /// reason: an IPv6 address given in brackets is shown as given.
    /// </summary>
    [Fact]
    public void AFailureOnAGoodHostNamesThePortAlone()
    {
        Assert.Equal((false, "--metrics-port 9400: cannot serve metrics on localhost:9400 (the listener failed)."), Start("localhost", _ => throw new IOException("the listener failed.")));
        var taken = new SocketException((int)SocketError.AddressAlreadyInUse);
        Assert.Equal((false, $"--metrics-port 9400: cannot serve metrics on [::1]:9400 ({ErrorText.Clause(taken)})."), Start("[::1]", _ => throw taken));
        Assert.Equal((false, $"--metrics-port 9400: cannot serve metrics on [::1]:9400 ({ErrorText.Clause(taken)})."), Start("::1", _ => throw taken));
    }

    /// <summary>
    /// Kestrel's own word for a port another program holds (AddressInUseException, wrapped in an IOException) names the
    /// port alone on a host other than the default, though no socket's error comes with it.
    /// </summary>
    [Fact]
    public void KestrelsAddressInUseNamesThePortAlone()
    {
        var taken = new IOException("Failed to bind to address http://127.0.0.1:9400.", new Microsoft.AspNetCore.Connections.AddressInUseException("Address already in use"));

        var (started, error) = Start("127.0.0.1", _ => throw taken);

        Assert.False(started);
        Assert.Equal($"--metrics-port 9400: cannot serve metrics on 127.0.0.1:9400 ({ErrorText.Clause(taken)}).", error);
    }

    /// <summary>
    /// A port the system refuses this user (below 1024 without root) is the port's problem on any host, not the host's,
    /// with the socket's reason that Kestrel keeps inside its own message for localhost (in any case) and what such a
    /// port needs.
    /// </summary>
    [Theory]
    [InlineData("localhost", "localhost")]
    [InlineData("LOCALHOST", "LOCALHOST")]
    [InlineData("127.0.0.1", "127.0.0.1")]
    [InlineData("::", "[::]")]
    public void APortThisUserMayNotListenOnIsNamedWithWhatItNeeds(string host, string shown)
    {
        var denied = new SocketException((int)SocketError.AccessDenied);
        var wrapped = new IOException("Failed to bind to address http://localhost:81.", new AggregateException(denied, new SocketException((int)SocketError.AccessDenied)));

        var (started, error) = Start(host, _ => throw wrapped, port: 81);

        Assert.False(started);
        Assert.Equal($"--metrics-port 81: cannot serve metrics on {shown}:81 (Failed to bind to address http://localhost:81: {ErrorText.Clause(denied)}; a port below 1024 needs root or the CAP_NET_BIND_SERVICE capability: give 1024 or above).", error);
        Assert.Equal($"--metrics-port 1081: cannot serve metrics on {shown}:1081 ({ErrorText.Clause(denied)}).", Start(host, _ => throw denied, port: 1081).Error);
    }

    /// <summary>A listener's argument error (an address it will not take) is one line, as its other failures are, not a crash.</summary>
    [Fact]
    public void AListenersArgumentErrorIsOneLine()
    {
        Assert.Equal((false, "--metrics-port 9400: cannot serve metrics on localhost:9400 (the address is not supported)."), Start("localhost", _ => throw new ArgumentException("the address is not supported.")));
    }

    /// <summary>
    /// Hosts of this machine whose failure the name does not explain get the listener's words: every interface (+),
    /// every IPv4 address (0.0.0.0), every IPv6 address (::), a loopback address no interface lists (127.0.0.2).
    /// </summary>
    [Theory]
    [InlineData("+")]
    [InlineData("0.0.0.0")]
    [InlineData("::")]
    [InlineData("127.0.0.2")]
    public void AHostOfThisMachineGetsTheListenersWords(string host)
    {
        var (started, error) = Start(host, _ => throw new IOException("the listener failed."));

        Assert.False(started);
        Assert.Equal($"--metrics-host {host} --metrics-port 9400: cannot serve metrics there (the listener failed); {Allowed}", error);
    }

    /// <summary>A link-local address needs its interface; given one, it is an address like any other (here, of no interface).</summary>
    [Fact]
    public void ALinkLocalAddressIsNamedByWhatItLacks()
    {
        var (_, bare) = Start("fe80::1234:5678", _ => throw new IOException("Invalid argument."));
        Assert.Contains("(fe80::1234:5678 is a link-local address, which needs its interface: fe80::1234:5678%INTERFACE)", bare);

        var (_, scoped) = Start("fe80::1234:5678%1", _ => throw new IOException("Invalid argument."));
        Assert.Contains("(fe80::1234:5678%1 is not an address of this machine)", scoped);
    }

    /// <summary>
    /// --serve-after serves until a signal, saying so; a signal that came while the run finished asked for the end, not
    /// for serving, and nothing is served.
    /// </summary>
    [Fact]
    public async Task ServingLastsUntilASignalUnlessOneCameBefore()
    {
        using var error = new StringWriter();
        using var interrupt = new Interruption(TextWriter.Null, onNewLine: false, handleSignals: false);
        var console = new CliConsole(TextWriter.Null, error, ErrorIsTerminal: false) { Interrupt = interrupt };
        interrupt.Finishing();
        interrupt.Receive();

        MetricsServing.ServeUntilInterrupted(console, "localhost", 9400);
        Assert.Empty(error.ToString());

        using var later = new Interruption(TextWriter.Null, onNewLine: false, handleSignals: false);
        var serving = Task.Run(() => MetricsServing.ServeUntilInterrupted(console with { Interrupt = later }, "localhost", 9400), TestContext.Current.CancellationToken);
        await Task.Delay(300, TestContext.Current.CancellationToken);
        Assert.False(serving.IsCompleted);
        later.Receive();
        await serving.WaitAsync(Patience.GoAhead, TestContext.Current.CancellationToken);
        Assert.Equal("metrics: serving the final state at http://localhost:9400/metrics until Ctrl-C or SIGTERM", error.ToString().Trim());
    }

    private static (bool Started, string Error) Start(string host, Func<int, MetricsEndpoint> start, int? port = 9400)
    {
        using var error = new StringWriter();
        var started = MetricsServing.TryStart(new CliConsole(TextWriter.Null, error, ErrorIsTerminal: false), port, host, start, out var endpoint);
        endpoint?.Dispose();
        return (started, error.ToString().Trim());
    }
}
