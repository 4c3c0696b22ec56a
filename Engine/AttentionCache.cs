using System.Numerics.Tensors;

namespace TauCluster.Engine;

/// <summary>A domain to score against: its Laplacian and the resolved taumode settings.</summary>
public sealed record TaumodeSpec(Laplacian Laplacian, TaumodeSettings Settings);

/// <summary>
/// The decode cache of one session: per layer and kv head, whatever the attention kind needs of past keys,
/// and their values. Length counts tokens whose every layer is cached.
/// </summary>
public abstract class AttentionCache
{
    protected AttentionCache(ModelConfig config)
    {
        Config = config;
        Values = NewStreams(config, config.HeadDim);
    }

    /// <summary>A copy of the first <paramref name="length"/> tokens' entries (values copied by chunk, no recompute).</summary>
    protected AttentionCache(AttentionCache source, int length)
    {
        Config = source.Config;
        Values = source.Values.Select(v => v.CopyPrefix(length)).ToArray();
        Length = Math.Min(length, source.Length);
    }

    /// <summary>An independent cache holding the first <paramref name="length"/> tokens of this one (for forks).</summary>
    public abstract AttentionCache CopyPrefix(int length);

    protected ModelConfig Config { get; }
    protected ChunkedRows[] Values { get; }
    public int Length { get; private set; }

    /// <summary>Exact bytes of cached data.</summary>
    public abstract long Bytes { get; }

    /// <summary>What a (K, V) cache of the same model and tokens takes: 2·D floats per token, layer and kv head.</summary>
    public long KeyValueBaselineBytes => (long)Length * Config.NLayer * Config.NKvHead * 2 * Config.HeadDim * sizeof(float);

    public static AttentionCache Create(ModelConfig config, TaumodeSpec? taumode) => config.Attention switch
    {
        AttentionKind.Tau => new TauCache(config, taumode ?? throw new ArgumentNullException(nameof(taumode), "tau attention needs a Laplacian")),
        _ => new DotProductCache(config),
    };

    protected static ChunkedRows[] NewStreams(ModelConfig config, int width) =>
        Enumerable.Range(0, config.NLayer * config.NKvHead).Select(_ => new ChunkedRows(width)).ToArray();

    protected int Stream(int layer, int kvHead) => layer * Config.NKvHead + kvHead;

    /// <summary>Allocates room for <paramref name="tokens"/> tokens in every stream.</summary>
    public virtual void Reserve(int tokens)
    {
        foreach (var v in Values) v.Reserve(tokens);
    }

    /// <summary>Forgets everything after the first <paramref name="tokens"/> tokens.</summary>
    public virtual void Truncate(int tokens)
    {
        foreach (var v in Values) v.Truncate(tokens);
        Length = Math.Min(Length, tokens);
    }

    internal void Commit(int tokens) => Length += tokens;

    /// <summary>Caches one token's key (after RoPE and norm) and value for a layer and kv head.</summary>
    internal abstract void Append(int layer, int kvHead, ReadOnlySpan<float> key, ReadOnlySpan<float> value);

    /// <summary>output = Σⱼ softmax(score(query, keyⱼ))ⱼ · vⱼ over the first <paramref name="keyCount"/> cached keys.</summary>
    internal abstract void Attend(int layer, int kvHead, ReadOnlySpan<float> query, int keyCount, Span<float> scores, Span<float> output);

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

/// <summary>Tau attention's cache: (λk, V) per token, layer and kv head — D + 1 floats instead of 2D.</summary>
public sealed class TauCache : AttentionCache
{
    private readonly ChunkedRows[] lambdas;
    private readonly float temperature;

    public TauCache(ModelConfig config, TaumodeSpec taumode) : base(config)
    {
        taumode.Laplacian.RequireDimension(config.HeadDim, "this model");
        Domain = taumode;
        temperature = (float)taumode.Settings.EffectiveTemperature;
        lambdas = NewStreams(config, 1);
    }

    private TauCache(TauCache source, int length) : base(source, length)
    {
        Domain = source.Domain;
        temperature = source.temperature;
        lambdas = source.lambdas.Select(l => l.CopyPrefix(length)).ToArray();
    }

