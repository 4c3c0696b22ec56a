using ILGPU;
using ILGPU.Runtime;

namespace TauCluster.Engine;

/// <summary>The sizes a pass's kernels need, passed by value.</summary>
internal struct PassShape
{
    public int Rows, Embd, HeadDim, Heads, KvHeads, Layer;
    /// <summary>Tokens per cache page, floats per page, and floats per cached key (1 for a λk, D for a key vector).</summary>
    public int PageTokens, PageFloats, KeyWidth;
    public int TauAttention;
    public float InverseSqrtHeadDim;
    /// <summary>Floats of one stream's part of a λ index page, and of the page.</summary>
    public int IndexStreamFloats, IndexPageFloats;
}

/// <summary>One row of a pass: its position in its session, where its lane's page ids begin, and its domain.</summary>
internal struct DeviceRow
{
    public int Position, PageTable, Domain;
    /// <summary>Where its lane's λ index page ids begin in the pass's segment table, and how many sealed segments it has.</summary>
    public int SegmentTable, Segments;
}

/// <summary>
/// A domain's Laplacian in the device's CSR arrays (its D + 1 row starts at <see cref="RowStarts"/>, which index the
/// shared column and value arrays) and its resolved taumode settings.
/// </summary>
internal struct DeviceDomain
{
    public int RowStarts, Mode;
    public double Tau, Eps, Percentile;
    public float Temperature;
}

/// <summary>The sizes of a product: Y [rows, out] = epilogue(X [rows, in] · Wᵀ), W [out, in] row-major.</summary>
internal struct ProductShape
{
    public int Rows, In, Out, Epilogue;
    public float Softcap;
}

/// <summary>
/// The forward pass's kernels for ILGPU, each named after its formula in DESIGN.md §1 and loaded once per accelerator.
/// Plain scalar code (no System.Numerics vectors, which ILGPU does not compile on .NET 8 and later); a group reduces in
/// shared memory by halves, so group sizes are powers of two. Every kernel walks its work items in grid strides, so a
/// launch takes as many groups as the device runs at once (<see cref="IlgpuDevice.Groups"/>), whatever the work.
/// Numbers follow the SIMD kernels' formulas (λ in double, everything else in float); sums run in another order, so
/// results agree to rounding, not bit for bit.
/// </summary>
internal sealed partial class DeviceKernels
{
    /// <summary>Largest group a kernel is launched with: shared arrays are sized for it.</summary>
    public const int MaxGroupSize = 1024;

    /// <summary>The largest tile of a product: a group of tile × tile threads computes as many outputs.</summary>
    public const int MaxTile = 16;

    /// <summary>Keys an attention group scores at once, their weights in shared memory.</summary>
    public const int KeyTile = 1024;

    /// <summary>The largest head dimension: a group keeps a head's output sums in shared memory.</summary>
    public const int MaxHeadDim = 1024;

    public DeviceKernels(Accelerator accelerator)
    {
        Embed = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int>(EmbedKernel);
        AddInPlace = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(AddKernel);
        RmsNormRows = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int>(RmsNormKernel);
        Product = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ProductShape>(ProductKernel);
        CacheKeys = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<DeviceRow>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<double>, ArrayView<DeviceDomain>, PassShape>(CacheKeysKernel);
        Attend = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<DeviceRow>, ArrayView<int>,
            ArrayView<float>, ArrayView<DeviceDomain>, ArrayView<float>, ArrayView<int>, PassShape>(AttendKernel);
    }

