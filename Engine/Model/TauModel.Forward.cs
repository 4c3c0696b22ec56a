using System.Numerics.Tensors;

namespace TauCluster.Engine;

/// <summary>
/// Consecutive rows of a forward pass that belong to one session: its cache, and how many of its new tokens are in
/// the pass. A prefill is one lane of many rows; a batched decode step is many lanes of one row each.
/// </summary>
internal readonly record struct Lane(AttentionCache Cache, int Rows);

public sealed partial class TauModel
{
    /// <summary>
    /// The whole forward pass of DESIGN.md §1 over a block of rows. Each lane's rows are its next tokens, at positions
    /// cache.Length, cache.Length+1, …; each layer caches the lanes' keys and values before attending, and a row
    /// attends causally to the keys of its own session at positions ≤ its own. Every row's numbers are computed the
    /// same way whatever else is in the block, so a session's tokens do not depend on what it is batched with.
    /// Writes the logits of each lane's last row, or of every row when asked.
    /// </summary>
    internal void Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<Lane> lanes, ForwardBuffers b, bool everyRow)
    {
        var c = Config;
        int T = tokens.Length, C = c.NEmbd, D = c.HeadDim, H = c.NHead, Hkv = c.NKvHead;
        b.EnsureCapacity(T);
        b.Lanes.Set(lanes);

        // x = wte[token], no norm after the embedding
        for (int t = 0; t < T; t++)
            Weights.TokenEmbedding.AsSpan(tokens[t] * C, C).CopyTo(b.X.AsSpan(t * C, C));

        for (int layer = 0; layer < c.NLayer; layer++)
        {
            var w = Packed.Layers[layer];

            // attention: h = rms(x); q, k, v = clamp(W h, −5, 5)
            RmsRows(b.X, b.H, T, C);
            b.MatMul.Run(w.Query, b.H, b.Q, T, ClampQkv);
            b.MatMul.Run(w.Key, b.H, b.K, T, ClampQkv);
            b.MatMul.Run(w.Value, b.H, b.V, T, ClampQkv);

            // q, k = rms(rope(·, pos)) per head vector, v gets neither; then cache the keys (λk for tau) and values
            b.Keys.Run(layer, b.Q, b.K, b.V, RopeDivisors);

            // y_h = Σⱼ softmax(score)ⱼ vⱼ over the row's own session (a session with context shards asks them first)
            for (int l = 0, t = 0; l < lanes.Length; t += lanes[l].Rows, l++)
                lanes[l].Cache.PrepareLayer(layer, b.Q.AsSpan(t * H * D, lanes[l].Rows * H * D), lanes[l].Rows);
            b.Attention.Run(layer, b.Q, b.Y);

            // x = x + Wproj · concat(y₀ … y_{H−1})
            b.MatMul.Run(w.AttentionProjection, b.Y, b.Out, T);
            TensorPrimitives.Add(b.X.AsSpan(0, T * C), b.Out.AsSpan(0, T * C), b.X.AsSpan(0, T * C));

            // MLP: x = x + Wfc2 · relu(Wfc1 · rms(x))²
            RmsRows(b.X, b.H, T, C);
            b.MatMul.Run(w.MlpUp, b.H, b.Up, T, ReluSquared);
            b.MatMul.Run(w.MlpDown, b.Up, b.Out, T);
            TensorPrimitives.Add(b.X.AsSpan(0, T * C), b.Out.AsSpan(0, T * C), b.X.AsSpan(0, T * C));
        }

        // logits = clamp(Wlm · rms(x), −50, 50), then the optional softcap
        int rows = 0;
        for (int l = 0, t = 0; l < lanes.Length; t += lanes[l].Rows, l++)
            for (int i = everyRow ? 0 : lanes[l].Rows - 1; i < lanes[l].Rows; i++, rows++)
                Kernels.RmsNorm(b.X.AsSpan((t + i) * C, C), b.H.AsSpan(rows * C, C));
        b.MatMul.Run(Packed.LmHead, b.H, b.Logits, rows, finishLogits);
        foreach (var lane in lanes) lane.Cache.Commit(lane.Rows);
        b.Lanes.Clear();
    }

    private static readonly OutputEpilogue ClampQkv = v => Kernels.Clamp(v, -Kernels.QkvLimit, Kernels.QkvLimit);
    private static readonly OutputEpilogue ReluSquared = v => Kernels.ReluSquared(v, v);

    /// <summary>clamp(·, −50, 50), then the optional softcap and the clamp again: the logits' epilogue.</summary>
    private void FinishLogits(Span<float> logits)
    {
        Kernels.Clamp(logits, -Kernels.LogitLimit, Kernels.LogitLimit);
        if (Config.Softcap <= 0) return;
        Kernels.Softcap(logits, (float)Config.Softcap, logits);
        Kernels.Clamp(logits, -Kernels.LogitLimit, Kernels.LogitLimit);
    }

    private static void RmsRows(ReadOnlySpan<float> x, Span<float> y, int rows, int width)
    {
        for (int t = 0; t < rows; t++) Kernels.RmsNorm(x.Slice(t * width, width), y.Slice(t * width, width));
    }
}
