using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace TauCluster.Http.Tests;

/// <summary>Silos configured differently from the shared one: with API keys, and with a tiny admission limit.</summary>
public sealed class SecurityAndLoadTests
{
    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    [Fact]
    public async Task Configured_api_keys_guard_the_api_the_metrics_and_the_dashboard_but_not_healthz()
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
        using var health = await server.Http().GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
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
            var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal("overloaded", error["code"]!.GetValue<string>());
        }
        // The slot comes back when the first client leaves; the silo serves again.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            using var retry = await server.Http().PostAsync("/v1/completions", Json("""{"model": "tiny", "prompt": "room now", "max_tokens": 2}"""));
            if (retry.StatusCode == HttpStatusCode.OK) break;
            Assert.Equal(HttpStatusCode.ServiceUnavailable, retry.StatusCode);
            Assert.True(DateTime.UtcNow < deadline, "the slot was never released");
            await Task.Delay(200);
        }
    }
}
