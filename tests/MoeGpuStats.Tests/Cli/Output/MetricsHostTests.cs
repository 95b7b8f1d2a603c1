using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>
/// <c>--metrics-host</c> as <see cref="MetricsHost"/> reads it: what it takes, the address a scraper is told, and what
/// it refuses (an empty host resolved to every address of the machine; brackets or a port that IPAddress takes in
/// passing were served on an address other than the one printed).
/// </summary>
public sealed class MetricsHostTests
{
    [Theory]
    [InlineData("localhost", "http://localhost:9/metrics")]
    [InlineData("LOCALHOST", "http://LOCALHOST:9/metrics")]
    [InlineData("127.0.0.1", "http://127.0.0.1:9/metrics")]
    [InlineData("::1", "http://[::1]:9/metrics")]
    [InlineData("[::1]", "http://[::1]:9/metrics")]
    [InlineData("::ffff:127.0.0.1", "http://127.0.0.1:9/metrics")]
    [InlineData("fe80::1%eth0", "http://[fe80::1%25eth0]:9/metrics")]
    [InlineData("node-7.cluster.example", "http://node-7.cluster.example:9/metrics")]
    public void AHostIsTakenAndItsUrlIsOneAScraperReads(string host, string url)
    {
        Assert.Null(MetricsHost.Problem(host));
        Assert.Equal(url, MetricsHost.Parse(host).Url(9));
        Assert.True(Uri.TryCreate(url, UriKind.Absolute, out _), url);
    }

    /// <summary>
    /// A host that serves every address (<c>+</c>, and <c>0.0.0.0</c> and <c>::</c> for a family) is named by this
    /// machine's name, which a scraper elsewhere reads (not <c>http://+:9</c> or <c>http://0.0.0.0:9</c>), and said to
    /// serve every address.
    /// </summary>
    [Theory]
    [InlineData("+", "")]
    [InlineData("0.0.0.0", "IPv4 ")]
    [InlineData("::ffff:0.0.0.0", "IPv4 ")]
    [InlineData("::", "IPv6 ")]
    [InlineData("[::]", "IPv6 ")]
    public void EveryAddressIsNamedByThisMachinesName(string host, string family)
    {
        var every = MetricsHost.Parse(host);
        var url = $"http://{System.Net.Dns.GetHostName()}:9/metrics";

        Assert.Equal(url, every.Url(9));
        Assert.True(Uri.TryCreate(url, UriKind.Absolute, out _), url);
        Assert.Equal($"{url} (and every other {family}address of this machine)", every.Described(9));
        Assert.Equal("http://localhost:9/metrics", MetricsHost.Parse("localhost").Described(9));
    }

    [Theory]
    [InlineData("")]
    [InlineData(" ")]
    [InlineData(" localhost")]
    [InlineData("[::1]:80")]
    [InlineData("::1]")]
    [InlineData("[::1")]
    [InlineData("[127.0.0.1]")]
    [InlineData("localhost:80")]
    [InlineData("http://localhost")]
    [InlineData("*")]
    public void AnythingElseIsRefusedSayingWhatAHostIs(string host)
    {
        Assert.Equal(MetricsHost.Allowed, MetricsHost.Problem(host));
        var error = Assert.Throws<ArgumentException>(() => MetricsHost.Parse(host));
        Assert.Equal($"{host}: {MetricsHost.Allowed}.", error.Message.Split(" (Parameter")[0]);
    }
}
