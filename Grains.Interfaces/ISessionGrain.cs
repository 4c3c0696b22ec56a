namespace TauCluster.Grains;

/// <summary>
/// One conversation (the grain key is its id): its model, domain, tokens, sampling options and generator
/// state are persisted; its λ/V cache lives in memory and is rebuilt by replaying the tokens when the
/// session activates elsewhere. Calls that change a session are served one at a time, in order; reads
/// (<see cref="GetInfo"/>, <see cref="GetTokens"/>) answer at once.
/// </summary>
public interface ISessionGrain : IGrainWithStringKey
{
    /// <summary>Creates the session, or checks that an existing one has the same model and domain.</summary>
    Task<SessionInfo> Open(SessionSpec spec);

    /// <summary>Appends a prompt (text or ids) and prefills it. A long prompt's prefill may take minutes.</summary>
    [ResponseTimeout("00:30:00")]
    Task<SessionInfo> Append(PromptInput prompt);

    /// <summary>
    /// One turn of a conversation in one call: opens the session with the request's spec (or checks that it matches),
    /// puts the prompt in it, generates up to <see cref="CompletionRequest.MaxTokens"/> and streams the reply as trimmed
    /// text pieces, the last with its finish reason. Every limit is checked before the session changes. Re-sending the
    /// same request (same <see cref="CompletionRequest.RequestId"/>) after a lost stream resumes it: the positions
    /// already generated come again, identical, so a caller skips what it has. A long prompt's prefill may take minutes.
    /// </summary>
    IAsyncEnumerable<CompletionChunk> Complete(CompletionRequest request, CancellationToken cancellation = default);

    /// <summary>
    /// What <see cref="Complete"/> does before it generates: checks the request, opens the session and puts the prompt in
    /// it, prefilled. Forks taken now share the prompt's cache (n choices of one prompt, one prefill), and
    /// <see cref="Complete"/> with the same <see cref="CompletionRequest.RequestId"/> then generates this one's reply.
    /// </summary>
    [ResponseTimeout("00:30:00")]
    Task<PromptUsage> Prepare(CompletionRequest request);

    /// <summary>Copies this session into a new one that continues from the same cache without recomputing it.</summary>
    Task<SessionInfo> Fork(string childSessionId);

    /// <summary>Forgets the tokens, keeps model, domain and options; the generator restarts from the seed.</summary>
    Task<SessionInfo> Reset();

    /// <summary>Removes the session and its persisted state.</summary>
    Task Delete();

    [Orleans.Concurrency.AlwaysInterleave]
    Task<SessionInfo> GetInfo();

    /// <summary>The context shards that hold this session's oldest positions, in position order (none while the cache fits its budget).</summary>
    Task<ContextShardInfo[]> GetShards();

    /// <summary>The session's token ids (the transcript) as the live session holds them, including any not yet checkpointed.</summary>
    [Orleans.Concurrency.AlwaysInterleave]
    Task<int[]> GetTokens();

    /// <summary>The transcript as text, decoded by the model's tokenizer (null for a model without one).</summary>
    [Orleans.Concurrency.AlwaysInterleave]
    Task<string?> GetText();

    /// <summary>Used by <see cref="Fork"/>: takes over a parent's state (and its cache, when on the same silo).</summary>
    Task<SessionInfo> AdoptFrom(ForkSource source);
}

/// <summary>What a session runs: a model name, an optional domain name, and sampling options.</summary>
[GenerateSerializer, Immutable]
public sealed record SessionSpec(
    [property: Id(0)] string Model,
    [property: Id(1)] string? Domain,
    [property: Id(2)] SamplingSettings Sampling);

/// <summary>
/// temperature 0 is greedy; top_k 0 and top_p 1 switch those filters off. The penalties and min_p are OpenAI's,
/// llama.cpp's and vLLM's (the engine's SamplingOptions says how each applies); 0 and a null repetition penalty are
/// off. <paramref name="LogitBias"/> is OpenAI's. They are part of the session's state, so a session resumed elsewhere
/// samples as it did.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record SamplingSettings(
    [property: Id(0)] double Temperature = 1.0,
    [property: Id(1)] int TopK = 0,
    [property: Id(2)] double TopP = 1.0,
    [property: Id(3)] ulong Seed = 0,
    [property: Id(4)] double PresencePenalty = 0,
    [property: Id(5)] double FrequencyPenalty = 0,
    // Null rather than 1 when off: a state written before this field existed reads it as its default, which must be "off".
    [property: Id(6)] double? RepetitionPenalty = null,
    [property: Id(7)] double MinP = 0,
    [property: Id(8)] LogitBias? LogitBias = null)
{
    /// <summary>Refuses settings out of range: the <see cref="InvalidOptionsException"/> names the field.</summary>
    public SamplingSettings Validate()
    {
        SamplingRules.Check(Temperature, TopK, TopP);
        SamplingRules.CheckPenalties(PresencePenalty, FrequencyPenalty, RepetitionPenalty ?? 1, MinP);
        for (int i = 0; i < (LogitBias?.Tokens.Length ?? 0); i++) SamplingRules.CheckLogitBias(LogitBias!.Tokens[i], LogitBias.Biases[i]);
        return this;
    }
}

