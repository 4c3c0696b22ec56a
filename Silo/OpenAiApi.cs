using System.Text.Json;
using System.Text.Json.Nodes;
using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Silo;

/// <summary>An error the API reports in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.</summary>
public sealed class ApiError(int status, string message, string? param = null, string? code = null, string type = "invalid_request_error")
    : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type;

    public JsonObject ToJson() => new()
    {
        ["error"] = new JsonObject { ["message"] = Message, ["type"] = Type, ["param"] = Param, ["code"] = Code },
    };

    /// <summary>How each failure reaches a client: the user's mistakes are 4xx, the cluster's trouble 503, the rest 500.</summary>
    public static ApiError From(Exception e) => e switch
    {
        ApiError api => api,
        UnknownNameException { Kind: "model" } u => new ApiError(404, u.Message, "model", "model_not_found"),
        UnknownNameException u => new ApiError(404, u.Message, u.Kind, "not_found"),
        ContextLengthExceededException c => new ApiError(400, c.Message, "max_tokens", "context_length_exceeded"),
        TokenOutOfRangeException t => new ApiError(400, t.Message, "prompt", "invalid_token"),
        SessionConflictException => new ApiError(409, e.Message, "session", "session_conflict"),
        DeviceMemoryExhaustedException => new ApiError(503, e.Message, code: "device_memory_exhausted", type: "server_error"),
        InvalidOptionsException or LaplacianException => new ApiError(400, e.Message),
        JsonException => new ApiError(400, $"the body is not valid JSON: {e.Message}", code: "invalid_json"),
        BadHttpRequestException { StatusCode: 413 } => new ApiError(413, "the request body is too large", code: "request_too_large"),
        BadHttpRequestException b => new ApiError(b.StatusCode, b.Message),
        _ when TauSessionClient.IsTransient(e, CancellationToken.None) =>
            new ApiError(503, "the cluster is not reachable just now; retry", code: "unavailable", type: "server_error"),
        _ => new ApiError(500, $"internal error: {e.Message}", type: "server_error"),
    };
}

/// <summary>The error object's shape, for the OpenAPI document (<see cref="ApiError.ToJson"/> writes it).</summary>
internal sealed record ErrorDocument(ErrorDocument.Detail Error)
{
    internal sealed record Detail(string Message, string Type, string? Param, string? Code);
}

/// <summary>A parsed /v1/completions or /v1/chat/completions request.</summary>
/// <paramref name="Logprobs"/>: the alternatives each token's log-probability comes with (null: none asked); <paramref name="Echo"/>: the
/// completion's text and log-probabilities begin with the prompt's.
internal sealed record GenerationRequest(
    string Model, PromptInput Prompt, int MaxTokens, SamplingSettings Sampling, string[] Stop,
    bool Stream, bool IncludeUsage, string? Session, string? Domain, int N, int? Logprobs = null, bool Echo = false);

