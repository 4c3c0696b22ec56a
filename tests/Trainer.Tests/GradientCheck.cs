using TauCluster.Engine;

namespace TauCluster.Training.Tests;

/// <summary>
/// Central finite differences in double precision against the analytic gradient. A component is compared by its
/// relative error |a − n| / max(|a|, |n|), which must be ≤ 1e-4, wherever the gradient is meaningful
/// (max(|a|, |n|) ≥ 1e-6); below that both must agree to 1e-9 absolutely (a zero gradient must be zero, not
/// merely small). The norm-wise error ‖a − n‖ / ‖a + n‖ over all checked components must also be ≤ 1e-6.
/// With h = 1e-5 the truncation error is ~h²·f‴ ≈ 1e-10 and the rounding error ~1e-16·|f| / h ≈ 1e-11, far below
/// these bounds; a wrong backward misses them by orders of magnitude.
/// </summary>
public static class GradientCheck
{
    public const double Step = 1e-5;
    public const double RelativeBound = 1e-4;
    public const double MeaningfulMagnitude = 1e-6;
    public const double TinyAbsoluteBound = 1e-9;
    public const double NormBound = 1e-6;

    /// <summary>Checks <paramref name="analytic"/> = ∂f/∂x at <paramref name="x"/> (x is restored afterwards).</summary>
    public static void AssertMatches(string what, Func<double> f, double[] x, ReadOnlySpan<double> analytic, IEnumerable<int>? indices = null)
    {
        var check = (indices ?? Enumerable.Range(0, x.Length)).ToArray();
        var numeric = new double[check.Length];
        for (int n = 0; n < check.Length; n++) numeric[n] = Numeric(f, x, check[n]);
        var picked = new double[check.Length];
        for (int n = 0; n < check.Length; n++) picked[n] = analytic[check[n]];
        AssertClose(what, check, picked, numeric);
    }

    public static double Numeric(Func<double> f, double[] x, int i)
    {
        double saved = x[i];
        x[i] = saved + Step;
        double plus = f();
        x[i] = saved - Step;
        double minus = f();
        x[i] = saved;
        return (plus - minus) / (2 * Step);
    }

    public static void AssertClose(string what, int[] indices, double[] analytic, double[] numeric)
    {
        double diff2 = 0, sum2 = 0;
        int meaningful = 0;
        for (int n = 0; n < indices.Length; n++)
        {
            double a = analytic[n], b = numeric[n], magnitude = Math.Max(Math.Abs(a), Math.Abs(b));
            diff2 += (a - b) * (a - b);
            sum2 += (a + b) * (a + b);
            if (magnitude >= MeaningfulMagnitude)
            {
                meaningful++;
                double relative = Math.Abs(a - b) / magnitude;
                Assert.True(relative <= RelativeBound, $"{what}[{indices[n]}]: analytic {a:R} vs numeric {b:R}, relative error {relative:E2}");
            }
            else
            {
                Assert.True(Math.Abs(a - b) <= TinyAbsoluteBound, $"{what}[{indices[n]}]: analytic {a:R} vs numeric {b:R} (both tiny, but differ)");
            }
        }
        Assert.True(meaningful > 0, $"{what}: no component has a meaningful gradient; the check would prove nothing");
        double normError = sum2 == 0 ? 0 : Math.Sqrt(diff2 / sum2);
        Assert.True(normError <= NormBound, $"{what}: norm-wise error {normError:E2}");
    }

    public static double[] Random(int length, ulong seed, double scale = 1.0)
    {
        var rng = new Xoshiro256(seed);
        return Enumerable.Range(0, length).Select(_ => rng.NextGaussian() * scale).ToArray();
    }

    /// <summary>Σ w ⊙ y: the scalar whose gradient with respect to y is w (the upstream gradient of a check).</summary>
    public static double Dot(ReadOnlySpan<double> w, ReadOnlySpan<double> y)
    {
        double s = 0;
        for (int i = 0; i < w.Length; i++) s += w[i] * y[i];
        return s;
    }
}
