using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace TauCluster.Engine;

/// <summary>The 512-bit kernels: one register holds one panel's 16 columns of one row.</summary>
internal static unsafe partial class GemmKernels
{
    private static Vector512<float> Start512(float* c, bool load) => load ? Vector512.Load(c) : Vector512<float>.Zero;

    /// <summary>C[4 × 64] (+)= A[4 × kc]·B[kc × 64] in sixteen accumulators: each weight load feeds four rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx512Rows4Panels4<T>(float* a, int ars, int acs, T* b, int ps, int bk, float* c, int ldc, int kc, bool load)
        where T : unmanaged, IPanelElement<T>
    {
        long p1 = ps, p2 = 2L * ps, p3 = 3L * ps;
        float* c1 = c + ldc, c2 = c + 2L * ldc, c3 = c + 3L * ldc;
        Vector512<float> s00 = Start512(c, load), s01 = Start512(c + 16, load), s02 = Start512(c + 32, load), s03 = Start512(c + 48, load);
        Vector512<float> s10 = Start512(c1, load), s11 = Start512(c1 + 16, load), s12 = Start512(c1 + 32, load), s13 = Start512(c1 + 48, load);
        Vector512<float> s20 = Start512(c2, load), s21 = Start512(c2 + 16, load), s22 = Start512(c2 + 32, load), s23 = Start512(c2 + 48, load);
        Vector512<float> s30 = Start512(c3, load), s31 = Start512(c3 + 16, load), s32 = Start512(c3 + 32, load), s33 = Start512(c3 + 48, load);
        long r1 = ars, r2 = 2L * ars, r3 = 3L * ars;
        for (int p = 0; p < kc; p++, a += acs, b += bk)
        {
            var w0 = T.Load512(b); var w1 = T.Load512(b + p1); var w2 = T.Load512(b + p2); var w3 = T.Load512(b + p3);
            var x = Vector512.Create(a[0]);
            s00 = Vector512.FusedMultiplyAdd(x, w0, s00); s01 = Vector512.FusedMultiplyAdd(x, w1, s01);
            s02 = Vector512.FusedMultiplyAdd(x, w2, s02); s03 = Vector512.FusedMultiplyAdd(x, w3, s03);
            x = Vector512.Create(a[r1]);
            s10 = Vector512.FusedMultiplyAdd(x, w0, s10); s11 = Vector512.FusedMultiplyAdd(x, w1, s11);
            s12 = Vector512.FusedMultiplyAdd(x, w2, s12); s13 = Vector512.FusedMultiplyAdd(x, w3, s13);
            x = Vector512.Create(a[r2]);
            s20 = Vector512.FusedMultiplyAdd(x, w0, s20); s21 = Vector512.FusedMultiplyAdd(x, w1, s21);
            s22 = Vector512.FusedMultiplyAdd(x, w2, s22); s23 = Vector512.FusedMultiplyAdd(x, w3, s23);
            x = Vector512.Create(a[r3]);
            s30 = Vector512.FusedMultiplyAdd(x, w0, s30); s31 = Vector512.FusedMultiplyAdd(x, w1, s31);
            s32 = Vector512.FusedMultiplyAdd(x, w2, s32); s33 = Vector512.FusedMultiplyAdd(x, w3, s33);
        }
        s00.Store(c); s01.Store(c + 16); s02.Store(c + 32); s03.Store(c + 48);
        s10.Store(c1); s11.Store(c1 + 16); s12.Store(c1 + 32); s13.Store(c1 + 48);
        s20.Store(c2); s21.Store(c2 + 16); s22.Store(c2 + 32); s23.Store(c2 + 48);
        s30.Store(c3); s31.Store(c3 + 16); s32.Store(c3 + 32); s33.Store(c3 + 48);
    }

    /// <summary>C[1 × 64] (+)= A[1 × kc]·B[kc × 64]: the decode kernel, four independent chains to hide FMA latency.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx512Row1Panels4<T>(float* a, int acs, T* b, int ps, int bk, float* c, int kc, bool load)
        where T : unmanaged, IPanelElement<T>
    {
        long p1 = ps, p2 = 2L * ps, p3 = 3L * ps;
        Vector512<float> s0 = Start512(c, load), s1 = Start512(c + 16, load), s2 = Start512(c + 32, load), s3 = Start512(c + 48, load);
        for (int p = 0; p < kc; p++, a += acs, b += bk)
        {
            var x = Vector512.Create(a[0]);
            s0 = Vector512.FusedMultiplyAdd(x, T.Load512(b), s0);
            s1 = Vector512.FusedMultiplyAdd(x, T.Load512(b + p1), s1);
            s2 = Vector512.FusedMultiplyAdd(x, T.Load512(b + p2), s2);
            s3 = Vector512.FusedMultiplyAdd(x, T.Load512(b + p3), s3);
        }
        s0.Store(c); s1.Store(c + 16); s2.Store(c + 32); s3.Store(c + 48);
    }

    /// <summary>C[4 × 16] (+)= A[4 × kc]·B[kc × 16], for the panels left after the blocks of four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx512Rows4Panel1<T>(float* a, int ars, int acs, T* b, int bk, float* c, int ldc, int kc, bool load)
        where T : unmanaged, IPanelElement<T>
    {
        float* c1 = c + ldc, c2 = c + 2L * ldc, c3 = c + 3L * ldc;
        Vector512<float> s0 = Start512(c, load), s1 = Start512(c1, load), s2 = Start512(c2, load), s3 = Start512(c3, load);
        long r1 = ars, r2 = 2L * ars, r3 = 3L * ars;
        for (int p = 0; p < kc; p++, a += acs, b += bk)
        {
            var w = T.Load512(b);
            s0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), w, s0);
            s1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[r1]), w, s1);
            s2 = Vector512.FusedMultiplyAdd(Vector512.Create(a[r2]), w, s2);
            s3 = Vector512.FusedMultiplyAdd(Vector512.Create(a[r3]), w, s3);
        }
        s0.Store(c); s1.Store(c1); s2.Store(c2); s3.Store(c3);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Avx512Row1Panel1<T>(float* a, int acs, T* b, int bk, float* c, int kc, bool load)
        where T : unmanaged, IPanelElement<T>
    {
        var s = Start512(c, load);
        for (int p = 0; p < kc; p++, a += acs, b += bk) s = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), T.Load512(b), s);
        s.Store(c);
    }
}
