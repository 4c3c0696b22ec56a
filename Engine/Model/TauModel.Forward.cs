namespace TauCluster.Engine;

/// <summary>
/// Consecutive rows of a forward pass that belong to one session: its cache, and how many of its new tokens are in
/// the pass. A prefill is one lane of many rows; a batched decode step is many lanes of one row each.
/// </summary>
internal readonly record struct Lane(AttentionCache Cache, int Rows);

public sealed partial class TauModel
{
    /// <summary>
    /// The whole forward pass of DESIGN.md §1 over a block of rows, on whichever device <paramref name="k"/> runs. Each
    /// lane's rows are its next tokens, at positions cache.Length, cache.Length+1, …; each layer caches the lanes' keys
    /// and values before attending, and a row attends causally to the keys of its own session at positions ≤ its own.
    /// Every row's numbers are computed the same way whatever else is in the block, so a session's tokens do not depend
    /// on what it is batched with. Writes the logits of each lane's last row, or of every row when asked.
    /// </summary>
    internal void Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<Lane> lanes, IForwardKernels k, bool everyRow)
    {
        // x = wte[token]
        k.Begin(tokens, lanes);

        for (int layer = 0; layer < Config.NLayer; layer++)
        {
            // attention: h = rms(x); q, k, v = clamp(W h, −5, 5)
            k.RmsNorm(Activation.X, Activation.H);
            k.Project(Projection.Query, layer, Activation.H, Activation.Q, Epilogue.ClampQkv);
            k.Project(Projection.Key, layer, Activation.H, Activation.K, Epilogue.ClampQkv);
            k.Project(Projection.Value, layer, Activation.H, Activation.V, Epilogue.ClampQkv);

            // q, k = rms(rope(·, pos)) per head vector, v gets neither; then cache the keys (λk for tau) and values
            k.CacheKeys(layer);

            // y_h = Σⱼ softmax(score)ⱼ vⱼ over the row's own session
            k.Attend(layer);

            // x = x + Wproj · concat(y₀ … y_{H−1})
            k.Project(Projection.AttentionProjection, layer, Activation.Y, Activation.Out, Epilogue.None);
            k.AddToResidual(Activation.Out);

            // MLP: x = x + Wfc2 · relu(Wfc1 · rms(x))²
            k.RmsNorm(Activation.X, Activation.H);
            k.Project(Projection.MlpUp, layer, Activation.H, Activation.Up, Epilogue.ReluSquared);
            k.Project(Projection.MlpDown, layer, Activation.Up, Activation.Out, Epilogue.None);
            k.AddToResidual(Activation.Out);
        }

        // logits = clamp(Wlm · rms(x), −50, 50), then the optional softcap
        k.FinishLogits(everyRow);
        foreach (var lane in lanes) lane.Cache.Commit(lane.Rows);
    }
}
