using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace TauCluster.Engine;

/// <summary>The instruction set the GEMM micro-kernels run on.</summary>
public enum GemmPath { Portable, Avx2, Avx512 }

/// <summary>
/// The GEMM micro-kernels: C[rows × cols] (+)= A[rows × kc] · B[kc × cols], with A[i, p] = a[i·ars + p·acs], C row-major
/// (ldc), and B in panels of 16 columns that are k-major within the panel: B[p, 16q + l] = b[q·panelStride + p·kStride + l].
/// A row-major B is panels of stride 16 and k-stride ldb; a <see cref="PackedMatrix"/> is panels of stride 16·k, k-stride 16.
/// <para>
/// Every element of C is one fused multiply-add chain over k in order, from 0 (or from C), whatever path, block shape
/// or remainder computes it: the vector kernels are the scalar loop run on 16 or 8 columns at once. So every path, row
/// count and thread count gives the same bits, and a session's tokens do not depend on what it is batched with.
/// </para>
/// </summary>
internal static unsafe partial class GemmKernels
{
    public const int PanelWidth = 16;
    public const int PanelsPerBlock = 4;
    private const int RowsPerBlock = 4;

    /// <summary>The fastest path this machine runs.</summary>
    public static GemmPath Best { get; } = Vector512.IsHardwareAccelerated ? GemmPath.Avx512
        : Vector256.IsHardwareAccelerated && Fma.IsSupported ? GemmPath.Avx2 : GemmPath.Portable;

    /// <summary>The paths this machine can run at speed; tests force each one to check that they agree bitwise.</summary>
    public static GemmPath[] Available { get; } = Best switch
    {
        GemmPath.Avx512 => [GemmPath.Portable, GemmPath.Avx2, GemmPath.Avx512],
        GemmPath.Avx2 => [GemmPath.Portable, GemmPath.Avx2],
        _ => [GemmPath.Portable],
    };

    public static void Multiply<T>(float* a, int ars, int acs, T* b, int panelStride, int kStride, float* c, int ldc,
        int rows, int cols, int kc, bool load, GemmPath path)
        where T : unmanaged, IPanelElement<T>
    {
        int panels = path switch
        {
            GemmPath.Avx512 => Avx512Panels<T>(a, ars, acs, b, panelStride, kStride, c, ldc, rows, cols / PanelWidth, kc, load),
            GemmPath.Avx2 => Avx2Panels<T>(a, ars, acs, b, panelStride, kStride, c, ldc, rows, cols / PanelWidth, kc, load),
            _ => 0,
        };
        Scalar<T>(a, ars, acs, b, panelStride, kStride, c, ldc, rows, panels * PanelWidth, cols, kc, load);
    }

    /// <summary>Columns [j0, cols): the chain every vector lane also runs.</summary>
    private static void Scalar<T>(float* a, int ars, int acs, T* b, int panelStride, int kStride, float* c, int ldc,
        int rows, int j0, int cols, int kc, bool load)
        where T : unmanaged, IPanelElement<T>
    {
        for (int j = j0; j < cols; j++)
        {
            T* bj = b + (long)(j / PanelWidth) * panelStride + j % PanelWidth;
            for (int i = 0; i < rows; i++)
            {
                float* ai = a + (long)i * ars;
                float sum = load ? c[(long)i * ldc + j] : 0f;
                for (int p = 0; p < kc; p++) sum = MathF.FusedMultiplyAdd(ai[(long)p * acs], T.Widen(bj + (long)p * kStride), sum);
                c[(long)i * ldc + j] = sum;
            }
        }
    }

    /// <summary>Whole panels in blocks of 4 rows × 4 panels, then the remainders; returns the panels done.</summary>
    private static int Avx512Panels<T>(float* a, int ars, int acs, T* b, int ps, int bk, float* c, int ldc, int rows, int panels, int kc, bool load)
        where T : unmanaged, IPanelElement<T>
    {
        int q = 0;
        for (; q + PanelsPerBlock <= panels; q += PanelsPerBlock)
        {
            T* bq = b + (long)q * ps; float* cq = c + q * PanelWidth;
            int i = 0;
            for (; i + RowsPerBlock <= rows; i += RowsPerBlock) Avx512Rows4Panels4<T>(a + (long)i * ars, ars, acs, bq, ps, bk, cq + (long)i * ldc, ldc, kc, load);
            for (; i < rows; i++) Avx512Row1Panels4<T>(a + (long)i * ars, acs, bq, ps, bk, cq + (long)i * ldc, kc, load);
        }
        for (; q < panels; q++)
        {
            T* bq = b + (long)q * ps; float* cq = c + q * PanelWidth;
            int i = 0;
            for (; i + RowsPerBlock <= rows; i += RowsPerBlock) Avx512Rows4Panel1<T>(a + (long)i * ars, ars, acs, bq, bk, cq + (long)i * ldc, ldc, kc, load);
            for (; i < rows; i++) Avx512Row1Panel1<T>(a + (long)i * ars, acs, bq, bk, cq + (long)i * ldc, kc, load);
        }
        return q;
    }

    /// <summary>Whole panels, each 16-column panel as two 256-bit halves: 4 rows × 1 panel, or 1 row × 4 panels.</summary>
    private static int Avx2Panels<T>(float* a, int ars, int acs, T* b, int ps, int bk, float* c, int ldc, int rows, int panels, int kc, bool load)
        where T : unmanaged, IPanelElement<T>
    {
        int q = 0;
        for (; q + PanelsPerBlock <= panels; q += PanelsPerBlock)
        {
            T* bq = b + (long)q * ps; float* cq = c + q * PanelWidth;
            int i = 0;
            for (; i + RowsPerBlock <= rows; i += RowsPerBlock)
                for (int r = 0; r < PanelsPerBlock; r++)
                    Avx2Rows4Panel1<T>(a + (long)i * ars, ars, acs, bq + (long)r * ps, bk, cq + (long)i * ldc + r * PanelWidth, ldc, kc, load);
            for (; i < rows; i++) Avx2Row1Panels4<T>(a + (long)i * ars, acs, bq, ps, bk, cq + (long)i * ldc, kc, load);
        }
        for (; q < panels; q++)
        {
            T* bq = b + (long)q * ps; float* cq = c + q * PanelWidth;
            int i = 0;
            for (; i + RowsPerBlock <= rows; i += RowsPerBlock) Avx2Rows4Panel1<T>(a + (long)i * ars, ars, acs, bq, bk, cq + (long)i * ldc, ldc, kc, load);
            for (; i < rows; i++) Avx2Row1Panel1<T>(a + (long)i * ars, acs, bq, bk, cq + (long)i * ldc, kc, load);
        }
        return q;
    }
}
