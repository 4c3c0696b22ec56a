using System.Numerics;
using System.Numerics.Tensors;

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
/// Products are dense n×n matrix products (the upper triangle costs, but the blocked kernels more than pay for it).
/// </summary>
public static class Attention
{
    /// <summary>Scratch the backward needs per call: a transposed [D, n] block and an [n, n] block.</summary>
    public static int ScratchLength(int n, int headDim) => n * headDim + n * n;

    public static void DotProductForward<T>(Matrix<T> q, Matrix<T> k, Matrix<T> v, Matrix<T> p, Matrix<T> y, T[] scratch)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = q.Rows;
        var keysT = Matrix<T>.Dense(scratch, k.Cols, n);
        Gemm.Transpose(k, keysT);
        Gemm.Multiply(q, keysT, p, accumulate: false);           // q·kᵀ
        T sqrtD = T.Sqrt(T.CreateTruncating(q.Cols));
        for (int i = 0; i < n; i++)
        {
            var row = Row(p, i);
            TensorPrimitives.Divide(row[..(i + 1)], sqrtD, row[..(i + 1)]);
            Ops.Softmax(row[..(i + 1)]);
            row[(i + 1)..].Clear();
        }
        Gemm.Multiply(p, v, y, accumulate: false);               // y = p·v
    }

    public static void TauForward<T>(ReadOnlySpan<T> lambdaQ, ReadOnlySpan<T> lambdaK, T temperature, Matrix<T> v, Matrix<T> p, Matrix<T> y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = v.Rows;
        for (int i = 0; i < n; i++)
        {
            var row = Row(p, i);
            var scores = row[..(i + 1)];
            TensorPrimitives.Subtract(lambdaK[..(i + 1)], lambdaQ[i], scores);   // −|λk − λq| / temperature, as the Engine's Kernels.TauScores
            TensorPrimitives.Abs<T>(scores, scores);
            TensorPrimitives.Divide(scores, -temperature, scores);
            Ops.Softmax(scores);
            row[(i + 1)..].Clear();
        }
        Gemm.Multiply(p, v, y, accumulate: false);
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
        Gemm.Multiply(ds, k, dq, accumulate: false);
        Gemm.Multiply(ds.Transposed, q, dk, accumulateKv);
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
        Gemm.Multiply(p.Transposed, dy, dv, accumulateKv);
        var valuesT = Matrix<T>.Dense(scratch, d, n);
        Gemm.Transpose(v, valuesT);
        var ds = Matrix<T>.Dense(scratch, n, n, n * d);
        Gemm.Multiply(dy, valuesT, ds, accumulate: false);       // dp = dy·vᵀ
        for (int i = 0; i < n; i++)
        {
            var row = Row(ds, i);
            Ops.SoftmaxBackward(Row(p, i)[..(i + 1)], row[..(i + 1)], row[..(i + 1)]);
            row[(i + 1)..].Clear();
        }
        return ds;
    }

    private static Span<T> Row<T>(Matrix<T> m, int i) => m.Data.AsSpan(m.Offset + i * m.RowStride, m.Cols);
}
