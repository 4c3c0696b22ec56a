using System.Numerics.Tensors;

namespace TauCluster.Engine;

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
