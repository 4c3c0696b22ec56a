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
}
