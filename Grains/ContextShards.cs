using System.Runtime.InteropServices;
using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>
/// A session's context shards: the grains that hold its oldest positions, whole segments each, in position order. The
/// session's λ index asks them once per layer of a forward pass (<see cref="Gather"/>), all in parallel, and merges
/// their partials before its own. A shard that fails to answer is reported lost with its first position, so the
/// session computes it again from its tokens.
/// </summary>
public sealed class ContextShards(IGrainFactory grains, string sessionId, ModelConfig config, float temperature, TauMetrics metrics) : IExternalContext
{
    private readonly List<Shard> shards = [];

    private sealed record Shard(IContextShardGrain Grain, string Key, int Start, int Segments, long Bytes);

    public int Count => shards.Count;
    public long Bytes => shards.Sum(s => s.Bytes);

    public IEnumerable<IContextShardGrain> Grains => shards.Select(s => s.Grain);

    /// <summary>A new shard's grain key: its session and first position, and a fresh part, so that a rebuilt shard is a new grain, never the lost one's stale address.</summary>
    public static string KeyOf(string sessionId, int start) => $"{sessionId}/{start}/{Guid.NewGuid():N}";

    /// <summary>The session and first position a shard's key names (session names hold no '/').</summary>
    public static (string Session, int Start) Parse(string key)
    {
        var parts = key.Split('/');
        return (parts[0], parts.Length > 1 && int.TryParse(parts[1], out int start) ? start : 0);
    }

    /// <summary>
    /// Moves the cache's oldest <paramref name="segments"/> sealed segments into a new shard. The cache keeps them until
    /// the shard has every stream, so a failed move changes nothing.
    /// </summary>
    public async Task Offload(IndexedTauCache cache, int segments)
    {
        int start = cache.ExternalLength;
        var recency = config.TaumodeOrDefault.Recency;
        var layout = new ShardLayout(start, segments, config.NLayer, config.NHead, config.NKvHead, config.HeadDim, temperature,
            recency == TauRecency.None ? null : recency.ToString().ToLowerInvariant());
        string key = KeyOf(sessionId, start);
        var grain = grains.GetGrain<IContextShardGrain>(key);
        var data = cache.PeekSegments(segments);
        long bytes = 0;
        for (int s = 0; s < segments; s++)
            for (int stream = 0; stream < data[s].Length; stream++)
            {
                var (lambdas, values) = data[s][stream].ToPositionOrder();
                bytes += data[s][stream].Bytes;
                await grain.Load(new ShardLoad(layout, s, stream, MemoryMarshal.AsBytes(lambdas.AsSpan()).ToArray(), MemoryMarshal.AsBytes(values.AsSpan()).ToArray()));
            }
        cache.External ??= this;
        shards.Add(new Shard(grain, key, start, segments, bytes));
        cache.DetachSegments(segments);
    }

    public SoftmaxPartials Gather(int layer, int firstPosition, ReadOnlySpan<float> queryLambdas)
    {
        int queries = queryLambdas.Length, total = shards.Sum(s => s.Segments);
        var request = MemoryMarshal.AsBytes(queryLambdas).ToArray();
        var answers = shards.Select(s => s.Grain.Query(new ShardQuery(s.Start, layer, request, firstPosition))).ToArray();
        try
        {
            Task.WaitAll(answers);   // a forward pass runs on a pool thread, never the grain scheduler: waiting here blocks no grain
        }
        catch (AggregateException)
        {
        }
        var result = new SoftmaxPartials(queries * total, config.HeadDim);
        long received = 0;
        for (int i = 0, offset = 0; i < shards.Count; offset += shards[i].Segments, i++)
        {
            var shard = shards[i];
            if (!answers[i].IsCompletedSuccessfully)
                throw new ContextShardLostException(shard.Start, $"context shard '{shard.Key}' did not answer", answers[i].Exception?.InnerException);
            var part = SoftmaxPartials.FromBytes(answers[i].Result, config.HeadDim);
            if (part.Count != queries * shard.Segments)
                throw new ContextShardLostException(shard.Start, $"context shard '{shard.Key}' answered {part.Count} partials, not {queries * shard.Segments}");
            for (int q = 0; q < queries; q++) result.CopyFrom(part, q * shard.Segments, q * total + offset, shard.Segments);
            received += answers[i].Result.Length;
        }
        metrics.ShardQueries.Add(1);
        metrics.ShardQueryBytes.Add((long)request.Length * shards.Count, new KeyValuePair<string, object?>("direction", "sent"));
        metrics.ShardQueryBytes.Add(received, new KeyValuePair<string, object?>("direction", "received"));
        return result;
    }

    public int CutTo(int length)
    {
        int keep = 0;
        while (keep < shards.Count && shards[keep].Start + shards[keep].Segments * LambdaIndex.SegmentSize <= length) keep++;
        int kept = keep == shards.Count ? Held : shards[keep].Start;
        _ = Forget(shards.Skip(keep).ToList());   // a truncation is synchronous: the cut shards are dropped in the background
        shards.RemoveRange(keep, shards.Count - keep);
        return kept;
    }

    /// <summary>
    /// Drops every shard (the session is deleted, or its cache released). The task ends when every shard has answered or
    /// failed to; it never faults.
    /// </summary>
    public Task DropAll()
    {
        var dropped = Forget([.. shards]);
        shards.Clear();
        return dropped;
    }

    private int Held => shards.Count == 0 ? 0 : shards[^1].Start + shards[^1].Segments * LambdaIndex.SegmentSize;

    /// <summary>
    /// Best effort: a shard on a dead silo is gone anyway, and an unreachable one is collected when idle. The drops are sent
    /// at once; the task ends when all of them have ended, and never faults.
    /// </summary>
    private static Task Forget(IEnumerable<Shard> dropped) => Task.WhenAll(dropped.Select(async shard =>
    {
        try
        {
            await shard.Grain.Drop();
        }
        catch (Exception)
        {
        }
    }));
}
