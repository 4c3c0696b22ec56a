using ILGPU;
using ILGPU.Runtime;

namespace TauCluster.Engine;

/// <summary>
/// A model on a device: its weights uploaded once (as F32) and shared by every session on that device, the domains its
/// sessions score against (their Laplacians in CSR), and the page pool that holds their caches.
/// </summary>
public sealed class DeviceModel : IDisposable
{
    private readonly List<MemoryBuffer> weights = [];
    private readonly Dictionary<TaumodeSpec, int> domainIndex = [];
    private readonly List<DeviceDomain> domains = [];
    private readonly List<int> laplacianIndex = [];
    private readonly List<double> laplacianValues = [];
    private MemoryBuffer1D<int, Stride1D.Dense>? laplacianIndexBuffer;
    private MemoryBuffer1D<double, Stride1D.Dense>? laplacianValueBuffer;
    private MemoryBuffer1D<DeviceDomain, Stride1D.Dense>? domainBuffer;
    private DevicePass? sessionPass;

    public DeviceModel(TauModel model, IlgpuDevice device, long cacheBytes)
    {
        var c = model.Config;
        if (c.HeadDim > DeviceKernels.MaxHeadDim)
            throw new InvalidOptionsException($"device {device.Device}: head_dim {c.HeadDim} exceeds the {DeviceKernels.MaxHeadDim} its attention kernel holds");
        if (c.TaumodeOrDefault.Recency != TauRecency.None)
            throw new InvalidOptionsException($"device {device.Device}: the device kernels do not apply taumode.recency; serve this model on the cpu");
        if (c.HasLambdaWeights)
            throw new InvalidOptionsException($"device {device.Device}: the device kernels do not apply taumode.learned_temperature or taumode.projection_dim; serve this model on the cpu");
        Model = model;
        Device = device;
        KeyWidth = c.Attention == AttentionKind.Tau ? 1 : c.HeadDim;
        lock (device.Gate)
        {
            Embedding = Upload(model.Weights.TokenEmbedding);
            // Row-major as stored, each with the shape its packed CPU twin has.
            var packed = model.Packed;
            Matrices = new(model.Weights.Layers.Select((w, i) =>
            {
                var p = packed.Layers[i];
                return new LayerMatrices<DeviceMatrix>(Upload(w.Query, p.Query), Upload(w.Key, p.Key), Upload(w.Value, p.Value),
                    Upload(w.AttentionProjection, p.AttentionProjection), Upload(w.MlpUp, p.MlpUp), Upload(w.MlpDown, p.MlpDown));
            }).ToArray(), Upload(model.Weights.LmHead, packed.LmHead));
            Pages = new DevicePagePool(device, c, KeyWidth, cacheBytes);
            if (c.Attention == AttentionKind.Tau)
            {
                // Room for the index of every segment the cache pool can hold, and one more.
                IndexStreamFloats = DeviceLambdaIndex.StreamFloats(c.HeadDim);
                int segments = (int)((long)Pages.Pages * DevicePagePool.PageTokens / DeviceLambdaIndex.SegmentSize) + 1;
                int indexPageFloats = c.NLayer * c.NKvHead * IndexStreamFloats;
                Index = new DevicePagePool(device, indexPageFloats, (long)segments * indexPageFloats * sizeof(float), "λ index pool");
            }
        }
        WeightBytes = weights.Sum(w => w.LengthInBytes);
    }

    public TauModel Model { get; }
    public IlgpuDevice Device { get; }

    /// <summary>Device memory the weights take (F32, whatever the file stores).</summary>
    public long WeightBytes { get; }

    /// <summary>Device memory of the cache pool (with the λ index's), and how much of it live sessions hold.</summary>
    public long CachePoolBytes => Pages.Pages * Pages.PageBytes + (Index is null ? 0 : Index.Pages * Index.PageBytes);
    public long CacheBytesInUse => Pages.PagesInUse * Pages.PageBytes + (Index is null ? 0 : Index.PagesInUse * Index.PageBytes);

    internal int KeyWidth { get; }
    internal DevicePagePool Pages { get; }

