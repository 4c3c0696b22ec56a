using System.Numerics;
using System.Numerics.Tensors;

namespace TauCluster.Engine;

/// <summary>
/// The small numeric kernels of the forward pass, each named after its formula in DESIGN.md §1. Generic over the
/// number type so that the Trainer's forward runs these same kernels (float for training, double for its gradient
/// checks) and training reproduces inference; a float span takes the same path, bit for bit, as a float-only kernel.
/// </summary>
public static class Kernels
{
    private const double RmsEps = 1e-6;

    /// <summary>The bound of q, k and v after their projections: clamp(·, −5, 5).</summary>
    public const float QkvLimit = 5f;

    /// <summary>The bound of the logits, before and after the softcap: clamp(·, −50, 50).</summary>
    public const float LogitLimit = 50f;

    /// <summary>
    /// y = x / sqrt(mean(x²) + 1e-6); x and y may be the same span. Returns r = 1 / sqrt(mean(x²) + 1e-6), which the
    /// Trainer's backward needs.
    /// </summary>
    public static T RmsNorm<T>(ReadOnlySpan<T> x, Span<T> y) where T : IFloatingPointIeee754<T>
    {
        T meanSquare = TensorPrimitives.SumOfSquares(x) / T.CreateTruncating(x.Length);
        T r = T.One / T.Sqrt(meanSquare + T.CreateTruncating(RmsEps));
        TensorPrimitives.Multiply(x, r, y);
        return r;
    }

    /// <summary>y = clamp(x, min, max); x and y may be the same span.</summary>
    public static void Clamp<T>(ReadOnlySpan<T> x, T min, T max, Span<T> y) where T : IFloatingPointIeee754<T>
    {
        TensorPrimitives.Min(x, max, y);
        TensorPrimitives.Max(y, min, y);
    }

    /// <inheritdoc cref="Clamp{T}(ReadOnlySpan{T}, T, T, Span{T})"/>
    public static void Clamp<T>(Span<T> x, T min, T max) where T : IFloatingPointIeee754<T> => Clamp(x, min, max, x);

    /// <summary>
    /// Half-split RoPE in place: y[i] = x[i]·cos θᵢ + x[i+D/2]·sin θᵢ, y[i+D/2] = x[i+D/2]·cos θᵢ − x[i]·sin θᵢ, with the
    /// position's cos θᵢ and sin θᵢ (i &lt; D/2) from <see cref="RopeAngles"/>.
    /// </summary>
    public static void Rope<T>(Span<T> head, ReadOnlySpan<T> cos, ReadOnlySpan<T> sin) where T : IFloatingPointIeee754<T>
    {
        int half = head.Length / 2;
        for (int i = 0; i < half; i++)
        {
            T a = head[i], b = head[i + half];
            head[i] = a * cos[i] + b * sin[i];
            head[i + half] = b * cos[i] - a * sin[i];
        }
    }

    /// <summary>
    /// cos θᵢ and sin θᵢ of one position, θᵢ = pos / base^(2i/D), computed in double and rounded once;
    /// <paramref name="frequencyDivisors"/>[i] = base^(2i/D) (<see cref="RopeDivisors"/>).
    /// </summary>
    public static void RopeAngles<T>(int position, ReadOnlySpan<double> frequencyDivisors, Span<T> cos, Span<T> sin) where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < frequencyDivisors.Length; i++)
        {
            double theta = position / frequencyDivisors[i];
            cos[i] = T.CreateTruncating(Math.Cos(theta));
            sin[i] = T.CreateTruncating(Math.Sin(theta));
        }
    }

    public static double[] RopeDivisors(int headDim, double ropeBase)
    {
        var divisors = new double[headDim / 2];
        for (int i = 0; i < divisors.Length; i++) divisors[i] = Math.Pow(ropeBase, 2.0 * i / headDim);
        return divisors;
    }

    /// <summary>y = relu(x)²; x and y may be the same span.</summary>
    public static void ReluSquared<T>(ReadOnlySpan<T> x, Span<T> y) where T : IFloatingPointIeee754<T>
    {
        TensorPrimitives.Max(x, T.Zero, y);
        TensorPrimitives.Multiply(y, y, y);
    }

    /// <summary>In-place softmax that subtracts the row maximum first (TensorPrimitives.SoftMax does not).</summary>
    public static void Softmax<T>(Span<T> scores) where T : IFloatingPointIeee754<T>
    {
        T max = TensorPrimitives.Max<T>(scores);
        TensorPrimitives.Subtract(scores, max, scores);
        TensorPrimitives.Exp<T>(scores, scores);
        TensorPrimitives.Divide(scores, TensorPrimitives.Sum<T>(scores), scores);
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

    /// <summary>y = s·tanh(x / s), applied to the logits after the first clamp when softcap s > 0; x and y may be the same span.</summary>
    public static void Softcap<T>(ReadOnlySpan<T> x, T cap, Span<T> y) where T : IFloatingPointIeee754<T>
    {
        TensorPrimitives.Divide(x, cap, y);
        TensorPrimitives.Tanh<T>(y, y);
        TensorPrimitives.Multiply(y, cap, y);
    }

    /// <summary>scores[j] = −|λq − λk[j]| / temperature.</summary>
    public static void TauScores<T>(T lambdaQuery, ReadOnlySpan<T> lambdaKeys, T temperature, Span<T> scores) where T : IFloatingPointIeee754<T>
    {
        TensorPrimitives.Subtract(lambdaKeys, lambdaQuery, scores);
        TensorPrimitives.Abs<T>(scores, scores);
        TensorPrimitives.Divide(scores, -temperature, scores);
    }

    /// <summary>scores_j −= m·(i − j) for the query at i = scores.Length − 1: the recency bias of the keys it sees.</summary>
    public static void AddRecencyBias<T>(Span<T> scores, T slope) where T : IFloatingPointIeee754<T>
    {
        int last = scores.Length - 1;
        for (int j = 0; j <= last; j++) scores[j] -= slope * T.CreateTruncating(last - j);
    }
}
