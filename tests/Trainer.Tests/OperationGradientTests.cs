using TauCluster.Engine;
using static TauCluster.Training.Tests.GradientCheck;

namespace TauCluster.Training.Tests;

/// <summary>
/// Every operation of DESIGN.md §1 on its own, in double: the backward applied to a random upstream gradient w must be
/// the finite-difference gradient of Σ w ⊙ op(x). Inputs stay away from kinks (clamp bounds, relu at 0, equal λ).
/// </summary>
public sealed class OperationGradientTests
{
    private static void AssertAllClose(double[] expected, double[] actual, double tolerance = 1e-12)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"[{i}] {expected[i]} vs {actual[i]}");
    }

    [Fact]
    public void Rms_norm_backward_matches_finite_differences_and_accumulates()
    {
        var x = Random(16, 1);
        var w = Random(16, 2);
        var y = new double[16];
        double r = Kernels.RmsNorm<double>(x, y);
        var dx = new double[16];
        Ops.RmsNormBackward<double>(y, r, w, dx);
        AssertMatches("rms", () => { var o = new double[16]; Kernels.RmsNorm<double>(x, o); return Dot(w, o); }, x, dx);

        var sum = Random(16, 3);
        var expected = sum.Zip(dx, (a, b) => a + b).ToArray();
        Ops.RmsNormBackward<double>(y, r, w, sum, accumulate: true);
        AssertAllClose(expected, sum);
    }

    [Fact]
    public void Linear_layer_backward_gives_weight_and_input_gradients()
    {
        // y[rows, out] = x[rows, in] · Wᵀ; dW = dyᵀ·x, dx = dy·W, through the same matrix views the model uses
        const int rows = 5, input = 7, output = 4;
        var x = Random(rows * input, 4);
        var weights = Random(output * input, 5);
        var w = Random(rows * output, 6);
        double F()
        {
            var y = new double[rows * output];
            Gemm.Multiply(Matrix<double>.Dense(x, rows, input), Matrix<double>.Dense(weights, output, input).Transposed, Matrix<double>.Dense(y, rows, output), false);
            return Dot(w, y);
        }
        var dW = new double[output * input];
        var dx = new double[rows * input];
        var dy = Matrix<double>.Dense(w, rows, output);
        Gemm.Multiply(dy.Transposed, Matrix<double>.Dense(x, rows, input), Matrix<double>.Dense(dW, output, input), false);
        Gemm.Multiply(dy, Matrix<double>.Dense(weights, output, input), Matrix<double>.Dense(dx, rows, input), false);
        AssertMatches("dW", F, weights, dW);
        AssertMatches("dx", F, x, dx);
    }

    [Fact]
    public void Clamp_backward_passes_the_gradient_inside_the_range_and_zero_outside()
    {
        var x = Random(20, 7, 3);
        for (int i = 0; i < x.Length; i++)
        {
            if (Math.Abs(Math.Abs(x[i]) - 5) < 0.05) x[i] *= 0.9;   // keep off the kinks at ±5
        }
        x[0] = 7.5;
        x[1] = -6.25;
        var w = Random(20, 8);
        var dx = new double[20];
        Ops.ClampBackward<double>(x, -5, 5, w, dx);
        Assert.Equal(0, dx[0]);
        Assert.Equal(0, dx[1]);
        AssertMatches("clamp", () => { var y = new double[20]; Kernels.Clamp<double>(x, -5, 5, y); return Dot(w, y); }, x, dx);
    }

    [Fact]
    public void Half_split_rope_backward_is_the_transposed_rotation()
    {
        const int d = 8, position = 5;
        var (cos, sin) = Ops.RopeTables<double>(position + 1, d, 10000);
        var c = cos.AsSpan(position * d / 2, d / 2).ToArray();
        var s = sin.AsSpan(position * d / 2, d / 2).ToArray();
        var x = Random(d, 9);
        var w = Random(d, 10);
        var dx = (double[])w.Clone();
        Ops.RopeBackward<double>(dx, c, s);
        AssertMatches("rope", () => { var y = (double[])x.Clone(); Kernels.Rope<double>(y, c, s); return Dot(w, y); }, x, dx);
    }

    [Fact]
    public void Relu_squared_backward_matches_finite_differences()
    {
        var u = Random(24, 11);
        for (int i = 0; i < u.Length; i++) u[i] += Math.Sign(u[i]) * 0.1;   // away from the kink at 0
        var w = Random(24, 12);
        var du = new double[24];
        Ops.ReluSquaredBackward<double>(u, w, du);
        AssertMatches("relu²", () => { var g = new double[24]; Kernels.ReluSquared<double>(u, g); return Dot(w, g); }, u, du);
    }

    [Fact]
    public void Softcap_backward_matches_finite_differences()
    {
        var x = Random(12, 13, 4);
        var w = Random(12, 14);
        var y = new double[12];
        Kernels.Softcap<double>(x, 3.0, y);
        var dx = new double[12];
        Ops.SoftcapBackward<double>(y, 3.0, w, dx);
        AssertMatches("softcap", () => { var o = new double[12]; Kernels.Softcap<double>(x, 3.0, o); return Dot(w, o); }, x, dx);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(15.0)]
    public void Logit_caps_clamp_at_50_and_softcap_with_their_slope(double softcap)
    {
        var z = Random(30, 15, 30);
        for (int i = 0; i < z.Length; i++)
        {
            if (Math.Abs(Math.Abs(z[i]) - 50) < 0.5) z[i] *= 0.9;
        }
        z[0] = 61;
        z[1] = -75;
        var w = Random(30, 16);
        var capped = (double[])z.Clone();
        var slope = new double[30];
        Ops.CapLogits<double>(capped, softcap, slope);
        Assert.Equal(0, slope[0]);
        Assert.Equal(0, slope[1]);
        Assert.All(capped, v => Assert.InRange(v, -50, 50));
        var dz = w.Zip(slope, (a, b) => a * b).ToArray();
        AssertMatches("caps", () => { var o = (double[])z.Clone(); Ops.CapLogits<double>(o, softcap, new double[30]); return Dot(w, o); }, z, dz);
    }

    [Fact]
    public void Softmax_backward_matches_finite_differences()
    {
        var s = Random(9, 17, 2);
        var w = Random(9, 18);
        var p = (double[])s.Clone();
        Kernels.Softmax<double>(p);
        var ds = new double[9];
        Ops.SoftmaxBackward<double>(p, w, ds);
        AssertMatches("softmax", () => { var o = (double[])s.Clone(); Kernels.Softmax<double>(o); return Dot(w, o); }, s, ds);
    }

    [Fact]
    public void Cross_entropy_backward_is_softmax_minus_one_hot()
    {
        var logits = Random(11, 19, 2);
        const int target = 3;
        var p = new double[11];
        double loss = Ops.CrossEntropy<double>(logits, target, p);
        double logSumExp = Math.Log(logits.Sum(Math.Exp));
        Assert.Equal(logSumExp - logits[target], loss, 12);
        var d = new double[11];
        Ops.CrossEntropyBackward<double>(p, target, 0.5, d);
        AssertMatches("cross-entropy", () => 0.5 * Ops.CrossEntropy<double>(logits, target, new double[11]), logits, d);
    }

    public static TheoryData<TaumodeKind, bool> LambdaCases() => new()
    {
        { TaumodeKind.Fixed, false }, { TaumodeKind.Fixed, true }, { TaumodeKind.Median, true }, { TaumodeKind.Mean, true }, { TaumodeKind.Percentile, false },
    };

    /// <summary>A random weighted graph's Laplacian (symmetric, rows sum to 0), sparse like a manifold's.</summary>
    public static Laplacian RandomGraphLaplacian(int dimension, ulong seed)
    {
        var rng = new Xoshiro256(seed);
        var rows = new List<long>(); var cols = new List<long>(); var vals = new List<double>();
        var degree = new double[dimension];
        for (int i = 0; i < dimension; i++)
            for (int j = i + 1; j < dimension; j++)
            {
                if (rng.NextDouble() > 0.4) continue;
                double weight = 0.2 + rng.NextDouble();
                rows.Add(i); cols.Add(j); vals.Add(-weight);
                rows.Add(j); cols.Add(i); vals.Add(-weight);
                degree[i] += weight;
                degree[j] += weight;
            }
        for (int i = 0; i < dimension; i++) { rows.Add(i); cols.Add(i); vals.Add(degree[i]); }
        return Laplacian.FromTriplets("random-graph", dimension, dimension, rows.ToArray(), cols.ToArray(), vals.ToArray(), TaumodeKind.Median);
    }

    [Theory]
    [MemberData(nameof(LambdaCases))]
    public void Lambda_backward_matches_finite_differences_with_tau_held(TaumodeKind mode, bool randomGraph)
    {
        const int d = 8;
        var laplacian = randomGraph ? RandomGraphLaplacian(d, 20) : Laplacian.Chain(d);
        var settings = new TaumodeSettings(mode, Tau: 0.7, Eps: 1e-6, Temperature: 1, Percentile: 0.75);
        var x = Random(d, 21);
        for (int i = 0; i < d; i++) x[i] += 0.3;   // positive order statistics, so that τ is not floored
        double tau = Taumode.FlooredTau<double>(x, settings);
        Assert.True(tau > settings.Eps, "τ should not sit on its floor in this check");
        Assert.Equal(TauLambda.Lambda<double>(x, laplacian, settings.Eps, tau), TauLambda.Lambda<double>(x, laplacian, settings, out _));
        var dx = new double[d];
        TauLambda.LambdaBackward<double>(x, laplacian, settings.Eps, tau, 1.3, dx);
        // τ is frozen at its value at x: exactly the fixed mode, and what training does for the data-dependent modes.
        AssertMatches($"λ ({mode})", () => 1.3 * TauLambda.Lambda<double>(x, laplacian, settings.Eps, tau), x, dx);
    }

    [Fact]
    public void Lambda_in_float_equals_the_engine_bit_for_bit_in_every_mode()
    {
        var laplacians = new[] { Laplacian.Chain(16), RandomGraphLaplacian(16, 30) };
        foreach (var laplacian in laplacians)
            foreach (var mode in Enum.GetValues<TaumodeKind>())
            {
                var settings = new TaumodeSettings(mode, 0.8, 1e-6, 1.0, 0.3);
                for (ulong seed = 0; seed < 20; seed++)
                {
                    var x = Random(16, seed + 100).Select(v => (float)v).ToArray();
                    float ours = (float)TauLambda.Lambda<float>(x, laplacian, settings, out _);
                    Assert.Equal(Taumode.Lambda(x, laplacian, settings), ours);
                }
            }
    }

    /// <summary>
    /// Two query heads sharing one kv head (GQA): the second head's backward adds into dk/dλk and dv. 40 positions span
    /// two of the causal product's 32-row blocks.
    /// </summary>
    [Fact]
    public void Tau_attention_backward_matches_finite_differences_for_a_kv_group()
    {
        const int n = 40, d = 4;
        var rng = new Xoshiro256(40);
        // x = [λq of head 1 | λq of head 2 | λk | v]
        var x = Enumerable.Range(0, 3 * n).Select(_ => rng.NextDouble()).Concat(Random(n * d, 41)).ToArray();
        var dy1 = Random(n * d, 42);
        var dy2 = Random(n * d, 43);
        double temperature = 0.3;
        ReadOnlySpan<double> Lq(int head) => x.AsSpan(head * n, n);
        ReadOnlySpan<double> Lk() => x.AsSpan(2 * n, n);
        Matrix<double> V() => Matrix<double>.Dense(x, n, d, 3 * n);
        double F()
        {
            double total = 0;
            foreach (var (head, dy) in new[] { (0, dy1), (1, dy2) })
            {
                var p = new double[n * n];
                var y = new double[n * d];
                Attention.TauForward<double>(Lq(head), Lk(), temperature, V(), Matrix<double>.Dense(p, n, n), Matrix<double>.Dense(y, n, d));
                total += Dot(dy, y);
            }
            return total;
        }
        var grad = new double[x.Length];
        var scratch = new double[Attention.ScratchLength(n, d)];
        foreach (var (head, dy) in new[] { (0, dy1), (1, dy2) })
        {
            var p = new double[n * n];
            var y = new double[n * d];
            Attention.TauForward<double>(Lq(head), Lk(), temperature, V(), Matrix<double>.Dense(p, n, n), Matrix<double>.Dense(y, n, d));
            for (int i = 0; i < n; i++) Assert.All(p.AsSpan(i * n + i + 1, n - i - 1).ToArray(), v => Assert.Equal(0, v));   // causal
            Attention.TauBackward<double>(Lq(head), Lk(), temperature, V(), Matrix<double>.Dense(p, n, n), Matrix<double>.Dense(dy, n, d),
                grad.AsSpan(head * n, n), grad.AsSpan(2 * n, n), Matrix<double>.Dense(grad, n, d, 3 * n), accumulateKv: head == 1, scratch);
        }
        AssertMatches("tau attention", F, x, grad);
    }

    [Fact]
    public void Dot_product_attention_backward_matches_finite_differences_for_a_kv_group()
    {
        const int n = 40, d = 4;
        // x = [q of head 1 | q of head 2 | k | v], each [n, d]
        var x = Random(4 * n * d, 50);
        var dy1 = Random(n * d, 51);
        var dy2 = Random(n * d, 52);
        Matrix<double> M(double[] a, int block) => Matrix<double>.Dense(a, n, d, block * n * d);
        var scratch = new double[Attention.ScratchLength(n, d)];
        double F()
        {
            double total = 0;
            foreach (var (head, dy) in new[] { (0, dy1), (1, dy2) })
            {
                var y = new double[n * d];
                Attention.DotProductForward(M(x, head), M(x, 2), M(x, 3), Matrix<double>.Dense(new double[n * n], n, n), Matrix<double>.Dense(y, n, d), scratch);
                total += Dot(dy, y);
            }
            return total;
        }
        var grad = new double[x.Length];
        foreach (var (head, dy) in new[] { (0, dy1), (1, dy2) })
        {
            var p = new double[n * n];
            Attention.DotProductForward(M(x, head), M(x, 2), M(x, 3), Matrix<double>.Dense(p, n, n), Matrix<double>.Dense(new double[n * d], n, d), scratch);
            Attention.DotProductBackward(M(x, head), M(x, 2), M(x, 3), Matrix<double>.Dense(p, n, n), Matrix<double>.Dense(dy, n, d),
                M(grad, head), M(grad, 2), M(grad, 3), accumulateKv: head == 1, scratch);
        }
        AssertMatches("dot-product attention", F, x, grad);
    }
}
