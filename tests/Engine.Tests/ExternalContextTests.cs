using System.Runtime.InteropServices;

namespace TauCluster.Engine.Tests;

/// <summary>
/// A session whose oldest segments are held outside its cache (as context shards hold them) computes bitwise what the
/// same session computes whole. The holder here keeps the segments in process, rebuilt from the bytes a shard is sent.
/// </summary>
public sealed class ExternalContextTests
{
    private const int Segment = LambdaIndex.SegmentSize;

    /// <summary>Holds detached segments the way a context shard does: rebuilt from position-order bytes, queried to bytes.</summary>
    private sealed class SegmentHolder(ModelConfig config, float temperature) : IExternalContext
    {
        private readonly List<LambdaSegment[]> segments = [];   // [segment][layer · NKvHead + kvHead]

        public int Gathers { get; private set; }

        public void Take(IndexedTauCache cache, int count)
        {
            foreach (var streams in cache.PeekSegments(count))
                segments.Add(streams.Select((s, stream) =>
                {
                    var (lambdas, values) = s.ToPositionOrder();
                    var wireLambdas = MemoryMarshal.Cast<byte, float>(MemoryMarshal.AsBytes(lambdas.AsSpan()).ToArray()).ToArray();
                    return LambdaSegment.FromPositionOrder(s.Start, wireLambdas, values, config.HeadDim, temperature,
                        config.TaumodeOrDefault.RecencySlope(stream % config.NKvHead, config.NKvHead));
                }).ToArray());
            cache.External = this;
            cache.DetachSegments(count);
        }

        public SoftmaxPartials Gather(int layer, int firstPosition, ReadOnlySpan<float> queryLambdas)
        {
            Gathers++;
            var partials = new SoftmaxPartials(queryLambdas.Length * segments.Count, config.HeadDim);
            var scratch = new SegmentScratch(config.HeadDim);
            for (int q = 0; q < queryLambdas.Length; q++)
                for (int s = 0; s < segments.Count; s++)
                    segments[s][layer * config.NKvHead + config.KvHeadOf(q % config.NHead)]
                        .Query(queryLambdas[q], firstPosition + q / config.NHead, scratch, partials, q * segments.Count + s);
            return SoftmaxPartials.FromBytes(partials.ToBytes(), config.HeadDim);
        }

        public int CutTo(int length)
        {
            int keep = Math.Min(segments.Count, length / Segment);
            segments.RemoveRange(keep, segments.Count - keep);
            return keep * Segment;
        }
    }

    private static (InferenceSession Whole, InferenceSession Sharded, SegmentHolder Holder) Pair(int sequenceLen, TauRecency recency = TauRecency.None,
        bool lambdaWeights = false)
    {
        var config = TestSupport.SmallConfig(AttentionKind.Tau, heads: 2, kvHeads: 1, embd: 16, layers: 2, vocab: 61, sequenceLen: sequenceLen);
        config = config with { Taumode = config.Taumode! with { Recency = recency, LearnedTemperature = lambdaWeights, ProjectionDim = lambdaWeights ? 10 : 0 } };
        var model = TauModel.CreateRandom(config, seed: 11, Laplacian.Chain(config.LambdaDim));
        var sharded = new InferenceSession(model);
        return (new InferenceSession(model), sharded, new SegmentHolder(config, ((IndexedTauCache)sharded.Cache).Domain.Temperature));
    }

    /// <param name="recency">With a recency bias, a shard needs each query's position, and the segments carry e^(m·j).</param>
    /// <param name="lambdaWeights">Learned temperatures and a projection: the shards hold λk as the model's weights made them.</param>
    [Theory]
    [InlineData(TauRecency.None, false)]
    [InlineData(TauRecency.Alibi, false)]
    [InlineData(TauRecency.Alibi, true)]
    public void Detached_segments_answered_from_outside_give_bitwise_the_logits_of_the_whole_cache(TauRecency recency, bool lambdaWeights)
    {
        var (whole, sharded, holder) = Pair(sequenceLen: 4 * Segment, recency, lambdaWeights);
        var prompt = TestSupport.RandomTokens(3 * Segment + 300, 61, seed: 5);

        var expected = whole.Append(prompt).ToArray();
        var cache = (IndexedTauCache)sharded.Cache;
        for (int offset = 0; offset < prompt.Length; offset += Segment)
        {
            var actualLogits = sharded.Append(prompt.AsSpan(offset, Math.Min(Segment, prompt.Length - offset))).ToArray();
            if (offset + Segment >= prompt.Length) Assert.Equal(expected, actualLogits);
            holder.Take(cache, cache.SealedSegments);   // everything sealed leaves the cache
        }
        Assert.Equal(3 * Segment, cache.ExternalLength);
        Assert.True(cache.Bytes < ((IndexedTauCache)whole.Cache).Bytes / 10, "the cache keeps only the open part");

        // decode steps over external segments: bitwise the same logits, one gather per layer and step
        for (int step = 0; step < 8; step++)
        {
            int token = Sampler.ArgMax(whole.Logits);
            int gathers = holder.Gathers;
            Assert.Equal(whole.Append(token).ToArray(), sharded.Append(token).ToArray());
            Assert.Equal(2, holder.Gathers - gathers);
        }
    }

    [Fact]
    public void Truncating_into_external_segments_recomputes_the_cut_segment_and_matches_the_whole_cache()
    {
        var (whole, sharded, holder) = Pair(sequenceLen: 3 * Segment);
        var prompt = TestSupport.RandomTokens(2 * Segment + 100, 61, seed: 6);
        whole.Append(prompt);
        sharded.Append(prompt);
        var cache = (IndexedTauCache)sharded.Cache;
        holder.Take(cache, 2);

        int cut = Segment + 777;   // inside the second external segment: it is dropped and its first 777 positions recomputed
        whole.Truncate(cut);
        sharded.Truncate(cut);
        Assert.Equal(Segment, cache.ExternalLength);
        Assert.Equal(cut, sharded.Length);
        Assert.Equal(cut, cache.Length);

        var more = TestSupport.RandomTokens(50, 61, seed: 7);
        Assert.Equal(whole.Append(more).ToArray(), sharded.Append(more).ToArray());
    }
}