/// <summary>
/// OpenAI's logit_bias: a bias added to each listed token's logit, kept in token order, so that two requests with the
/// same biases have equal settings (a session compares its settings to learn whether a request changes them).
/// </summary>
[GenerateSerializer, Immutable]
public sealed record LogitBias
{
    public LogitBias(IEnumerable<KeyValuePair<int, float>> biases)
    {
        var ordered = biases.OrderBy(b => b.Key).ToArray();
        for (int i = 1; i < ordered.Length; i++)
            if (ordered[i].Key == ordered[i - 1].Key) throw new InvalidOptionsException($"logit_bias names token {ordered[i].Key} twice");
        Tokens = ordered.Select(b => b.Key).ToArray();
        Biases = ordered.Select(b => b.Value).ToArray();
    }

    [Id(0)] public int[] Tokens { get; private init; }
    [Id(1)] public float[] Biases { get; private init; }

    public bool Equals(LogitBias? other) =>
        other is not null && Tokens.AsSpan().SequenceEqual(other.Tokens) && Biases.AsSpan().SequenceEqual(other.Biases);

    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (int token in Tokens) hash.Add(token);
        foreach (float bias in Biases) hash.Add(bias);
        return hash.ToHashCode();
    }
}

/// <summary>
/// A prompt as text (tokenized by the model's tokenizer), as token ids, or as chat turns (rendered by the
/// <see cref="ChatTemplate"/>; their replies stop at the next user turn). With <paramref name="ExpectedLength"/> (the
/// session's length the caller saw before appending), a retried <see cref="ISessionGrain.Append"/> that already took
/// effect is not applied twice.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record PromptInput(
    [property: Id(0)] string? Text,
    [property: Id(1)] int[]? Ids,
    [property: Id(2)] int? ExpectedLength = null,
    [property: Id(3)] ChatTurn[]? Turns = null)
{
    public static PromptInput FromText(string text, int? expectedLength = null) => new(text, null, expectedLength);
    public static PromptInput FromIds(int[] ids, int? expectedLength = null) => new(null, ids, expectedLength);
    public static PromptInput FromTurns(params ChatTurn[] turns) => new(null, null, null, turns);
}

/// <summary>
/// A session as it stands. <paramref name="PrefilledTokens"/>: tokens the last append ran through the model (a
/// follow-up turn runs only its new tokens); <paramref name="RebuiltTokens"/>: tokens replayed to rebuild the cache
/// in this activation (0 for a fresh session, all of them after a failover, 1 for a fork on its parent's silo);
/// <paramref name="ReusedTokens"/>: tokens of the last append's prompt that were already in the session (cache hits).
/// <paramref name="CacheBytes"/> counts the session's own silo; <paramref name="Shards"/> context shards hold
/// <paramref name="ShardBytes"/> more of its oldest positions.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record SessionInfo(
    [property: Id(0)] string Session,
    [property: Id(1)] bool Exists,
    [property: Id(2)] string? Model,
    [property: Id(3)] string? Domain,
    [property: Id(4)] int Length,
    [property: Id(5)] long CacheBytes,
    [property: Id(6)] long BaselineCacheBytes,
    [property: Id(7)] string Silo,
    [property: Id(8)] SamplingSettings? Sampling,
    [property: Id(9)] int PrefilledTokens = 0,
    [property: Id(10)] int RebuiltTokens = 0,
    [property: Id(11)] int ReusedTokens = 0,
    [property: Id(12)] int Shards = 0,
    [property: Id(13)] long ShardBytes = 0,
    [property: Id(14)] string Device = "cpu",
    [property: Id(15)] long DeviceBytes = 0);

/// <summary>A parent's persisted state, handed to a fork; <paramref name="CacheHandle"/> is a silo-local cache to copy.</summary>
[GenerateSerializer, Immutable]
public sealed record ForkSource(
    [property: Id(0)] SessionSpec Spec,
    [property: Id(1)] int DomainVersion,
    [property: Id(2)] byte[] Tokens,
    [property: Id(3)] ulong[] GeneratorState,
    [property: Id(4)] string ParentSilo,
    [property: Id(5)] Guid CacheHandle);
