namespace TauCluster.Grains;

/// <summary>A session's durable state: small, compact, and enough to rebuild everything else.</summary>
[GenerateSerializer]
public sealed class SessionState
{
    [Id(0)] public SessionSpec? Spec { get; set; }
    [Id(1)] public int DomainVersion { get; set; }

    /// <summary>Token ids as little-endian int32: one buffer, not one stored number per id (<see cref="Transcript.Pack"/>).</summary>
    [Id(2)] public byte[] Tokens { get; set; } = [];

    /// <summary>The sampler's generator state, saved with the tokens it produced.</summary>
    [Id(3)] public ulong[] Generator { get; set; } = [];

    /// <summary>The latest completion, until another change to the session makes it one that cannot be resumed.</summary>
    [Id(4)] public CompletionRecord? LastCompletion { get; set; }
}

/// <summary>
/// The session's latest completion, saved with its prompt so that a re-sent request resumes it on any silo: its
/// request id, the reply's first position and the position its budget ends at, and what its prompt cost.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record CompletionRecord(
    [property: Id(0)] string? RequestId,
    [property: Id(1)] int Start,
    [property: Id(2)] int Target,
    [property: Id(3)] PromptUsage Prompt);
