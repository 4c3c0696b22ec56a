using System.Numerics;
using System.Numerics.Tensors;
using TauCluster.Engine;

namespace TauCluster.Training;

/// <summary>
/// The backward passes of the Engine's <see cref="Kernels"/> (the forward runs those kernels themselves, so float
/// training reproduces inference), and the loss, each named after its formula and generic over the number type: float
/// for training, double for the gradient checks. A backward takes the upstream gradient dy = ∂loss/∂y and writes
/// dx = ∂loss/∂x.
/// </summary>
public static class Ops
{
    private static T Of<T>(double value) where T : IFloatingPointIeee754<T> => T.CreateTruncating(value);

    /// <summary>
    /// Backward of y = r·x with r = (mean(x²) + eps)^(−1/2): dx = r·(dy − y·(dy·y)/n).
    /// Writes dx, or adds it to dx when <paramref name="accumulate"/>; dx may be dy when not accumulating.
    /// </summary>
    public static void RmsNormBackward<T>(ReadOnlySpan<T> y, T r, ReadOnlySpan<T> dy, Span<T> dx, bool accumulate = false)
        where T : IFloatingPointIeee754<T>
    {
        T meanDot = TensorPrimitives.Dot(dy, y) / T.CreateTruncating(y.Length);
        if (accumulate)
        {
            TensorPrimitives.MultiplyAdd(dy, r, dx, dx);          // dx += r·dy
            TensorPrimitives.MultiplyAdd(y, -r * meanDot, dx, dx); // dx −= r·(dy·y)/n · y
        }
        else
        {
            TensorPrimitives.MultiplyAdd(y, -meanDot, dy, dx);
            TensorPrimitives.Multiply(dx, r, dx);
        }
    }

