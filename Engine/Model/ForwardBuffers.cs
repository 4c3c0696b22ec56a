using System.Numerics.Tensors;

namespace TauCluster.Engine;

/// <summary>
/// The forward pass on the CPU: the SIMD kernels on the <see cref="KernelPool"/>, over activations sized for a block of
/// tokens and reused, so that a decode step allocates nothing.
/// </summary>
internal sealed class ForwardBuffers : IForwardKernels
{
    private static readonly OutputEpilogue ClampQkv = v => Kernels.Clamp(v, -Kernels.QkvLimit, Kernels.QkvLimit);
    private static readonly OutputEpilogue ReluSquared = v => Kernels.ReluSquared(v, v);

    private readonly TauModel model;
    private readonly ModelConfig config;
    private readonly OutputEpilogue finishLogits;
    private int rows;

    public ForwardBuffers(TauModel model, KernelPool pool)
    {
        this.model = model;
        config = model.Config;
        Pool = pool;
        MatMul = new MatMulWork(pool);
        Attention = new AttentionWork(config, pool, Lanes);
        Keys = new KeyWork(config, pool, Lanes);
        finishLogits = ClampAndSoftcap;
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
    public KeyWork Keys { get; }
    /// <summary>The lanes of the pass being run, which the key and attention work read.</summary>
    public PassLanes Lanes { get; } = new();

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

    public void Begin(ReadOnlySpan<int> tokens, ReadOnlySpan<Lane> lanes)
    {
        int C = config.NEmbd;
        rows = tokens.Length;
        EnsureCapacity(rows);
        Lanes.Set(lanes);
        for (int t = 0; t < rows; t++)
            model.Weights.TokenEmbedding.AsSpan(tokens[t] * C, C).CopyTo(X.AsSpan(t * C, C));
    }

    public void RmsNorm(Activation from, Activation to)
    {
        int C = config.NEmbd;
        float[] x = Of(from), y = Of(to);
        for (int t = 0; t < rows; t++) Kernels.RmsNorm(x.AsSpan(t * C, C), y.AsSpan(t * C, C));
    }

    public void Project(Projection weights, int layer, Activation from, Activation to, Epilogue then) =>
        MatMul.Run(model.Packed.Of(weights, layer), Of(from), Of(to), rows, Of(then));

    public void CacheKeys(int layer) => Keys.Run(layer, Q, K, V, model.RopeDivisors);

    public void Attend(int layer)
    {
        // A session with context shards asks them first, one round trip per layer for the lane's rows.
        int HD = config.NHead * config.HeadDim;
        for (int l = 0; l < Lanes.Count; l++)
            Lanes[l].Cache.PrepareLayer(layer, Q.AsSpan(Lanes.FirstRow(l) * HD, Lanes[l].Rows * HD), Lanes[l].Rows);
        Attention.Run(layer, Q, Y);
    }

    public void AddToResidual(Activation from)
    {
        int n = rows * config.NEmbd;
        TensorPrimitives.Add(X.AsSpan(0, n), Of(from).AsSpan(0, n), X.AsSpan(0, n));
    }

    public void FinishLogits(bool everyRow)
    {
        int C = config.NEmbd, selected = 0;
        for (int l = 0; l < Lanes.Count; l++)
            for (int i = everyRow ? 0 : Lanes[l].Rows - 1; i < Lanes[l].Rows; i++, selected++)
                Kernels.RmsNorm(X.AsSpan((Lanes.FirstRow(l) + i) * C, C), H.AsSpan(selected * C, C));
        MatMul.Run(model.Packed.LmHead, H, Logits, selected, finishLogits);
        Lanes.Clear();
    }

    private float[] Of(Activation a) => a switch
    {
        Activation.X => X, Activation.H => H, Activation.Q => Q, Activation.K => K, Activation.V => V,
        Activation.Y => Y, Activation.Out => Out, Activation.Up => Up,
        _ => throw new ArgumentOutOfRangeException(nameof(a)),
    };

    private OutputEpilogue? Of(Epilogue e) => e switch
    {
        Epilogue.None => null,
        Epilogue.ClampQkv => ClampQkv,
        Epilogue.ReluSquared => ReluSquared,
        Epilogue.Logits => finishLogits,
        _ => throw new ArgumentOutOfRangeException(nameof(e)),
    };

    /// <summary>clamp(·, −50, 50), then the optional softcap and the clamp again: the logits' epilogue.</summary>
    private void ClampAndSoftcap(Span<float> logits)
    {
        Kernels.Clamp(logits, -Kernels.LogitLimit, Kernels.LogitLimit);
        if (config.Softcap <= 0) return;
        Kernels.Softcap(logits, (float)config.Softcap, logits);
        Kernels.Clamp(logits, -Kernels.LogitLimit, Kernels.LogitLimit);
    }
}
