namespace TauCluster.Engine;

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
        Attention = new AttentionWork(config, pool, Lanes);
        Keys = new KeyWork(config, pool, Lanes);
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
}
