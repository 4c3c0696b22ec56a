using System.Numerics.Tensors;

namespace TauCluster.Engine;

/// <summary>A domain to score against: its Laplacian and the resolved taumode settings.</summary>
public sealed record TaumodeSpec(Laplacian Laplacian, TaumodeSettings Settings)
{
    /// <summary>The divisor of λ distances, max(temperature, eps), as the kernels use it.</summary>
    public float Temperature => (float)Settings.EffectiveTemperature;
}

/// <summary>How tau attention finds its weights: the exact λ index (the default) or a dense pass over every key.</summary>
public enum TauAttentionPath { Index, Dense }

/// <summary>
/// The decode cache of one session: per layer and kv head, whatever the attention kind needs of past keys,
/// and their values. Length counts tokens whose every layer is cached.
/// </summary>
public abstract class AttentionCache(ModelConfig config)
{
    protected ModelConfig Config { get; } = config;
    public int Length { get; protected set; }

    /// <summary>Exact bytes of cached data.</summary>
    public abstract long Bytes { get; }

    /// <summary>What a (K, V) cache of the same model and tokens takes: 2·D floats per token, layer and kv head.</summary>
    public long KeyValueBaselineBytes => (long)Length * Config.NLayer * Config.NKvHead * 2 * Config.HeadDim * sizeof(float);

    /// <summary>
    /// True when the rows of a block must be attended in position order for each kv head (the λ index grows as the
    /// rows advance); false when any (row, head) may run at any time.
    /// </summary>
    internal virtual bool OrderedRows => false;

    public static AttentionCache Create(ModelConfig config, TaumodeSpec? taumode, TauAttentionPath path = TauAttentionPath.Index) => config.Attention switch
    {
        AttentionKind.Tau when taumode is null => throw new ArgumentNullException(nameof(taumode), "tau attention needs a Laplacian"),
        AttentionKind.Tau when path == TauAttentionPath.Index => new IndexedTauCache(config, taumode),
        AttentionKind.Tau => new DenseTauCache(config, taumode),
        _ => new DotProductCache(config),
    };

    protected static ChunkedRows[] NewStreams(ModelConfig config, int width) =>
        Enumerable.Range(0, config.NLayer * config.NKvHead).Select(_ => new ChunkedRows(width)).ToArray();

    protected int Stream(int layer, int kvHead) => layer * Config.NKvHead + kvHead;

    /// <summary>Allocates room for <paramref name="tokens"/> tokens so that appending them allocates nothing.</summary>
    public abstract void Reserve(int tokens);

    /// <summary>Forgets everything after the first <paramref name="tokens"/> tokens.</summary>
    public virtual void Truncate(int tokens) => Length = Math.Min(Length, tokens);

    /// <summary>An independent cache holding the first <paramref name="length"/> tokens of this one (for forks).</summary>
    public abstract AttentionCache CopyPrefix(int length);

    internal void Commit(int tokens) => Length += tokens;

    /// <summary>Brings every appended key into its final place (the λ index takes waiting keys in).</summary>
    internal virtual void Settle()
    {
    }

    /// <summary>Caches one token's key (after RoPE and norm) and value for a layer and kv head.</summary>
    internal abstract void Append(int layer, int kvHead, ReadOnlySpan<float> key, ReadOnlySpan<float> value);

    /// <summary>
    /// output = Σⱼ softmax(score(query, keyⱼ))ⱼ · vⱼ over the first <paramref name="keyCount"/> cached keys;
    /// <paramref name="scores"/> is scratch of at least keyCount floats where the cache needs it (see <see cref="NeedsScores"/>).
    /// </summary>
    internal abstract void Attend(int layer, int head, ReadOnlySpan<float> query, int keyCount, Span<float> scores, Span<float> output);

    /// <summary>The kv head that query head <paramref name="head"/> attends with.</summary>
    protected int KvHead(int head) => head / (Config.NHead / Config.NKvHead);