    /// <summary>Backward of clamp: dx = dy where min ≤ x ≤ max, else 0 (x is the clamp's input).</summary>
    public static void ClampBackward<T>(ReadOnlySpan<T> x, T min, T max, ReadOnlySpan<T> dy, Span<T> dx) where T : IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && Vector<T>.IsSupported)
        {
            Vector<T> lo = new(min), hi = new(max);
            for (; i <= x.Length - Vector<T>.Count; i += Vector<T>.Count)
            {
                var v = new Vector<T>(x[i..]);
                var inside = Vector.BitwiseAnd(Vector.GreaterThanOrEqual(v, lo), Vector.LessThanOrEqual(v, hi));
                Vector.ConditionalSelect(inside, new Vector<T>(dy[i..]), Vector<T>.Zero).CopyTo(dx[i..]);
            }
        }
        for (; i < x.Length; i++) dx[i] = x[i] >= min && x[i] <= max ? dy[i] : T.Zero;
    }

    /// <summary>Backward of RoPE in place: the transposed rotation, dx[i] = dy[i]cos − dy[i+D/2]sin, dx[i+D/2] = dy[i]sin + dy[i+D/2]cos.</summary>
    public static void RopeBackward<T>(Span<T> head, ReadOnlySpan<T> cos, ReadOnlySpan<T> sin) where T : IFloatingPointIeee754<T>
    {
        int half = head.Length / 2;
        for (int i = 0; i < half; i++)
        {
            T a = head[i], b = head[i + half];
            head[i] = a * cos[i] - b * sin[i];
            head[i + half] = a * sin[i] + b * cos[i];
        }
    }

    /// <summary>
    /// cos θ and sin θ for every position below <paramref name="positions"/>, [position, D/2] each, with
    /// θᵢ = pos / base^(2i/D) by the Engine's <see cref="Kernels.RopeAngles"/>.
    /// </summary>
    public static (T[] Cos, T[] Sin) RopeTables<T>(int positions, int headDim, double ropeBase) where T : IFloatingPointIeee754<T>
    {
        var divisors = Kernels.RopeDivisors(headDim, ropeBase);
        int half = headDim / 2;
        var cos = new T[positions * half];
        var sin = new T[positions * half];
        for (int pos = 0; pos < positions; pos++)
            Kernels.RopeAngles(pos, divisors, cos.AsSpan(pos * half, half), sin.AsSpan(pos * half, half));
        return (cos, sin);
    }

    /// <summary>Backward of relu²: du = dg · 2·relu(u). du may be dg.</summary>
    public static void ReluSquaredBackward<T>(ReadOnlySpan<T> u, ReadOnlySpan<T> dg, Span<T> du) where T : IFloatingPointIeee754<T>
    {
        T two = Of<T>(2);
        int i = 0;
        if (Vector.IsHardwareAccelerated && Vector<T>.IsSupported)
            for (; i <= u.Length - Vector<T>.Count; i += Vector<T>.Count)
                (new Vector<T>(dg[i..]) * two * Vector.Max(new Vector<T>(u[i..]), Vector<T>.Zero)).CopyTo(du[i..]);
        for (; i < u.Length; i++) du[i] = u[i] > T.Zero ? dg[i] * two * u[i] : T.Zero;
    }

    /// <summary>Backward of the softcap from its output: dx = dy·(1 − (y/s)²).</summary>
    public static void SoftcapBackward<T>(ReadOnlySpan<T> y, T cap, ReadOnlySpan<T> dy, Span<T> dx) where T : IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && Vector<T>.IsSupported)
            for (; i <= y.Length - Vector<T>.Count; i += Vector<T>.Count)
            {
                var t = new Vector<T>(y[i..]) / cap;
                (new Vector<T>(dy[i..]) * (Vector<T>.One - t * t)).CopyTo(dx[i..]);
            }
        for (; i < y.Length; i++)
        {
            T t = y[i] / cap;
            dx[i] = dy[i] * (T.One - t * t);
        }
    }

    /// <summary>
    /// The logits' caps in place: z = clamp(z, −50, 50), then with a softcap s &gt; 0, z = clamp(s·tanh(z / s), −50, 50).
    /// <paramref name="slope"/> gets ∂out/∂in of each logit for the backward (dz = dout ⊙ slope): 0 where a clamp holds
    /// the value, 1 − tanh² through the softcap.
    /// </summary>
    public static void CapLogits<T>(Span<T> z, double softcap, Span<T> slope) where T : IFloatingPointIeee754<T>
    {
        T limit = Of<T>(Kernels.LogitLimit);
        slope.Fill(T.One);
        ClampBackward<T>(z, -limit, limit, slope, slope);
        Kernels.Clamp<T>(z, -limit, limit, z);
        if (softcap <= 0) return;
        T cap = Of<T>(softcap);
        Kernels.Softcap<T>(z, cap, z);
        SoftcapBackward<T>(z, cap, slope, slope);
        ClampBackward<T>(z, -limit, limit, slope, slope);
        Kernels.Clamp<T>(z, -limit, limit, z);
    }

    /// <summary>Backward of p = softmax(s): ds = p ⊙ (dp − p·dp). ds may be dp.</summary>
    public static void SoftmaxBackward<T>(ReadOnlySpan<T> p, ReadOnlySpan<T> dp, Span<T> ds) where T : IFloatingPointIeee754<T>
    {
        T dot = TensorPrimitives.Dot(p, dp);
        TensorPrimitives.Subtract(dp, dot, ds);
        TensorPrimitives.Multiply(ds, p, ds);
    }

    /// <summary>
    /// Cross-entropy of one position: writes p = softmax(logits) and returns −log p[target] = logsumexp(logits) − logits[target]
    /// (in double, from the maximum-shifted sum).
    /// </summary>
    public static double CrossEntropy<T>(ReadOnlySpan<T> logits, int target, Span<T> probabilities) where T : IFloatingPointIeee754<T>
    {
        T max = TensorPrimitives.Max(logits);
        TensorPrimitives.Subtract(logits, max, probabilities);
        TensorPrimitives.Exp<T>(probabilities, probabilities);
        T sum = TensorPrimitives.Sum<T>(probabilities);
        TensorPrimitives.Divide(probabilities, sum, probabilities);
        return Math.Log(double.CreateTruncating(sum)) - double.CreateTruncating(logits[target] - max);
    }

    /// <summary>Backward of scale·(−log softmax(logits)[target]): dlogits = scale·(p − onehot(target)). dlogits may be p.</summary>
    public static void CrossEntropyBackward<T>(ReadOnlySpan<T> probabilities, int target, T scale, Span<T> dlogits) where T : IFloatingPointIeee754<T>
    {
        TensorPrimitives.Multiply(probabilities, scale, dlogits);
        dlogits[target] -= scale;
    }
}
