using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace TauCluster.Training;

/// <summary>
/// A matrix inside a flat array: element (i, j) is <c>Data[Offset + i·RowStride + j·ColStride]</c>.
/// A transposed view swaps the strides and copies nothing.
/// </summary>
public readonly record struct Matrix<T>(T[] Data, int Offset, int Rows, int Cols, int RowStride, int ColStride)
{
    /// <summary>A row-major [rows, cols] matrix starting at <paramref name="offset"/>.</summary>
    public static Matrix<T> Dense(T[] data, int rows, int cols, int offset = 0) => new(data, offset, rows, cols, cols, 1);

    public Matrix<T> Transposed => new(Data, Offset, Cols, Rows, ColStride, RowStride);

    /// <summary>The [rows, cols] block starting at (row, col).</summary>
    public Matrix<T> Slice(int row, int rows, int col, int cols) => new(Data, Offset + row * RowStride + col * ColStride, rows, cols, RowStride, ColStride);

    public ref T this[int i, int j] => ref Data[Offset + i * RowStride + j * ColStride];
}

/// <summary>
/// C = A·B (or C += A·B) for the training pass. A may be any view (a transposed one included); B and C must have
/// contiguous rows. C is cut in fixed tiles of 64 rows × 128 columns that may run on any thread, and every element of C
/// is summed over k in the same order whatever ran it, so results do not depend on the thread count.
/// float runs register-blocked AVX-512 / AVX2 kernels with fused multiply-add (8×32 and 4×16 blocks); other types
/// (double, for the gradient checks) run a plain triple loop.
/// </summary>
internal static unsafe class Gemm
{
    private const int DepthBlock = 256;                 // k per pass over a tile: keeps the B panel in cache
    private const int TileRows = 64, TileCols = 128;

    /// <summary>The fast float kernels need 256-bit vectors with fused multiply-add (AVX2 + FMA, or AVX-512).</summary>
    private static readonly bool FastFloat = Vector256.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Fma.IsSupported;

