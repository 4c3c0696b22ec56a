namespace TauCluster.Engine;

/// <summary>An elementwise function of a matrix product's outputs, applied to each chunk's outputs as the chunk computes them.</summary>
internal delegate void OutputEpilogue(Span<float> outputs);

/// <summary>
/// Y[t, o] = W[o, :] · X[t, :] for a packed weight W [out, in] and a block of T input rows. Outputs are split in fixed
/// chunks of 64 (four panels), each chunk reads its weights once for all rows, and every element is one fused
/// multiply-add chain over k (<see cref="GemmKernels"/>), so results are the same whatever the block size or thread count.
/// </summary>
internal sealed class MatMulWork(KernelPool pool) : IChunkedWork
{
    private const int OutputsPerChunk = GemmKernels.PanelWidth * GemmKernels.PanelsPerBlock;
    private const long ParallelThreshold = 1 << 16;   // below ~64K multiply-adds (about 10 µs) a fork-join costs more than it saves

    /// <summary>The kernels' instruction set; every one gives the same bits, and tests switch it to check that.</summary>
    public GemmPath Path { get; set; } = GemmKernels.Best;

    private PackedMatrix? weights;
    private float[] input = [];
    private float[] output = [];
    private int rows;
    private OutputEpilogue? epilogue;

    /// <summary>
    /// Y = W·X, then <paramref name="then"/> on every output (in the chunk that computed it, while it is in cache and on
    /// all threads, rather than in a pass of its own on one).
    /// </summary>
    public void Run(PackedMatrix weights, float[] input, float[] output, int rows, OutputEpilogue? then = null)
    {
        (this.weights, this.input, this.output, this.rows, epilogue) = (weights, input, output, rows, then);
        int chunks = (weights.Out + OutputsPerChunk - 1) / OutputsPerChunk;
        if ((long)weights.Out * weights.In * rows < ParallelThreshold)
            for (int c = 0; c < chunks; c++) RunChunk(c);
        else
            pool.For(chunks, this);
    }

    public void RunChunk(int chunk)
    {
        int first = chunk * OutputsPerChunk, count = Math.Min(OutputsPerChunk, weights!.Out - first);
        weights.Multiply(input, output, rows, first, count, Path);
        if (epilogue is null) return;
        for (int t = 0; t < rows; t++) epilogue(output.AsSpan(t * weights.Out + first, count));
    }
}
