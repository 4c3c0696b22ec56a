using System.Numerics.Tensors;

namespace TauCluster.Engine;

public sealed partial class TauModel
{
    /// <summary>
    /// The whole forward pass of DESIGN.md §1 over a block of new tokens at positions start … start+T−1.
    /// Each layer caches the block's keys and values before attending, and row t attends causally to the
    /// keys at positions ≤ start+t. Writes the logits of the last row, or of every row when asked.
    /// </summary>
    internal void Forward(ReadOnlySpan<int> tokens, AttentionCache cache, ForwardBuffers b, bool everyRow)
    {
        var c = Config;
        int T = tokens.Length, C = c.NEmbd, D = c.HeadDim, H = c.NHead, Hkv = c.NKvHead, start = cache.Length;
        b.EnsureCapacity(T);

        // x = wte[token], no norm after the embedding
        for (int t = 0; t < T; t++)
            Weights.TokenEmbedding.AsSpan(tokens[t] * C, C).CopyTo(b.X.AsSpan(t * C, C));

        for (int layer = 0; layer < c.NLayer; layer++)
        {
            var w = Weights.Layers[layer];

            // attention: h = rms(x); q, k, v = clamp(W h, −5, 5)
            RmsRows(b.X, b.H, T, C);
            b.MatMul.Run(w.Query, H * D, C, b.H, b.Q, T);
            b.MatMul.Run(w.Key, Hkv * D, C, b.H, b.K, T);
            b.MatMul.Run(w.Value, Hkv * D, C, b.H, b.V, T);
            Kernels.Clamp(b.Q.AsSpan(0, T * H * D), -5f, 5f);
            Kernels.Clamp(b.K.AsSpan(0, T * Hkv * D), -5f, 5f);
            Kernels.Clamp(b.V.AsSpan(0, T * Hkv * D), -5f, 5f);

            // q, k = rms(rope(·, pos)) per head vector; v gets neither
            for (int t = 0; t < T; t++)
            {
                for (int h = 0; h < H; h++) RopeNorm(b.Q.AsSpan((t * H + h) * D, D), start + t);
                for (int h = 0; h < Hkv; h++) RopeNorm(b.K.AsSpan((t * Hkv + h) * D, D), start + t);
            }

            // cache this block's keys (λk for tau) and values, then attend: y_h = Σⱼ softmax(score)ⱼ vⱼ
            for (int t = 0; t < T; t++)
                for (int h = 0; h < Hkv; h++)
                    cache.Append(layer, h, b.K.AsSpan((t * Hkv + h) * D, D), b.V.AsSpan((t * Hkv + h) * D, D));
            b.Attention.Run(cache, layer, b.Q, b.Y, T, start);

            // x = x + Wproj · concat(y₀ … y_{H−1})
            b.MatMul.Run(w.AttentionProjection, C, C, b.Y, b.Out, T);
            TensorPrimitives.Add(b.X.AsSpan(0, T * C), b.Out.AsSpan(0, T * C), b.X.AsSpan(0, T * C));

            // MLP: x = x + Wfc2 · relu(Wfc1 · rms(x))²
            RmsRows(b.X, b.H, T, C);
            b.MatMul.Run(w.MlpUp, c.MlpDim, C, b.H, b.Up, T);
            Kernels.ReluSquared(b.Up.AsSpan(0, T * c.MlpDim));
            b.MatMul.Run(w.MlpDown, C, c.MlpDim, b.Up, b.Out, T);
            TensorPrimitives.Add(b.X.AsSpan(0, T * C), b.Out.AsSpan(0, T * C), b.X.AsSpan(0, T * C));
        }

        // logits = clamp(Wlm · rms(x), −50, 50), then the optional softcap
        int first = everyRow ? 0 : T - 1, rows = T - first;
        RmsRows(b.X.AsSpan(first * C), b.H, rows, C);
        b.MatMul.Run(Weights.LmHead, c.VocabSize, C, b.H, b.Logits, rows);
        var logits = b.Logits.AsSpan(0, rows * c.VocabSize);
        Kernels.Clamp(logits, -50f, 50f);
        if (c.Softcap > 0)
        {
            Kernels.Softcap(logits, (float)c.Softcap);
            Kernels.Clamp(logits, -50f, 50f);
        }
        cache.Commit(T);
    }

    private void RopeNorm(Span<float> head, int position)
    {
        Kernels.Rope(head, position, RopeDivisors);
        Kernels.RmsNorm(head, head);
    }

