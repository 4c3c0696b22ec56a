using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Chat;
using TauCluster.Engine;
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
    public async Task Models_lists_the_configured_models_and_the_default_with_when_they_were_made_and_their_context()
    {
        var models = (await Server.Http().GetFromJsonAsync<JsonObject>("/v1/models"))!["data"]!.AsArray().ToDictionary(m => m!["id"]!.GetValue<string>());
        Assert.Contains(SiloServer.Model, models.Keys);
        Assert.Contains("default", models.Keys);
        Assert.Equal(2048, models[SiloServer.Model]!["max_model_len"]!.GetValue<int>());
        Assert.Equal(1024, models["default"]!["max_model_len"]!.GetValue<int>());
        Assert.Equal(1024, models["kjv-causal"]!["max_model_len"]!.GetValue<int>());   // the default's dot-product twin, built in too
        Assert.Equal(4096, models["paper"]!["max_model_len"]!.GetValue<int>());   // described before it is ever made
        var modelsFile = File.GetLastWriteTimeUtc(Path.Combine(Server.ModelsRoot, SiloServer.Model, "config.json"));
        Assert.Equal(new DateTimeOffset(modelsFile).ToUnixTimeSeconds(), models[SiloServer.Model]!["created"]!.GetValue<long>());

        // The official client reads the list and one model by id, and a missing id is its 404.
        var client = new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(Server.Address, "/v1") }).GetOpenAIModelClient();
        var listed = (await client.GetModelsAsync()).Value;
        Assert.Contains(listed, m => m.Id == SiloServer.Model && m.CreatedAt.ToUnixTimeSeconds() == new DateTimeOffset(modelsFile).ToUnixTimeSeconds());
        var one = (await client.GetModelAsync(SiloServer.Model)).Value;
        Assert.Equal(SiloServer.Model, one.Id);
        Assert.Equal("taucluster", one.OwnedBy);
        var missing = await Assert.ThrowsAsync<ClientResultException>(() => client.GetModelAsync("no-such-model"));
        Assert.Equal(404, missing.Status);
        var error = (await Post("/v1/completions", """{"model": "tiny", "prompt": "x", "max_tokens": 1}"""));   // and the silo serves on
        Assert.Equal(1, error["usage"]!["completion_tokens"]!.GetValue<int>());
        using var raw = await Server.Http().GetAsync("/v1/models/no-such-model");
        Assert.Equal("model_not_found", JsonNode.Parse(await raw.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task Penalties_and_min_p_change_the_reply_deterministically_and_reach_the_server_from_the_official_client()
    {
        async Task<int[]> Ids(string extra)
        {
            var body = await Post("/v1/completions", $$"""{"model": "tiny", "prompt": [1, 2, 3], "max_tokens": 40, "temperature": 0{{extra}}}""");
            return System.Text.Encoding.Latin1.GetBytes(body["choices"]![0]!["text"]!.GetValue<string>()).Select(b => (int)b).ToArray();
        }
        var plain = await Ids("");
        Assert.True(plain.Distinct().Count() < plain.Length, "greedy decoding of the random model repeats itself: what the penalties act on");
        var frequency = await Ids(""", "frequency_penalty": 2""");
        Assert.NotEqual(plain, frequency);
        Assert.Equal(frequency, await Ids(""", "frequency_penalty": 2"""));   // deterministic
        Assert.NotEqual(plain, await Ids(""", "repetition_penalty": 3"""));
        Assert.NotEqual(plain, await Ids(""", "presence_penalty": 2"""));

        // The official client's presence and frequency penalties arrive and apply.
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 30 };
        string Text(ChatCompletion c) => c.Content[0].Text;
        var unpenalised = Text(await Chat().CompleteChatAsync([new UserChatMessage("repeat")], options));
        options.FrequencyPenalty = 2;
        options.PresencePenalty = 1;
        var penalised = Text(await Chat().CompleteChatAsync([new UserChatMessage("repeat")], options));
        Assert.NotEqual(unpenalised, penalised);
        Assert.Equal(penalised, Text(await Chat().CompleteChatAsync([new UserChatMessage("repeat")], options)));
    }

    [Fact]
    public async Task N_choices_each_continue_the_prompt_with_a_seed_of_their_own_and_choice_0_is_the_single_reply()
    {
        const string request = """{"model": "tiny", "prompt": "one prompt, three replies", "max_tokens": 24, "temperature": 0.9, "seed": 5""";
        var single = await Post("/v1/completions", request + "}");
        var three = await Post("/v1/completions", request + """, "n": 3}""");
        var choices = three["choices"]!.AsArray();
        Assert.Equal([0, 1, 2], choices.Select(c => c!["index"]!.GetValue<int>()).ToArray());
        var texts = choices.Select(c => c!["text"]!.GetValue<string>()).ToArray();
        Assert.Equal(single["choices"]![0]!["text"]!.GetValue<string>(), texts[0]);
        Assert.Equal(3, texts.Distinct().Count());
        Assert.All(choices, c => Assert.Equal("length", c!["finish_reason"]!.GetValue<string>()));
        Assert.Equal(3 * 24, three["usage"]!["completion_tokens"]!.GetValue<int>());
        Assert.Equal(single["usage"]!["prompt_tokens"]!.GetValue<int>(), three["usage"]!["prompt_tokens"]!.GetValue<int>());   // the prompt counts once
        var again = await Post("/v1/completions", request + """, "n": 3}""");
        Assert.Equal(texts, again["choices"]!.AsArray().Select(c => c!["text"]!.GetValue<string>()).ToArray());

        // Streamed, every chunk names its choice, and each choice's text is the one it has whole.
        using var streamed = await Server.Http().PostAsync("/v1/completions",
            new StringContent(request + """, "n": 3, "stream": true}""", Encoding.UTF8, "application/json"));
        var byIndex = new Dictionary<int, StringBuilder>();
        var finishes = new Dictionary<int, string>();
        foreach (var line in (await streamed.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal)))
        {
            var choice = JsonNode.Parse(line["data: ".Length..])!["choices"]![0]!;
            int index = choice["index"]!.GetValue<int>();
            (byIndex.TryGetValue(index, out var text) ? text : byIndex[index] = new StringBuilder()).Append(choice["text"]!.GetValue<string>());
            if (choice["finish_reason"]?.GetValue<string>() is { } finish) finishes[index] = finish;
        }
        Assert.Equal(texts, Enumerable.Range(0, 3).Select(i => byIndex[i].ToString()).ToArray());
        Assert.Equal(3, finishes.Count);
    }

    [Fact]
    public async Task N_chat_choices_keep_choice_0_in_the_session_and_stream_a_role_for_each()
    {
        string session = $"n-{Guid.NewGuid():N}";
        var reply = await Post("/v1/chat/completions", $$"""{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "n": 2, "seed": 2, "session": "{{session}}"}""");
        Assert.Equal(2, reply["choices"]!.AsArray().Count);
        var info = JsonNode.Parse(await Server.Http().GetStringAsync($"/v1/sessions/{session}"))!;
        Assert.Equal(reply["usage"]!["prompt_tokens"]!.GetValue<int>() + 6, info["length"]!.GetValue<int>());   // the prompt and choice 0

        using var streamed = await Server.Http().PostAsync("/v1/chat/completions", new StringContent(
            """{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "n": 2, "stream": true}""", Encoding.UTF8, "application/json"));
        var roles = (await streamed.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal))
            .Select(l => JsonNode.Parse(l["data: ".Length..])!["choices"]![0]!).Where(c => c["delta"]?["role"] is not null)
            .Select(c => c["index"]!.GetValue<int>()).Order().ToArray();
        Assert.Equal([0, 1], roles);
    }

    [Fact]
    public async Task An_openapi_document_describes_every_endpoint_of_the_api()
    {
        var document = JsonNode.Parse(await Server.Http().GetStringAsync("/openapi/v1.json"))!;
        Assert.StartsWith("3.", document["openapi"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal("TauCluster", document["info"]!["title"]!.GetValue<string>());
        var paths = document["paths"]!.AsObject();
        Assert.Equal(["/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/models/{id}", "/v1/sessions/{id}", "/v1/sessions/{id}/fork"], paths.Select(p => p.Key).Order(StringComparer.Ordinal).ToArray());
        foreach (var post in new[] { "/v1/completions", "/v1/chat/completions" })
        {
            var operation = paths[post]!["post"]!;
            Assert.NotNull(operation["requestBody"]!["content"]!["application/json"]);
            Assert.NotNull(operation["responses"]!["200"]!["content"]!["text/event-stream"]);
            var error = operation["responses"]!["400"]!["content"]!["application/json"]!["schema"]!["$ref"]!.GetValue<string>();
            Assert.Equal(["code", "message", "param", "type"], document["components"]!["schemas"]![error.Split('/')[^1]]!["properties"]!["error"]!["$ref"] is { } detail
                ? document["components"]!["schemas"]![detail.GetValue<string>().Split('/')[^1]]!["properties"]!.AsObject().Select(p => p.Key).Order(StringComparer.Ordinal).ToArray()
                : []);
            Assert.False(string.IsNullOrEmpty(operation["summary"]?.GetValue<string>()));
        }
        Assert.NotNull(paths["/v1/sessions/{id}"]!["get"]);
        Assert.NotNull(paths["/v1/sessions/{id}"]!["delete"]);
        Assert.NotNull(paths["/v1/sessions/{id}/fork"]!["post"]);
    }

    [Fact]
    public async Task Chat_completion_through_the_official_client_reports_usage_and_finish_reason()
    {
        ChatCompletion completion = await Chat().CompleteChatAsync([new UserChatMessage("Say something")], Options(seed: 1, maxTokens: 10));
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(10, completion.Usage.OutputTokenCount);
        // The README's template for one user message; the tiny model's tokenizer is one token per UTF-8 byte.
        Assert.Equal(Encoding.UTF8.GetByteCount("User: Say something\nAssistant:"), completion.Usage.InputTokenCount);
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
    public async Task A_request_repeated_on_its_session_reuses_the_prompt_and_generates_the_same_greedy_reply()
    {
        // A retry: the session holds prompt + reply, the request only the prompt. The session keeps the longest agreeing
        // prefix (the whole prompt, from its cache) and generates again from there.
        string session = $"again-{Guid.NewGuid():N}";
        string body = $$"""{"model": "tiny", "prompt": "say it twice", "max_tokens": 6, "temperature": 0, "session": "{{session}}"}""";
        var first = await Post("/v1/completions", body);
        var second = await Post("/v1/completions", body);
        Assert.Equal(0, first["usage"]!["prompt_tokens_details"]!["cached_tokens"]!.GetValue<int>());
        Assert.Equal("say it twice".Length, second["usage"]!["prompt_tokens_details"]!["cached_tokens"]!.GetValue<int>());
        Assert.Equal(6, second["usage"]!["completion_tokens"]!.GetValue<int>());
        Assert.Equal(first["choices"]![0]!["text"]!.GetValue<string>(), second["choices"]![0]!["text"]!.GetValue<string>());
        var info = (await Server.Http().GetFromJsonAsync<JsonObject>($"/v1/sessions/{session}"))!;
        Assert.Equal("say it twice".Length + 6, info["length"]!.GetValue<int>());
        await Server.Http().DeleteAsync($"/v1/sessions/{session}");
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

    [Fact]
    public async Task A_request_that_contradicts_its_session_gets_409_and_leaves_the_session_as_it_was()
    {
        string session = $"conflict-{Guid.NewGuid():N}";
        await Post("/v1/completions", $$"""{"model": "tiny", "prompt": "first", "max_tokens": 2, "temperature": 0, "session": "{{session}}"}""");
        var before = await Server.Http().GetStringAsync($"/v1/sessions/{session}");
        var error = (await Post("/v1/completions", $$"""{"model": "tiny-gpt2", "prompt": "another model", "max_tokens": 2, "session": "{{session}}"}""",
            HttpStatusCode.Conflict))["error"]!;
        Assert.Equal("session_conflict", error["code"]!.GetValue<string>());
        Assert.Equal("session", error["param"]!.GetValue<string>());
        Assert.Contains("already runs model 'tiny'", error["message"]!.GetValue<string>());
        Assert.Equal(before, await Server.Http().GetStringAsync($"/v1/sessions/{session}"));
    }

    [Fact]
    public async Task A_request_whose_reply_cannot_fit_the_context_gets_400_and_leaves_its_session_as_it_was()
    {
        string session = $"limit-{Guid.NewGuid():N}";
        await Post("/v1/completions", $$"""{"model": "tiny", "prompt": "first turn", "max_tokens": 2, "temperature": 0, "session": "{{session}}"}""");
        var before = await Server.Http().GetStringAsync($"/v1/sessions/{session}");
        // A different prompt (the session would forget its tokens and prefill this one) with a reply past the context.
        var error = (await Post("/v1/completions", $$"""{"model": "tiny", "prompt": "a whole other text", "max_tokens": 2040, "session": "{{session}}"}""",
            HttpStatusCode.BadRequest))["error"]!;
        Assert.Equal("context_length_exceeded", error["code"]!.GetValue<string>());
        Assert.Equal("max_tokens", error["param"]!.GetValue<string>());
        Assert.Equal(before, await Server.Http().GetStringAsync($"/v1/sessions/{session}"));
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

    /// <summary>
    /// The event that a session's generation has ended. Calls that change a session are served one at a time, and a
    /// generation holds the session from its first token to its end; <see cref="ISessionGrain.Open"/> with the session's
    /// own spec changes nothing, so its answer comes only once the generation has let go. (GET /v1/sessions/{id}
    /// is no such event: reads answer at once, mid-generation.)
    /// </summary>
    private async Task<SessionInfo> AfterItsGeneration(string session)
    {
        var grain = Server.Grains.GetGrain<ISessionGrain>(session);
        var info = await grain.GetInfo();
        Assert.True(info.Exists, $"session {session} does not exist");
        return await grain.Open(new SessionSpec(info.Model!, info.Domain, info.Sampling!));
    }

    [Fact]
    public async Task A_client_that_disconnects_mid_stream_stops_the_generation()
    {
        string session = $"gone-{Guid.NewGuid():N}";
        const string prompt = "User: talk\nAssistant:";   // the template of one user message "talk"
        const int maxTokens = 1500;
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent($$"""{"model": "tiny", "messages": [{"role": "user", "content": "talk"}], "max_tokens": {{maxTokens}}, "stream": true, "session": "{{session}}"}""", Encoding.UTF8, "application/json"),
        };
        // No draining of the unread body on dispose: the connection really closes, as when a client goes away.
        var received = new StringBuilder();
        using (var http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = Server.Address })
        using (var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            for (int deltas = 0; deltas < 4;)
            {
                string line = await reader.ReadLineAsync() ?? throw new Xunit.Sdk.XunitException("the stream ended before the client left");
                if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                Assert.NotEqual("data: [DONE]", line);
                var choice = JsonNode.Parse(line["data: ".Length..])!["choices"]![0]!;
                Assert.Null(choice["finish_reason"]?.GetValue<string>());   // still generating when the client leaves
                if (choice["delta"]?["content"]?.GetValue<string>() is { Length: > 0 } text)
                {
                    received.Append(text);
                    deltas++;
                }
            }
        }   // the client goes away here, mid-generation

        var ended = await AfterItsGeneration(session);
        int generated = ended.Length - Encoding.UTF8.GetByteCount(prompt);
        // The session holds what the client was sent: the prompt, then the reply the client read the start of.
        Assert.StartsWith(prompt + received, (await Server.Grains.GetGrain<ISessionGrain>(session).GetText())!, StringComparison.Ordinal);
        // It stopped when the client left. How far short of max_tokens is not the client's to know: the silo writes
        // ahead into socket buffers and learns of the disconnect a moment after it happens. The exact bound, within one
        // chunk of the point of cancel, is the next test's, where that point is known.
        Assert.InRange(generated, 4, maxTokens - 1);
        await Server.Grains.GetGrain<ISessionGrain>(session).Delete();
    }

    [Fact]
    public async Task A_cancelled_reply_stream_stops_within_one_chunk_of_the_cancel()
    {
        // The HTTP handler streams a reply as TauSessionClient.Complete with the request's abort token; here that token
        // is cancelled at a known point: after the fifth token, while the sixth is being asked for.
        var sessions = new TauSessionClient(Server.Grains);
        string session = $"cancel-{Guid.NewGuid():N}";
        var request = new CompletionRequest(new SessionSpec(SiloServer.Model, null, new SamplingSettings(Temperature: 0)),
            PromptInput.FromText("stop when I say"), 1500, PromptPlacement.Whole);
        using var cancel = new CancellationTokenSource();
        var updates = sessions.Complete(session, request, cancel.Token).GetAsyncEnumerator();
        int received = 0, promptLength = 0;
        while (received < 5)
        {
            Assert.True(await updates.MoveNextAsync());
            promptLength = updates.Current.Prompt?.Tokens ?? promptLength;
            received++;
        }
        var next = updates.MoveNextAsync();   // the sixth token is asked for …
        cancel.Cancel();                      // … and the consumer cancels: the point of cancel, 5 tokens received, one in flight
        try
        {
            if (await next)
            {
                Assert.Null(updates.Current.Finish);   // 1500 asked for: a token, not the end of the reply
                received++;
            }
        }
        catch (OperationCanceledException)
        {
        }
        await updates.DisposeAsync();

        var ended = await AfterItsGeneration(session);
        int generated = ended.Length - promptLength;
        Assert.Equal("stop when I say".Length, promptLength);
        // At least what the consumer got; at most the chunk the silo had sent past the point of cancel, which holds no
        // more than the tokens the compute worker had made ahead (its run window) and the one in flight.
        Assert.InRange(generated, received, 5 + ComputeWorker.RunWindow + 1);
        await sessions.Session(session).Delete();
    }

    [Fact]
    public async Task Chat_messages_reach_the_model_through_the_plain_template()
    {
        string session = $"template-{Guid.NewGuid():N}";
        List<ChatMessage> messages = [new SystemChatMessage("be brief"), new UserChatMessage("hi"), new AssistantChatMessage("hello"), new UserChatMessage("again")];
        var completion = (await Chat().CompleteChatAsync(messages, Options(seed: 3, maxTokens: 4, session: session))).Value;
        // README: "System: …\n", "User: …\n", "Assistant:…\n" (the reply verbatim) for each message, then "Assistant:".
        const string expected = "System: be brief\nUser: hi\nAssistant:hello\nUser: again\nAssistant:";
        var ids = await Server.Grains.GetGrain<ISessionGrain>(session).GetTokens();
        Assert.Equal(Encoding.UTF8.GetByteCount(expected), completion.Usage.InputTokenCount);
        Assert.Equal(Encoding.UTF8.GetBytes(expected).Select(b => (int)b).ToArray(), ids[..completion.Usage.InputTokenCount]);
        Assert.Equal(completion.Usage.InputTokenCount + 4, ids.Length);
        await Server.Http().DeleteAsync($"/v1/sessions/{session}");
    }

    private static Laplacian Star(int dimension)
    {
        var rows = new List<long>(); var cols = new List<long>(); var values = new List<double>();
        for (int i = 1; i < dimension; i++)
        {
            rows.AddRange([0, i, 0, i]); cols.AddRange([i, 0, 0, i]); values.AddRange([-1, -1, 1, 1]);
        }
        return Laplacian.FromTriplets("star", dimension, dimension, rows.ToArray(), cols.ToArray(), values.ToArray(), null);
    }

    [Fact]
    public async Task A_completion_in_a_registered_domain_scores_against_that_domains_laplacian()
    {
        // The tiny model's heads are 32 wide and its own Laplacian is the 32-chain, with no τ mode of its own (median
        // from the model). A domain holding that same chain gives the same λ everywhere, so greedy decoding gives the
        // same tokens; a star graph gives other λ, so other attention, other logits and, for this model, other tokens.
        string sameAsModel = $"chain32-{Guid.NewGuid():N}", star = $"star32-{Guid.NewGuid():N}", narrow = $"chain16-{Guid.NewGuid():N}";
        await Server.Grains.GetGrain<IDomainGrain>(sameAsModel).Register(TripletCodec.Pack(Laplacian.Chain(32)));
        await Server.Grains.GetGrain<IDomainGrain>(star).Register(TripletCodec.Pack(Star(32)));
        await Server.Grains.GetGrain<IDomainGrain>(narrow).Register(TripletCodec.Pack(Laplacian.Chain(16)));

        async Task<string> Complete(string? domain)
        {
            string session = $"domain-{Guid.NewGuid():N}";
            string field = domain is null ? "" : $", \"domain\": \"{domain}\"";
            var reply = await Post("/v1/completions", $$"""{"model": "tiny", "prompt": "In the beginning", "max_tokens": 24, "temperature": 0, "session": "{{session}}"{{field}}}""");
            Assert.Equal(24, reply["usage"]!["completion_tokens"]!.GetValue<int>());
            var info = (await Server.Http().GetFromJsonAsync<JsonObject>($"/v1/sessions/{session}"))!;
            Assert.Equal(domain, info["domain"]?.GetValue<string>());
            await Server.Http().DeleteAsync($"/v1/sessions/{session}");
            return reply["choices"]![0]!["text"]!.GetValue<string>();
        }

        string plain = await Complete(null);
        Assert.Equal(plain, await Complete(sameAsModel));
        Assert.NotEqual(plain, await Complete(star));

        var wrongDimension = (await Post("/v1/completions", $$"""{"model": "tiny", "prompt": "x", "domain": "{{narrow}}"}""", HttpStatusCode.BadRequest))["error"]!;
        Assert.Contains("16", wrongDimension["message"]!.GetValue<string>());
        var unknown = (await Post("/v1/completions", """{"model": "tiny", "prompt": "x", "domain": "never-registered"}""", HttpStatusCode.NotFound))["error"]!;
        Assert.Equal("domain", unknown["param"]!.GetValue<string>());
    }

    [Fact]
    public async Task Metrics_export_tau_and_orleans_meters_in_prometheus_text()
    {
        await Post("/v1/completions", """{"model": "tiny", "prompt": "count me", "max_tokens": 3}""");
        var metrics = PrometheusText.Parse(await Server.Http().GetStringAsync("/metrics"));
        // Every metric of the README's table, with its type; values are MetricsTests' (a silo of their own).
        foreach (var (family, type) in new[] { ("tau_generated_tokens_total", "counter"), ("tau_time_to_first_token_seconds", "histogram"),
                     ("tau_inter_token_latency_seconds", "histogram"), ("tau_active_sessions", "gauge"), ("tau_cache_bytes", "gauge"),
                     ("tau_queue_depth", "gauge"), ("tau_context_shards", "gauge"), ("tau_context_shard_bytes", "gauge") })
            Assert.True(metrics.Types.TryGetValue(family, out var actual) && actual == type, $"{family}: {actual ?? "missing"}, not {type}");
        Assert.True(metrics.Value("tau_generated_tokens_total") >= 3);
        Assert.True(metrics.Value("tau_time_to_first_token_seconds_count") >= 1);
        Assert.Equal(metrics.Value("tau_time_to_first_token_seconds_count"), metrics.Value("tau_time_to_first_token_seconds_bucket", ("le", "+Inf")));
        metrics.Value("tau_cache_bytes", ("cache", "tau"));
        metrics.Value("tau_cache_bytes", ("cache", "kv_baseline"));
        Assert.Contains(metrics.Samples, s => s.Name.StartsWith("orleans_", StringComparison.Ordinal));
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
