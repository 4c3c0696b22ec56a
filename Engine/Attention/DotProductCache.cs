using System.Numerics.Tensors;

namespace TauCluster.Engine;

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