    private static void RmsRows(ReadOnlySpan<float> x, Span<float> y, int rows, int width)
    {
        for (int t = 0; t < rows; t++) Kernels.RmsNorm(x.Slice(t * width, width), y.Slice(t * width, width));
    }
}

/// <summary>
/// A session's working memory for the forward pass, sized for a block of tokens and reused,
/// so that a decode step allocates nothing.
/// </summary>
internal sealed class ForwardBuffers
{
    private readonly ModelConfig config;

    public ForwardBuffers(ModelConfig config, KernelPool pool)
    {
        this.config = config;
        Pool = pool;
        MatMul = new MatMulWork(pool);
        Attention = new AttentionWork(config, pool);
    }

    public KernelPool Pool { get; }
    public int Capacity { get; private set; }
    public float[] X { get; private set; } = [];
    public float[] H { get; private set; } = [];
    public float[] Q { get; private set; } = [];
    public float[] K { get; private set; } = [];
    public float[] V { get; private set; } = [];
    public float[] Y { get; private set; } = [];
    public float[] Out { get; private set; } = [];
    public float[] Up { get; private set; } = [];
    public float[] Logits { get; private set; } = [];
    public MatMulWork MatMul { get; }
    public AttentionWork Attention { get; }

    public void EnsureCapacity(int tokens)
    {
        if (tokens <= Capacity) return;
        var c = config;
        X = new float[tokens * c.NEmbd];
        H = new float[tokens * c.NEmbd];
        Q = new float[tokens * c.NHead * c.HeadDim];
        K = new float[tokens * c.KvDim];
        V = new float[tokens * c.KvDim];
        Y = new float[tokens * c.NEmbd];
        Out = new float[tokens * c.NEmbd];
        Up = new float[tokens * c.MlpDim];
        Logits = new float[(long)tokens * c.VocabSize > Array.MaxLength ? throw new InvalidOptionsException("block too large for its logits") : tokens * c.VocabSize];
        Capacity = tokens;
    }
}

/// <summary>
/// Attention of a block of query rows, each head attending with its kv head ⌊h / (H/Hkv)⌋ to the keys at positions
/// ≤ its own. Dense caches take one (row, head) per chunk; the λ index grows row by row, so it takes one kv head per
/// chunk and walks that head's rows in order.
/// </summary>
internal sealed class AttentionWork(ModelConfig config, KernelPool pool) : IChunkedWork
{
    private const long ParallelThreshold = 1 << 18;

    [ThreadStatic] private static float[]? scoreScratch;

    private AttentionCache? cache;
    private float[] queries = [];
    private float[] output = [];
    private int layer, start, tokens;

    public void Run(AttentionCache cache, int layer, float[] queries, float[] output, int tokens, int start)
    {
        (this.cache, this.layer, this.queries, this.output, this.tokens, this.start) = (cache, layer, queries, output, tokens, start);
        int chunks = cache.OrderedRows ? config.NKvHead : tokens * config.NHead;
        long keysPerRow = cache.OrderedRows ? LambdaIndex.BlockSize * (1 + (long)Math.Log2(start + tokens + 1)) : start + tokens;
        if ((long)tokens * config.NHead * keysPerRow * config.HeadDim < ParallelThreshold)
            for (int i = 0; i < chunks; i++) RunChunk(i);
        else
            pool.For(chunks, this);
        this.cache = null;
    }

    public void RunChunk(int chunk)
    {
        if (!cache!.OrderedRows)
        {
            AttendRow(chunk / config.NHead, chunk % config.NHead);
            return;
        }
        int group = config.NHead / config.NKvHead;
        for (int t = 0; t < tokens; t++)
            for (int h = chunk * group; h < (chunk + 1) * group; h++) AttendRow(t, h);
    }

    private void AttendRow(int t, int h)
    {
        int D = config.HeadDim, row = t * config.NHead + h, keyCount = start + t + 1;
        Span<float> scores = default;
        if (cache!.NeedsScores)
        {
            var scratch = scoreScratch;
            if (scratch is null || scratch.Length < keyCount)
                scoreScratch = scratch = new float[Math.Max(keyCount, config.SequenceLen)];
            scores = scratch;
        }
        cache.Attend(layer, h / (config.NHead / config.NKvHead), queries.AsSpan(row * D, D), keyCount, scores, output.AsSpan(row * D, D));
    }
}
