namespace TauCluster.Grains;

/// <summary>
/// One silo's live view of itself (the grain key is the silo's address, <c>SiloAddress.ToParsableString()</c>, and
/// its activation lives on that silo): the sessions whose caches it holds, the context shards it keeps for sessions
/// anywhere, its tokens per second and its batches. What a console shows without reading /metrics.
/// </summary>
public interface ISiloViewGrain : IGrainWithStringKey
{
    [Orleans.Concurrency.AlwaysInterleave]
    Task<SiloView> GetView();
}

[GenerateSerializer, Immutable]
public sealed record SiloView(
    [property: Id(0)] string Silo,
    [property: Id(1)] string Device,
    [property: Id(2)] SessionView[] Sessions,
    [property: Id(3)] ShardView[] Shards,
    [property: Id(4)] double TokensPerSecond,
    [property: Id(5)] BatchView Batch,
    [property: Id(6)] AdmissionView? Admission,
    [property: Id(7)] string? Error = null)
{
    public long CacheBytes => Sessions.Sum(s => s.CacheBytes);
    public long BaselineCacheBytes => Sessions.Sum(s => s.BaselineCacheBytes);

    /// <summary>A silo the cluster lists but that did not answer: its <paramref name="error"/>, and nothing else known.</summary>
    public static SiloView Unreachable(string silo, string error) =>
        new(silo, "", [], [], 0, new BatchView(0, 0, 0, 0, 0), null, error);
}

/// <summary>
/// A session whose cache lives on the silo: the positions its cache holds (the transcript's last token joins it with
/// the next step), its cache against a (K, V) cache of the same tokens, its context shards, and the tokens it generated
/// since its cache was built here (per second now, and all of them).
/// </summary>
[GenerateSerializer, Immutable]
public sealed record SessionView(
    [property: Id(0)] string Session,
    [property: Id(1)] string Model,
    [property: Id(2)] string? Domain,
    [property: Id(3)] int CachedTokens,
    [property: Id(4)] long CacheBytes,
    [property: Id(5)] long BaselineCacheBytes,
    [property: Id(6)] int Shards,
    [property: Id(7)] long ShardBytes,
    [property: Id(8)] double TokensPerSecond,
    [property: Id(9)] long GeneratedTokens);

/// <summary>A context shard the silo holds: whose oldest positions, from which one, and its bytes.</summary>
[GenerateSerializer, Immutable]
public sealed record ShardView(
    [property: Id(0)] string Session,
    [property: Id(1)] int Start,
    [property: Id(2)] long Bytes);

/// <summary>
/// The silo's continuous batches: steps waiting for a pass, the lanes of the latest passes, the most one pass held,
/// and passes and lanes since the silo started (their ratio is the mean batch).
/// </summary>
[GenerateSerializer, Immutable]
public sealed record BatchView(
    [property: Id(0)] int Waiting,
    [property: Id(1)] int Last,
    [property: Id(2)] int Largest,
    [property: Id(3)] long Passes,
    [property: Id(4)] long Lanes);

/// <summary>The HTTP API's admission on the silo: generations running, waiting for a slot, and whether it admits any (not while draining).</summary>
[GenerateSerializer, Immutable]
public sealed record AdmissionView(
    [property: Id(0)] int Running,
    [property: Id(1)] int Waiting,
    [property: Id(2)] bool Admitting);
