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
    [InlineData("+", "http://+:9/metrics")]
    [InlineData("127.0.0.1", "http://127.0.0.1:9/metrics")]
    [InlineData("::1", "http://[::1]:9/metrics")]
    [InlineData("[::1]", "http://[::1]:9/metrics")]
    [InlineData("::", "http://[::]:9/metrics")]
    [InlineData("::ffff:127.0.0.1", "http://127.0.0.1:9/metrics")]
    [InlineData("fe80::1%eth0", "http://[fe80::1%25eth0]:9/metrics")]
    [InlineData("node-7.cluster.example", "http://node-7.cluster.example:9/metrics")]
    public void AHostIsTakenAndItsUrlIsOneAScraperReads(string host, string url)
    {
        Assert.Null(MetricsHost.Problem(host));
        Assert.Equal(url, MetricsHost.Parse(host).Url(9));
        Assert.True(Uri.TryCreate(url, UriKind.Absolute, out _) || host == "+", url);
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
