using System.Numerics.Tensors;

namespace TauCluster.Engine;

/// <summary>The small numeric kernels of the forward pass, each named after its formula in DESIGN.md §1.</summary>
public static class Kernels
{
    public const float RmsEps = 1e-6f;

    /// <summary>y = x / sqrt(mean(x²) + 1e-6); x and y may be the same span.</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, Span<float> y)
    {
        float meanSquare = TensorPrimitives.SumOfSquares(x) / x.Length;
        TensorPrimitives.Multiply(x, 1f / MathF.Sqrt(meanSquare + RmsEps), y);
    }

    public static void Clamp(Span<float> x, float min, float max)
    {
        TensorPrimitives.Min(x, max, x);
        TensorPrimitives.Max(x, min, x);
    }

    /// <summary>
    /// Half-split RoPE: θᵢ = pos / base^(2i/D); y[i] = x[i]cosθ + x[i+D/2]sinθ, y[i+D/2] = x[i+D/2]cosθ − x[i]sinθ.
    /// <paramref name="frequencyDivisors"/>[i] = base^(2i/D), precomputed per model.
    /// </summary>
    public static void Rope(Span<float> head, int position, ReadOnlySpan<double> frequencyDivisors)
    {
        int half = head.Length / 2;
        for (int i = 0; i < half; i++)
        {
            double theta = position / frequencyDivisors[i];
            float cos = (float)Math.Cos(theta), sin = (float)Math.Sin(theta);
            float a = head[i], b = head[i + half];
            head[i] = a * cos + b * sin;
            head[i + half] = b * cos - a * sin;
        }
    }

    public static double[] RopeDivisors(int headDim, double ropeBase)
    {
        var divisors = new double[headDim / 2];
        for (int i = 0; i < divisors.Length; i++) divisors[i] = Math.Pow(ropeBase, 2.0 * i / headDim);
        return divisors;
    }

    /// <summary>x = relu(x)².</summary>
    public static void ReluSquared(Span<float> x)
    {
        TensorPrimitives.Max(x, 0f, x);
        TensorPrimitives.Multiply(x, x, x);
    }

    /// <summary>In-place softmax that subtracts the row maximum first (TensorPrimitives.SoftMax does not).</summary>
    public static void Softmax(Span<float> scores)
    {
        float max = TensorPrimitives.Max(scores);
        TensorPrimitives.Subtract(scores, max, scores);
        TensorPrimitives.Exp(scores, scores);
        TensorPrimitives.Divide(scores, TensorPrimitives.Sum(scores), scores);
    }

    /// <summary>
    /// Causal softmax of an n×n score matrix, row by row over the keys j ≤ i; masked entries (j &gt; i) become exactly 0.
    /// The decode path never materialises this matrix; it is here for analysis and checks.
    /// </summary>
    public static void CausalSoftmax(Span<float> scores, int n)
    {
        for (int i = 0; i < n; i++)
        {
            var row = scores.Slice(i * n, n);
            Softmax(row[..(i + 1)]);
            row[(i + 1)..].Clear();
        }
    }

    /// <summary>logits = clamp(s·tanh(logits/s), −50, 50), applied after the first clamp when softcap s > 0.</summary>
    public static void Softcap(Span<float> logits, float cap)
    {
        TensorPrimitives.Divide(logits, cap, logits);
        TensorPrimitives.Tanh(logits, logits);
        TensorPrimitives.Multiply(logits, cap, logits);
    }

    /// <summary>scores[j] = −|λq − λk[j]| / temperature.</summary>
    public static void TauScores(float lambdaQuery, ReadOnlySpan<float> lambdaKeys, float temperature, Span<float> scores)
    {
        TensorPrimitives.Subtract(lambdaKeys, lambdaQuery, scores);
        TensorPrimitives.Abs(scores, scores);
        TensorPrimitives.Divide(scores, -temperature, scores);
    }
}
