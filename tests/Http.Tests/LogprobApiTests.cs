using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Chat;
using TauCluster.Engine;

namespace TauCluster.Http.Tests;

/// <summary>
/// Log-probabilities and logit_bias through the API, in OpenAI's shapes: chat's read by the official client, whole and
/// streamed; the completions endpoint's with echo, whose log-likelihood of a text must equal the engine's own.
/// </summary>
[Collection(nameof(ServerCollection))]
public sealed class LogprobApiTests(ServerFixture fixture)
{
    private SiloServer Server => fixture.Server;

    private ChatClient Chat() =>
        new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(Server.Address, "/v1") }).GetChatClient(SiloServer.Model);

    private async Task<string> PostText(string path, string json)
    {
        using var response = await Server.Http().PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return text;
    }

    private async Task<JsonObject> Post(string path, string json) => JsonNode.Parse(await PostText(path, json))!.AsObject();

    private static IEnumerable<JsonNode> Events(string stream) => stream.Split('\n')
        .Where(l => l.StartsWith("data: {", StringComparison.Ordinal)).Select(l => JsonNode.Parse(l["data: ".Length..])!);

    /// <summary>Σ log p(tᵢ | t₀ … tᵢ₋₁) for i ≥ 1, from the engine's own forward pass over the whole text.</summary>
    private double EngineLogLikelihood(int[] tokens)
    {
        var model = TauModel.Load(Path.Combine(Server.ModelsRoot, SiloServer.Model));
        int vocab = model.Config.VocabSize;
        var rows = new InferenceSession(model).AppendAllLogits(tokens);
        double sum = 0;
        for (int i = 1; i < tokens.Length; i++)
        {
            var row = rows.AsSpan((i - 1) * vocab, vocab);
            sum += row[tokens[i]] - TokenScore.LogSumExp(row);
        }
        return sum;
    }

    [Fact]
    public async Task An_echoed_prompts_log_likelihood_through_the_api_equals_the_engines_own()
    {
        const string text = "In the beginning God created the heaven and the earth.";
        var tokens = Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToArray();
        // What lm-evaluation-harness sends to score a text: echo, one token, logprobs 1, greedy.
        var body = await Post("/v1/completions", $$"""{"model": "tiny", "prompt": {{System.Text.Json.JsonSerializer.Serialize(text)}}, "max_tokens": 1, "temperature": 0, "echo": true, "logprobs": 1}""");
        var choice = body["choices"]![0]!;
        Assert.StartsWith(text, choice["text"]!.GetValue<string>(), StringComparison.Ordinal);
        var logprobs = choice["logprobs"]!;
        var tokenLogprobs = logprobs["token_logprobs"]!.AsArray();
        Assert.Equal(tokens.Length + 1, tokenLogprobs.Count);
        Assert.Null(tokenLogprobs[0]);   // nothing predicts the first token
        Assert.Null(logprobs["top_logprobs"]![0]);
        Assert.Equal(text.Select(c => c.ToString()), logprobs["tokens"]!.AsArray().Take(tokens.Length).Select(t => t!.GetValue<string>()));
        Assert.Equal(Enumerable.Range(0, tokens.Length + 1), logprobs["text_offset"]!.AsArray().Select(o => o!.GetValue<int>()));

        double viaApi = tokenLogprobs.Skip(1).Take(tokens.Length - 1).Sum(l => l!.GetValue<double>());
        Assert.Equal(EngineLogLikelihood(tokens), viaApi, 3);

        // Each top_logprobs map holds the likeliest token and the chosen one; at temperature 0 the generated token is the likeliest.
        var generated = logprobs["top_logprobs"]![tokens.Length]!.AsObject();
        Assert.Single(generated);
        Assert.Equal(logprobs["tokens"]![tokens.Length]!.GetValue<string>(), generated.Single().Key);
        foreach (var top in logprobs["top_logprobs"]!.AsArray().Skip(1)) Assert.InRange(top!.AsObject().Count, 1, 2);
        Assert.Equal(tokens.Length, body["usage"]!["prompt_tokens"]!.GetValue<int>());

        // An echo without logprobs is the text alone; logprobs without echo score only the reply.
        var echoed = (await Post("/v1/completions", """{"model": "tiny", "prompt": [65, 66], "max_tokens": 3, "echo": true}"""))["choices"]![0]!;
        Assert.StartsWith("AB", echoed["text"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Null(echoed["logprobs"]);
        var replyOnly = (await Post("/v1/completions", """{"model": "tiny", "prompt": "AB", "max_tokens": 3, "logprobs": 0}"""))["choices"]![0]!;
        Assert.Equal(3, replyOnly["logprobs"]!["token_logprobs"]!.AsArray().Count);
        Assert.Equal(0, replyOnly["logprobs"]!["text_offset"]![0]!.GetValue<int>());
    }

    [Fact]
    public async Task A_prompt_already_in_the_session_is_scored_the_same_as_a_new_one()
    {
        // The second request finds the prompt cached; its scores come from running it again, not from the cache.
        string Request(string prompt) => $$"""{"model": "tiny", "prompt": "{{prompt}}", "max_tokens": 2, "temperature": 0, "echo": true, "logprobs": 2, "session": "scored-twice"}""";
        var first = (await Post("/v1/completions", Request("And the earth was without form")))["choices"]![0]!["logprobs"]!;
        var second = await Post("/v1/completions", Request("And the earth was without form, and void"));
        Assert.True(second["usage"]!["prompt_tokens_details"]!["cached_tokens"]!.GetValue<int>() > 0);
        var again = second["choices"]![0]!["logprobs"]!;
        int shared = "And the earth was without form".Length;
        Assert.Equal(first["token_logprobs"]!.AsArray().Take(shared).Select(l => l?.GetValue<double>()),
            again["token_logprobs"]!.AsArray().Take(shared).Select(l => l?.GetValue<double>()));
    }

    [Fact]
    public async Task Chat_logprobs_reach_the_official_client_whole_and_streamed_alike()
    {
        var options = new ChatCompletionOptions
        {
            Temperature = 0.8f, Seed = 11, MaxOutputTokenCount = 10, IncludeLogProbabilities = true, TopLogProbabilityCount = 3,
        };
        ChatMessage[] messages = [new UserChatMessage("Who made the light?")];
        var whole = (await Chat().CompleteChatAsync(messages, options)).Value;
        var scores = whole.ContentTokenLogProbabilities;
        Assert.Equal(whole.Usage.OutputTokenCount, scores.Count);
        foreach (var score in scores)
        {
            Assert.InRange(score.LogProbability, float.MinValue, 0f);
            Assert.Equal(3, score.TopLogProbabilities.Count);
            Assert.True(score.TopLogProbabilities.Zip(score.TopLogProbabilities.Skip(1)).All(p => p.First.LogProbability >= p.Second.LogProbability));
            Assert.True(score.LogProbability <= score.TopLogProbabilities[0].LogProbability);
            Assert.Single(score.Utf8Bytes!.Value.ToArray());   // a byte-level model: each token is one byte
        }
        Assert.Equal(whole.Content[0].Text, Encoding.UTF8.GetString(scores.SelectMany(s => s.Utf8Bytes!.Value.ToArray()).ToArray()));

        var streamed = new List<ChatTokenLogProbabilityDetails>();
        await foreach (var update in Chat().CompleteChatStreamingAsync(messages, options)) streamed.AddRange(update.ContentTokenLogProbabilities);
        Assert.Equal(scores.Select(s => (s.Token, s.LogProbability)), streamed.Select(s => (s.Token, s.LogProbability)));
        Assert.Equal(scores.Select(s => s.TopLogProbabilities.Select(t => t.Token)), streamed.Select(s => s.TopLogProbabilities.Select(t => t.Token)));

        // Without logprobs the reply has none, and the same tokens: scoring draws nothing from the generator.
        var plain = (await Chat().CompleteChatAsync(messages, new ChatCompletionOptions { Temperature = 0.8f, Seed = 11, MaxOutputTokenCount = 10 })).Value;
        Assert.Empty(plain.ContentTokenLogProbabilities);
        Assert.Equal(whole.Content[0].Text, plain.Content[0].Text);
    }

    [Fact]
    public async Task A_streamed_echo_sends_the_prompt_first_and_each_token_with_its_logprobs()
    {
        const string request = """{"model": "tiny", "prompt": "Let there be", "max_tokens": 6, "temperature": 0.7, "seed": 5, "echo": true, "logprobs": 2, "n": 2}""";
        var whole = await Post("/v1/completions", request);
        var stream = await PostText("/v1/completions", request.Replace("\"n\": 2", "\"n\": 2, \"stream\": true", StringComparison.Ordinal));
        foreach (int index in new[] { 0, 1 })
        {
            var chunks = Events(stream).Select(e => e["choices"]![0]!).Where(c => c["index"]!.GetValue<int>() == index).ToArray();
            Assert.Equal("Let there be", chunks[0]["text"]!.GetValue<string>());
            var expected = whole["choices"]!.AsArray().Single(c => c!["index"]!.GetValue<int>() == index)!;
            Assert.Equal(expected["text"]!.GetValue<string>(), string.Concat(chunks.Select(c => c["text"]!.GetValue<string>())));
            var streamedLogprobs = chunks.Where(c => c["logprobs"] is not null).SelectMany(c => c["logprobs"]!["token_logprobs"]!.AsArray())
                .Select(l => l?.GetValue<double>()).ToArray();
            Assert.Equal(expected["logprobs"]!["token_logprobs"]!.AsArray().Select(l => l?.GetValue<double>()), streamedLogprobs);
            Assert.Equal(expected["logprobs"]!["text_offset"]!.AsArray().Select(o => o!.GetValue<int>()),
                chunks.Where(c => c["logprobs"] is not null).SelectMany(c => c["logprobs"]!["text_offset"]!.AsArray()).Select(o => o!.GetValue<int>()));
            Assert.Equal(12 + 6, streamedLogprobs.Length);
        }
        // Both choices echo the same prompt with the same scores.
        var prompts = whole["choices"]!.AsArray().Select(c => c!["logprobs"]!["token_logprobs"]!.AsArray().Take(12).Select(l => l?.GetValue<double>()).ToArray()).ToArray();
        Assert.Equal(prompts[0], prompts[1]);
    }

    [Fact]
    public async Task Logit_bias_bans_and_forces_tokens_as_openai_defines_it()
    {
        async Task<int[]> Ids(string extra)
        {
            var body = await Post("/v1/completions", $$"""{"model": "tiny", "prompt": [1, 2, 3], "max_tokens": 8, "temperature": 0, "logprobs": 0{{extra}}}""");
            return body["choices"]![0]!["logprobs"]!["tokens"]!.AsArray().Select(t => (int)Encoding.Latin1.GetBytes(Unescape(t!.GetValue<string>()))[0]).ToArray();
        }
        var greedy = await Ids("");
        var banned = await Ids($$""", "logit_bias": {"{{greedy[0]}}": -100}""");
        Assert.NotEqual(greedy[0], banned[0]);
        Assert.DoesNotContain(greedy[0], banned);
        var forced = await Ids(""", "logit_bias": {"65": 100}""");
        Assert.All(forced, id => Assert.Equal(65, id));
        Assert.Equal(banned, await Ids($$""", "logit_bias": {"{{greedy[0]}}": -100}"""));   // deterministic
    }

    /// <summary>A token's text as the completions endpoint writes it: the character, or bytes:\xNN for a part of one.</summary>
    private static string Unescape(string token) => token.StartsWith("bytes:", StringComparison.Ordinal)
        ? Encoding.Latin1.GetString(token["bytes:".Length..].Split("\\x", StringSplitOptions.RemoveEmptyEntries).Select(h => Convert.ToByte(h, 16)).ToArray())
        : Encoding.Latin1.GetString(Encoding.UTF8.GetBytes(token));
}
