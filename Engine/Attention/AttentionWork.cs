namespace TauCluster.Engine;

/// <summary>
/// Attention of a block of query rows, each head attending with its kv head ⌊h / (H/Hkv)⌋ to its own session's keys at
/// positions ≤ its own. Dense caches take one (row, head) per chunk; the λ index grows row by row, so it takes one
/// (lane, kv head) per chunk and walks that lane's rows in order.
/// </summary>
internal sealed class AttentionWork(ModelConfig config, KernelPool pool, PassLanes lanes) : IChunkedWork
{
    private const long ParallelThreshold = 1 << 18;

    [ThreadStatic] private static float[]? scoreScratch;

    private int[] laneChunk = new int[2];    // first chunk of each lane, and the total at the end
    private float[] queries = [];
    private float[] output = [];
    private int layer;

    /// <summary>Over the lanes the pass has set in its <see cref="PassLanes"/>.</summary>
    public void Run(int layer, float[] queries, float[] output)
    {
        (this.layer, this.queries, this.output) = (layer, queries, output);
        if (laneChunk.Length < lanes.Count + 1) laneChunk = new int[lanes.Count + 1];
        long work = 0;
        for (int l = 0; l < lanes.Count; l++)
        {
            var lane = lanes[l];
            laneChunk[l + 1] = laneChunk[l] + (lane.Cache.OrderedRows ? config.NKvHead : lane.Rows * config.NHead);
            long keysPerRow = lane.Cache.OrderedRows ? LambdaIndex.BlockSize * (1 + (long)Math.Log2(lane.Cache.Length + lane.Rows + 1)) : lane.Cache.Length + lane.Rows;
            work += lane.Rows * config.NHead * keysPerRow * config.HeadDim;
        }
        int chunks = laneChunk[lanes.Count];
        if (work < ParallelThreshold)
            for (int i = 0; i < chunks; i++) RunChunk(i);
        else
            pool.For(chunks, this);
    }

    public void RunChunk(int chunk)
    {
        int l = 0;
        while (laneChunk[l + 1] <= chunk) l++;
        var lane = lanes[l];
        int local = chunk - laneChunk[l];
        if (!lane.Cache.OrderedRows)
        {
            AttendRow(lane, l, local / config.NHead, local % config.NHead);
            return;
        }
        int group = config.QueryGroup;
        for (int i = 0; i < lane.Rows; i++)
            for (int h = local * group; h < (local + 1) * group; h++) AttendRow(lane, l, i, h);
    }

    /// <summary>Row i of lane l: the cache already holds this pass's keys, so the row sees Length − Rows + i + 1 of them.</summary>
    private void AttendRow(Lane lane, int l, int i, int h)
    {
        int D = config.HeadDim, row = (lanes.FirstRow(l) + i) * config.NHead + h;
        int keyCount = lane.Cache.Length + i + 1;
        Span<float> scores = default;
        if (lane.Cache.NeedsScores)
        {
            // Sized for the model's whole context on first use, never grown by a longer session: a thread that served a
            // model of shorter context would otherwise allocate in the middle of a decode.
            var scratch = scoreScratch;
            if (scratch is null || scratch.Length < config.SequenceLen)
                scoreScratch = scratch = new float[config.SequenceLen];
            scores = scratch;
        }
        lane.Cache.Attend(layer, h, queries.AsSpan(row * D, D), keyCount, scores, output.AsSpan(row * D, D));
    }
}
