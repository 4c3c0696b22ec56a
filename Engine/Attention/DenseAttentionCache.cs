namespace TauCluster.Engine;

/// <summary>
/// What the two dense caches (<see cref="DotProductCache"/>, <see cref="DenseTauCache"/>) keep per layer and kv head:
/// a stream of what scores a key (K itself, or its λ alone) beside a stream of values, grown, cut and copied together.
/// </summary>
public abstract class DenseAttentionCache : AttentionCache
{
    private readonly ChunkedRows[] keys;
    private readonly ChunkedRows[] values;

    private protected DenseAttentionCache(ModelConfig config, int keyWidth) : base(config)
    {
        keys = NewStreams(config, keyWidth);
        values = NewStreams(config, config.HeadDim);
    }

    /// <summary>The first <paramref name="length"/> tokens of <paramref name="source"/>, for <see cref="AttentionCache.CopyPrefix"/>.</summary>
    private protected DenseAttentionCache(DenseAttentionCache source, int length) : base(source.Config)
    {
        Length = Math.Min(length, source.Length);
        keys = source.keys.Select(k => k.CopyPrefix(length)).ToArray();
        values = source.values.Select(v => v.CopyPrefix(length)).ToArray();
    }

    public sealed override long Bytes => keys.Sum(k => k.Bytes) + values.Sum(v => v.Bytes);

    public sealed override void Reserve(int tokens)
    {
        foreach (var k in keys) k.Reserve(tokens);
        foreach (var v in values) v.Reserve(tokens);
    }

    public sealed override void Truncate(int tokens)
    {
        base.Truncate(tokens);
        foreach (var k in keys) k.Truncate(tokens);
        foreach (var v in values) v.Truncate(tokens);
    }

    private protected void AppendRow(int layer, int kvHead, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        int s = Stream(layer, kvHead);
        keys[s].Append(key);
        values[s].Append(value);
    }

    private protected ChunkedRows Keys(int layer, int kvHead) => keys[Stream(layer, kvHead)];

    /// <summary>Every cached key (or λk) and value of a layer and kv head, position by position (checks).</summary>
    internal (float[] Keys, float[] Values) Read(int layer, int kvHead)
    {
        int s = Stream(layer, kvHead);
        return (Flatten(keys[s]), Flatten(values[s]));
        float[] Flatten(ChunkedRows rows) => Enumerable.Range(0, Length).SelectMany(j => rows.Row(j).ToArray()).ToArray();
    }

    private protected ChunkedRows Values(int layer, int kvHead) => values[Stream(layer, kvHead)];
}