    public static void Multiply<T>(Matrix<T> a, Matrix<T> b, Matrix<T> c, bool accumulate, ParallelOptions? parallel = null)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (a.Rows != c.Rows || b.Cols != c.Cols || a.Cols != b.Rows)
            throw new ArgumentException($"cannot multiply [{a.Rows}×{a.Cols}] by [{b.Rows}×{b.Cols}] into [{c.Rows}×{c.Cols}]");
        int tilesN = (c.Cols + TileCols - 1) / TileCols, tiles = (c.Rows + TileRows - 1) / TileRows * tilesN;
        if (parallel is null || tiles == 1)
        {
            for (int t = 0; t < tiles; t++) Tile(a, b, c, accumulate, t, tilesN);
        }
        else
        {
            Parallel.For(0, tiles, parallel, t => Tile(a, b, c, accumulate, t, tilesN));
        }
    }

    private static void Tile<T>(Matrix<T> a, Matrix<T> b, Matrix<T> c, bool accumulate, int tile, int tilesN)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i0 = tile / tilesN * TileRows, j0 = tile % tilesN * TileCols;
        int rows = Math.Min(c.Rows, i0 + TileRows) - i0, cols = Math.Min(c.Cols, j0 + TileCols) - j0;
        if (typeof(T) == typeof(float) && b.ColStride == 1 && c.ColStride == 1 && FastFloat)
            FloatTile(Unsafe.As<Matrix<T>, Matrix<float>>(ref a), Unsafe.As<Matrix<T>, Matrix<float>>(ref b),
                Unsafe.As<Matrix<T>, Matrix<float>>(ref c), accumulate, i0, j0, rows, cols);
        else
            ReferenceTile(a, b, c, accumulate, i0, j0, rows, cols);
    }

    private static void ReferenceTile<T>(Matrix<T> a, Matrix<T> b, Matrix<T> c, bool accumulate, int i0, int j0, int rows, int cols)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = i0; i < i0 + rows; i++)
            for (int j = j0; j < j0 + cols; j++)
            {
                T sum = accumulate ? c[i, j] : T.Zero;
                for (int p = 0; p < a.Cols; p++) sum += a[i, p] * b[p, j];
                c[i, j] = sum;
            }
    }

    private static void FloatTile(Matrix<float> a, Matrix<float> b, Matrix<float> c, bool accumulate, int i0, int j0, int rows, int cols)
    {
        int depth = a.Cols, ars = a.RowStride, acs = a.ColStride, ldb = b.RowStride, ldc = c.RowStride;
        if (depth == 0)
        {
            if (!accumulate)
                for (int i = i0; i < i0 + rows; i++) c.Data.AsSpan(c.Offset + i * ldc + j0, cols).Clear();
            return;
        }
        fixed (float* pa0 = a.Data, pb0 = b.Data, pc0 = c.Data)
        {
            for (int k0 = 0; k0 < depth; k0 += DepthBlock)
            {
                int kc = Math.Min(DepthBlock, depth - k0);
                bool load = accumulate || k0 > 0;
                float* pa = pa0 + a.Offset + (long)i0 * ars + (long)k0 * acs;
                float* pb = pb0 + b.Offset + (long)k0 * ldb + j0;
                float* pc = pc0 + c.Offset + (long)i0 * ldc + j0;
                int j = 0;
                if (Vector512.IsHardwareAccelerated)
                {
                    for (; j + 32 <= cols; j += 32)
                    {
                        int i = 0;
                        for (; i + 8 <= rows; i += 8) Kernel8x32(pa + (long)i * ars, ars, acs, pb + j, ldb, pc + (long)i * ldc + j, ldc, kc, load);
                        for (; i + 4 <= rows; i += 4)
                        {
                            Kernel4x16(pa + (long)i * ars, ars, acs, pb + j, ldb, pc + (long)i * ldc + j, ldc, kc, load);
                            Kernel4x16(pa + (long)i * ars, ars, acs, pb + j + 16, ldb, pc + (long)i * ldc + j + 16, ldc, kc, load);
                        }
                        Scalar(pa + (long)i * ars, ars, acs, pb + j, ldb, pc + (long)i * ldc + j, ldc, rows - i, 32, kc, load);
                    }
                }
                for (; j + 16 <= cols; j += 16)
                {
                    int i = 0;
                    for (; i + 4 <= rows; i += 4) Kernel4x16(pa + (long)i * ars, ars, acs, pb + j, ldb, pc + (long)i * ldc + j, ldc, kc, load);
                    Scalar(pa + (long)i * ars, ars, acs, pb + j, ldb, pc + (long)i * ldc + j, ldc, rows - i, 16, kc, load);
                }
                Scalar(pa, ars, acs, pb + j, ldb, pc + j, ldc, rows, cols - j, kc, load);
            }
        }
    }

    private static void Scalar(float* a, int ars, int acs, float* b, int ldb, float* c, int ldc, int rows, int cols, int kc, bool load)
    {
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
            {
                float sum = load ? c[i * ldc + j] : 0f;
                for (int p = 0; p < kc; p++) sum += a[i * ars + p * acs] * b[p * ldb + j];
                c[i * ldc + j] = sum;
            }
    }

    /// <summary>C[8×32] (+)= A[8×kc]·B[kc×32] in sixteen 512-bit accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel8x32(float* a, int ars, int acs, float* b, int ldb, float* c, int ldc, int kc, bool load)
    {
        Vector512<float> c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;
        if (load)
        {
            c00 = Vector512.Load(c); c01 = Vector512.Load(c + 16);
            c10 = Vector512.Load(c + ldc); c11 = Vector512.Load(c + ldc + 16);
            c20 = Vector512.Load(c + 2 * ldc); c21 = Vector512.Load(c + 2 * ldc + 16);
            c30 = Vector512.Load(c + 3 * ldc); c31 = Vector512.Load(c + 3 * ldc + 16);
            c40 = Vector512.Load(c + 4 * ldc); c41 = Vector512.Load(c + 4 * ldc + 16);
            c50 = Vector512.Load(c + 5 * ldc); c51 = Vector512.Load(c + 5 * ldc + 16);
            c60 = Vector512.Load(c + 6 * ldc); c61 = Vector512.Load(c + 6 * ldc + 16);
            c70 = Vector512.Load(c + 7 * ldc); c71 = Vector512.Load(c + 7 * ldc + 16);
        }
        else
        {
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = c60 = c61 = c70 = c71 = Vector512<float>.Zero;
        }
        for (int p = 0; p < kc; p++, a += acs, b += ldb)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var x = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a[ars]);
            c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a[2 * ars]);
            c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a[3 * ars]);
            c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a[4 * ars]);
            c40 = Vector512.FusedMultiplyAdd(x, b0, c40); c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a[5 * ars]);
            c50 = Vector512.FusedMultiplyAdd(x, b0, c50); c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
            x = Vector512.Create(a[6 * ars]);
            c60 = Vector512.FusedMultiplyAdd(x, b0, c60); c61 = Vector512.FusedMultiplyAdd(x, b1, c61);
            x = Vector512.Create(a[7 * ars]);
            c70 = Vector512.FusedMultiplyAdd(x, b0, c70); c71 = Vector512.FusedMultiplyAdd(x, b1, c71);
        }
        c00.Store(c); c01.Store(c + 16);
        c10.Store(c + ldc); c11.Store(c + ldc + 16);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 16);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 16);
        c40.Store(c + 4 * ldc); c41.Store(c + 4 * ldc + 16);
        c50.Store(c + 5 * ldc); c51.Store(c + 5 * ldc + 16);
        c60.Store(c + 6 * ldc); c61.Store(c + 6 * ldc + 16);
        c70.Store(c + 7 * ldc); c71.Store(c + 7 * ldc + 16);
    }

    /// <summary>C[4×16] (+)= A[4×kc]·B[kc×16] in eight 256-bit accumulators (fits AVX2's sixteen registers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel4x16(float* a, int ars, int acs, float* b, int ldb, float* c, int ldc, int kc, bool load)
    {
        Vector256<float> c00, c01, c10, c11, c20, c21, c30, c31;
        if (load)
        {
            c00 = Vector256.Load(c); c01 = Vector256.Load(c + 8);
            c10 = Vector256.Load(c + ldc); c11 = Vector256.Load(c + ldc + 8);
            c20 = Vector256.Load(c + 2 * ldc); c21 = Vector256.Load(c + 2 * ldc + 8);
            c30 = Vector256.Load(c + 3 * ldc); c31 = Vector256.Load(c + 3 * ldc + 8);
        }
        else
        {
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = Vector256<float>.Zero;
        }
        for (int p = 0; p < kc; p++, a += acs, b += ldb)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var x = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            x = Vector256.Create(a[ars]);
            c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
            x = Vector256.Create(a[2 * ars]);
            c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
            x = Vector256.Create(a[3 * ars]);
            c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
        }
        c00.Store(c); c01.Store(c + 8);
        c10.Store(c + ldc); c11.Store(c + ldc + 8);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 8);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 8);
    }

    /// <summary>Writes the transpose of a [rows, cols] block: destination[j, i] = source[i, j].</summary>
    public static void Transpose<T>(Matrix<T> source, Matrix<T> destination)
    {
        const int block = 32;
        for (int i0 = 0; i0 < source.Rows; i0 += block)
            for (int j0 = 0; j0 < source.Cols; j0 += block)
                for (int i = i0; i < Math.Min(source.Rows, i0 + block); i++)
                    for (int j = j0; j < Math.Min(source.Cols, j0 + block); j++)
                        destination[j, i] = source[i, j];
    }
}
