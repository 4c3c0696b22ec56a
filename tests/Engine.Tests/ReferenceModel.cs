namespace TauCluster.Engine.Tests;

/// <summary>
/// An independent, naive double-precision implementation of DESIGN.md §1, written from the formulas
/// without the engine's kernels: the yardstick for the engine's forward pass and λ.
/// </summary>
public sealed class ReferenceModel(ModelConfig c, ModelWeights w, double[,]? laplacian, TaumodeSettings settings)
{
    /// <summary>DESIGN.md §2's "chain": the path graph on D features, L[i][i] = degree, L[i][i±1] = −1, written out here.</summary>
    public static double[,] Chain(int dimension)
    {
        var dense = new double[dimension, dimension];
        for (int i = 0; i + 1 < dimension; i++)
        {
            dense[i, i + 1] = dense[i + 1, i] = -1;
            dense[i, i] += 1;
            dense[i + 1, i + 1] += 1;
        }
        return dense;
    }

    public static double[,] Dense(Laplacian l)
    {
        var dense = new double[l.Dimension, l.Dimension];
        for (int i = 0; i < l.Dimension; i++)
            for (int j = 0; j < l.Dimension; j++)
                dense[i, j] = l[i, j];
        return dense;
    }

    public static double Lambda(double[] x, double[,] L, TaumodeSettings s)
    {
        int n = x.Length;
        double xLx = 0, xx = 0;
        for (int i = 0; i < n; i++)
        {
            xx += x[i] * x[i];
            for (int j = 0; j < n; j++) xLx += x[i] * L[i, j] * x[j];
        }
        double energy = Math.Max(xLx, 0) / (xx + s.Eps);
        var finite = x.Where(double.IsFinite).OrderBy(v => v).ToArray();
        double tau = s.Mode switch
        {
            TaumodeKind.Fixed => s.Tau,
            _ when finite.Length == 0 => 1e-10,
            TaumodeKind.Mean => finite.Average(),
            TaumodeKind.Median => finite.Length % 2 == 1 ? finite[finite.Length / 2] : (finite[finite.Length / 2 - 1] + finite[finite.Length / 2]) / 2,
            _ => finite[(int)Math.Floor((finite.Length - 1) * s.Percentile + 0.5)],
        };
        tau = Math.Max(Math.Max(tau, 1e-10), s.Eps);
        return energy / (energy + tau);
    }

    private static double[] Rms(double[] x)
    {
        double ms = x.Sum(v => v * v) / x.Length;
        return x.Select(v => v / Math.Sqrt(ms + 1e-6)).ToArray();
    }

    private static double[] Linear(float[] W, int outDim, double[] x) =>
        Enumerable.Range(0, outDim).Select(o => Enumerable.Range(0, x.Length).Sum(i => (double)W[o * x.Length + i] * x[i])).ToArray();

    private double[] Rope(double[] x, int pos)
    {
        int d = x.Length, half = d / 2;
        var y = new double[d];
        for (int i = 0; i < half; i++)
        {
            double theta = pos / Math.Pow(c.RopeBase, 2.0 * i / d);
            y[i] = x[i] * Math.Cos(theta) + x[i + half] * Math.Sin(theta);
            y[i + half] = x[i + half] * Math.Cos(theta) - x[i] * Math.Sin(theta);
        }
        return y;
    }

    private static double[] Clamp(double[] x, double lo, double hi) => x.Select(v => Math.Clamp(v, lo, hi)).ToArray();

    private static double[] Head(double[] x, int h, int d) => x.Skip(h * d).Take(d).ToArray();

    /// <summary>Logits of every position, [T][V].</summary>
    public double[][] Forward(int[] tokens)
    {
        int T = tokens.Length, C = c.NEmbd, D = c.HeadDim, H = c.NHead, Hkv = c.NKvHead;
        var x = tokens.Select(t => Enumerable.Range(0, C).Select(i => (double)w.TokenEmbedding[t * C + i]).ToArray()).ToArray();
        foreach (var layer in w.Layers)
        {
            var q = new double[T][][]; var k = new double[T][][]; var v = new double[T][][];
            for (int t = 0; t < T; t++)
            {
                var h = Rms(x[t]);
                var qa = Clamp(Linear(layer.Query, H * D, h), -5, 5);
                var ka = Clamp(Linear(layer.Key, Hkv * D, h), -5, 5);
                var va = Clamp(Linear(layer.Value, Hkv * D, h), -5, 5);
                q[t] = Enumerable.Range(0, H).Select(i => Rms(Rope(Head(qa, i, D), t))).ToArray();
                k[t] = Enumerable.Range(0, Hkv).Select(i => Rms(Rope(Head(ka, i, D), t))).ToArray();
                v[t] = Enumerable.Range(0, Hkv).Select(i => Head(va, i, D)).ToArray();
            }
            var lk = c.Attention == AttentionKind.Tau ? k.Select(kt => kt.Select(kh => Lambda(kh, laplacian!, settings)).ToArray()).ToArray() : null;
            double temperature = Math.Max(settings.Temperature, settings.Eps);
            for (int t = 0; t < T; t++)
            {
                var y = new double[C];
                for (int h = 0; h < H; h++)
                {
                    int g = h / (H / Hkv);
                    double lq = c.Attention == AttentionKind.Tau ? Lambda(q[t][h], laplacian!, settings) : 0;
                    var scores = Enumerable.Range(0, t + 1).Select(j => c.Attention == AttentionKind.Tau
                        ? -Math.Abs(lq - lk![j][g]) / temperature
                        : q[t][h].Zip(k[j][g], (a, b) => a * b).Sum() / Math.Sqrt(D)).ToArray();
                    double max = scores.Max();
                    var e = scores.Select(s => Math.Exp(s - max)).ToArray();
                    double sum = e.Sum();
                    for (int j = 0; j <= t; j++)
                        for (int i = 0; i < D; i++) y[h * D + i] += e[j] / sum * v[j][g][i];
                }
                var proj = Linear(layer.AttentionProjection, C, y);
                for (int i = 0; i < C; i++) x[t][i] += proj[i];
            }
            for (int t = 0; t < T; t++)
            {
                var up = Linear(layer.MlpUp, c.MlpDim, Rms(x[t])).Select(a => Math.Max(a, 0) * Math.Max(a, 0)).ToArray();
                var down = Linear(layer.MlpDown, C, up);
                for (int i = 0; i < C; i++) x[t][i] += down[i];
            }
        }
        return x.Select(xt =>
        {
            var logits = Clamp(Linear(w.LmHead, c.VocabSize, Rms(xt)), -50, 50);
            return c.Softcap > 0 ? Clamp(logits.Select(l => c.Softcap * Math.Tanh(l / c.Softcap)).ToArray(), -50, 50) : logits;
        }).ToArray();
    }
}
