using System.Numerics;
using System.Numerics.Tensors;
using TauCluster.Engine;

namespace TauCluster.Training;

/// <summary>
/// Attention of one head over one sequence of n positions, causal (row i sees the keys j ≤ i), and its backward.
/// The views: q, k, v and y are [n, D] (rows strided inside the batch's rows), p is the dense [n, n] matrix of attention
/// weights that the forward keeps for the backward (zero above the diagonal). The scores:
/// <list type="bullet">
/// <item>dot product: s_ij = q_i·k_j / √D</item>
/// <item>tau: s_ij = −|λq_i − λk_j| / temperature, where temperature is already max(temperature, eps)</item>
/// </list>
/// then p_i = softmax_j≤i(s_ij) and y_i = Σ_j p_ij v_j. Grouped-query attention runs this once per query head with its
/// kv head; the backward of the heads that share a kv head adds into the same dk, dv (the first one writes).
/// The products run on the blocked kernels, block row by block row, skipping the blocks above the diagonal.
/// </summary>
public static class Attention
{
    private const int Block = 32;
    /// <summary>Scratch the backward needs per call: a transposed [D, n] block and an [n, n] block.</summary>
    public static int ScratchLength(int n, int headDim) => n * headDim + n * n;

    public static void DotProductForward<T>(Matrix<T> q, Matrix<T> k, Matrix<T> v, Matrix<T> p, Matrix<T> y, T[] scratch)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = q.Rows;
        var keysT = Matrix<T>.Dense(scratch, k.Cols, n);
        Gemm.Transpose(k, keysT);
        CausalScores(q, keysT, p);                                // q·kᵀ
        T sqrtD = T.Sqrt(T.CreateTruncating(q.Cols));
        for (int i = 0; i < n; i++)
        {
            var row = Row(p, i);
            TensorPrimitives.Divide(row[..(i + 1)], sqrtD, row[..(i + 1)]);
            Kernels.Softmax(row[..(i + 1)]);
            row[(i + 1)..].Clear();
        }
        CausalRows(p, v, y, accumulate: false);                   // y = p·v
    }

    /// <summary>With a recency slope m, s_ij −= m·(i − j): a constant of λ, so the backward is the same.</summary>
    public static void TauForward<T>(ReadOnlySpan<T> lambdaQ, ReadOnlySpan<T> lambdaK, T temperature, Matrix<T> v, Matrix<T> p, Matrix<T> y,
        T recencySlope = default) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = v.Rows;
        for (int i = 0; i < n; i++)
        {
            var row = Row(p, i);
            var scores = row[..(i + 1)];
            Kernels.TauScores(lambdaQ[i], lambdaK[..(i + 1)], temperature, scores);
            if (recencySlope != T.Zero) Kernels.AddRecencyBias(scores, recencySlope);
            Kernels.Softmax(scores);
            row[(i + 1)..].Clear();
        }
        CausalRows(p, v, y, accumulate: false);
    }

    /// <summary>
    /// dv (+)= pᵀ·dy; dp = dy·vᵀ; ds = p ⊙ (dp − p·dp) per row; dq = ds·k/√D; dk (+)= dsᵀ·q/√D.
    /// dq is written; dk and dv are written, or added to when <paramref name="accumulateKv"/> (later heads of a group).
    /// </summary>
    public static void DotProductBackward<T>(Matrix<T> q, Matrix<T> k, Matrix<T> v, Matrix<T> p, Matrix<T> dy,
        Matrix<T> dq, Matrix<T> dk, Matrix<T> dv, bool accumulateKv, T[] scratch) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = q.Rows, d = q.Cols;
        var ds = ScoreGradients(v, p, dy, dv, accumulateKv, scratch);
        T sqrtD = T.Sqrt(T.CreateTruncating(d));
        for (int i = 0; i < n; i++) TensorPrimitives.Divide(Row(ds, i)[..(i + 1)], sqrtD, Row(ds, i)[..(i + 1)]);
        CausalRows(ds, k, dq, accumulate: false);
        CausalKeys(ds, q, dk, accumulateKv);
    }

    /// <summary>
    /// dv (+)= pᵀ·dy; ds as for the dot product; then through s_ij = −|λq_i − λk_j| / temperature:
    /// dλq_i = −Σ_j ds_ij·sign(λq_i − λk_j) / temperature and dλk_j (+)= Σ_i ds_ij·sign(λq_i − λk_j) / temperature
    /// (sign(0) = 0: the kink gets the zero subgradient). dλq is written; dλk and dv as dk and dv above.
    /// </summary>
    public static void TauBackward<T>(ReadOnlySpan<T> lambdaQ, ReadOnlySpan<T> lambdaK, T temperature, Matrix<T> v, Matrix<T> p, Matrix<T> dy,
        Span<T> dLambdaQ, Span<T> dLambdaK, Matrix<T> dv, bool accumulateKv, T[] scratch) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = v.Rows;
        var ds = ScoreGradients(v, p, dy, dv, accumulateKv, scratch);
        if (!accumulateKv) dLambdaK[..n].Clear();
        T inverseTemperature = T.One / temperature;
        for (int i = 0; i < n; i++)
        {
            // g_j = ds_ij · sign(λq_i − λk_j) / temperature; dλq_i = −Σ_j g_j; dλk_j += g_j
            var g = Row(ds, i)[..(i + 1)];
            T lq = lambdaQ[i];
            int j = 0;
            if (Vector.IsHardwareAccelerated && Vector<T>.IsSupported)
            {
                Vector<T> query = new(lq), scale = new(inverseTemperature);
                for (; j <= i + 1 - Vector<T>.Count; j += Vector<T>.Count)
                {
                    var keys = new Vector<T>(lambdaK[j..]);
                    var sign = Vector.ConditionalSelect(Vector.GreaterThan(query, keys), Vector<T>.One, Vector<T>.Zero)
                        - Vector.ConditionalSelect(Vector.LessThan(query, keys), Vector<T>.One, Vector<T>.Zero);
                    (new Vector<T>(g[j..]) * sign * scale).CopyTo(g[j..]);
                }
            }
            for (; j <= i; j++)
            {
                T sign = lq > lambdaK[j] ? T.One : lq < lambdaK[j] ? -T.One : T.Zero;
                g[j] = g[j] * sign * inverseTemperature;
            }
            dLambdaQ[i] = -TensorPrimitives.Sum<T>(g);
            TensorPrimitives.Add(dLambdaK[..(i + 1)], g, dLambdaK[..(i + 1)]);
        }
    }

    /// <summary>dv (+)= pᵀ·dy, then ds = ∂loss/∂scores (zero above the diagonal) in the scratch's [n, n] block.</summary>
    private static Matrix<T> ScoreGradients<T>(Matrix<T> v, Matrix<T> p, Matrix<T> dy, Matrix<T> dv, bool accumulateKv, T[] scratch)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = v.Rows, d = v.Cols;
        CausalKeys(p, dy, dv, accumulateKv);                       // dv (+)= pᵀ·dy
        var valuesT = Matrix<T>.Dense(scratch, d, n);
        Gemm.Transpose(v, valuesT);
        var ds = Matrix<T>.Dense(scratch, n, n, n * d);
        CausalScores(dy, valuesT, ds);                            // dp = dy·vᵀ
        for (int i = 0; i < n; i++)
        {
            var row = Row(ds, i);
            Ops.SoftmaxBackward(Row(p, i)[..(i + 1)], row[..(i + 1)], row[..(i + 1)]);
            row[(i + 1)..].Clear();
        }
        return ds;
    }

    /// <summary>s = a·b on and below the diagonal: block row [i0, i1) needs the columns j &lt; i1 only (the rest is left as it was).</summary>
    private static void CausalScores<T>(Matrix<T> a, Matrix<T> b, Matrix<T> s) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i0 = 0; i0 < s.Rows; i0 += Block)
        {
            int i1 = Math.Min(s.Rows, i0 + Block);
            Gemm.Multiply(a.Slice(i0, i1 - i0, 0, a.Cols), b.Slice(0, b.Rows, 0, i1), s.Slice(i0, i1 - i0, 0, i1), accumulate: false);
        }
    }

    /// <summary>c (+)= w·x for a lower-triangular w: block row [i0, i1) of c needs w's columns and x's rows j &lt; i1.</summary>
    private static void CausalRows<T>(Matrix<T> w, Matrix<T> x, Matrix<T> c, bool accumulate) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i0 = 0; i0 < c.Rows; i0 += Block)
        {
            int i1 = Math.Min(c.Rows, i0 + Block);
            Gemm.Multiply(w.Slice(i0, i1 - i0, 0, i1), x.Slice(0, i1, 0, x.Cols), c.Slice(i0, i1 - i0, 0, c.Cols), accumulate);
        }
    }

    /// <summary>c (+)= wᵀ·x for a lower-triangular w: block row [j0, j1) of c (keys) needs w's rows and x's rows i ≥ j0.</summary>
    private static void CausalKeys<T>(Matrix<T> w, Matrix<T> x, Matrix<T> c, bool accumulate) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = w.Rows;
        for (int j0 = 0; j0 < c.Rows; j0 += Block)
        {
            int j1 = Math.Min(c.Rows, j0 + Block);
            Gemm.Multiply(w.Slice(j0, n - j0, j0, j1 - j0).Transposed, x.Slice(j0, n - j0, 0, x.Cols), c.Slice(j0, j1 - j0, 0, c.Cols), accumulate);
        }
    }

    private static Span<T> Row<T>(Matrix<T> m, int i) => m.Data.AsSpan(m.Offset + i * m.RowStride, m.Cols);
}
