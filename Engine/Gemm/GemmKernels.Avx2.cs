using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace TauCluster.Engine;

/// <summary>The 256-bit kernels (AVX2 + FMA, sixteen registers): a panel's 16 columns are two registers, low and high.</summary>
internal static unsafe partial class GemmKernels
{
    private static Vector256<float> Start256(float* c, bool load) => load ? Vector256.Load(c) : Vector256<float>.Zero;

    /// <summary>C[4 × 16] (+)= A[4 × kc]·B[kc × 16] in eight accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx2Rows4Panel1<T>(float* a, int ars, int acs, T* b, int bk, float* c, int ldc, int kc, bool load)
        where T : unmanaged, IPanelElement<T>
    {
        float* c1 = c + ldc, c2 = c + 2L * ldc, c3 = c + 3L * ldc;
        Vector256<float> l0 = Start256(c, load), h0 = Start256(c + 8, load), l1 = Start256(c1, load), h1 = Start256(c1 + 8, load);
        Vector256<float> l2 = Start256(c2, load), h2 = Start256(c2 + 8, load), l3 = Start256(c3, load), h3 = Start256(c3 + 8, load);
        long r1 = ars, r2 = 2L * ars, r3 = 3L * ars;
        for (int p = 0; p < kc; p++, a += acs, b += bk)
        {
            var wl = T.Load256(b); var wh = T.Load256(b + 8);
            var x = Vector256.Create(a[0]);
            l0 = Vector256.FusedMultiplyAdd(x, wl, l0); h0 = Vector256.FusedMultiplyAdd(x, wh, h0);
            x = Vector256.Create(a[r1]);
            l1 = Vector256.FusedMultiplyAdd(x, wl, l1); h1 = Vector256.FusedMultiplyAdd(x, wh, h1);
            x = Vector256.Create(a[r2]);
            l2 = Vector256.FusedMultiplyAdd(x, wl, l2); h2 = Vector256.FusedMultiplyAdd(x, wh, h2);
            x = Vector256.Create(a[r3]);
            l3 = Vector256.FusedMultiplyAdd(x, wl, l3); h3 = Vector256.FusedMultiplyAdd(x, wh, h3);
        }
        l0.Store(c); h0.Store(c + 8); l1.Store(c1); h1.Store(c1 + 8);
        l2.Store(c2); h2.Store(c2 + 8); l3.Store(c3); h3.Store(c3 + 8);
    }

    /// <summary>C[1 × 64] (+)= A[1 × kc]·B[kc × 64]: the decode kernel, eight independent chains.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx2Row1Panels4<T>(float* a, int acs, T* b, int ps, int bk, float* c, int kc, bool load)
        where T : unmanaged, IPanelElement<T>
    {
        long p1 = ps, p2 = 2L * ps, p3 = 3L * ps;
        Vector256<float> l0 = Start256(c, load), h0 = Start256(c + 8, load), l1 = Start256(c + 16, load), h1 = Start256(c + 24, load);
        Vector256<float> l2 = Start256(c + 32, load), h2 = Start256(c + 40, load), l3 = Start256(c + 48, load), h3 = Start256(c + 56, load);
        for (int p = 0; p < kc; p++, a += acs, b += bk)
        {
            var x = Vector256.Create(a[0]);
            l0 = Vector256.FusedMultiplyAdd(x, T.Load256(b), l0); h0 = Vector256.FusedMultiplyAdd(x, T.Load256(b + 8), h0);
            l1 = Vector256.FusedMultiplyAdd(x, T.Load256(b + p1), l1); h1 = Vector256.FusedMultiplyAdd(x, T.Load256(b + p1 + 8), h1);
            l2 = Vector256.FusedMultiplyAdd(x, T.Load256(b + p2), l2); h2 = Vector256.FusedMultiplyAdd(x, T.Load256(b + p2 + 8), h2);
            l3 = Vector256.FusedMultiplyAdd(x, T.Load256(b + p3), l3); h3 = Vector256.FusedMultiplyAdd(x, T.Load256(b + p3 + 8), h3);
        }
        l0.Store(c); h0.Store(c + 8); l1.Store(c + 16); h1.Store(c + 24);
        l2.Store(c + 32); h2.Store(c + 40); l3.Store(c + 48); h3.Store(c + 56);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx2Row1Panel1<T>(float* a, int acs, T* b, int bk, float* c, int kc, bool load)
        where T : unmanaged, IPanelElement<T>
    {
        Vector256<float> l = Start256(c, load), h = Start256(c + 8, load);
        for (int p = 0; p < kc; p++, a += acs, b += bk)
        {
            var x = Vector256.Create(a[0]);
            l = Vector256.FusedMultiplyAdd(x, T.Load256(b), l);
            h = Vector256.FusedMultiplyAdd(x, T.Load256(b + 8), h);
        }
        l.Store(c); h.Store(c + 8);
    }
}