    /// <summary>Every kernel's entry method, in the order they are loaded (a check compiles each to PTX without a GPU).</summary>
    internal static IReadOnlyList<System.Reflection.MethodInfo> EntryPoints { get; } =
        new[] { nameof(EmbedKernel), nameof(AddKernel), nameof(RmsNormKernel), nameof(ProductKernel), nameof(CacheKeysKernel), nameof(AttendKernel) }
            .Select(name => typeof(DeviceKernels).GetMethod(name, System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!)
            .ToArray();

    public Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int> Embed { get; }
    public Action<KernelConfig, ArrayView<float>, ArrayView<float>, int> AddInPlace { get; }
    public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int> RmsNormRows { get; }
    public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ProductShape> Product { get; }
    public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<DeviceRow>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<double>, ArrayView<DeviceDomain>, PassShape> CacheKeys { get; }
    public Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<DeviceRow>, ArrayView<int>,
        ArrayView<float>, ArrayView<DeviceDomain>, ArrayView<float>, ArrayView<int>, PassShape> Attend { get; }

    /// <summary>This thread's first item, and the stride to its next, when every thread of the grid walks the items.</summary>
    private static int FirstItem => Grid.IdxX * Group.DimX + Group.IdxX;
    private static int ItemStride => Grid.DimX * Group.DimX;

    /// <summary>x[t, i] = wte[token[t], i].</summary>
    private static void EmbedKernel(ArrayView<float> table, ArrayView<int> tokens, ArrayView<float> x, int width, int count)
    {
        for (int index = FirstItem; index < count; index += ItemStride)
            x[index] = table[(long)tokens[index / width] * width + index % width];
    }

    /// <summary>x += y.</summary>
    private static void AddKernel(ArrayView<float> x, ArrayView<float> y, int count)
    {
        for (int index = FirstItem; index < count; index += ItemStride) x[index] += y[index];
    }

    /// <summary>y[r] = x[rowOf[r]] / sqrt(mean(x[rowOf[r]]²) + 1e-6), a group per output row.</summary>
    private static void RmsNormKernel(ArrayView<float> x, ArrayView<float> y, ArrayView<int> rowOf, int width, int rows)
    {
        var partial = SharedMemory.Allocate<float>(MaxGroupSize);
        int tid = Group.IdxX, size = Group.DimX;
        for (int r = Grid.IdxX; r < rows; r += Grid.DimX)
        {
            long source = (long)rowOf[r] * width, target = (long)r * width;
            float sumOfSquares = 0;
            for (int i = tid; i < width; i += size) sumOfSquares += x[source + i] * x[source + i];
            partial[tid] = sumOfSquares;
            float total = Sum(partial, tid, size);
            float scale = 1f / MathF.Sqrt(total / width + 1e-6f);
            for (int i = tid; i < width; i += size) y[target + i] = x[source + i] * scale;
        }
    }

    /// <summary>
    /// Y[t, o] = epilogue(Σₖ W[o, k] · X[t, k]): a group per tile × tile outputs (its width and height); W and X come
    /// in through shared memory a tile-wide slice of k at a time, each element read once per tile. The outputs' tiles
    /// go first, so the groups at work at once share their rows of X, and a decode step's few rows read W once.
    /// </summary>
    private static void ProductKernel(ArrayView<float> weights, ArrayView<float> input, ArrayView<float> output, ProductShape s)
    {
        const int Stride = MaxTile + 1;   // a padded row: the threads of a warp read different banks
        var w = SharedMemory.Allocate<float>(MaxTile * Stride);
        var x = SharedMemory.Allocate<float>(MaxTile * Stride);
        int tile = Group.DimX, tx = Group.IdxX, ty = Group.IdxY;
        int outputTiles = (s.Out + tile - 1) / tile, tiles = outputTiles * ((s.Rows + tile - 1) / tile);
        for (int index = Grid.IdxX; index < tiles; index += Grid.DimX)
        {
            int firstOutput = index % outputTiles * tile, firstRow = index / outputTiles * tile;
            float sum = 0;
            for (int k0 = 0; k0 < s.In; k0 += tile)
            {
                int k = k0 + tx, o = firstOutput + ty, t = firstRow + ty;
                w[ty * Stride + tx] = o < s.Out && k < s.In ? weights[(long)o * s.In + k] : 0f;
                x[ty * Stride + tx] = t < s.Rows && k < s.In ? input[(long)t * s.In + k] : 0f;
                Group.Barrier();
                for (int i = 0; i < tile; i++) sum += w[tx * Stride + i] * x[ty * Stride + i];
                Group.Barrier();
            }
            int output0 = firstOutput + tx, row = firstRow + ty;
            if (output0 < s.Out && row < s.Rows) output[(long)row * s.Out + output0] = Finish(sum, s.Epilogue, s.Softcap);
        }
    }

    private static float Finish(float v, int epilogue, float softcap)
    {
        if (epilogue == (int)Engine.Epilogue.ClampQkv) return Clamp(v, Engine.Kernels.QkvLimit);
        if (epilogue == (int)Engine.Epilogue.ReluSquared)
        {
            float r = MathF.Max(v, 0f);
            return r * r;
        }
        if (epilogue == (int)Engine.Epilogue.Logits)
        {
            v = Clamp(v, Engine.Kernels.LogitLimit);
            if (softcap > 0) v = Clamp(softcap * Tanh(v / softcap), Engine.Kernels.LogitLimit);
        }
        return v;
    }

    private static float Clamp(float v, float limit) => MathF.Max(MathF.Min(v, limit), -limit);

    /// <summary>tanh x = 1 − 2 / (e^{2x} + 1), exact at both ends (e^{2x} → ∞ gives 1, → 0 gives −1).</summary>
    private static float Tanh(float v) => 1f - 2f / (MathF.Exp(2f * v) + 1f);
}
