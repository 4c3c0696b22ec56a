using System.Numerics.Tensors;

namespace TauCluster.Engine;

/// <summary>The dot-product baseline's cache: (K, V) per token, layer and kv head.</summary>
public sealed class DotProductCache : DenseAttentionCache
{
    private readonly float sqrtHeadDim;

    public DotProductCache(ModelConfig config) : base(config, config.HeadDim) => sqrtHeadDim = MathF.Sqrt(config.HeadDim);

    private DotProductCache(DotProductCache source, int length) : base(source, length) => sqrtHeadDim = source.sqrtHeadDim;

    public override AttentionCache CopyPrefix(int length) => new DotProductCache(this, length);

    internal override void Append(int layer, int kvHead, ReadOnlySpan<float> key, ReadOnlySpan<float> value) => AppendRow(layer, kvHead, key, value);

    internal override void Attend(int layer, int head, ReadOnlySpan<float> query, int keyCount, Span<float> scores, Span<float> output)
    {
        int kvHead = Config.KvHeadOf(head);
        var stream = Keys(layer, kvHead);
        scores = scores[..keyCount];
        for (int j = 0; j < keyCount; j++) scores[j] = TensorPrimitives.Dot(query, stream.Row(j)) / sqrtHeadDim;
        Kernels.Softmax(scores);
        WeightedSum(scores, Values(layer, kvHead), output);
    }
}
