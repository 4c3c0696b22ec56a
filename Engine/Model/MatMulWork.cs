using System.Numerics.Tensors;

namespace TauCluster.Engine;

/// <summary>
/// Y[t, o] = W[o, :] · X[t, :] for a row-major weight W [out, in] and a block of T input rows.
/// Output rows are split in fixed chunks of 64, each weight row is read once per block, and every
/// element is one whole dot product, so results are the same whatever the block size or thread count.
/// </summary>
internal sealed class MatMulWork(KernelPool pool) : IChunkedWork
{
    private const int RowsPerChunk = 64;
    private const long ParallelThreshold = 1 << 20;   // below ~1M multiply-adds a fork-join costs more than it saves

    private float[] weights = [];
    private float[] input = [];
    private float[] output = [];
    private int outDim, inDim, rows;

    public void Run(float[] weights, int outDim, int inDim, float[] input, float[] output, int rows)
    {
        (this.weights, this.outDim, this.inDim, this.input, this.output, this.rows) = (weights, outDim, inDim, input, output, rows);
        int chunks = (outDim + RowsPerChunk - 1) / RowsPerChunk;
        if ((long)outDim * inDim * rows < ParallelThreshold)
            for (int c = 0; c < chunks; c++) RunChunk(c);
        else
            pool.For(chunks, this);
    }

    public void RunChunk(int chunk)
    {
        int end = Math.Min(outDim, (chunk + 1) * RowsPerChunk);
        for (int o = chunk * RowsPerChunk; o < end; o++)
        {
            var row = new ReadOnlySpan<float>(weights, o * inDim, inDim);
            for (int t = 0; t < rows; t++)
                output[t * outDim + o] = TensorPrimitives.Dot(row, new ReadOnlySpan<float>(input, t * inDim, inDim));
        }
    }
}