    public TaumodeSpec Domain { get; }

    public override AttentionCache CopyPrefix(int length) => new TauCache(this, length);

    public override long Bytes => lambdas.Sum(l => l.Bytes) + Values.Sum(v => v.Bytes);

    public override void Reserve(int tokens)
    {
        base.Reserve(tokens);
        foreach (var l in lambdas) l.Reserve(tokens);
    }

    public override void Truncate(int tokens)
    {
        base.Truncate(tokens);
        foreach (var l in lambdas) l.Truncate(tokens);
    }

    public float Lambda(int layer, int kvHead, int position) => lambdas[Stream(layer, kvHead)].Row(position)[0];

    internal override void Append(int layer, int kvHead, ReadOnlySpan<float> key, ReadOnlySpan<float> value) =>
        AppendLambda(layer, kvHead, Taumode.Lambda(key, Domain.Laplacian, Domain.Settings), value);

    internal override void Attend(int layer, int kvHead, ReadOnlySpan<float> query, int keyCount, Span<float> scores, Span<float> output) =>
        AttendLambda(layer, kvHead, Taumode.Lambda(query, Domain.Laplacian, Domain.Settings), keyCount, scores, output);

    /// <summary>Caches a key by its λ alone: all that tau attention ever needs of it.</summary>
    public void AppendLambda(int layer, int kvHead, float lambdaKey, ReadOnlySpan<float> value)
    {
        int s = Stream(layer, kvHead);
        lambdas[s].Append([lambdaKey]);
        Values[s].Append(value);
    }

    /// <summary>output = Σⱼ softmaxⱼ(−|λq − λkⱼ| / temperature) vⱼ over the first <paramref name="keyCount"/> keys.</summary>
    public void AttendLambda(int layer, int kvHead, float lambdaQuery, int keyCount, Span<float> scores, Span<float> output)
    {
        int s = Stream(layer, kvHead);
        scores = scores[..keyCount];
        for (int chunk = 0, start = 0; start < keyCount; chunk++, start += ChunkedRows.RowsPerChunk)
        {
            int count = Math.Min(ChunkedRows.RowsPerChunk, keyCount - start);
            Kernels.TauScores(lambdaQuery, lambdas[s].Rows(chunk, count), temperature, scores.Slice(start, count));
        }
        Kernels.Softmax(scores);
        WeightedSum(scores, Values[s], output);
    }
}

/// <summary>The dot-product baseline's cache: (K, V) per token, layer and kv head.</summary>
public sealed class DotProductCache : AttentionCache
{
    private readonly ChunkedRows[] keys;
    private readonly float sqrtHeadDim;

    public DotProductCache(ModelConfig config) : base(config)
    {
        keys = NewStreams(config, config.HeadDim);
        sqrtHeadDim = MathF.Sqrt(config.HeadDim);
    }

    private DotProductCache(DotProductCache source, int length) : base(source, length)
    {
        keys = source.keys.Select(k => k.CopyPrefix(length)).ToArray();
        sqrtHeadDim = source.sqrtHeadDim;
    }

    public override AttentionCache CopyPrefix(int length) => new DotProductCache(this, length);

    public override long Bytes => keys.Sum(k => k.Bytes) + Values.Sum(v => v.Bytes);

    public override void Reserve(int tokens)
    {
        base.Reserve(tokens);
        foreach (var k in keys) k.Reserve(tokens);
    }

    public override void Truncate(int tokens)
    {
        base.Truncate(tokens);
        foreach (var k in keys) k.Truncate(tokens);
    }

    internal override void Append(int layer, int kvHead, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        int s = Stream(layer, kvHead);
        keys[s].Append(key);
        Values[s].Append(value);
    }

    internal override void Attend(int layer, int kvHead, ReadOnlySpan<float> query, int keyCount, Span<float> scores, Span<float> output)
    {
        var stream = keys[Stream(layer, kvHead)];
        scores = scores[..keyCount];
        for (int j = 0; j < keyCount; j++) scores[j] = TensorPrimitives.Dot(query, stream.Row(j)) / sqrtHeadDim;
        Kernels.Softmax(scores);
        WeightedSum(scores, Values[Stream(layer, kvHead)], output);
    }
}