    /// <summary>
    /// Called once per layer of a forward pass, before its rows attend, with the lane's queries (rows × heads × D):
    /// a cache whose oldest keys are held elsewhere fetches their partials here, one round trip for the whole block.
    /// </summary>
    internal virtual void PrepareLayer(int layer, ReadOnlySpan<float> queries, int rows)
    {
    }

    /// <summary>Whether <see cref="Attend"/> needs a score per key (dense passes do; the λ index does not).</summary>
    internal virtual bool NeedsScores => true;

    /// <summary>output = Σⱼ weights[j] · vⱼ, walking the value chunks in order.</summary>
    protected static void WeightedSum(ReadOnlySpan<float> weights, ChunkedRows values, Span<float> output)
    {
        output.Clear();
        int width = values.Width;
        for (int chunk = 0, start = 0; start < weights.Length; chunk++, start += ChunkedRows.RowsPerChunk)
        {
            int count = Math.Min(ChunkedRows.RowsPerChunk, weights.Length - start);
            var rows = values.Rows(chunk, count);
            for (int j = 0; j < count; j++)
                TensorPrimitives.MultiplyAdd(rows.Slice(j * width, width), weights[start + j], output, output);
        }
    }
}

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
        domain.Laplacian.RequireDimension(config.HeadDim, "this model");
        Domain = domain;
        indexes = Enumerable.Range(0, config.NLayer * config.NKvHead).Select(_ => new LambdaIndex(config.HeadDim, domain.Temperature)).ToArray();
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
        pending[Stream(layer, kvHead)].Add(Taumode.Lambda(key, Domain.Laplacian, Domain.Settings), value);

    internal override void Settle()
    {
        for (int s = 0; s < indexes.Length; s++)
            while (pending[s].TryTake(out float lambda, out var value)) indexes[s].Add(lambda, value);
    }

    internal override void Attend(int layer, int head, ReadOnlySpan<float> query, int keyCount, Span<float> scores, Span<float> output)
    {
        int s = Stream(layer, KvHead(head));
        var index = indexes[s];
        var waiting = pending[s];
        while (index.Count < keyCount && waiting.TryTake(out float lambda, out var value)) index.Add(lambda, value);
        if (index.Count != keyCount) throw new InvalidOperationException($"λ index holds {index.Count} keys, attention asked for {keyCount}");
        if (ExternalLength == 0)
        {
            index.Attend(Taumode.Lambda(query, Domain.Laplacian, Domain.Settings), output);
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
        for (int q = 0; q < rows * H; q++) preparedLambdas[q] = Taumode.Lambda(queries.Slice(q * D, D), Domain.Laplacian, Domain.Settings);
        externalPartials = External!.Gather(layer, preparedLambdas.AsSpan(0, rows * H));
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

/// <summary>Tau attention by a dense pass over every cached (λk, V): the reference the λ index is checked against.</summary>
public sealed class DenseTauCache : AttentionCache
{
    private readonly ChunkedRows[] lambdas;
    private readonly ChunkedRows[] values;

    public DenseTauCache(ModelConfig config, TaumodeSpec domain) : base(config)
    {
        domain.Laplacian.RequireDimension(config.HeadDim, "this model");
        Domain = domain;
        lambdas = NewStreams(config, 1);
        values = NewStreams(config, config.HeadDim);
    }

    private DenseTauCache(DenseTauCache source, int length) : base(source.Config)
    {
        Domain = source.Domain;
        Length = Math.Min(length, source.Length);
        lambdas = source.lambdas.Select(l => l.CopyPrefix(length)).ToArray();
        values = source.values.Select(v => v.CopyPrefix(length)).ToArray();
    }

    public TaumodeSpec Domain { get; }

    public override long Bytes => lambdas.Sum(l => l.Bytes) + values.Sum(v => v.Bytes);

    public override AttentionCache CopyPrefix(int length) => new DenseTauCache(this, length);

    public override void Reserve(int tokens)
    {
        foreach (var l in lambdas) l.Reserve(tokens);
        foreach (var v in values) v.Reserve(tokens);
    }

    public override void Truncate(int tokens)
    {
        base.Truncate(tokens);
        foreach (var l in lambdas) l.Truncate(tokens);
        foreach (var v in values) v.Truncate(tokens);
    }

    internal override void Append(int layer, int kvHead, ReadOnlySpan<float> key, ReadOnlySpan<float> value) =>
        AppendLambda(layer, kvHead, Taumode.Lambda(key, Domain.Laplacian, Domain.Settings), value);

    internal override void Attend(int layer, int head, ReadOnlySpan<float> query, int keyCount, Span<float> scores, Span<float> output) =>
        AttendLambda(layer, KvHead(head), Taumode.Lambda(query, Domain.Laplacian, Domain.Settings), keyCount, scores, output);

    /// <summary>Caches a key by its λ alone: all that tau attention ever needs of it.</summary>
    public void AppendLambda(int layer, int kvHead, float lambdaKey, ReadOnlySpan<float> value)
    {
        int s = Stream(layer, kvHead);
        lambdas[s].Append([lambdaKey]);
        values[s].Append(value);
    }

    /// <summary>output = Σⱼ softmaxⱼ(−|λq − λkⱼ| / temperature) vⱼ over the first <paramref name="keyCount"/> keys.</summary>
    public void AttendLambda(int layer, int kvHead, float lambdaQuery, int keyCount, Span<float> scores, Span<float> output)
    {
        int s = Stream(layer, kvHead);
        scores = scores[..keyCount];
        for (int chunk = 0, start = 0; start < keyCount; chunk++, start += ChunkedRows.RowsPerChunk)
        {
            int count = Math.Min(ChunkedRows.RowsPerChunk, keyCount - start);
            Kernels.TauScores(lambdaQuery, lambdas[s].Rows(chunk, count), Domain.Temperature, scores.Slice(start, count));
        }
        Kernels.Softmax(scores);
        WeightedSum(scores, values[s], output);
    }
}

/// <summary>The dot-product baseline's cache: (K, V) per token, layer and kv head.</summary>
public sealed class DotProductCache : AttentionCache
{
    private readonly ChunkedRows[] keys;
    private readonly ChunkedRows[] values;
    private readonly float sqrtHeadDim;

    public DotProductCache(ModelConfig config) : base(config)
    {
        keys = NewStreams(config, config.HeadDim);
        values = NewStreams(config, config.HeadDim);
        sqrtHeadDim = MathF.Sqrt(config.HeadDim);
    }

    private DotProductCache(DotProductCache source, int length) : base(source.Config)
    {
        Length = Math.Min(length, source.Length);
        keys = source.keys.Select(k => k.CopyPrefix(length)).ToArray();
        values = source.values.Select(v => v.CopyPrefix(length)).ToArray();
        sqrtHeadDim = source.sqrtHeadDim;
    }

    public override long Bytes => keys.Sum(k => k.Bytes) + values.Sum(v => v.Bytes);

    public override AttentionCache CopyPrefix(int length) => new DotProductCache(this, length);

    public override void Reserve(int tokens)
    {
        foreach (var k in keys) k.Reserve(tokens);
        foreach (var v in values) v.Reserve(tokens);
    }

    public override void Truncate(int tokens)
    {
        base.Truncate(tokens);
        foreach (var k in keys) k.Truncate(tokens);
        foreach (var v in values) v.Truncate(tokens);
    }

    internal override void Append(int layer, int kvHead, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        int s = Stream(layer, kvHead);
        keys[s].Append(key);
        values[s].Append(value);
    }

    internal override void Attend(int layer, int head, ReadOnlySpan<float> query, int keyCount, Span<float> scores, Span<float> output)
    {
        int kvHead = KvHead(head);
        var stream = keys[Stream(layer, kvHead)];
        scores = scores[..keyCount];
        for (int j = 0; j < keyCount; j++) scores[j] = TensorPrimitives.Dot(query, stream.Row(j)) / sqrtHeadDim;
        Kernels.Softmax(scores);
        WeightedSum(scores, values[Stream(layer, kvHead)], output);
    }
}
