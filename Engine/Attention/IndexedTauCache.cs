namespace TauCluster.Engine;

/// <summary>
/// Tau attention over the λ index (<see cref="LambdaIndex"/>): (λk, V) per token, layer and kv head, kept in λ order,
/// so that a decode step costs O(D log T) instead of O(D T). Keys of a block wait beside the index until the row
/// that may see them is attended, which keeps attention causal.
/// </summary>
public sealed class IndexedTauCache : AttentionCache
{
    private readonly LambdaIndex[] indexes;
    private readonly PendingKeys[] pending;
    private float[] preparedLambdas = [];              // λq of the block's (row, head) queries, when keys are external
    private SoftmaxPartials? externalPartials;          // their external segments' partials, for the layer being run

    public IndexedTauCache(ModelConfig config, TaumodeSpec domain) : base(config)
    {
        Domain = domain.RequireFor(config);
        indexes = Enumerable.Range(0, config.NLayer * config.NKvHead).Select(stream => new LambdaIndex(config.HeadDim, domain.Temperature,
            config.TaumodeOrDefault.RecencySlope(stream % config.NKvHead, config.NKvHead))).ToArray();
        pending = indexes.Select(_ => new PendingKeys(config.HeadDim)).ToArray();
    }

    private IndexedTauCache(IndexedTauCache source, int length) : base(source.Config)
    {
        Domain = source.Domain;
        Length = Math.Min(length, source.Length);
        indexes = source.indexes.Select(i => i.CopyPrefix(Length)).ToArray();
        pending = indexes.Select(_ => new PendingKeys(Config.HeadDim)).ToArray();
    }

    public TaumodeSpec Domain { get; }

    public override long Bytes => indexes.Sum(i => i.Bytes) + pending.Sum(p => p.Bytes);

    internal override bool OrderedRows => true;
    internal override bool NeedsScores => false;

    public override void Reserve(int tokens)
    {
        // Runs are allocated when they form, once per 64 tokens and merge; the tail and scratch are allocated up front.
    }

    public override AttentionCache CopyPrefix(int length) => new IndexedTauCache(this, length);

    /// <summary>Cutting into the external positions forgets them from the shard the cut falls in: Length may end up below <paramref name="tokens"/>.</summary>
    public override void Truncate(int tokens)
    {
        foreach (var p in pending) p.Clear();
        if (tokens < ExternalLength)
        {
            int kept = External!.CutTo(tokens);
            foreach (var index in indexes) index.Rebase(kept);
            Length = kept;
            return;
        }
        base.Truncate(tokens);
        foreach (var index in indexes) index.Truncate(tokens);
    }

    internal override void Append(int layer, int kvHead, ReadOnlySpan<float> key, ReadOnlySpan<float> value) =>
        pending[Stream(layer, kvHead)].Add(Domain.KeyLambda(layer, kvHead, key), value);

    internal override void Settle()
    {
        for (int s = 0; s < indexes.Length; s++)
            while (pending[s].TryTake(out float lambda, out var value)) indexes[s].Add(lambda, value);
    }

    internal override void Attend(int layer, int head, ReadOnlySpan<float> query, int keyCount, Span<float> scores, Span<float> output)
    {
        int kvHead = Config.KvHeadOf(head), s = Stream(layer, kvHead);
        var index = indexes[s];
        var waiting = pending[s];
        while (index.Count < keyCount && waiting.TryTake(out float lambda, out var value)) index.Add(lambda, value);
        if (index.Count != keyCount) throw new InvalidOperationException($"λ index holds {index.Count} keys, attention asked for {keyCount}");
        if (ExternalLength == 0)
        {
            index.Attend(Domain.QueryLambda(layer, kvHead, query), output);
            return;
        }
        int q = (keyCount - Length - 1) * Config.NHead + head;   // this row's query among the block's, as prepared
        index.Attend(preparedLambdas[q], externalPartials, q * (ExternalLength / LambdaIndex.SegmentSize), output);
    }

    /// <summary>Positions [0, ExternalLength) are held by <see cref="External"/> (context shards), in whole segments.</summary>
    public int ExternalLength => indexes[0].ExternalCount;

    /// <summary>Who holds the external positions; set before any segment is detached.</summary>
    public IExternalContext? External { get; set; }

    /// <summary>Sealed segments held here, per layer and kv head (they seal together: every stream has the same keys' count).</summary>
    public int SealedSegments => indexes[0].SealedSegments;

    /// <summary>The oldest <paramref name="count"/> sealed segments of every stream, indexed [segment][layer · NKvHead + kvHead].</summary>
    public LambdaSegment[][] PeekSegments(int count)
    {
        var perStream = indexes.Select(i => i.PeekSegments(count)).ToArray();
        return Enumerable.Range(0, count).Select(s => perStream.Select(stream => stream[s]).ToArray()).ToArray();
    }

    /// <summary>Forgets the oldest <paramref name="count"/> sealed segments: <see cref="External"/> holds them now.</summary>
    public void DetachSegments(int count)
    {
        if (External is null) throw new InvalidOperationException("set External before detaching segments");
        foreach (var index in indexes) index.DetachSegments(count);
    }

    internal override void PrepareLayer(int layer, ReadOnlySpan<float> queries, int rows)
    {
        if (ExternalLength == 0) return;
        int H = Config.NHead, D = Config.HeadDim;
        if (preparedLambdas.Length < rows * H) preparedLambdas = new float[rows * H];
        for (int q = 0; q < rows * H; q++) preparedLambdas[q] = Domain.QueryLambda(layer, Config.KvHeadOf(q % H), queries.Slice(q * D, D));
        externalPartials = External!.Gather(layer, Length, preparedLambdas.AsSpan(0, rows * H));
        int expected = rows * H * (ExternalLength / LambdaIndex.SegmentSize);
        if (externalPartials.Count != expected || externalPartials.Width != D)
            throw new InvalidOperationException($"external context answered {externalPartials.Count} partials, {expected} were asked");
    }

    /// <summary>Keys of the block being run, in position order, until the row that may see them is attended.</summary>
    private sealed class PendingKeys(int width)
    {
        private float[] lambdas = new float[1];
        private float[] values = new float[width];
        private int next, count;

        public long Bytes => (long)(count - next) * (width + 1) * sizeof(float);

        public void Add(float lambda, ReadOnlySpan<float> value)
        {
            if (next == count) next = count = 0;
            if (count == lambdas.Length)
            {
                Array.Resize(ref lambdas, count * 2);
                Array.Resize(ref values, count * 2 * width);
            }
            lambdas[count] = lambda;
            value.CopyTo(values.AsSpan(count * width, width));
            count++;
        }

        public bool TryTake(out float lambda, out ReadOnlySpan<float> value)
        {
            if (next == count)
            {
                lambda = 0;
                value = default;
                return false;
            }
            lambda = lambdas[next];
            value = values.AsSpan(next * width, width);
            next++;
            return true;
        }

        public void Clear() => next = count = 0;
    }
}
