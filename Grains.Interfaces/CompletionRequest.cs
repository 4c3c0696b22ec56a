namespace TauCluster.Grains;

/// <summary>How a request's prompt meets what the session already holds.</summary>
public enum PromptPlacement
{
    /// <summary>The prompt follows what the session holds: a new turn, or more of a document.</summary>
    After,

    /// <summary>
    /// The session holds exactly the prompt (a whole conversation, as chat APIs send it): the longest prefix it already
    /// holds keeps its cache, what follows that is forgotten, and only the rest is prefilled.
    /// </summary>
    Whole,
}

/// <summary>
/// One completion: the session's spec (null: the session must exist, and keeps its options), the prompt (null:
/// continue from where the session stands) and where it goes, the token budget, and stop sequences. Requests with the
/// same <paramref name="RequestId"/> are one request: a re-sent one resumes instead of running again (the client sets
/// it; without one a request cannot be resumed). With <paramref name="Logprobs"/> each chunk carries its token's
/// log-probability and that many likeliest alternatives (0 to 20); with <paramref name="ScorePrompt"/> as well, the
/// first chunk carries those of every token before the reply (the prompt, recomputed rather than taken from the cache).
/// </summary>
[GenerateSerializer, Immutable]
public sealed record CompletionRequest(
    [property: Id(0)] SessionSpec? Spec,
    [property: Id(1)] PromptInput? Prompt,
    [property: Id(2)] int MaxTokens,
    [property: Id(3)] PromptPlacement Placement = PromptPlacement.After,
    [property: Id(4)] string[]? Stop = null,
    [property: Id(5)] string? RequestId = null,
    [property: Id(6)] int? Logprobs = null,
    [property: Id(7)] bool ScorePrompt = false);

public enum FinishReason
{
    /// <summary>A stop sequence (or, for chat turns, the next user turn) ended the reply; its text is not in it.</summary>
    Stop,

    /// <summary>The token budget ended the reply.</summary>
    Length,
}

/// <summary>
/// One generated token: its absolute position and id, the text it makes safe to show (stop sequences trimmed, text that
/// could still become one held back; null for a model without a tokenizer), and on the last chunk the finish reason and
/// the session as it stands. The first chunk (at the request's first position) carries the prompt's usage, and the
/// prompt's log-probabilities when asked (one per position from 0); every chunk its token's, when asked.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record CompletionChunk(
    [property: Id(0)] int Position,
    [property: Id(1)] int Id,
    [property: Id(2)] string? Text,
    [property: Id(3)] FinishReason? Finish = null,
    [property: Id(4)] PromptUsage? Prompt = null,
    [property: Id(5)] SessionInfo? Session = null,
    [property: Id(6)] TokenLogprob? Logprob = null,
    [property: Id(7)] TokenLogprob[]? PromptLogprobs = null);

/// <summary>
/// A token's log-probability under the model's own distribution (the log-softmax of its logits, before temperature,
/// penalties and filters; null for a session's first token, which nothing predicts), and the likeliest tokens at its
/// position, likeliest first.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record TokenLogprob(
    [property: Id(0)] int Token,
    [property: Id(1)] float? Logprob,
    [property: Id(2)] int[] TopTokens,
    [property: Id(3)] float[] TopLogprobs);

/// <summary>
/// What a request's prompt cost: the session's length where the reply starts, how many of those tokens were already in
/// the session (cache hits), and how many the request ran through the model.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record PromptUsage(
    [property: Id(0)] int Tokens,
    [property: Id(1)] int CachedTokens,
    [property: Id(2)] int PrefilledTokens);
