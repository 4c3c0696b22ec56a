using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Chat;
using TauCluster.Grains;

namespace TauCluster.Http.Tests;

public sealed class ServerFixture : IAsyncLifetime
{
    public SiloServer Server { get; private set; } = null!;
    public async Task InitializeAsync() => Server = await SiloServer.Start();
    public async Task DisposeAsync() => await Server.DisposeAsync();
}

[CollectionDefinition(nameof(ServerCollection))]
public sealed class ServerCollection : ICollectionFixture<ServerFixture>;

/// <summary>The OpenAI-compatible API on a real Kestrel, driven by the official OpenAI .NET client where it reaches.</summary>
[Collection(nameof(ServerCollection))]
public sealed class OpenAiApiTests(ServerFixture fixture)
{
    private SiloServer Server => fixture.Server;

    private ChatClient Chat(string model = SiloServer.Model) =>
        new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(Server.Address, "/v1") }).GetChatClient(model);

    private static ChatCompletionOptions Options(long seed, int maxTokens = 12, string? session = null)
    {
        var options = new ChatCompletionOptions { Temperature = 0.9f, TopP = 0.95f, Seed = seed, MaxOutputTokenCount = maxTokens };
        if (session is not null) options.Patch.Set("$.session"u8, session);
        return options;
    }

    private async Task<JsonObject> Post(string path, string json, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using var response = await Server.Http().PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject();
        Assert.True(expected == response.StatusCode, $"{(int)response.StatusCode}: {body.ToJsonString()}");
        return body;
    }

    [Fact]
    public async Task Models_lists_the_configured_models_and_the_default()
    {
        var ids = (await Server.Http().GetFromJsonAsync<JsonObject>("/v1/models"))!["data"]!.AsArray().Select(m => m!["id"]!.GetValue<string>()).ToArray();
        Assert.Contains(SiloServer.Model, ids);
        Assert.Contains("default", ids);
    }

    [Fact]
    public async Task Chat_completion_through_the_official_client_reports_usage_and_finish_reason()
    {
        ChatCompletion completion = await Chat().CompleteChatAsync([new UserChatMessage("Say something")], Options(seed: 1, maxTokens: 10));
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(10, completion.Usage.OutputTokenCount);
        Assert.Equal(ChatTemplate.Render([new ChatTurn("user", "Say something")]).Length, completion.Usage.InputTokenCount);   // bytes tokenizer
        Assert.Equal(completion.Usage.InputTokenCount + 10, completion.Usage.TotalTokenCount);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.False(string.IsNullOrEmpty(completion.Content[0].Text));
    }

    [Fact]
    public async Task Same_seed_gives_the_same_reply_streamed_or_not_and_another_seed_does_not()
    {
        List<ChatMessage> messages = [new SystemChatMessage("be brief"), new UserChatMessage("determinism, please")];
        string whole = (await Chat().CompleteChatAsync(messages, Options(seed: 42))).Value.Content[0].Text;
        string again = (await Chat().CompleteChatAsync(messages, Options(seed: 42))).Value.Content[0].Text;
        var streamed = new StringBuilder();
        ChatTokenUsage? usage = null;
        await foreach (var update in Chat().CompleteChatStreamingAsync(messages, Options(seed: 42)))
        {
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            usage ??= update.Usage;
        }
        string other = (await Chat().CompleteChatAsync(messages, Options(seed: 43))).Value.Content[0].Text;
        Assert.Equal(whole, again);
        Assert.Equal(whole, streamed.ToString());
        Assert.NotEqual(whole, other);
        Assert.NotNull(usage);
        Assert.Equal(12, usage!.OutputTokenCount);
    }

    [Fact]
    public async Task A_session_follow_up_prefills_only_its_new_turn()
    {
        string session = $"conv-{Guid.NewGuid():N}";
        var chat = Chat(SiloServer.Gpt2Model);
        List<ChatMessage> messages = [new UserChatMessage("first turn")];
        var first = (await chat.CompleteChatAsync(messages, Options(seed: 5, session: session))).Value;
        Assert.Equal(0, first.Usage.InputTokenDetails.CachedTokenCount);

        messages.Add(new AssistantChatMessage(first.Content[0].Text));
        messages.Add(new UserChatMessage("second turn"));
        var second = (await chat.CompleteChatAsync(messages, Options(seed: 5, session: session))).Value;
        int firstTotal = first.Usage.InputTokenCount + first.Usage.OutputTokenCount;
        Assert.Equal(firstTotal, second.Usage.InputTokenDetails.CachedTokenCount);   // the whole first exchange came from the cache
        var info = (await Server.Http().GetFromJsonAsync<JsonObject>($"/v1/sessions/{session}"))!;
        var tokenizer = TauCluster.Engine.TextTokenizer.For("gpt2")!;
        // the new turn, plus the first reply's last token, sampled but not yet run through the model
        Assert.Equal(tokenizer.Encode("\nUser: second turn\nAssistant:").Count + 1, info["prefilled_tokens"]!.GetValue<int>());
        Assert.Equal(second.Usage.InputTokenCount + second.Usage.OutputTokenCount, info["length"]!.GetValue<int>());

        await Server.Http().DeleteAsync($"/v1/sessions/{session}");
        using var gone = await Server.Http().GetAsync($"/v1/sessions/{session}");
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
    }

    [Fact]
    public async Task Completions_accept_text_and_token_ids_and_trim_the_stop_sequence()
    {
        var text = await Post("/v1/completions", """{"model": "tiny", "prompt": "Once upon", "max_tokens": 7, "temperature": 0}""");
        Assert.Equal("text_completion", text["object"]!.GetValue<string>());
        Assert.Equal(7, text["usage"]!["completion_tokens"]!.GetValue<int>());
        Assert.Equal(9, text["usage"]!["prompt_tokens"]!.GetValue<int>());
        string generated = text["choices"]![0]!["text"]!.GetValue<string>();

        var ids = await Post("/v1/completions", $$"""{"model": "tiny", "prompt": [{{string.Join(",", Encoding.UTF8.GetBytes("Once upon"))}}], "max_tokens": 7, "temperature": 0}""");
        Assert.Equal(generated, ids["choices"]![0]!["text"]!.GetValue<string>());   // greedy: the same prompt as ids gives the same text

        // Stop at the second character of the greedy continuation: the reply is the first one, without the stop.
        string stop = generated.Substring(1, 1);
        var stopped = await Post("/v1/completions", $$"""{"model": "tiny", "prompt": "Once upon", "max_tokens": 7, "temperature": 0, "stop": [{{JsonSerializer.Serialize(stop)}}]}""");
        Assert.Equal("stop", stopped["choices"]![0]!["finish_reason"]!.GetValue<string>());
        Assert.Equal(generated[..generated.IndexOf(stop, StringComparison.Ordinal)], stopped["choices"]![0]!["text"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("""{"model": "tiny", "prompt": "x", "temperature": -1}""", 400, "temperature")]
    [InlineData("""{"model": "tiny", "prompt": "x", "top_p": 0}""", 400, "top_p")]
    [InlineData("""{"model": "tiny", "prompt": "x", "top_k": -2}""", 400, "top_k")]
    [InlineData("""{"model": "tiny", "prompt": "x", "max_tokens": 0}""", 400, "max_tokens")]
    [InlineData("""{"model": "tiny", "prompt": "x", "max_tokens": 5000}""", 400, "max_tokens")]
    [InlineData("""{"model": "tiny", "prompt": "x", "max_tokens": 2147483647}""", 400, "max_tokens")]
    [InlineData("""{"model": "tiny", "model": "tiny", "prompt": "x"}""", 400, null)]
    [InlineData("""{"model": "tiny", "prompt": "x", "n": 2}""", 400, "n")]
    [InlineData("""{"model": "tiny", "prompt": ["a", "b"]}""", 400, "prompt")]
    [InlineData("""{"model": "tiny", "prompt": [1, 256]}""", 400, "prompt")]
    [InlineData("""{"model": "tiny"}""", 400, "prompt")]
    [InlineData("""{"prompt": "x"}""", 400, "model")]
    [InlineData("""{"model": "no-such-model", "prompt": "x"}""", 404, "model")]
    [InlineData("""{"model": "tiny", "prompt": "x", "domain": "no-such-domain"}""", 404, "domain")]
    [InlineData("""{"model": "tiny", "prompt": "x", "session": "../etc"}""", 400, "session")]
    [InlineData("""{"model": "tiny", "prompt": "x", "stop": 3}""", 400, "stop")]
    [InlineData("""{"model": "tiny", "prompt": 1.5}""", 400, "prompt")]
    [InlineData("""{"model": "tiny", "prompt": "x", "logprobs": 3}""", 400, "logprobs")]
    [InlineData("""{"model": "tiny", "prompt": "x", "echo": true}""", 400, "echo")]
    [InlineData("""{"model": "tiny", "prompt": "x", "tools": []}""", 400, "tools")]
    [InlineData("""[1, 2, 3]""", 400, null)]
    [InlineData("""{"model": "tiny", "prompt": "x""", 400, null)]
    public async Task Bad_requests_get_an_openai_error_with_a_4xx_status(string body, int status, string? param)
    {
        var error = (await Post("/v1/completions", body, (HttpStatusCode)status))["error"]!;
        Assert.False(string.IsNullOrEmpty(error["message"]!.GetValue<string>()));
        Assert.Equal("invalid_request_error", error["type"]!.GetValue<string>());
        if (param is not null) Assert.Equal(param, error["param"]?.GetValue<string>());
        await Post("/v1/completions", """{"model": "tiny", "prompt": "still serving", "max_tokens": 2}""");
    }

    [Fact]
    public async Task Chat_errors_come_through_the_official_client_as_4xx()
    {
        var unknown = await Assert.ThrowsAsync<ClientResultException>(() =>
            new OpenAIClient(new ApiKeyCredential("x"), new OpenAIClientOptions { Endpoint = new Uri(Server.Address, "/v1") })
                .GetChatClient("no-such-model").CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(404, unknown.Status);
        var bad = await Assert.ThrowsAsync<ClientResultException>(() =>
            Chat().CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { Temperature = -1 }));
        Assert.Equal(400, bad.Status);
    }

    [Fact]
    public async Task A_body_over_the_size_limit_is_refused_with_413()
    {
        string huge = $$"""{"model": "tiny", "prompt": "{{new string('a', 2 << 20)}}"}""";
        var error = (await Post("/v1/completions", huge, HttpStatusCode.RequestEntityTooLarge))["error"]!;
        Assert.Equal("request_too_large", error["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_client_that_disconnects_mid_stream_stops_the_generation()
    {
        string session = $"gone-{Guid.NewGuid():N}";
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent($$"""{"model": "tiny", "messages": [{"role": "user", "content": "talk"}], "max_tokens": 1500, "stream": true, "session": "{{session}}"}""", Encoding.UTF8, "application/json"),
        };
        // No draining of the unread body on dispose: the connection really closes, as when a client goes away.
        var http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = Server.Address };
        using (var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            for (int events = 0; events < 4;)
                if ((await reader.ReadLineAsync())!.StartsWith("data: ", StringComparison.Ordinal)) events++;
        }   // the client goes away here
        http.Dispose();

        var sessions = new TauSessionClient(Server.Grains);
        await Task.Delay(500);
        int length = (await sessions.Info(session)).Length;
        await Task.Delay(700);
        Assert.Equal(length, (await sessions.Info(session)).Length);
        int prompt = ChatTemplate.Render([new ChatTurn("user", "talk")]).Length;
        // A fast small model writes some hundreds of tokens into socket buffers before the server sees the
        // connection gone; what matters is that it then stops, far short of the 1500 asked for.
        Assert.True(length - prompt < 750, $"the session went on to {length - prompt} of 1500 tokens after the client left");
    }

    [Fact]
    public async Task Metrics_export_tau_and_orleans_meters_in_prometheus_text()
    {
        await Post("/v1/completions", """{"model": "tiny", "prompt": "count me", "max_tokens": 3}""");
        string metrics = await Server.Http().GetStringAsync("/metrics");
        foreach (var name in new[] { "tau_generated_tokens_total", "tau_time_to_first_token_seconds_bucket", "tau_inter_token_latency_seconds_bucket",
                     "tau_active_sessions", "tau_cache_bytes{", "tau_queue_depth", "tau_context_shards", "tau_context_shard_bytes", "orleans_" })
            Assert.Contains(name, metrics);
        Assert.Contains("cache=\"kv_baseline\"", metrics);
        Assert.Equal("""{"status":"ok"}""", await Server.Http().GetStringAsync("/healthz"));
    }

    [Fact]
    public async Task Raw_sse_framing_seen_by_curl_is_data_lines_ending_with_done()
    {
        var script = Path.Combine(AppContext.BaseDirectory, "sse-framing.sh");
        var start = new System.Diagnostics.ProcessStartInfo("bash", [script, Server.Address.ToString().TrimEnd('/')]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = System.Diagnostics.Process.Start(start)!;
        string output = await process.StandardOutput.ReadToEndAsync() + await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, output);
    }
}
