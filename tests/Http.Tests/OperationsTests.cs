using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TauCluster.Grains;

namespace TauCluster.Http.Tests;

/// <summary>What an operator sees of a silo: request ids, one log line per request, metrics, traces, health and drain.</summary>
public sealed class OperationsTests
{
    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    [Fact]
    public async Task Every_response_carries_the_callers_request_id_or_a_new_one()
    {
        await using var server = await SiloServer.Start(("Tau:Http:ApiKeys:0", "key"));
        var http = server.Http("key");
        using (var request = new HttpRequestMessage(HttpMethod.Get, "/v1/models") { Headers = { { "x-request-id", "trace-42.a:b" } } })
        using (var echoed = await http.SendAsync(request))
            Assert.Equal("trace-42.a:b", Assert.Single(echoed.Headers.GetValues("x-request-id")));
        using (var generated = await http.PostAsync("/v1/completions", Json("""{"model": "tiny", "prompt": "x", "max_tokens": 1}""")))
            Assert.Matches("^[0-9a-f]{32}$", Assert.Single(generated.Headers.GetValues("x-request-id")));
        // A header that is not a plain token is not echoed into responses and logs: it is replaced.
        using (var request = new HttpRequestMessage(HttpMethod.Get, "/v1/models"))
        {
            request.Headers.TryAddWithoutValidation("x-request-id", "bad id; with spaces");
            using var replaced = await http.SendAsync(request);
            Assert.Matches("^[0-9a-f]{32}$", Assert.Single(replaced.Headers.GetValues("x-request-id")));
        }
        // Refusals have one too: the 401 before the key check passes, the 404 of an unknown path.
        using (var refused = await server.Http().GetAsync("/v1/models"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Matches("^[0-9a-f]{32}$", Assert.Single(refused.Headers.GetValues("x-request-id")));
        }
        using (var missing = await http.GetAsync("/v1/nothing"))
            Assert.Single(missing.Headers.GetValues("x-request-id"));
    }

    [Fact]
    public async Task Each_request_writes_one_structured_log_line_with_its_generation()
    {
        var logs = new CapturedLogs();
        await using var server = await SiloServer.StartWith(builder =>
        {
            builder.Logging.AddProvider(logs);
            builder.Logging.AddFilter("TauCluster.Requests", LogLevel.Information);
        });
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = Json("""{"model": "tiny", "prompt": "count me", "max_tokens": 5, "session": "logged", "temperature": 0}"""),
            Headers = { { "x-request-id", "req-1" } },
        })
        using (var response = await server.Http().SendAsync(request))
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = Json("""{"model": "tiny", "messages": []}"""),
            Headers = { { "x-request-id", "req-2" } },
        })
        using (var response = await server.Http().SendAsync(request))
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);

        var ok = Assert.Single(logs.Requests, e => (string?)e.Fields["RequestId"] == "req-1");
        Assert.Equal(LogLevel.Information, ok.Level);
        Assert.Equal("POST", ok.Fields["Method"]);
        Assert.Equal("/v1/completions", ok.Fields["Path"]);
        Assert.Equal(200, ok.Fields["Status"]);
        Assert.Equal("tiny", ok.Fields["Model"]);
        Assert.Equal("logged", ok.Fields["Session"]);
        Assert.Equal("count me".Length, ok.Fields["PromptTokens"]);
        Assert.Equal(5, ok.Fields["CompletionTokens"]);
        Assert.Equal("length", ok.Fields["FinishReason"]);
        Assert.True((double)ok.Fields["TimeToFirstTokenMs"]! > 0);
        Assert.True((double)ok.Fields["DurationMs"]! >= (double)ok.Fields["TimeToFirstTokenMs"]!);
        Assert.Contains("request_id=req-1", ok.Message, StringComparison.Ordinal);

        var bad = Assert.Single(logs.Requests, e => (string?)e.Fields["RequestId"] == "req-2");
        Assert.Equal(400, bad.Fields["Status"]);
        Assert.Equal("error", bad.Fields["FinishReason"]);
        Assert.Null(bad.Fields["Session"]);
    }

    [Fact]
    public async Task Metrics_count_requests_by_finish_reason_their_prompt_tokens_and_durations_beside_the_http_server_meters()
    {
        await using var server = await SiloServer.Start();
        var http = server.Http();
        for (int i = 0; i < 3; i++)
            using (var r = await http.PostAsync("/v1/completions", Json("""{"model": "tiny", "prompt": "abcd", "max_tokens": 3}""")))
                Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        using (var r = await http.PostAsync("/v1/completions", Json("""{"model": "no-such-model", "prompt": "x"}""")))
            Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);

        var metrics = PrometheusText.Parse(await http.GetStringAsync("/metrics"));
        Assert.Equal(3, metrics.Value("tau_requests_total", ("endpoint", "completions"), ("model", "tiny"), ("finish_reason", "length"), ("status", "200")));
        // An unknown model is counted under "-": a label never takes whatever a request names.
        Assert.Equal(1, metrics.Value("tau_requests_total", ("model", "-"), ("finish_reason", "error"), ("status", "404")));
        Assert.Equal(3 * 4, metrics.Value("tau_prompt_tokens_total", ("model", "tiny")));
        Assert.Equal(3, metrics.Value("tau_request_duration_seconds_count", ("model", "tiny"), ("finish_reason", "length")));
        Assert.Contains(metrics.Samples, s => s.Name == "http_server_request_duration_seconds_count"
            && s.Labels.GetValueOrDefault("http_route") == "/v1/completions" && s.Labels.GetValueOrDefault("http_response_status_code") == "200");
        Assert.Contains(metrics.Samples, s => s.Name.StartsWith("kestrel_", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_requests_trace_continues_into_its_grain_calls()
    {
        var traceId = ActivityTraceId.CreateRandom();
        var seen = new ConcurrentBag<(string Source, string Name)>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name is "Microsoft.AspNetCore" || source.Name.StartsWith("Microsoft.Orleans", StringComparison.Ordinal),
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (activity.TraceId == traceId) seen.Add((activity.Source.Name, activity.DisplayName));
            },
        };
        ActivitySource.AddActivityListener(listener);
        await using var server = await SiloServer.Start();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Json("""{"model": "tiny", "prompt": "traced", "max_tokens": 2}""") };
        request.Headers.TryAddWithoutValidation("traceparent", $"00-{traceId}-{ActivitySpanId.CreateRandom()}-01");
        using (var response = await server.Http().SendAsync(request))
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        Assert.Contains(seen, a => a.Source == "Microsoft.AspNetCore");
        Assert.Contains(seen, a => a.Source == Orleans.Diagnostics.ActivitySources.ApplicationGrainActivitySourceName
            && a.Name.Contains("ISessionGrain", StringComparison.Ordinal));
    }

    [Fact]
    public async Task With_an_otlp_endpoint_configured_traces_reach_the_collector()
    {
        await using var collector = await OtlpCollector.Start();
        await using var server = await SiloServer.Start(
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.Address.ToString().TrimEnd('/')),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"));
        using (var response = await server.Http().PostAsync("/v1/completions", Json("""{"model": "tiny", "prompt": "exported", "max_tokens": 2}""")))
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        // OTLP is protobuf, whose strings are plain UTF-8: the service's name and the span names show in it. The HTTP
        // span ends after the grain call's, so the two may travel in different exports.
        await collector.Received("/v1/traces", body => body.Contains("taucluster-silo") && body.Contains("ISessionGrain"));
        await collector.Received("/v1/traces", body => body.Contains("taucluster-silo") && body.Contains("/v1/completions"));
    }

    [Fact]
    public async Task Readiness_reports_membership_the_default_model_storage_and_admission()
    {
        await using var server = await SiloServer.Start();
        using var ready = await server.Http().GetAsync("/readyz");
        var body = JsonNode.Parse(await ready.Content.ReadAsStringAsync())!;
        Assert.True(ready.StatusCode == HttpStatusCode.OK, body.ToJsonString());
        Assert.Equal("ok", body["status"]!.GetValue<string>());
        var checks = body["checks"]!.AsObject();
        Assert.Equal(["admitting", "membership", "default_model", "storage"], checks.Select(c => c.Key).ToArray());
        Assert.All(checks, c => Assert.Equal("ok", c.Value!["status"]!.GetValue<string>()));
        Assert.Contains("is active", checks["membership"]!["description"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal("""{"status":"ok"}""", await server.Http().GetStringAsync("/healthz"));
    }

    [Fact]
    public async Task A_default_model_that_does_not_load_fails_readiness_but_not_liveness()
    {
        var broken = Path.Combine(Path.GetTempPath(), $"tau-broken-{Guid.NewGuid():N}");
        Directory.CreateDirectory(broken);
        await File.WriteAllTextAsync(Path.Combine(broken, "config.json"), "{ this is not a model");
        try
        {
            await using var server = await SiloServer.Start(("Tau:Models:default", broken));
            using var ready = await server.Http().GetAsync("/readyz");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
            var body = JsonNode.Parse(await ready.Content.ReadAsStringAsync())!;
            Assert.Equal("unavailable", body["checks"]!["default_model"]!["status"]!.GetValue<string>());
            Assert.StartsWith("the default model does not load", body["checks"]!["default_model"]!["description"]!.GetValue<string>(), StringComparison.Ordinal);
            Assert.Equal("ok", body["checks"]!["storage"]!["status"]!.GetValue<string>());
            using var live = await server.Http().GetAsync("/healthz");
            Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        }
        finally
        {
            Directory.Delete(broken, recursive: true);
        }
    }

    [SkippableFact]
    public async Task Storage_that_stops_answering_fails_readiness()
    {
        await using var redis = await RedisServer.Start();
        await using var server = await SiloServer.Start(("Tau:Storage", "redis"), ("Tau:Redis", $"127.0.0.1:{redis.Port},connectTimeout=1000,syncTimeout=1000,asyncTimeout=1000"));
        using (var ready = await server.Http().GetAsync("/readyz"))
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        await redis.DisposeAsync();
        using (var gone = await server.Http().GetAsync("/readyz"))
        {
            var body = JsonNode.Parse(await gone.Content.ReadAsStringAsync())!;
            Assert.True(gone.StatusCode == HttpStatusCode.ServiceUnavailable, body.ToJsonString());
            Assert.Equal("unavailable", body["checks"]!["storage"]!["status"]!.GetValue<string>());
            Assert.Equal("ok", body["checks"]!["membership"]!["status"]!.GetValue<string>());
        }
    }

    /// <summary>
    /// The drain, in one process: a completion is under way (its caller holds its stream open and reads nothing more)
    /// when the host is told to stop. Readiness fails, a new generation gets 503 with Retry-After, and the host does
    /// not stop while the completion runs; it finishes whole, and then the host stops.
    /// </summary>
    [Fact]
    public async Task Stopping_drains_running_completions_and_refuses_new_ones_with_retry_after()
    {
        var server = await SiloServer.Start();
        try
        {
            var sessions = new TauSessionClient(server.Grains);
            await sessions.Open("draining", new SessionSpec(SiloServer.Model, null, new SamplingSettings(0.8, 0, 1, 7)));
            await sessions.Append("draining", PromptInput.FromText("a reply under way"));
            await using var stream = sessions.Generate("draining", 40).GetAsyncEnumerator();
            Assert.True(await stream.MoveNextAsync());
            int received = 1;

            var stopping = server.App.StopAsync();
            await WaitUntil(async () => (await server.Http().GetAsync("/readyz")).StatusCode == HttpStatusCode.ServiceUnavailable);
            using (var ready = await server.Http().GetAsync("/readyz"))
            {
                var admitting = JsonNode.Parse(await ready.Content.ReadAsStringAsync())!["checks"]!["admitting"]!;
                Assert.Equal("draining: 0 API generations and 1 session completions still running", admitting["description"]!.GetValue<string>());
            }
            using (var refused = await server.Http().PostAsync("/v1/completions", Json("""{"model": "tiny", "prompt": "too late", "max_tokens": 2}""")))
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
                Assert.Equal(TimeSpan.FromSeconds(2), refused.Headers.RetryAfter?.Delta);
                Assert.Equal("draining", JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
            }
            Assert.False(stopping.IsCompleted, "the host stopped under a running completion");

            while (await stream.MoveNextAsync()) received++;
            Assert.Equal(40, received);
            await stopping.WaitAsync(TimeSpan.FromMinutes(1));
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task The_drain_waits_no_longer_than_the_shutdown_timeout()
    {
        var logs = new CapturedLogs();
        var server = await SiloServer.StartWith(builder => builder.Logging.AddProvider(logs), ("Tau:ShutdownTimeout", "00:00:01"));
        try
        {
            var sessions = new TauSessionClient(server.Grains);
            await sessions.Open("stalled", new SessionSpec(SiloServer.Model, null, new SamplingSettings(0.8, 0, 1, 7)));
            await sessions.Append("stalled", PromptInput.FromText("a reader that never reads"));
            var stream = sessions.Generate("stalled", 1000).GetAsyncEnumerator();
            Assert.True(await stream.MoveNextAsync());
            // Its caller reads no further: a second after the stop began, the drain gives up on it and the silo leaves.
            var stopping = server.App.StopAsync();
            await WaitUntil(() => Task.FromResult(logs.All.Any(e => e.Category == typeof(Silo.DrainOnShutdown).FullName
                && e.Level == LogLevel.Warning && e.Message.StartsWith("Drain timed out after 1 s with 0 API generations and 1 session completions running", StringComparison.Ordinal))));
            await stream.DisposeAsync();   // the caller gives up too (else Orleans cuts its enumerator off after its response timeout)
            await stopping.WaitAsync(TimeSpan.FromMinutes(1));
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    private static async Task WaitUntil(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the condition did not hold within a minute");
            await Task.Delay(50);
        }
    }

    /// <summary>Log entries with their structured fields, as a JSON console or an OTLP log exporter would see them.</summary>
    private sealed class CapturedLogs : ILoggerProvider
    {
        public sealed record Entry(string Category, LogLevel Level, string Message, IReadOnlyDictionary<string, object?> Fields);

        private readonly ConcurrentQueue<Entry> entries = new();

        public IEnumerable<Entry> All => entries;
        public IEnumerable<Entry> Requests => entries.Where(e => e.Category == "TauCluster.Requests" && e.Fields.ContainsKey("RequestId"));

        public ILogger CreateLogger(string categoryName) => new Logger(categoryName, entries);
        public void Dispose() { }

        private sealed class Logger(string category, ConcurrentQueue<Entry> entries) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                var fields = state is IEnumerable<KeyValuePair<string, object?>> pairs ? pairs.ToDictionary(p => p.Key, p => p.Value) : [];
                entries.Enqueue(new Entry(category, logLevel, formatter(state, exception), fields));
            }
        }
    }
}

/// <summary>An OTLP/HTTP endpoint on a real Kestrel that keeps what it is sent, for the exporter to export to.</summary>
internal sealed class OtlpCollector : IAsyncDisposable
{
    private readonly WebApplication app;
    private readonly ConcurrentQueue<(string Path, byte[] Body)> received = new();

    private OtlpCollector(WebApplication app, Uri address) => (this.app, Address) = (app, address);

    public Uri Address { get; }

    public static async Task<OtlpCollector> Start()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        OtlpCollector? collector = null;
        app.MapPost("/v1/{signal}", async (HttpContext http) =>
        {
            using var body = new MemoryStream();
            await http.Request.Body.CopyToAsync(body);
            collector!.received.Enqueue((http.Request.Path.Value!, body.ToArray()));
            http.Response.ContentType = "application/x-protobuf";
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        collector = new OtlpCollector(app, new Uri(address));
        return collector;
    }

    /// <summary>The first export to <paramref name="path"/> whose bytes, read as UTF-8, satisfy <paramref name="match"/>.</summary>
    public async Task<string> Received(string path, Func<string, bool> match)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            foreach (var (p, body) in received)
                if (p == path && Encoding.UTF8.GetString(body) is var text && match(text)) return text;
            Assert.True(DateTime.UtcNow < deadline, $"no matching export to {path} within a minute ({received.Count} exports: {string.Join(", ", received.Select(r => r.Path))})");
            await Task.Delay(100);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }
}

/// <summary>A real redis-server on a free loopback port, for as long as the test holds it.</summary>
internal sealed class RedisServer : IAsyncDisposable
{
    private readonly Process process;

    private RedisServer(Process process, int port) => (this.process, Port) = (process, port);

    public int Port { get; }

    public static async Task<RedisServer> Start()
    {
        var binary = TestPaths.RedisServer();
        TestPaths.Require(binary is not null, "redis-server");
        int port = TestPaths.FreePort();
        var start = new ProcessStartInfo(binary!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "--port", port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no" }) start.ArgumentList.Add(a);
        var process = Process.Start(start)!;
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) => { if (e.Data?.Contains("Ready to accept connections", StringComparison.Ordinal) == true) ready.TrySetResult(); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        await ready.Task.WaitAsync(TimeSpan.FromSeconds(20));
        return new RedisServer(process, port);
    }

    private bool disposed;

    /// <summary>Kills it (a test may do so early, to take storage away); a second call does nothing.</summary>
    public async ValueTask DisposeAsync()
    {
        if (disposed) return;
        disposed = true;
        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
        process.Dispose();
    }
}