    /// <summary>The sealed segments' λ indexes (<see cref="DeviceLambdaIndex"/>), a page per segment; null for causal models.</summary>
    internal DevicePagePool? Index { get; }
    internal int IndexStreamFloats { get; }
    internal ArrayView<float> Embedding { get; }
    internal ModelMatrices<DeviceMatrix> Matrices { get; }
    internal ArrayView<int> LaplacianIndex => laplacianIndexBuffer?.View ?? default;
    internal ArrayView<double> LaplacianValues => laplacianValueBuffer?.View ?? default;
    internal ArrayView<DeviceDomain> Domains => domainBuffer?.View ?? default;

    /// <summary>A new session's cache on this device; tau attends through the λ index unless <paramref name="path"/> says dense.</summary>
    public DeviceCache CreateCache(TaumodeSpec? domain, TauAttentionPath path = TauAttentionPath.Index) =>
        new(this, Model.Config.Attention == AttentionKind.Tau ? domain ?? throw new ArgumentNullException(nameof(domain), "tau attention needs a Laplacian") : null,
            indexed: Model.Config.Attention == AttentionKind.Tau && path == TauAttentionPath.Index);

    /// <summary>A pass's buffers for up to <paramref name="rows"/> rows (a worker's own; grown when a block needs more).</summary>
    internal DevicePass CreatePass(int rows) => new(this, rows);

    /// <summary>
    /// Runs a block of one session outside any worker (direct <see cref="InferenceSession"/> calls) in a pass shared by
    /// such calls, and copies the logits out before another can run.
    /// </summary>
    internal void RunAlone(ReadOnlySpan<int> tokens, Lane lane, bool everyRow, Span<float> logits)
    {
        lock (Device.Gate)
        {
            var pass = sessionPass ??= CreatePass(InferenceSession.PrefillBlock);
            Model.Forward(tokens, [lane], pass, everyRow);
            pass.Logits.AsSpan(0, logits.Length).CopyTo(logits);
        }
    }

    /// <summary>The device index of a domain, its Laplacian uploaded on first use (rare: a domain per session kind).</summary>
    internal int DomainIndex(TaumodeSpec domain)
    {
        domain.RequireFor(Model.Config);
        lock (Device.Gate)
        {
            if (domainIndex.TryGetValue(domain, out int index)) return index;
            var (rowStarts, columns, values) = domain.Laplacian.Csr;
            int first = laplacianIndex.Count;
            // One int array holds every domain's row starts, then its columns; row starts index both the columns and values.
            int columnBase = first + rowStarts.Length;
            foreach (int start in rowStarts) laplacianIndex.Add(columnBase + start);
            foreach (int column in columns) laplacianIndex.Add(column);
            // The values sit at their columns' indices, so the value array skips the row starts.
            while (laplacianValues.Count < columnBase) laplacianValues.Add(0);
            foreach (double v in values) laplacianValues.Add(v);
            var s = domain.Settings;
            domains.Add(new DeviceDomain
            {
                RowStarts = first, Mode = (int)s.Mode, Tau = s.Tau, Eps = s.Eps, Percentile = s.Percentile, Temperature = domain.Temperature,
            });
            laplacianIndexBuffer?.Dispose();
            laplacianValueBuffer?.Dispose();
            domainBuffer?.Dispose();
            laplacianIndexBuffer = Device.Accelerator.Allocate1D(laplacianIndex.ToArray());
            laplacianValueBuffer = Device.Accelerator.Allocate1D(laplacianValues.ToArray());
            domainBuffer = Device.Accelerator.Allocate1D(domains.ToArray());
            domainIndex[domain] = index = domains.Count - 1;
            return index;
        }
    }

    private ArrayView<float> Upload(float[] data)
    {
        var buffer = Device.Accelerator.Allocate1D(data);
        weights.Add(buffer);
        return buffer.View;
    }

    private DeviceMatrix Upload(float[] data, PackedMatrix shape) => new(Upload(data), shape.Out, shape.In);

    public void Dispose()
    {
        lock (Device.Gate)
        {
            sessionPass?.Dispose();
            foreach (var w in weights) w.Dispose();
            Pages.Dispose();
            Index?.Dispose();
            laplacianIndexBuffer?.Dispose();
            laplacianValueBuffer?.Dispose();
            domainBuffer?.Dispose();
        }
    }
}

/// <summary>A weight W [out, in] on a device, row-major.</summary>
internal readonly record struct DeviceMatrix(ArrayView<float> Weights, int Out, int In);
