namespace TauCluster.Engine;

/// <summary>Tau attention by a dense pass over every cached (λk, V): the reference the λ index is checked against.</summary>
public sealed class DenseTauCache : DenseAttentionCache
{
    public DenseTauCache(ModelConfig config, TaumodeSpec domain) : base(config, 1)
    {
        Domain = domain.RequireFor(config);
    }

    private DenseTauCache(DenseTauCache source, int length) : base(source, length) => Domain = source.Domain;

    public TaumodeSpec Domain { get; }

    public override AttentionCache CopyPrefix(int length) => new DenseTauCache(this, length);

    internal override void Append(int layer, int kvHead, ReadOnlySpan<float> key, ReadOnlySpan<float> value) =>
        AppendLambda(layer, kvHead, Domain.KeyLambda(layer, kvHead, key), value);

    internal override void Attend(int layer, int head, ReadOnlySpan<float> query, int keyCount, Span<float> scores, Span<float> output)
    {
        int kvHead = Config.KvHeadOf(head);
        AttendLambda(layer, kvHead, Domain.QueryLambda(layer, kvHead, query), keyCount, scores, output,
            Config.TaumodeOrDefault.RecencySlope(kvHead, Config.NKvHead));
    }

    /// <summary>Caches a key by its λ alone: all that tau attention ever needs of it.</summary>
    public void AppendLambda(int layer, int kvHead, float lambdaKey, ReadOnlySpan<float> value) => AppendRow(layer, kvHead, [lambdaKey], value);

    /// <summary>
    /// output = Σⱼ softmaxⱼ(−|λq − λkⱼ| / temperature − m·(i − j)) vⱼ over the first <paramref name="keyCount"/> keys, for
    /// the query at i = keyCount − 1 and a recency slope m (0: none).
    /// </summary>
    public void AttendLambda(int layer, int kvHead, float lambdaQuery, int keyCount, Span<float> scores, Span<float> output, float recencySlope = 0)
    {
        var lambdas = Keys(layer, kvHead);
        scores = scores[..keyCount];
        for (int chunk = 0, start = 0; start < keyCount; chunk++, start += ChunkedRows.RowsPerChunk)
        {
            int count = Math.Min(ChunkedRows.RowsPerChunk, keyCount - start);
            Kernels.TauScores(lambdaQuery, lambdas.Rows(chunk, count), Domain.Temperature, scores.Slice(start, count));
        }
        if (recencySlope != 0) Kernels.AddRecencyBias(scores, recencySlope);
        Kernels.Softmax(scores);
        WeightedSum(scores, Values(layer, kvHead), output);
    }
}
