namespace TauCluster.Engine.Tests;

/// <summary>
/// The GEMM kernels sum each output element in one fixed order: the same bits for any number of rows, any instruction
/// set and any thread count, and the Trainer's strided product (the same kernels over a row-major Wᵀ) gives them too.
/// </summary>
public sealed class GemmTests
{
    private static readonly KernelPool[] Pools = [new(0), new(1), new(3)];

    private static float[] Random(int length, ulong seed) => TestSupport.RandomVector(length, seed, rmsNormalise: false);

    /// <summary>Shapes with remainders everywhere: outputs not a multiple of 16 or 64, and above the parallel threshold.</summary>
    public static TheoryData<int, int> Shapes() => new() { { 1000, 1100 }, { 37, 5 }, { 16, 384 }, { 200, 64 } };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Products_are_bitwise_equal_across_row_counts_paths_and_threads(int outDim, int inDim)
    {
        const int maxRows = 10;
        var w = Random(outDim * inDim, 1);
        var x = Random(maxRows * inDim, 2);
        var packed = new PackedMatrix(w, outDim, inDim);
        float[]? expected = null;
        foreach (var path in GemmKernels.Available)
            foreach (var pool in Pools)
            {
                var work = new MatMulWork(pool) { Path = path };
                for (int rows = 1; rows <= maxRows; rows++)
                {
                    var y = new float[rows * outDim];
                    work.Run(packed, x, y, rows);
                    if (expected is null)
                    {
                        expected = new float[maxRows * outDim];
                        work.Run(packed, x, expected, maxRows);
                        AssertNearReference(w, x, expected, outDim, inDim, maxRows);
                    }
                    Assert.True(y.AsSpan().SequenceEqual(expected.AsSpan(0, rows * outDim)), $"{path}, {pool.Workers} workers, {rows} rows differ");
                }
            }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void The_strided_product_over_a_transposed_weight_gives_the_packed_bits(int outDim, int inDim)
    {
        const int rows = 7;
        var w = Random(outDim * inDim, 3);
        var x = Random(rows * inDim, 4);
        var packed = new float[rows * outDim];
        new PackedMatrix(w, outDim, inDim).Multiply(x, packed, rows, 0, outDim);
        var wt = new float[inDim * outDim];
        Gemm.Transpose(Matrix<float>.Dense(w, outDim, inDim), Matrix<float>.Dense(wt, inDim, outDim));
        var strided = new float[rows * outDim];
        Gemm.Multiply(Matrix<float>.Dense(x, rows, inDim), Matrix<float>.Dense(wt, inDim, outDim), Matrix<float>.Dense(strided, rows, outDim),
            accumulate: false, new ParallelOptions { MaxDegreeOfParallelism = 2 });
        Assert.Equal(packed, strided);
    }

    private static void AssertNearReference(float[] w, float[] x, float[] y, int outDim, int inDim, int rows)
    {
        for (int t = 0; t < rows; t++)
            for (int o = 0; o < outDim; o++)
            {
                double sum = 0, size = 0;
                for (int k = 0; k < inDim; k++) (sum, size) = (sum + (double)w[o * inDim + k] * x[t * inDim + k], size + Math.Abs((double)w[o * inDim + k] * x[t * inDim + k]));
                Assert.True(Math.Abs(sum - y[t * outDim + o]) <= 1e-6 * size + 1e-30, $"[{t}, {o}]: {y[t * outDim + o]} vs {sum}");
            }
    }
}
