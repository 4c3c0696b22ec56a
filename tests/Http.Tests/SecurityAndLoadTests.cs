using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using TauCluster.Grains;

namespace TauCluster.Http.Tests;

/// <summary>Silos configured differently from the shared one: with API keys, and with a tiny admission limit.</summary>
public sealed class SecurityAndLoadTests
{
    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    [Fact]
    public async Task Configured_api_keys_guard_the_api_the_metrics_and_the_dashboard_but_not_the_health_probes()
    {
        await using var server = await SiloServer.Start(("Tau:Http:ApiKeys:0", "first-key"), ("Tau:Http:ApiKeys:1", "second-key"));
        foreach (var path in new[] { "/v1/models", "/metrics", "/dashboard/" })
        {
            using var anonymous = await server.Http().GetAsync(path);
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
            var error = JsonNode.Parse(await anonymous.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal("invalid_api_key", error["code"]!.GetValue<string>());
            using var wrong = await server.Http("not-a-key").GetAsync(path);
            Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
            using var right = await server.Http("second-key").GetAsync(path);
            Assert.Equal(HttpStatusCode.OK, right.StatusCode);
        }
        foreach (var probe in new[] { "/healthz", "/readyz" })
        {
            using var health = await server.Http().GetAsync(probe);
            Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        }
        using var completion = await server.Http("first-key").PostAsync("/v1/completions", Json("""{"model": "tiny", "prompt": "keyed", "max_tokens": 2}"""));
        Assert.Equal(HttpStatusCode.OK, completion.StatusCode);

        // The official client sends its key as a bearer token too.
        OpenAI.Chat.ChatClient Chat(string key) => new OpenAI.OpenAIClient(new System.ClientModel.ApiKeyCredential(key),
            new OpenAI.OpenAIClientOptions { Endpoint = new Uri(server.Address, "/v1") }).GetChatClient(SiloServer.Model);
        var refused = await Assert.ThrowsAsync<System.ClientModel.ClientResultException>(() => Chat("wrong").CompleteChatAsync([new OpenAI.Chat.UserChatMessage("hi")]));
        Assert.Equal(401, refused.Status);
        var accepted = await Chat("first-key").CompleteChatAsync([new OpenAI.Chat.UserChatMessage("hi")], new OpenAI.Chat.ChatCompletionOptions { MaxOutputTokenCount = 3 });
        Assert.Equal(3, accepted.Value.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task A_full_silo_answers_503_at_once_instead_of_queueing_without_bound()
    {
        await using var server = await SiloServer.Start(("Tau:Http:MaxConcurrentGenerations", "1"), ("Tau:Http:MaxQueuedGenerations", "0"));
        using var http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = server.Address };
        var busy = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = Json("""{"model": "tiny", "prompt": "occupy the only slot", "max_tokens": 1800, "stream": true}"""),
        };
        using (var running = await http.SendAsync(busy, HttpCompletionOption.ResponseHeadersRead))
        {
            using var reader = new StreamReader(await running.Content.ReadAsStreamAsync());
            await reader.ReadLineAsync();   // the generation holds the slot now

            using var refused = await server.Http().PostAsync("/v1/completions", Json("""{"model": "tiny", "prompt": "no room", "max_tokens": 2}"""));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.Equal(TimeSpan.FromSeconds(2), refused.Headers.RetryAfter?.Delta);   // Tau:Http:RetryAfterSeconds' default
            var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal("overloaded", error["code"]!.GetValue<string>());
        }
        // The slot comes back when the first client leaves (its handler unwinds and releases it), and the silo serves again.
        await server.GateReaches(gate => gate.Running == 0);
        using var retry = await server.Http().PostAsync("/v1/completions", Json("""{"model": "tiny", "prompt": "room now", "max_tokens": 2}"""));
        Assert.Equal(HttpStatusCode.OK, retry.StatusCode);
    }

    private static async Task<double> QueueDepth(SiloServer server) =>
        PrometheusText.Parse(await server.Http().GetStringAsync("/metrics")).Value("tau_queue_depth");

    [Fact]
    public async Task Past_the_running_limit_a_request_waits_in_the_queue_and_past_the_queue_it_gets_503()
    {
        await using var server = await SiloServer.Start(("Tau:Http:MaxConcurrentGenerations", "1"), ("Tau:Http:MaxQueuedGenerations", "1"));
        // A generation of session `held`, started through the Orleans client API and not pulled past its first token:
        // it holds the session (a session serves one call at a time) until it is disposed.
        string held = $"held-{Guid.NewGuid():N}";
        var sessions = new TauSessionClient(server.Grains);
        var spec = new SessionSpec(SiloServer.Model, null, new SamplingSettings(Temperature: 0));
        var holding = sessions.Session(held).Complete(new CompletionRequest(spec, PromptInput.FromText("hold on"), 100, PromptPlacement.Whole)).GetAsyncEnumerator();
        Assert.True(await holding.MoveNextAsync());

        // Two requests for that session: one is admitted and takes the only slot (it waits for the session), the other
        // waits for admission. Which is which does not matter; that one waits does.
        string body = $$"""{"model": "tiny", "prompt": "my turn", "max_tokens": 5, "temperature": 0, "session": "{{held}}"}""";
        var first = server.Http().PostAsync("/v1/completions", Json(body));
        var second = server.Http().PostAsync("/v1/completions", Json(body));
        await server.GateReaches(gate => gate.Waiting == 1);
        Assert.Equal(1, await QueueDepth(server));
        Assert.False(first.IsCompleted || second.IsCompleted);

        // A third finds the slot taken and the queue full: 503 at once, in OpenAI's error shape.
        using (var refused = await server.Http().PostAsync("/v1/completions", Json("""{"model": "tiny", "prompt": "no room", "max_tokens": 2}""")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!.AsObject();
            Assert.Equal(["message", "type", "param", "code"], error.Select(p => p.Key));
            Assert.Equal("overloaded", error["code"]!.GetValue<string>());
            Assert.Equal("server_error", error["type"]!.GetValue<string>());
            Assert.False(string.IsNullOrEmpty(error["message"]!.GetValue<string>()));
        }
        Assert.False(first.IsCompleted || second.IsCompleted);

        // Release the session: the admitted request runs, ends and frees the slot, and the queued one runs after it.
        await holding.DisposeAsync();
        foreach (var waiting in new[] { first, second })
        {
            using var response = await waiting;
            var reply = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
            Assert.True(response.StatusCode == HttpStatusCode.OK, reply.ToJsonString());
            Assert.Equal(5, reply["usage"]!["completion_tokens"]!.GetValue<int>());
        }
        await server.GateReaches(gate => gate.Waiting == 0 && gate.Running == 0);
        Assert.Equal(0, await QueueDepth(server));
    }
}
