using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;

namespace TauCluster.Http.Tests;

public sealed class MetricsServerFixture : IAsyncLifetime
{
    public SiloServer Server { get; private set; } = null!;
    public async Task InitializeAsync() => Server = await SiloServer.Start();
    public async Task DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>
/// TauCluster's meter as /metrics exports it, on a silo of its own: nothing else runs there, so every session and
/// token it counts is one of these tests' (the tests of one class run one at a time).
/// </summary>
public sealed class MetricsTests(MetricsServerFixture fixture) : IClassFixture<MetricsServerFixture>
{
    private SiloServer Server => fixture.Server;

    private const string Generated = "tau_generated_tokens_total";
    private const string Active = "tau_active_sessions";
    private const string Cache = "tau_cache_bytes";

    private async Task<PrometheusText> Scrape() => PrometheusText.Parse(await Server.Http().GetStringAsync("/metrics"));

    private async Task<JsonObject> Complete(string json)
    {
        using var response = await Server.Http().PostAsync("/v1/completions", new StringContent(json, Encoding.UTF8, "application/json"));
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject();
        Assert.True(response.StatusCode == HttpStatusCode.OK, body.ToJsonString());
        return body;
    }

    [Fact]
    public async Task A_live_session_shows_in_the_gauges_until_it_is_deleted_and_every_generated_token_is_counted_once()
    {
        var before = await Scrape();
        double tokensBefore = before.CounterValue(Generated), activeBefore = before.Value(Active);
        double tauBefore = before.Value(Cache, ("cache", "tau")), baselineBefore = before.Value(Cache, ("cache", "kv_baseline"));

        string session = $"metered-{Guid.NewGuid():N}";
        var reply = await Complete($$"""{"model": "tiny", "prompt": "count my cache", "max_tokens": 9, "temperature": 0, "session": "{{session}}"}""");
        int generated = reply["usage"]!["completion_tokens"]!.GetValue<int>();
        Assert.Equal(9, generated);
        var info = (await Server.Http().GetFromJsonAsync<JsonObject>($"/v1/sessions/{session}"))!;
        long cacheBytes = info["cache_bytes"]!.GetValue<long>(), baselineBytes = info["baseline_cache_bytes"]!.GetValue<long>();
        Assert.True(cacheBytes > 0, info.ToJsonString());

        var live = await Scrape();
        Assert.Equal(tokensBefore + generated, live.Value(Generated));                         // each token once, no more
        Assert.Equal(activeBefore + 1, live.Value(Active));
        Assert.Equal(tauBefore + cacheBytes, live.Value(Cache, ("cache", "tau")));              // the only live cache is this session's
        Assert.Equal(baselineBefore + baselineBytes, live.Value(Cache, ("cache", "kv_baseline")));
        Assert.True(live.Value(Active) > 0 && live.Value(Cache, ("cache", "tau")) > 0);

        using var deleted = await Server.Http().DeleteAsync($"/v1/sessions/{session}");
        Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
        // One more request, without a session: it runs in a session of its own, deleted before its handler lets go of
        // its admission slot, so once nothing runs on the gate that session is gone too.
        var ephemeral = await Complete("""{"model": "tiny", "prompt": "after the delete", "max_tokens": 1}""");
        Assert.Equal(1, ephemeral["usage"]!["completion_tokens"]!.GetValue<int>());
        await Server.GateReaches(gate => gate.Running == 0);

        var after = await Scrape();
        Assert.Equal(tokensBefore + generated + 1, after.Value(Generated));
        Assert.Equal(activeBefore, after.Value(Active));
        Assert.Equal(tauBefore, after.Value(Cache, ("cache", "tau")));
        Assert.Equal(baselineBefore, after.Value(Cache, ("cache", "kv_baseline")));
    }

