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

    /// <summary>
    /// Every finite F16 and every BF16 bit pattern (subnormals and signed zeros included), widened by each path's
    /// kernel (W·1 = W), is the value the pattern stands for.
    /// </summary>
    [Theory]
    [InlineData(TensorDType.F16)]
    [InlineData(TensorDType.BF16)]
    public void Every_16_bit_pattern_widens_exactly_on_every_path(TensorDType type)
    {
        var values = Enumerable.Range(0, 1 << 16).Select(bits => type.Widen((ushort)bits)).Where(v => type == TensorDType.BF16 || float.IsFinite(v)).ToArray();
        var packed = new PackedMatrix(values, values.Length, 1, type);
        foreach (var path in GemmKernels.Available)
        {
            var y = new float[values.Length];
            packed.Multiply([1f], y, 1, 0, values.Length, path);
            for (int bits = 0; bits < values.Length; bits++)
                Assert.True(float.IsNaN(values[bits]) ? float.IsNaN(y[bits]) : y[bits] == values[bits], $"{path}: {type} value {values[bits]:R} gave {y[bits]:R}");
        }
    }

    /// <summary>16-bit panels are the F32 panels of the widened weights, read at half the bytes: the same bits, however batched.</summary>
    [Theory]
    [InlineData(TensorDType.F16, 1000, 1100)]
    [InlineData(TensorDType.BF16, 1000, 1100)]
    [InlineData(TensorDType.F16, 37, 5)]
    [InlineData(TensorDType.BF16, 200, 64)]
    public void Sixteen_bit_panels_give_the_bits_of_F32_panels_of_the_same_values(TensorDType type, int outDim, int inDim)
    {
        const int maxRows = 9;
        var w = Random(outDim * inDim, 5).Select(v => type.Round(v)).ToArray();
        var x = Random(maxRows * inDim, 6);
        var wide = new PackedMatrix(w, outDim, inDim);
        var narrow = new PackedMatrix(w, outDim, inDim, type);
        Assert.Equal(wide.Bytes, 2 * narrow.Bytes);
        foreach (var path in GemmKernels.Available)
        {
            var work = new MatMulWork(Pools[2]) { Path = path };
            for (int rows = 1; rows <= maxRows; rows++)
            {
                float[] expected = new float[rows * outDim], actual = new float[rows * outDim];
                work.Run(wide, x, expected, rows);
                work.Run(narrow, x, actual, rows);
                Assert.True(actual.AsSpan().SequenceEqual(expected), $"{path}, {rows} rows: {type} panels differ from F32 ones");
            }
        }
    }

    [Fact]
    public void A_16_bit_panel_refuses_a_value_its_type_cannot_hold()
    {
        var e = Assert.Throws<ArgumentException>(() => new PackedMatrix([1f, 1f + 1f / 1024], 2, 1, TensorDType.BF16));
        Assert.Contains("is not a BF16 value", e.Message);
        e = Assert.Throws<ArgumentException>(() => new PackedMatrix([1f, float.PositiveInfinity], 2, 1, TensorDType.F16));
        Assert.Contains("finite values only", e.Message);
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
