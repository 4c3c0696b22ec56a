using System.Numerics.Tensors;

namespace TauCluster.Engine;

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