    [Fact]
    public async Task Streamed_tokens_are_counted_as_generated_tokens()
    {
        double tokensBefore = (await Scrape()).CounterValue(Generated);
        using var response = await Server.Http().PostAsync("/v1/completions", new StringContent(
            """{"model": "tiny", "prompt": "stream and count", "max_tokens": 13, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}""",
            Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        int? usage = null;
        foreach (var line in (await response.Content.ReadAsStringAsync()).Split('\n'))
            if (line.StartsWith("data: {", StringComparison.Ordinal) && JsonNode.Parse(line["data: ".Length..])!["usage"] is JsonObject u)
                usage = u["completion_tokens"]!.GetValue<int>();
        Assert.Equal(13, usage);
        var metrics = await Scrape();
        Assert.Equal(tokensBefore + 13, metrics.Value(Generated));
    }

    /// <summary>
    /// n choices prefill their prompt once: a 600-token prompt is 3 blocks of 256, and the forks copy its cache (their
    /// one token run again, for logits of their own, goes as a decode step); a prefill per choice would be 9 blocks.
    /// </summary>
    [Fact]
    public async Task N_choices_prefill_the_prompt_once()
    {
        const string blocks = "tau_batched_prefill_blocks_total";
        double before = (await Scrape()).CounterValue(blocks);
        var body = await Complete($$"""{"model": "tiny", "prompt": "{{new string('p', 600)}}", "max_tokens": 4, "n": 3, "seed": 1}""");
        Assert.Equal(3, body["choices"]!.AsArray().Count);
        Assert.Equal(600, body["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(before + 3, (await Scrape()).CounterValue(blocks));
    }
}

public sealed class AcceleratedServerFixture : IAsyncLifetime
{
    public SiloServer Server { get; private set; } = null!;
    public async Task InitializeAsync() => Server = await SiloServer.Start(("Tau:Device", "ilgpu-cpu"));
    public async Task DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>A silo whose device is an accelerator (ILGPU's CPU accelerator here): /metrics shows the device and its memory in use.</summary>
public sealed class AcceleratedMetricsTests(AcceleratedServerFixture fixture) : IClassFixture<AcceleratedServerFixture>
{
    private const string DeviceMemory = "tau_device_memory_bytes";

    private SiloServer Server => fixture.Server;

    private async Task<PrometheusText> Scrape() => PrometheusText.Parse(await Server.Http().GetStringAsync("/metrics"));

    [Fact]
    public async Task Device_memory_shows_the_weights_the_pool_and_what_a_live_session_holds_until_it_is_deleted()
    {
        string session = $"on-device-{Guid.NewGuid():N}";
        using var response = await Server.Http().PostAsync("/v1/completions", new StringContent(
            $$"""{"model": "tiny", "prompt": "a cache on the device", "max_tokens": 5, "temperature": 0, "session": "{{session}}"}""",
            Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var info = (await Server.Http().GetFromJsonAsync<JsonObject>($"/v1/sessions/{session}"))!;
        Assert.Equal("ilgpu-cpu", info["device"]!.GetValue<string>());
        long deviceBytes = info["device_bytes"]!.GetValue<long>();
        Assert.True(deviceBytes > 0, info.ToJsonString());

        var live = await Scrape();
        var labels = live.Samples.First(s => s.Name == DeviceMemory).Labels;
        Assert.Equal("ilgpu-cpu", labels["device"]);
        Assert.Equal("tiny", labels["model"]);
        Assert.True(live.Value(DeviceMemory, ("use", "weights")) > 0);
        Assert.True(live.Value(DeviceMemory, ("use", "cache_pool")) >= live.Value(DeviceMemory, ("use", "cache_in_use")));
        Assert.Equal(deviceBytes, live.Value(DeviceMemory, ("use", "cache_in_use")));   // the only live session on the device

        using var deleted = await Server.Http().DeleteAsync($"/v1/sessions/{session}");
        Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
        Assert.Equal(0, (await Scrape()).Value(DeviceMemory, ("use", "cache_in_use")));
    }
}
