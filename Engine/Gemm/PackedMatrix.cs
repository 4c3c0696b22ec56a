using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace TauCluster.Engine;

/// <summary>
/// A weight W [out, in] repacked once, at load, for <see cref="GemmKernels"/>: panels of 16 outputs, k-major within a
/// panel (element (o, k) at [(o / 16)·16·in + k·16 + o % 16]), the last panel padded with zeros. A product then reads the
/// weights front to back, and a vector of 16 outputs is one load.
/// </summary>
public sealed class PackedMatrix
{
    // F32 panels as float[]; F16 and BF16 as their stored bits, widened in the kernels.
    private readonly Array panels;

    public PackedMatrix(ReadOnlySpan<float> weights, int outDim, int inDim, TensorDType type = TensorDType.F32)
    {
        if (weights.Length != (long)outDim * inDim) throw new ArgumentException($"a [{outDim}×{inDim}] weight needs {(long)outDim * inDim} values, not {weights.Length}");
        if (type == TensorDType.F16 && !TensorPrimitives.IsFiniteAll(weights)) throw new ArgumentException("F16 panels hold finite values only");
        (Out, In, Type) = (outDim, inDim, type);
        int panelCount = (outDim + GemmKernels.PanelWidth - 1) / GemmKernels.PanelWidth;
        int length = checked(panelCount * GemmKernels.PanelWidth * inDim);
        panels = type == TensorDType.F32 ? Pack(weights, new float[length], v => v) : Pack(weights, new ushort[length], v => type.Narrow(v, exact: true));
    }

    private T[] Pack<T>(ReadOnlySpan<float> weights, T[] packed, Func<float, T> store)
    {
        for (int o = 0; o < Out; o++)
        {
            var row = weights.Slice(o * In, In);
            long panel = (long)(o / GemmKernels.PanelWidth) * GemmKernels.PanelWidth * In;
            for (int k = 0; k < In; k++) packed[panel + k * GemmKernels.PanelWidth + o % GemmKernels.PanelWidth] = store(row[k]);
        }
        return packed;
    }

    public int Out { get; }
    public int In { get; }

    /// <summary>The element type the panels hold and the kernels widen.</summary>
    public TensorDType Type { get; }

    /// <summary>Bytes of the weight itself, without the padding: what one product must read.</summary>
    public long Bytes => (long)Out * In * Type.ElementSize();

    /// <summary>The packed bytes, for a plain read of the same bytes (the bandwidth reference).</summary>
    internal ReadOnlySpan<byte> PanelBytes => panels is float[] f ? MemoryMarshal.AsBytes(f.AsSpan()) : MemoryMarshal.AsBytes(((ushort[])panels).AsSpan());

    /// <summary>
    /// Y[t, o] = W[o, :] · X[t, :] for the outputs [first, first + count) of T input rows; <paramref name="first"/> is a
    /// multiple of 16. Each element is the same chain however the outputs and rows are split.
    /// </summary>
    public void Multiply(ReadOnlySpan<float> x, Span<float> y, int rows, int first, int count) => Multiply(x, y, rows, first, count, GemmKernels.Best);

    internal unsafe void Multiply(ReadOnlySpan<float> x, Span<float> y, int rows, int first, int count, GemmPath path)
    {
        if (first % GemmKernels.PanelWidth != 0 || first < 0 || count < 0 || first + count > Out) throw new ArgumentOutOfRangeException(nameof(first));
        if (x.Length < (long)rows * In || y.Length < (long)rows * Out) throw new ArgumentException("input or output too short for the rows");
        fixed (float* px = x, py = y)
        {
            if (panels is float[] f)
                fixed (float* w = f) Multiply((F32Element*)w, px, py, rows, first, count, path);
            else
                fixed (ushort* w = (ushort[])panels)
                {
                    if (Type == TensorDType.BF16) Multiply((BF16Element*)w, px, py, rows, first, count, path);
                    else Multiply((F16Element*)w, px, py, rows, first, count, path);
                }
        }
    }

    /// <summary>
    /// Passes over k of <see cref="DepthBlock"/> at a time, so that the four panels a block of rows multiplies by (for F32,
    /// 4 · 16 · 128 · 4 bytes = 32 KB) stay in L1 for every block of rows, instead of streaming again from L2 for each.
    /// A pass stores C and the next loads it back, which is exact: each element is still one chain over k in order.
    /// </summary>
    private unsafe void Multiply<T>(T* w, float* x, float* y, int rows, int first, int count, GemmPath path) where T : unmanaged, IPanelElement<T>
    {
        for (int k0 = 0; k0 == 0 || k0 < In; k0 += DepthBlock)
            GemmKernels.Multiply(x + k0, In, 1, w + (long)first * In + (long)k0 * GemmKernels.PanelWidth, GemmKernels.PanelWidth * In, GemmKernels.PanelWidth,
                y + first, Out, rows, count, Math.Min(DepthBlock, In - k0), load: k0 > 0, path);
    }

    private const int DepthBlock = 128;
}

/// <summary>A model's products' weights, packed once and shared by every model variant built on the same <see cref="ModelWeights"/>.</summary>
internal static class PackedWeights
{
    public static ModelMatrices<PackedMatrix> Of(ModelWeights w, ModelConfig c)
    {
        PackedMatrix Pack(float[] weights, int outDim, int inDim) => new(weights, outDim, inDim, w.WeightType);
        return new(
            w.Layers.Select(l => new LayerMatrices<PackedMatrix>(
                Pack(l.Query, c.NHead * c.HeadDim, c.NEmbd), Pack(l.Key, c.KvDim, c.NEmbd), Pack(l.Value, c.KvDim, c.NEmbd),
                Pack(l.AttentionProjection, c.NEmbd, c.NEmbd), Pack(l.MlpUp, c.MlpDim, c.NEmbd), Pack(l.MlpDown, c.NEmbd, c.MlpDim))).ToArray(),
            Pack(w.LmHead, c.VocabSize, c.NEmbd));
    }
}
