using ILGPU;
using ILGPU.Runtime;

namespace TauCluster.Engine;

/// <summary>
/// The forward pass on a device (<see cref="IForwardKernels"/> over ILGPU kernels): the activations live on the device
/// for the whole pass; what comes in is the rows' tokens, positions, page tables and RoPE angles, and what goes out is
/// the logits, for sampling on the host. Runs under the device's gate (its caller takes it).
/// </summary>
internal sealed class DevicePass : IForwardKernels, IDisposable
{
    private readonly DeviceModel model;
    private readonly IlgpuDevice device;
    private readonly ModelConfig config;
    private readonly List<MemoryBuffer> buffers = [];
    private readonly List<Lane> lanes = [];
    private ArrayView<float> x, h, q, k, v, y, output, up, logits, angles, lambdaQueries;
    private ArrayView<int> tokenIds, identityRows, selectedRows;
    private ArrayView<DeviceRow> rowInfo;
    /// <summary>The lanes' cache page ids and λ index page ids, one lane after another.</summary>
    private readonly PassTable pageTable, segmentTable;
    private int capacity, rows;
    private int[] hostTokens = [], hostSelected = [];
    private DeviceRow[] hostRows = [];
    private float[] hostAngles = [];

    public DevicePass(DeviceModel model, int rows)
    {
        this.model = model;
        device = model.Device;
        config = model.Model.Config;
        EnsureCapacity(rows);
        pageTable = new PassTable(device.Accelerator);
        segmentTable = new PassTable(device.Accelerator);
    }

    public float[] Logits { get; private set; } = [];

    private void EnsureCapacity(int rowCount)
    {
        if (rowCount <= capacity) return;
        foreach (var b in buffers) b.Dispose();
        buffers.Clear();
        var c = config;
        int n = rowCount;
        x = Allocate<float>((long)n * c.NEmbd);
        h = Allocate<float>((long)n * c.NEmbd);
        q = Allocate<float>((long)n * c.NHead * c.HeadDim);
        k = Allocate<float>((long)n * c.KvDim);
        v = Allocate<float>((long)n * c.KvDim);
        y = Allocate<float>((long)n * c.NEmbd);
        output = Allocate<float>((long)n * c.NEmbd);
        up = Allocate<float>((long)n * c.MlpDim);
        logits = Allocate<float>((long)n * c.VocabSize);
        angles = Allocate<float>((long)n * c.HeadDim);
        lambdaQueries = Allocate<float>((long)n * c.NHead);
        tokenIds = Allocate<int>(n);
        identityRows = Allocate<int>(n);
        selectedRows = Allocate<int>(n);
        rowInfo = Allocate<DeviceRow>(n);
        identityRows.CopyFromCPU(Enumerable.Range(0, n).ToArray());
        Logits = new float[(long)n * c.VocabSize];
        hostTokens = new int[n];
        hostSelected = new int[n];
        hostRows = new DeviceRow[n];
        hostAngles = new float[n * c.HeadDim];
        capacity = n;
    }

    private ArrayView<T> Allocate<T>(long length) where T : unmanaged
    {
        var buffer = device.Accelerator.Allocate1D<T>(Math.Max(length, 1));
        buffers.Add(buffer);
        return buffer.View;
    }

    public void Begin(ReadOnlySpan<int> tokens, ReadOnlySpan<Lane> passLanes)
    {
        rows = tokens.Length;
        EnsureCapacity(rows);
        int D = config.HeadDim, half = D / 2, pageCount = 0, segmentCount = 0;
        lanes.Clear();
        foreach (var lane in passLanes)
        {
            var cache = lane.Cache as DeviceCache ?? throw new InvalidOperationException("a device pass runs sessions whose caches are on its device");
            cache.Settle();
            cache.EnsurePages(cache.Length + lane.Rows);
            cache.SealSegments();
            pageCount += cache.PageIds.Count;
            segmentCount += cache.SegmentIds.Count;
            lanes.Add(lane);
        }
        pageTable.Reserve(pageCount);
        segmentTable.Reserve(segmentCount);

        int t = 0, pageAt = 0, segmentAt = 0;
        foreach (var lane in lanes)
        {
            var cache = (DeviceCache)lane.Cache;
            for (int i = 0; i < cache.PageIds.Count; i++) pageTable.Host[pageAt + i] = cache.PageIds[i];
            for (int i = 0; i < cache.SegmentIds.Count; i++) segmentTable.Host[segmentAt + i] = cache.SegmentIds[i];
            for (int i = 0; i < lane.Rows; i++, t++)
            {
                int position = cache.Length + i;
                hostRows[t] = new DeviceRow
                {
                    Position = position, PageTable = pageAt, Domain = Math.Max(cache.DomainIndex, 0),
                    SegmentTable = segmentAt, Segments = cache.SegmentIds.Count,
                };
                // The angles in double, rounded once, as the SIMD pass computes them: cos θᵢ, then sin θᵢ.
                Kernels.RopeAngles<float>(model.Model.Config.RotatesHeads ? position : 0, model.Model.RopeDivisors, hostAngles.AsSpan(t * D, half), hostAngles.AsSpan(t * D + half, half));
            }
            pageAt += cache.PageIds.Count;
            segmentAt += cache.SegmentIds.Count;
        }
        tokens.CopyTo(hostTokens);
        tokenIds.SubView(0, rows).CopyFromCPU(hostTokens.AsSpan(0, rows));
        rowInfo.SubView(0, rows).CopyFromCPU(hostRows.AsSpan(0, rows));
        angles.SubView(0, (long)rows * D).CopyFromCPU(hostAngles.AsSpan(0, rows * D));
        pageTable.Upload(pageAt);
        segmentTable.Upload(segmentAt);
        device.Kernels.Embed(device.Spread(rows * config.NEmbd), model.Embedding, tokenIds, x, config.NEmbd, rows * config.NEmbd);
    }

