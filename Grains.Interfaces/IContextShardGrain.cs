namespace TauCluster.Grains;

/// <summary>
/// Holds whole sealed segments of one session's λ/V cache (every layer and kv head of a contiguous range of positions)
/// and answers a layer's query λs with one softmax partial per segment. Its data is derived: kept in memory only,
/// rebuilt by the session from its tokens when the shard is lost. Payloads are byte buffers, never float arrays.
/// </summary>
public interface IContextShardGrain : IGrainWithStringKey
{
    /// <summary>Takes one (segment, layer · kv head) stream of keys in position order; the first load of a layout starts the shard over.</summary>
    Task Load(ShardLoad load);

    /// <summary>
    /// For query λs in row-major (row, head) order, the partials of this shard's segments: entry q · Segments + s, as
    /// <c>SoftmaxPartials</c> bytes. A shard that does not hold the asked range whole (it was lost) throws
    /// <see cref="ContextShardLostException"/>.
    /// </summary>
    Task<byte[]> Query(ShardQuery query);

    Task<ContextShardInfo> GetInfo();

    /// <summary>Forgets the data and deactivates.</summary>
    Task Drop();
}

/// <summary>
/// What a shard holds: <paramref name="Segments"/> segments from position <paramref name="Start"/>, for a model of this
/// shape, and its recency bias (config.json's taumode.recency, e.g. "alibi"; null for none).
/// </summary>
[GenerateSerializer, Immutable]
public sealed record ShardLayout(
    [property: Id(0)] int Start,
    [property: Id(1)] int Segments,
    [property: Id(2)] int Layers,
    [property: Id(3)] int Heads,
    [property: Id(4)] int KvHeads,
    [property: Id(5)] int Width,
    [property: Id(6)] float Temperature,
    [property: Id(7)] string? Recency = null);

/// <summary>One stream of one segment: λk (float32) and values (float32, Width per key) in position order, little-endian.</summary>
[GenerateSerializer, Immutable]
public sealed record ShardLoad(
    [property: Id(0)] ShardLayout Layout,
    [property: Id(1)] int Segment,
    [property: Id(2)] int Stream,
    [property: Id(3)] byte[] Lambdas,
    [property: Id(4)] byte[] Values);

/// <summary>
/// A layer's query λs (float32, little-endian) for the shard that starts at <paramref name="Start"/>, in (row, head)
/// order, the rows at positions <paramref name="FirstPosition"/>, +1, … (which a recency bias needs).
/// </summary>
[GenerateSerializer, Immutable]
public sealed record ShardQuery(
    [property: Id(0)] int Start,
    [property: Id(1)] int Layer,
    [property: Id(2)] byte[] Lambdas,
    [property: Id(3)] int FirstPosition = 0);

/// <summary>A shard as its session knows it, or as it reports itself.</summary>
[GenerateSerializer, Immutable]
public sealed record ContextShardInfo(
    [property: Id(0)] string Key,
    [property: Id(1)] int Start,
    [property: Id(2)] int Tokens,
    [property: Id(3)] long Bytes,
    [property: Id(4)] string Silo,
    [property: Id(5)] bool Complete);

/// <summary>
/// A context shard no longer holds its segments (its silo went down, or it was collected): the session computes them
/// again from its tokens. <see cref="Start"/> travels in <see cref="Exception.Data"/>, which Orleans carries across.
/// </summary>
public sealed class ContextShardLostException : TauException
{
    public ContextShardLostException(int start, string message, Exception? inner = null) : base(message, inner) => Data["start"] = start;

    public int Start => Data["start"] is int start ? start : 0;
}
