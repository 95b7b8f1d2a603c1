using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text.Json;

namespace MoeGpuStats.Tests.Support;

/// <summary>
/// A Prometheus server of its own (a temporary folder, a free port) that scrapes local endpoints
/// every second, and its HTTP query API, for tests that run PromQL against real scrapes.
/// </summary>
internal sealed class PrometheusServer : IDisposable
{
    private readonly Process _process;
    private readonly string _folder;
    private readonly HttpClient _http;
    private readonly int _targets;

    // Prometheus's last log lines (warnings and errors: --log.level=warn), for a failure's message.
    private readonly Queue<string> _log = new();

    private PrometheusServer(Process process, string folder, int port, int targets)
    {
        (_process, _folder, _targets) = (process, folder, targets);
        _http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };
    }

    /// <summary>
    /// Starts <paramref name="server"/> scraping <c>localhost:port/metrics</c> of each port as job
    /// <c>moegs</c> and evaluating <paramref name="rules"/> (a rule file, or none), every second, and
    /// waits until it is ready.
    /// </summary>
    public static async Task<PrometheusServer> StartAsync(string server, IReadOnlyCollection<int> ports, CancellationToken cancel, string? rules = null)
    {
        var folder = Directory.CreateTempSubdirectory("moegs-prometheus-").FullName;
        var targets = string.Join(", ", ports.Select(port => $"\"localhost:{port}\""));
        var ruleFiles = rules is null ? "" : $"rule_files: [\"{rules}\"]\n";
        var config = Path.Combine(folder, "prometheus.yml");
        await File.WriteAllTextAsync(
            config,
            $"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{ruleFiles}scrape_configs:\n  - job_name: moegs\n    static_configs:\n      - targets: [{targets}]\n",
            cancel);
        var port = PrometheusText.FreePort();
        var start = new ProcessStartInfo(server)
        {
            ArgumentList = { $"--config.file={config}", $"--storage.tsdb.path={Path.Combine(folder, "data")}", $"--web.listen-address=127.0.0.1:{port}", "--log.level=warn" },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        var prometheus = new PrometheusServer(Process.Start(start)!, folder, port, ports.Count);
        prometheus._process.OutputDataReceived += (_, line) => prometheus.Log(line.Data);
        prometheus._process.ErrorDataReceived += (_, line) => prometheus.Log(line.Data);
        prometheus._process.BeginOutputReadLine();
        prometheus._process.BeginErrorReadLine();
        try
        {
            await prometheus.WaitAsync(async () => (await prometheus._http.GetAsync("-/ready", cancel)).IsSuccessStatusCode, "get ready", () => { }, cancel);
        }
        catch
        {
            // Not left running (or its folder left behind) by a test that never gets it.
            prometheus.Dispose();
            throw;
        }

        return prometheus;
    }

    // How often the sum of each target's counters changed over the last minute: a subquery at a quarter of the scrape
    // interval sees every scrape's sample (changes() of the counters themselves drops their names, and so cannot be
    // summed by target).
    private const string TotalsChanges = """changes(sum by (instance) ({__name__=~"moegpustats_.+_total"})[1m:250ms])""";

    /// <summary>
    /// Waits until every target served at least <paramref name="readings"/> different readings over the last minute (a
    /// counter of its own changed <paramref name="readings"/> − 1 times), calling <paramref name="between"/> between checks.
    /// </summary>
    /// <remarks>
    /// Scrapes alone are not enough for a rate: an endpoint keeps its reading for a second, as long as the scrape
    /// interval, so two scrapes can take one reading, and a scrape that outlasts its second on a busy host counts in
    /// <c>up</c> as a failed one. Rates over scrapes of one reading are 0, and a share of two of them NaN.
    /// </remarks>
    public Task WaitForReadingsAsync(int readings, Action between, CancellationToken cancel) =>
        WaitAsync(
            async () => await QueryAsync(TotalsChanges, cancel) is var changed
                && changed.Length == _targets && changed.All(target => Value(target) >= readings - 1),
            $"serve {readings} different readings from each of its {_targets} targets",
            between,
            cancel);

    /// <summary>The instant vector <paramref name="promql"/> gives now; throws with Prometheus's error where the query fails.</summary>
    public async Task<JsonElement[]> QueryAsync(string promql, CancellationToken cancel)
    {
        using var answer = await _http.GetAsync($"api/v1/query?query={Uri.EscapeDataString(promql)}", cancel);
        var body = await answer.Content.ReadAsStringAsync(cancel);
        Assert.True(answer.IsSuccessStatusCode, $"{promql}\n{body}");
        return JsonDocument.Parse(body).RootElement.GetProperty("data").GetProperty("result").EnumerateArray().ToArray();
    }

    /// <summary>The series that match <paramref name="selector"/>, as label sets.</summary>
    public async Task<JsonElement[]> SeriesAsync(string selector, CancellationToken cancel)
    {
        using var answer = await _http.GetAsync($"api/v1/series?match[]={Uri.EscapeDataString(selector)}", cancel);
        var body = await answer.Content.ReadAsStringAsync(cancel);
        Assert.True(answer.IsSuccessStatusCode, $"{selector}\n{body}");
        return JsonDocument.Parse(body).RootElement.GetProperty("data").EnumerateArray().ToArray();
    }

    /// <summary>The alerting rules as Prometheus evaluates them: each rule's name, health ("ok", "err" or "unknown") and state ("inactive", "pending" or "firing").</summary>
    public async Task<(string Name, string Health, string State)[]> AlertsAsync(CancellationToken cancel)
    {
        var body = await _http.GetStringAsync("api/v1/rules?type=alert", cancel);
        return JsonDocument.Parse(body).RootElement.GetProperty("data").GetProperty("groups").EnumerateArray()
            .SelectMany(group => group.GetProperty("rules").EnumerateArray())
            .Select(rule => (rule.GetProperty("name").GetString()!, rule.GetProperty("health").GetString()!, rule.GetProperty("state").GetString()!))
            .ToArray();
    }

    /// <summary>A sample's value (Prometheus sends it as a string: "NaN" and "+Inf" among them).</summary>
    public static double Value(JsonElement sample) => double.Parse(sample.GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture);

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }

        _process.Dispose();
        _http.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    private void Log(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_log)
        {
            _log.Enqueue(line);
            if (_log.Count > 20)
            {
                _log.Dequeue();
            }
        }
    }

    private string LastLog()
    {
        lock (_log)
        {
            return _log.Count == 0 ? "(nothing logged)" : string.Join("\n", _log);
        }
    }

    private async Task WaitAsync(Func<Task<bool>> done, string what, Action between, CancellationToken cancel)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (_process.HasExited)
            {
                // Until the log's last lines are read.
                _process.WaitForExit();
                Assert.Fail($"Prometheus exited ({_process.ExitCode}) before it could {what}:\n{LastLog()}");
            }

            try
            {
                if (await done())
                {
                    return;
                }
            }
            // A server that is starting, or exiting, refuses the connection (HttpRequestException), or closes it as
            // the client asks where it is connected (a bare SocketException, ENOTCONN, from HttpClient's connect).
            catch (Exception notUp) when (notUp is HttpRequestException or SocketException && deadline.Elapsed < Patience.GoAhead)
            {
            }

            Assert.True(deadline.Elapsed < Patience.GoAhead, $"Prometheus did not {what} within {Patience.GoAhead.TotalSeconds:0} s:\n{LastLog()}");
            between();
            await Task.Delay(250, cancel);
        }
    }
}
