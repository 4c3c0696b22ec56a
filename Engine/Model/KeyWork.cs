namespace TauCluster.Engine;

/// <summary>
/// q, k = rms(rope(·, pos)) per head vector of every row (v gets neither; rope(·, 0), the identity, for λ before RoPE), then the row's keys (λk for tau) and values
/// into its session's cache. One chunk per lane: a lane's rows enter its cache in position order, and every lane has a
/// cache of its own, so the lanes of a batch run in parallel (a λk is an O(nnz) quadratic form and a selection for τ).
/// </summary>
internal sealed class KeyWork(ModelConfig config, KernelPool pool, PassLanes lanes) : IChunkedWork
{
    private float[] queries = [], keys = [], values = [];
    private double[] ropeDivisors = [];
    private int layer;

    /// <summary>Over the lanes the pass has set in its <see cref="PassLanes"/>.</summary>
    public void Run(int layer, float[] queries, float[] keys, float[] values, double[] ropeDivisors)
    {
        (this.layer, this.queries, this.keys, this.values, this.ropeDivisors) = (layer, queries, keys, values, ropeDivisors);
        pool.For(lanes.Count, this);   // one lane runs inline
    }

    public void RunChunk(int l)
    {
        int D = config.HeadDim, H = config.NHead, Hkv = config.NKvHead;
        Span<float> cos = stackalloc float[D / 2], sin = stackalloc float[D / 2];
        var lane = lanes[l];
        for (int i = 0, t = lanes.FirstRow(l); i < lane.Rows; i++, t++)
        {
            // A row's heads share its position, so its angles are computed once; position 0's rotate nothing.
            Kernels.RopeAngles(config.RotatesHeads ? lane.Cache.Length + i : 0, ropeDivisors, cos, sin);
            for (int h = 0; h < H; h++) RopeNorm(queries.AsSpan((t * H + h) * D, D), cos, sin);
            for (int h = 0; h < Hkv; h++)
            {
                var key = keys.AsSpan((t * Hkv + h) * D, D);
                RopeNorm(key, cos, sin);
                lane.Cache.Append(layer, h, key, values.AsSpan((t * Hkv + h) * D, D));
            }
        }
    }

    private static void RopeNorm(Span<float> head, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        Kernels.Rope(head, cos, sin);
        Kernels.RmsNorm(head, head);
    }
}