    public void RmsNorm(Activation from, Activation to) => RmsRows(Of(from), Of(to), identityRows, rows);

    private void RmsRows(ArrayView<float> source, ArrayView<float> target, ArrayView<int> rowOf, int count) =>
        device.Kernels.RmsNormRows(device.GroupPerItem(count), source, target, rowOf, config.NEmbd, count);

    public void Project(Projection weights, int layer, Activation from, Activation to, Epilogue then) =>
        Product(model.Matrices.Of(weights, layer), Of(from), Of(to), rows, then);

    private void Product(DeviceMatrix w, ArrayView<float> input, ArrayView<float> result, int rowCount, Epilogue then)
    {
        var shape = new ProductShape { Rows = rowCount, In = w.In, Out = w.Out, Epilogue = (int)then, Softcap = (float)config.Softcap };
        int tile = device.Tile, tiles = (w.Out + tile - 1) / tile * ((rowCount + tile - 1) / tile);
        device.Kernels.Product(new KernelConfig(new Index2D(Math.Min(tiles, device.Groups), 1), new Index2D(tile, tile)), w.Weights, input, result, shape);
    }

    public void CacheKeys(int layer) =>
        device.Kernels.CacheKeys(device.Spread(rows * (config.NHead + config.NKvHead)), q, k, v, angles, rowInfo, pageTable.View, model.Pages.View, lambdaQueries,
            model.LaplacianIndex, model.LaplacianValues, model.Domains, Shape(layer));

    public void Attend(int layer) =>
        device.Kernels.Attend(device.GroupPerItem(rows * config.NHead), q, lambdaQueries, y, rowInfo, pageTable.View, model.Pages.View,
            model.Domains, model.Index?.View ?? default, segmentTable.View, Shape(layer));

    public void AddToResidual(Activation from) => device.Kernels.AddInPlace(device.Spread(rows * config.NEmbd), x, Of(from), rows * config.NEmbd);

    public void FinishLogits(bool everyRow)
    {
        int selected = 0, t = 0;
        foreach (var lane in lanes)
        {
            for (int i = everyRow ? 0 : lane.Rows - 1; i < lane.Rows; i++) hostSelected[selected++] = t + i;
            t += lane.Rows;
        }
        selectedRows.SubView(0, selected).CopyFromCPU(hostSelected.AsSpan(0, selected));
        RmsRows(x, h, selectedRows, selected);
        Product(model.Matrices.LmHead, h, logits, selected, Epilogue.Logits);
        logits.SubView(0, (long)selected * config.VocabSize).CopyToCPU(Logits.AsSpan(0, selected * config.VocabSize));
        device.Accelerator.Synchronize();
        lanes.Clear();
    }

    private PassShape Shape(int layer) => new()
    {
        Rows = rows, Embd = config.NEmbd, HeadDim = config.HeadDim, Heads = config.NHead, KvHeads = config.NKvHead, Layer = layer,
        PageTokens = DevicePagePool.PageTokens, PageFloats = model.Pages.PageFloats, KeyWidth = model.KeyWidth,
        TauAttention = config.Attention == AttentionKind.Tau ? 1 : 0, InverseSqrtHeadDim = 1f / MathF.Sqrt(config.HeadDim),
        IndexStreamFloats = model.IndexStreamFloats, IndexPageFloats = model.Index?.PageFloats ?? 0,
    };

    private ArrayView<float> Of(Activation a) => a switch
    {
        Activation.X => x, Activation.H => h, Activation.Q => q, Activation.K => k, Activation.V => v,
        Activation.Y => y, Activation.Out => output, Activation.Up => up,
        _ => throw new ArgumentOutOfRangeException(nameof(a)),
    };

    public void Dispose()
    {
        pageTable.Dispose();
        segmentTable.Dispose();
        foreach (var b in buffers) b.Dispose();
        buffers.Clear();
    }

    /// <summary>A table of ints the host fills for each pass and its kernels read, grown by doubling.</summary>
    private sealed class PassTable(Accelerator accelerator) : IDisposable
    {
        private MemoryBuffer1D<int, Stride1D.Dense> buffer = accelerator.Allocate1D<int>(16);

        public int[] Host { get; private set; } = new int[16];

        public ArrayView<int> View => buffer.View;

        public void Reserve(int count)
        {
            if (count <= Host.Length) return;
            count = Math.Max(count, 2 * Host.Length);
            buffer.Dispose();
            buffer = accelerator.Allocate1D<int>(count);
            Host = new int[count];
        }

        public void Upload(int count)
        {
            if (count > 0) View.SubView(0, count).CopyFromCPU(Host.AsSpan(0, count));
        }

        public void Dispose() => buffer.Dispose();
    }
}