/// <summary>
/// The OpenAI-compatible HTTP API: /v1/models, /v1/completions, /v1/chat/completions (with server-sent events when
/// <c>stream</c> is true, log-probabilities when asked), plus TauCluster's extension fields <c>session</c>, <c>domain</c> and <c>top_k</c>, and
/// /v1/sessions/{id} to read, fork or delete a session.
/// </summary>
public static partial class OpenAiApi
{
    public static void MapOpenAiApi(this WebApplication app)
    {
        var api = app.MapGroup("/v1").WithTags("OpenAI-compatible");
        api.MapGet("/models", (ModelStore models) => Results.Json(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(models.Names().Select(name => (JsonNode)Model(models.Describe(name))).ToArray()),
        })).WithSummary("The models this silo serves, with when each was made and its context length (max_model_len)")
            .Produces<JsonObject>();
        api.MapGet("/models/{id}", (string id, ModelStore models) => Results.Json(Model(models.Describe(id))))
            .WithSummary("One model; 404 with code model_not_found for a name that is not one").Produces<JsonObject>().Produces<ErrorDocument>(404);
        // The CancellationToken makes these ordinary endpoints, not bare request delegates, so that OpenAPI lists them.
        api.MapPost("/completions", (HttpContext http, CancellationToken _) => Generate(http, chat: false))
            .WithSummary("A completion of a prompt (text or token ids), whole or as server-sent events (stream: true)")
            .TakesJson().Produces<JsonObject>(200, "application/json", "text/event-stream").Produces<ErrorDocument>(400);
        api.MapPost("/chat/completions", (HttpContext http, CancellationToken _) => Generate(http, chat: true))
            .WithSummary("A chat reply to messages, through the chat template, whole or as server-sent events (stream: true)")
            .TakesJson().Produces<JsonObject>(200, "application/json", "text/event-stream").Produces<ErrorDocument>(400);
        api.MapSessionsApi();
        app.Map("/v1/{**rest}", (string rest) => Results.Json(
            new ApiError(404, $"no endpoint /v1/{rest}: see /v1/models, /v1/completions, /v1/chat/completions, /v1/sessions/{{id}} (and /openapi/v1.json)", code: "not_found").ToJson(),
            statusCode: 404)).ExcludeFromDescription();
    }

    /// <summary>
    /// A JSON request body, in the OpenAPI document only: Accepts() would also make routing refuse other content types
    /// before the endpoint runs (a bare 415), where the endpoint answers them with OpenAI's error object.
    /// </summary>
    private static RouteHandlerBuilder TakesJson(this RouteHandlerBuilder endpoint) =>
        endpoint.AddOpenApiOperationTransformer((operation, _, _) =>
        {
            operation.RequestBody = new Microsoft.OpenApi.OpenApiRequestBody
            {
                Required = true,
                Description = "OpenAI's request object, with TauCluster's session, domain, top_k, repetition_penalty and min_p",
                Content = new Dictionary<string, Microsoft.OpenApi.OpenApiMediaType> { ["application/json"] = new() },
            };
            return Task.CompletedTask;
        });

    /// <summary>OpenAI's model object, with vLLM's max_model_len: the context a prompt and its reply share.</summary>
    private static JsonObject Model(ModelCard card) => new()
    {
        ["id"] = card.Name,
        ["object"] = "model",
        ["created"] = card.Created,
        ["owned_by"] = "taucluster",
        ["root"] = card.Name,
        ["max_model_len"] = card.Config.SequenceLen,
    };

    /// <summary>The most choices (n) one request may ask for: each is a session's worth of cache and compute.</summary>
    public const int MaxChoices = 16;

    internal static readonly JsonSerializerOptions JsonOptions = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>A field given twice is a malformed request, refused when the body is read.</summary>
    private static readonly JsonDocumentOptions StrictJson = new() { AllowDuplicateProperties = false };

    /// <summary>Turns any failure of a /v1 call into OpenAI's error shape with the right status.</summary>
    public static async Task WriteErrors(HttpContext http, Func<Task> next)
    {
        try
        {
            await next();
        }
        catch (Exception e) when (!http.Response.HasStarted && !(e is OperationCanceledException && http.RequestAborted.IsCancellationRequested))
        {
            var error = ApiError.From(e);
            http.Response.StatusCode = error.Status;
            // Every 503 is a moment's trouble (a full queue, a draining silo, the cluster in flux): say when to come back.
            if (error.Status == StatusCodes.Status503ServiceUnavailable)
                http.Response.Headers.RetryAfter = http.RequestServices.GetRequiredService<HttpApiOptions>().RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await http.Response.WriteAsJsonAsync(error.ToJson());
        }
    }

    private static async Task Generate(HttpContext http, bool chat)
    {
        var services = http.RequestServices;
        var options = services.GetRequiredService<HttpApiOptions>();
        var record = http.Features.Get<GenerationRecord>() ?? new GenerationRecord();
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        record.Endpoint = chat ? "chat" : "completions";
        var request = Parse(await ReadObject(http), chat, options);
        var models = services.GetRequiredService<ModelStore>();
        record.Model = models.Require(request.Model);   // unknown models are refused before anything starts
        // The model's config, read from its config.json once, by the requests that need its vocabulary or tokenizer.
        var config = request.Sampling.LogitBias is not null || request.Logprobs is not null || request.Echo
            ? models.Describe(request.Model).Config : null;
        if (request.Sampling.LogitBias is { } bias)
            try
            {
                int vocabulary = config!.VocabSize;
                foreach (int token in bias.Tokens) SamplingRules.CheckLogitBiasToken(token, vocabulary);
            }
            catch (InvalidOptionsException e)
            {
                throw new ApiError(400, e.Message, "logit_bias");
            }

        using var lease = await services.GetRequiredService<GenerationGate>().Enter(http.RequestAborted);
        var sessions = new TauSessionClient(services.GetRequiredService<IGrainFactory>());
        string sessionId = request.Session ?? $"http-{Guid.NewGuid():N}";
        record.Session = sessionId;
        var spec = new SessionSpec(request.Model, request.Domain, request.Sampling);
        var completion = new CompletionRequest(spec, request.Prompt, request.MaxTokens, PromptPlacement.Whole, request.Stop,
            Logprobs: request.Logprobs, ScorePrompt: request.Echo && request.Logprobs is not null);
        var forks = new List<string>();
        var streams = new List<IAsyncEnumerator<CompletionChunk>>();
        // Ends every choice's stream when one fails or the reply ends early, as well as when the client goes.
        using var choicesEnd = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted);
        try
        {
            // One call per choice: the session grain opens the session, checks every limit before it changes, prefills
            // what it lacks of the prompt and streams the reply; the first chunk arrives once the prompt is in. With n
            // choices the prompt goes in once, and choices 1… are forks of the session as it stands then, each drawing
            // from a seed of its own; choice 0 is what n = 1 would give.
            var requests = new List<(string Session, CompletionRequest Request)> { (sessionId, completion) };
            if (request.N > 1)
            {
                completion = completion with { RequestId = Guid.NewGuid().ToString("N") };
                requests[0] = (sessionId, completion);
                await sessions.Prepare(sessionId, completion, http.RequestAborted);
                for (int i = 1; i < request.N; i++)
                {
                    string fork = $"choice-{Guid.NewGuid():N}";
                    forks.Add(fork);
                    await TauSessionClient.Retry(() => sessions.Session(sessionId).Fork(fork), http.RequestAborted);
                    var sampling = request.Sampling with { Seed = ChoiceSeed(request.Sampling.Seed, i) };
                    // A fork's prompt is choice 0's: its scores, when asked, are those choice 0 computed.
                    requests.Add((fork, completion with { Spec = spec with { Sampling = sampling }, RequestId = null, ScorePrompt = false }));
                }
            }
            foreach (var (session, choice) in requests)
                streams.Add(sessions.Complete(session, choice, choicesEnd.Token).GetAsyncEnumerator(choicesEnd.Token));
            var firsts = await Task.WhenAll(streams.Select(async stream =>
                await stream.MoveNextAsync() ? stream.Current : throw new ApiError(500, "the session returned no tokens", type: "server_error")));
            record.TimeToFirstToken = System.Diagnostics.Stopwatch.GetElapsedTime(started);
            var first = firsts[0];
            var tokenizer = request.Logprobs is not null || request.Echo ? TextTokenizer.For(config!.Tokenizer) : null;
            var reply = new Reply(request, chat, sessionId, first.Prompt ?? new PromptUsage(first.Position, 0, 0), record,
                new OpenAiLogprobs(tokenizer), request.Echo ? EchoedText(request.Prompt, tokenizer) : null, first.PromptLogprobs);
            var choices = firsts.Zip(streams).ToArray();
            if (request.Stream) await reply.Stream(http, choices, choicesEnd);
            else await reply.Whole(http, choices);
        }
        finally
        {
            foreach (var stream in streams) await stream.DisposeAsync();
            foreach (var fork in forks) await DeleteQuietly(sessions, fork);
            if (request.Session is null) await DeleteQuietly(sessions, sessionId);   // a request without a session leaves nothing behind
        }
    }

    /// <summary>The prompt as an echo writes it: its text, or its ids decoded (nothing, for a model without a tokenizer).</summary>
    private static string EchoedText(PromptInput prompt, ITextTokenizer? tokenizer) =>
        prompt.Text ?? (prompt.Ids is { } ids && tokenizer is not null ? tokenizer.Decode(ids) : "");

    /// <summary>
    /// Choice <paramref name="index"/>'s seed: the request's own for choice 0, and for the others a SplitMix64 step
    /// away from it, so that the same request always gives the same n replies and no two choices share a stream.
    /// </summary>
    internal static ulong ChoiceSeed(ulong seed, int index)
    {
        if (index == 0) return seed;
        ulong z = unchecked(seed + (ulong)index * 0x9E3779B97F4A7C15UL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return z ^ (z >> 31);
    }

    /// <summary>Removes a request's own session; a failure here must not hide the request's own outcome.</summary>
    private static async Task DeleteQuietly(TauSessionClient sessions, string sessionId)
    {
        try
        {
            await sessions.Session(sessionId).Delete();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The session is left for the silo's idle collection; its state is small.
        }
    }

    /// <summary>
    /// The body as a JSON object, or a 400 that says what is wrong with its bytes: a content type that is not JSON, bytes
    /// that are not UTF-8 (checked before parsing, since the parser defers decoding strings until they are read), JSON
    /// that does not parse. Kestrel's body size limit bounds the buffer; a body cut short is Kestrel's 400.
    /// </summary>
    private static async Task<JsonObject> ReadObject(HttpContext http)
    {
        if (http.Request.ContentType is { Length: > 0 } contentType && !IsJson(contentType))
            throw new ApiError(400, $"Content-Type '{contentType}' is not JSON: send Content-Type: application/json (UTF-8)", code: "invalid_content_type");
        using var buffer = new MemoryStream();
        await http.Request.Body.CopyToAsync(buffer, http.RequestAborted);
        var bytes = buffer.GetBuffer().AsSpan(0, (int)buffer.Length);
        if (!System.Text.Unicode.Utf8.IsValid(bytes))
            throw new ApiError(400, $"the body is not valid UTF-8 (first bad byte at offset {FirstInvalidUtf8(bytes)})", code: "invalid_encoding");
        if (bytes.Trim(" \t\r\n"u8).IsEmpty) throw new ApiError(400, "the body is empty: it must be a JSON object", code: "invalid_json");
        return JsonNode.Parse(bytes, documentOptions: StrictJson) as JsonObject
            ?? throw new ApiError(400, "the body must be a JSON object", code: "invalid_json");
    }

    private static bool IsJson(string contentType) =>
        Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(contentType, out var type)
        && (type.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase)
            || type.MediaType.EndsWith("+json", StringComparison.OrdinalIgnoreCase))
        && (type.Charset.Length == 0 || type.Charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase));

    private static int FirstInvalidUtf8(ReadOnlySpan<byte> bytes)
    {
        System.Text.Unicode.Utf8.ToUtf16(bytes, new char[bytes.Length], out int read, out _, replaceInvalidSequences: false);
        return read;
    }

    private static GenerationRequest Parse(JsonObject body, bool chat, HttpApiOptions options)
    {
        string model = String(body, "model") ?? throw new ApiError(400, "model is required", "model");
        PromptInput prompt = chat ? ChatPrompt(body) : CompletionPrompt(body);
        int n = Int(body, "n") ?? 1;
        if (n is < 1 or > MaxChoices) throw new ApiError(400, $"n = {n} must lie in [1, {MaxChoices}]", "n");
        // Features this server does not have are refused, as vLLM does, rather than silently ignored.
        foreach (var unsupported in new[] { "tools", "functions" })
            if (body[unsupported] is not null) throw new ApiError(400, $"{unsupported} is not supported by this server", unsupported);
        var (logprobs, echo) = chat ? (ChatLogprobs(body), false) : (CompletionLogprobs(body), Bool(body, "echo") ?? false);
        if (chat && Bool(body, "echo") == true) throw new ApiError(400, "echo applies to /v1/completions, not to chat", "echo");
        if (body["response_format"] is JsonObject format && String(format, "type") is { } type && type != "text")
            throw new ApiError(400, $"response_format {type} is not supported by this server", "response_format");
        int maxTokens = Int(body, "max_completion_tokens") ?? Int(body, "max_tokens") ?? options.DefaultMaxTokens;
        if (maxTokens < 1) throw new ApiError(400, $"max_tokens = {maxTokens} must be at least 1", "max_tokens");
        long? seed = Long(body, "seed");
        var sampling = new SamplingSettings(
            Temperature: Double(body, "temperature") ?? 1.0,
            TopK: Int(body, "top_k") ?? 0,
            TopP: Double(body, "top_p") ?? 1.0,
            Seed: seed is { } s ? unchecked((ulong)s) : 0,
            PresencePenalty: Double(body, "presence_penalty") ?? 0,
            FrequencyPenalty: Double(body, "frequency_penalty") ?? 0,
            RepetitionPenalty: Double(body, "repetition_penalty"),
            MinP: Double(body, "min_p") ?? 0,
            LogitBias: LogitBias(body));
        try
        {
            sampling.Validate();
        }
        catch (InvalidOptionsException e)
        {
            throw new ApiError(400, e.Message, e.Message.Split(' ')[0]);
        }
        string[] stop = body["stop"] switch
        {
            null => [],
            JsonValue v when Text(v, "stop") is { } one => [one],
            JsonArray { Count: <= 4 } a when a.Select(x => x is JsonValue xv ? Text(xv, "stop") : null).ToArray() is var texts
                && texts.All(t => t is not null) => texts.Select(t => t!).ToArray(),
            _ => throw new ApiError(400, "stop must be a string or an array of up to 4 strings", "stop"),
        };
        bool stream = Bool(body, "stream") ?? false;
        bool includeUsage = body["stream_options"] is JsonObject so && (Bool(so, "include_usage") ?? false);
        string? session = String(body, "session");
        if (session is not null && !Names.IsValid(session)) throw new ApiError(400, $"session '{session}' must be a plain name", "session");
        return new GenerationRequest(model, prompt, maxTokens, sampling, stop, stream, includeUsage, session, String(body, "domain"), n, logprobs, echo);
    }

    /// <summary>Chat's <c>logprobs</c> (true or false) and <c>top_logprobs</c> (0 to 20, only with logprobs), as OpenAI defines them.</summary>
    private static int? ChatLogprobs(JsonObject body)
    {
        bool wanted = Bool(body, "logprobs") ?? false;
        int? top = Int(body, "top_logprobs");
        if (top is not null && !wanted) throw new ApiError(400, "top_logprobs needs logprobs: true", "top_logprobs");
        if (top is < 0 or > TokenScore.MaxTop) throw new ApiError(400, $"top_logprobs = {top} must lie in [0, {TokenScore.MaxTop}]", "top_logprobs");
        return wanted ? top ?? 0 : null;
    }

    /// <summary>The completions endpoint's <c>logprobs</c>: how many alternatives each token comes with, 0 to 5, as OpenAI's.</summary>
    private static int? CompletionLogprobs(JsonObject body)
    {
        const int most = 5;
        if (body["logprobs"] is JsonValue flag && flag.TryGetValue<bool>(out var on))
            return on ? throw new ApiError(400, $"logprobs for /v1/completions is a count of alternatives, 0 to {most}", "logprobs") : null;
        int? count = Int(body, "logprobs");
        return count is < 0 or > most ? throw new ApiError(400, $"logprobs = {count} must lie in [0, {most}]", "logprobs") : count;
    }

    /// <summary>OpenAI's logit_bias: an object from token ids (as strings) to biases in [-100, 100].</summary>
    private static LogitBias? LogitBias(JsonObject body)
    {
        if (body["logit_bias"] is null) return null;
        if (body["logit_bias"] is not JsonObject biases) throw new ApiError(400, "logit_bias must be an object from token ids to biases", "logit_bias");
        var entries = biases.Select(b => int.TryParse(b.Key, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int token)
            && b.Value is JsonValue v && v.TryGetValue<double>(out double bias)
                ? new KeyValuePair<int, float>(token, (float)bias)
                : throw new ApiError(400, $"logit_bias: '{b.Key}' must be a token id with a number for its bias", "logit_bias")).ToArray();
        return entries.Length == 0 ? null : new LogitBias(entries);
    }

    private static PromptInput CompletionPrompt(JsonObject body) => body["prompt"] switch
    {
        JsonValue v when Text(v, "prompt") is { } text => PromptInput.FromText(text),
        JsonArray { Count: 1 } a when a[0] is JsonValue v && Text(v, "prompt") is { } text => PromptInput.FromText(text),
        JsonArray { Count: > 0 } a when a.All(x => x is JsonValue) => PromptInput.FromIds(Ids(a)),
        JsonArray { Count: 1 } a when a[0] is JsonArray inner => PromptInput.FromIds(Ids(inner)),
        null => throw new ApiError(400, "prompt is required", "prompt"),
        _ => throw new ApiError(400, "prompt must be a string or an array of token ids (one prompt per request)", "prompt"),
    };

    private static int[] Ids(JsonArray a) => a.Select(x => x is JsonValue v && v.TryGetValue<int>(out var id) ? id
        : throw new ApiError(400, "token ids must be integers", "prompt")).ToArray();

    private static PromptInput ChatPrompt(JsonObject body)
    {
        if (body["messages"] is not JsonArray { Count: > 0 } messages) throw new ApiError(400, "messages must be a non-empty array", "messages");
        var turns = messages.Select((m, i) => m is JsonObject o && String(o, "role") is { } role
            ? new ChatTurn(role, Content(o["content"], i))
            : throw new ApiError(400, $"messages[{i}] needs a role and content", "messages")).ToList();
        try
        {
            ChatTemplate.Validate(turns);
        }
        catch (InvalidOptionsException e)
        {
            throw new ApiError(400, e.Message, "messages");
        }
        return PromptInput.FromTurns([.. turns]);
    }

    private static string Content(JsonNode? content, int index) => content switch
    {
        JsonValue v when Text(v, "messages") is { } text => text,
        JsonArray parts => string.Concat(parts.Select(p => p is JsonObject o && String(o, "type") == "text" && String(o, "text") is { } t ? t
            : throw new ApiError(400, $"messages[{index}].content: only text parts are supported", "messages"))),
        null => "",
        _ => throw new ApiError(400, $"messages[{index}].content must be a string or an array of text parts", "messages"),
    };

    private static string? String(JsonObject o, string name) => o[name] switch
    {
        null => null,
        JsonValue v when Text(v, name) is { } s => s,
        _ => throw new ApiError(400, $"{name} must be a string", name),
    };

    /// <summary>A JSON string's text; an escaped unpaired surrogate ("\ud800") is no text, and a 400 for that field.</summary>
    private static string? Text(JsonValue value, string name)
    {
        try
        {
            return value.TryGetValue<string>(out var text) ? text : null;
        }
        catch (InvalidOperationException)
        {
            throw new ApiError(400, $"{name} is not valid text: it holds an unpaired UTF-16 surrogate escape", name);
        }
    }

    private static double? Double(JsonObject o, string name) => o[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<double>(out var d) => d,
        _ => throw new ApiError(400, $"{name} must be a number", name),
    };

    private static long? Long(JsonObject o, string name) => o[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<long>(out var l) => l,   // exact: seeds above 2^53 stay distinct
        JsonValue v when v.TryGetValue<double>(out var d) && d == Math.Floor(d) && Math.Abs(d) < 9.2e18 => (long)d,
        _ => throw new ApiError(400, $"{name} must be an integer", name),
    };

    private static int? Int(JsonObject o, string name) =>
        Long(o, name) is { } l ? (l is >= int.MinValue and <= int.MaxValue ? (int)l : throw new ApiError(400, $"{name} is out of range", name)) : null;

    private static bool? Bool(JsonObject o, string name) => o[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<bool>(out var b) => b,
        _ => throw new ApiError(400, $"{name} must be true or false", name),
    };
}
