using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Orleans.Concurrency;
using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>
/// Holds sealed segments of one session's λ index, placed away from the session's silo (<see cref="AwayFromCallerPlacementAttribute"/>).
/// Reentrant: queries only read immutable segments, so the queries of a session's layers and of a rebuild may overlap.
/// Queries compute off the grain scheduler. Nothing is persisted: a lost shard is rebuilt by its session.
/// </summary>
[Reentrant]
[AwayFromCallerPlacement]
public sealed class ContextShardGrain(LocalShards registry, ILocalSiloDetails silo) : Grain, IContextShardGrain
{
    private ShardLayout? layout;
    private LambdaSegment?[] segments = [];   // [segment · streams + stream]
    private int loaded;
    private long bytes;

    private string Key => this.GetPrimaryKeyString();
    private int Streams => layout is null ? 0 : layout.Layers * layout.KvHeads;
    private bool Complete => layout is not null && loaded == segments.Length;

    public Task Load(ShardLoad load)
    {
        var l = load.Layout;
        if (l.Segments <= 0 || l.Layers <= 0 || l.KvHeads <= 0 || l.Heads % l.KvHeads != 0 || l.Width <= 0 || l.Start % LambdaIndex.SegmentSize != 0)
            throw new InvalidOptionsException($"context shard '{Key}': invalid layout {l}");
        if (layout != l)
        {
            layout = l;
            segments = new LambdaSegment?[l.Segments * l.Layers * l.KvHeads];
            loaded = 0;
            bytes = 0;
        }
        if ((uint)load.Segment >= (uint)l.Segments || (uint)load.Stream >= (uint)Streams)
            throw new InvalidOptionsException($"context shard '{Key}': no segment {load.Segment}, stream {load.Stream} in {l}");
        var segment = LambdaSegment.FromPositionOrder(l.Start + load.Segment * LambdaIndex.SegmentSize,
            MemoryMarshal.Cast<byte, float>(load.Lambdas).ToArray(), MemoryMarshal.Cast<byte, float>(load.Values).ToArray(), l.Width, l.Temperature,
            RecencyOf(l).RecencySlope(load.Stream % l.KvHeads, l.KvHeads));
        ref var slot = ref segments[load.Segment * Streams + load.Stream];
        if (slot is null) loaded++;
        else bytes -= slot.Bytes;
        slot = segment;
        bytes += segment.Bytes;
        registry.Update(Key, bytes);
        return Task.CompletedTask;
    }

    public Task<byte[]> Query(ShardQuery query)
    {
        if (!Complete || layout!.Start != query.Start)
            throw new ContextShardLostException(query.Start, $"context shard '{Key}' does not hold the segments from position {query.Start}");
        var l = layout;
        if ((uint)query.Layer >= (uint)l.Layers) throw new InvalidOptionsException($"context shard '{Key}': no layer {query.Layer}");
        var lambdas = MemoryMarshal.Cast<byte, float>(query.Lambdas).ToArray();
        var held = segments;
        return Task.Run(() =>
        {
            var partials = new SoftmaxPartials(lambdas.Length * l.Segments, l.Width);
            var scratch = new SegmentScratch(l.Width);
            for (int q = 0; q < lambdas.Length; q++)
            {
                int stream = query.Layer * l.KvHeads + ModelConfig.KvHeadOf(q % l.Heads, l.Heads, l.KvHeads);
                for (int s = 0; s < l.Segments; s++)
                    held[s * l.Layers * l.KvHeads + stream]!.Query(lambdas[q], query.FirstPosition + q / l.Heads, scratch, partials, q * l.Segments + s);
            }
            return partials.ToBytes();
        });
    }

    /// <summary>The layout's recency bias as the model's config names it.</summary>
    private TaumodeConfig RecencyOf(ShardLayout l) => new(Recency: l.Recency switch
    {
        null => TauRecency.None,
        var name when Enum.TryParse<TauRecency>(name, ignoreCase: true, out var recency) => recency,
        var name => throw new InvalidOptionsException($"context shard '{Key}': unknown recency '{name}'"),
    });

    public Task<ContextShardInfo> GetInfo() => Task.FromResult(new ContextShardInfo(Key, layout?.Start ?? 0,
        layout is null ? 0 : layout.Segments * LambdaIndex.SegmentSize, bytes, silo.SiloAddress.ToString(), Complete));

    public Task Drop()
    {
        (layout, segments, loaded, bytes) = (null, [], 0, 0);
        registry.Remove(Key);
        DeactivateOnIdle();
        return Task.CompletedTask;
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        registry.Remove(Key);
        return Task.CompletedTask;
    }
}

/// <summary>The context shards active on this silo and the bytes they hold, for /metrics and the dashboard.</summary>
public sealed class LocalShards
{
    private readonly ConcurrentDictionary<string, long> shards = new();

    public int Count => shards.Count;
    public long Bytes => shards.Values.Sum();
    public IEnumerable<string> Keys => shards.Keys;

    /// <summary>Each shard's key and bytes, for the silo's live view.</summary>
    public IEnumerable<(string Key, long Bytes)> All => shards.Select(s => (s.Key, s.Value));

    public void Update(string key, long bytes) => shards[key] = bytes;
    public void Remove(string key) => shards.TryRemove(key, out _);
}
