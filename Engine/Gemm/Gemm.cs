using System.Numerics;
using System.Runtime.CompilerServices;

namespace TauCluster.Engine;

/// <summary>
/// C = A·B (or C += A·B) for the training pass. A may be any view (a transposed one included); B and C must have
/// contiguous rows. C is cut in fixed tiles of 64 rows × 128 columns that may run on any thread, and every element of C
/// is summed over k in the same order whatever ran it, so results do not depend on the thread count.
/// float runs the register-blocked micro-kernels of <see cref="GemmKernels"/>, the same ones the Engine's weight products
/// run, so each element is the same fused multiply-add chain as there; other types (double, for the gradient checks)
/// run a plain triple loop.
/// </summary>
public static unsafe class Gemm
{
    private const int DepthBlock = 256;                 // k per pass over a tile: keeps the B panel in cache
    private const int TileRows = 64, TileCols = 128;

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
        if (typeof(T) == typeof(float) && b.ColStride == 1 && c.ColStride == 1)
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
            // Passes over k store C and load it back: exact, so each element is still one chain over k in order.
            for (int k0 = 0; k0 < depth; k0 += DepthBlock)
            {
                float* pa = pa0 + a.Offset + (long)i0 * ars + (long)k0 * acs;
                float* pb = pb0 + b.Offset + (long)k0 * ldb + j0;
                float* pc = pc0 + c.Offset + (long)i0 * ldc + j0;
                GemmKernels.Multiply(pa, ars, acs, (F32Element*)pb, GemmKernels.PanelWidth, ldb, pc, ldc, rows, cols, Math.Min(DepthBlock, depth - k0), accumulate || k0 > 0, GemmKernels.Best);
            }
        }
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
