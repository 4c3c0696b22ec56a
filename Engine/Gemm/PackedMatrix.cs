namespace TauCluster.Engine;

/// <summary>
/// A weight W [out, in] repacked once, at load, for <see cref="GemmKernels"/>: panels of 16 outputs, k-major within a
/// panel (element (o, k) at [(o / 16)·16·in + k·16 + o % 16]), the last panel padded with zeros. A product then reads the
/// weights front to back, and a vector of 16 outputs is one load.
/// </summary>
public sealed class PackedMatrix
{
    private readonly float[] panels;

    public PackedMatrix(ReadOnlySpan<float> weights, int outDim, int inDim)
    {
        if (weights.Length != (long)outDim * inDim) throw new ArgumentException($"a [{outDim}×{inDim}] weight needs {(long)outDim * inDim} values, not {weights.Length}");
        (Out, In) = (outDim, inDim);
        int panelCount = (outDim + GemmKernels.PanelWidth - 1) / GemmKernels.PanelWidth;
        panels = new float[checked(panelCount * GemmKernels.PanelWidth * inDim)];
        for (int o = 0; o < outDim; o++)
        {
            var row = weights.Slice(o * inDim, inDim);
            long panel = (long)(o / GemmKernels.PanelWidth) * GemmKernels.PanelWidth * inDim;
            for (int k = 0; k < inDim; k++) panels[panel + k * GemmKernels.PanelWidth + o % GemmKernels.PanelWidth] = row[k];
        }
    }

    public int Out { get; }
    public int In { get; }

    /// <summary>Bytes of the weight itself, without the padding: what one product must read.</summary>
    public long Bytes => (long)Out * In * sizeof(float);

    /// <summary>The packed values, for a plain read of the same bytes (the bandwidth reference).</summary>
    internal ReadOnlySpan<float> Panels => panels;

    /// <summary>
    /// Y[t, o] = W[o, :] · X[t, :] for the outputs [first, first + count) of T input rows; <paramref name="first"/> is a
    /// multiple of 16. Each element is the same chain however the outputs and rows are split.
    /// </summary>
    public void Multiply(ReadOnlySpan<float> x, Span<float> y, int rows, int first, int count) => Multiply(x, y, rows, first, count, GemmKernels.Best);

    internal unsafe void Multiply(ReadOnlySpan<float> x, Span<float> y, int rows, int first, int count, GemmPath path)
    {
        if (first % GemmKernels.PanelWidth != 0 || first < 0 || count < 0 || first + count > Out) throw new ArgumentOutOfRangeException(nameof(first));
        if (x.Length < (long)rows * In || y.Length < (long)rows * Out) throw new ArgumentException("input or output too short for the rows");
        fixed (float* w = panels, px = x, py = y)
            GemmKernels.Multiply(px, In, 1, w + (long)first * In, GemmKernels.PanelWidth * In, GemmKernels.PanelWidth, py + first, Out, rows, count, In, load: false, path);
    }
}

/// <summary>One layer's weights, packed.</summary>
internal sealed record PackedLayer(PackedMatrix Query, PackedMatrix Key, PackedMatrix Value, PackedMatrix AttentionProjection, PackedMatrix MlpUp, PackedMatrix MlpDown);

/// <summary>A model's products' weights, packed once and shared by every model variant built on the same <see cref="ModelWeights"/>.</summary>
internal sealed record PackedWeights(PackedLayer[] Layers, PackedMatrix LmHead)
{
    public static PackedWeights Of(ModelWeights w, ModelConfig c) => new(
        w.Layers.Select(l => new PackedLayer(
            new PackedMatrix(l.Query, c.NHead * c.HeadDim, c.NEmbd), new PackedMatrix(l.Key, c.KvDim, c.NEmbd), new PackedMatrix(l.Value, c.KvDim, c.NEmbd),
            new PackedMatrix(l.AttentionProjection, c.NEmbd, c.NEmbd), new PackedMatrix(l.MlpUp, c.MlpDim, c.NEmbd), new PackedMatrix(l.MlpDown, c.NEmbd, c.MlpDim))).ToArray(),
        new PackedMatrix(w.LmHead, c.VocabSize, c.NEmbd));

    public IEnumerable<PackedMatrix> All => Layers.SelectMany(l => new[] { l.Query, l.Key, l.Value, l.AttentionProjection, l.MlpUp, l.MlpDown }).Append(LmHead);
}
