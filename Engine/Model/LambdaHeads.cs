using System.Numerics;
using System.Numerics.Tensors;

namespace TauCluster.Engine;

/// <summary>
/// What a model's own weights add to λ (DESIGN.md §1), per layer: the learned log-gains a_g of its kv heads, and the maps
/// P_q, P_k [F, D] into the Laplacian's F dimensions. A query head of kv group g gets λq = e^(a_g)·λ(P_q q) and kv head
/// g gets λk = e^(a_g)·λ(P_k k), each part the identity where the config lacks it. The scores −|λq − λk| / T then
/// give head g the temperature T / e^(a_g), while every cache, the λ index and the context shards keep their one T and
/// stay exact: a positive gain scales a head's λ without reordering them.
/// </summary>
public sealed class LambdaHeads
{
    /// <summary>The widest projection: its vector lives on the stack of every λ taken.</summary>
    public const int MaxProjectionDim = 4096;

    private readonly float[][] gains;   // e^(a), per layer and kv head; empty without a learned temperature
    private readonly float[]?[] queryProjections, keyProjections;
    private readonly int projectionDim;

    private LambdaHeads(ModelConfig config, ModelWeights weights)
    {
        projectionDim = config.TaumodeOrDefault.ProjectionDim;
        gains = [.. weights.Layers.Select(l => l.LambdaLogGain is { } logGain ? Gains(logGain) : [])];
        queryProjections = [.. weights.Layers.Select(l => l.LambdaQueryProjection)];
        keyProjections = [.. weights.Layers.Select(l => l.LambdaKeyProjection)];
        if (config.TaumodeOrDefault.LearnedTemperature && gains.Any(g => g.Length != config.NKvHead)
            || projectionDim > 0 && queryProjections.Concat(keyProjections).Any(p => p is null))
            throw new ModelFormatException("the weights lack the λ tensors their config asks for (lambda_log_gain, lambda_q_proj, lambda_k_proj)");
    }

    /// <summary>The λ weights of a model whose config asks for them; null (λ as the seed takes it) otherwise.</summary>
    public static LambdaHeads? Of(ModelConfig config, ModelWeights weights) => config.HasLambdaWeights ? new(config, weights) : null;

    private static float[] Gains(ReadOnlySpan<float> logGains)
    {
        var gains = new float[logGains.Length];
        Gains(logGains, gains);
        return gains;
    }

    /// <summary>e^(a) as every λ is multiplied by it, one per kv head: the same bits in training and inference.</summary>
    public static void Gains<T>(ReadOnlySpan<T> logGains, Span<T> gains) where T : IExponentialFunctions<T> => TensorPrimitives.Exp(logGains, gains);

    public float Query(int layer, int kvHead, ReadOnlySpan<float> query, TaumodeSpec domain) =>
        Lambda(layer, kvHead, query, queryProjections[layer], domain);

    public float Key(int layer, int kvHead, ReadOnlySpan<float> key, TaumodeSpec domain) =>
        Lambda(layer, kvHead, key, keyProjections[layer], domain);

    private float Lambda(int layer, int kvHead, ReadOnlySpan<float> head, float[]? projection, TaumodeSpec domain)
    {
        float lambda;
        if (projection is null)
        {
            lambda = Taumode.Lambda(head, domain.Laplacian, domain.Settings);
        }
        else
        {
            Span<float> projected = stackalloc float[projectionDim];
            Project(projection, head, projected);
            lambda = Taumode.Lambda((ReadOnlySpan<float>)projected, domain.Laplacian, domain.Settings);
        }
        return gains[layer] is { Length: > 0 } g ? lambda * g[kvHead] : lambda;
    }

    /// <summary>z = P·x for P [z.Length, x.Length] row-major: one dot product per row, in training as in inference.</summary>
    public static void Project<T>(ReadOnlySpan<T> projection, ReadOnlySpan<T> x, Span<T> z) where T : IFloatingPointIeee754<T>
    {
        for (int f = 0; f < z.Length; f++) z[f] = TensorPrimitives.Dot(projection.Slice(f * x.Length, x.Length), x);
    }
}
