using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using TauCluster.Benchmarks;

// Load test, loopback only and bounded: starts two silo processes (one localhost cluster), drives N concurrent
// streaming chat sessions × M tokens through their HTTP APIs, deletes the sessions and checks that the silos'
// memory returns to its baseline. Prints a JSON summary; exits non-zero on any error or leaked memory.
//   dotnet run -c Release --project benchmarks/TauCluster.LoadTest -- [--sessions 64] [--tokens 64] [--timeout 600]

int sessions = Option("--sessions", 64), tokens = Option("--tokens", 64), timeoutSeconds = Option("--timeout", 600);
using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(timeoutSeconds));
var silos = new List<Process>();
try
{
    string clusterId = $"load-{Guid.NewGuid():N}"[..16];
    int primaryPort = SiloProcesses.FreePort();
    var urls = new List<Uri>();
    for (int i = 0; i < 2; i++)
    {
        var (silo, url, _) = SiloProcesses.Start($"silo{i}", clusterId, primaryPort, primary: i == 0, ["--Tau:Http:EnableAdmin=true"]);
        silos.Add(silo);
        urls.Add(url);
    }
    using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(timeoutSeconds) };
    foreach (var url in urls) await SiloProcesses.WaitHealthy(http, url, deadline.Token);

    // Warm up both silos (model loaded, code jitted), then take the memory baseline.
    foreach (var url in urls) await Chat(http, url, null, 4, 0, deadline.Token);   // no session: nothing stays behind
    var baseline = await Task.WhenAll(urls.Select(u => CollectGarbage(http, u)));

    var started = Stopwatch.StartNew();
    var runs = await Task.WhenAll(Enumerable.Range(0, sessions).Select(i => Chat(http, urls[i % urls.Count], $"load-{clusterId}-{i}", tokens, i, deadline.Token)));
    double wall = started.Elapsed.TotalSeconds;

    int deleteErrors = 0;
    foreach (var (_, i) in runs.Select((r, i) => (r, i)))
    {
        using var deleted = await http.DeleteAsync(new Uri(urls[i % urls.Count], $"/v1/sessions/load-{clusterId}-{i}"), deadline.Token);
        if (!deleted.IsSuccessStatusCode) deleteErrors++;
    }
    var after = await Task.WhenAll(urls.Select(u => CollectGarbage(http, u)));
    var metrics = await Task.WhenAll(urls.Select(u => http.GetStringAsync(new Uri(u, "/metrics"), deadline.Token)));

    var ttft = runs.Where(r => r.Error is null).Select(r => r.TtftMs).Order().ToArray();
    long generated = runs.Sum(r => r.Tokens);
    int errors = runs.Count(r => r.Error is not null) + deleteErrors;
    long cacheBytes = metrics.Sum(m => SiloProcesses.Gauge(m, "tau_cache_bytes{otel_scope_name=\"TauCluster\",cache=\"tau\"}"));
    long activeSessions = metrics.Sum(m => SiloProcesses.Gauge(m, "tau_active_sessions{otel_scope_name=\"TauCluster\"}"));
    long heapBefore = baseline.Sum(b => b.Heap), heapAfter = after.Sum(a => a.Heap);
    bool memoryBack = cacheBytes == 0 && activeSessions == 0 && heapAfter <= heapBefore + 16L * 1024 * 1024;

    var summary = new JsonObject
    {
        ["sessions"] = sessions,
        ["tokens_per_session"] = tokens,
        ["silos"] = urls.Count,
        ["errors"] = errors,
        ["generated_tokens"] = generated,
        ["wall_seconds"] = Math.Round(wall, 2),
        ["aggregate_tokens_per_second"] = Math.Round(generated / wall, 1),
        ["ttft_ms_p50"] = Math.Round(Percentile(ttft, 0.50), 1),
        ["ttft_ms_p99"] = Math.Round(Percentile(ttft, 0.99), 1),
        ["heap_bytes_baseline"] = heapBefore,
        ["heap_bytes_after_delete"] = heapAfter,
        ["cache_bytes_after_delete"] = cacheBytes,
        ["active_sessions_after_delete"] = activeSessions,
        ["memory_back_to_baseline"] = memoryBack,
        ["first_errors"] = new JsonArray(runs.Where(r => r.Error is not null).Take(3).Select(r => (JsonNode)r.Error!).ToArray()),
    };
    Console.WriteLine(summary.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    return errors == 0 && memoryBack ? 0 : 1;
}
catch (OperationCanceledException) when (deadline.IsCancellationRequested)
{
    Console.Error.WriteLine($"load test: gave up after {timeoutSeconds} s");
    return 2;
}
finally
{
    SiloProcesses.Stop(silos);
}

static async Task<Run> Chat(HttpClient http, Uri silo, string? session, int maxTokens, int seed, CancellationToken cancellation)
{
    var body = new JsonObject
    {
        ["model"] = "paper",
        ["session"] = session,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"Session {seed}: what does this CVE record say?" }),
        ["max_tokens"] = maxTokens,
        ["temperature"] = 0.8,
        ["seed"] = seed,
        ["stream"] = true,
        ["stream_options"] = new JsonObject { ["include_usage"] = true },
    };
    var clock = Stopwatch.StartNew();
    try
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(silo, "/v1/chat/completions")) { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellation);
        if (!response.IsSuccessStatusCode) return new Run(0, 0, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellation)}");
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellation));
        double ttft = 0;
        int generated = 0;
        bool done = false;
        while (await reader.ReadLineAsync(cancellation) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            if (line == "data: [DONE]") { done = true; break; }
            var chunk = JsonNode.Parse(line["data: ".Length..])!;
            if (chunk["error"] is { } error) return new Run(0, 0, error.ToJsonString());
            if (ttft == 0 && chunk["choices"]?.AsArray() is [{ } choice] && choice["delta"]?["content"]?.GetValue<string>() is { Length: > 0 })
                ttft = clock.Elapsed.TotalMilliseconds;
            if (chunk["usage"]?["completion_tokens"] is { } count) generated = count.GetValue<int>();
        }
        return done ? new Run(ttft, generated, null) : new Run(0, 0, "the stream ended without [DONE]");
    }
    catch (Exception e) when (e is HttpRequestException or IOException)
    {
        return new Run(0, 0, e.Message);
    }
}

static async Task<(long Heap, long WorkingSet)> CollectGarbage(HttpClient http, Uri silo)
{
    using var response = await http.PostAsync(new Uri(silo, "/admin/gc"), null);
    var json = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
    return (json["heap_bytes"]!.GetValue<long>(), json["working_set_bytes"]!.GetValue<long>());
}

static double Percentile(double[] sorted, double p) => sorted.Length == 0 ? double.NaN : sorted[(int)Math.Min(sorted.Length - 1, Math.Floor(p * sorted.Length))];

int Option(string name, int fallback)
{
    int at = Array.IndexOf(args, name);
    return at >= 0 && at + 1 < args.Length && int.TryParse(args[at + 1], out int value) && value > 0 ? value : fallback;
}

internal sealed record Run(double TtftMs, long Tokens, string? Error);
